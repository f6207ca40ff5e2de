/**
 * DoRA's weight norm on Dawn against PyTorch (fixtures/dora.json from
 * scripts/make_dora_fixtures.py), with dtype 'f32' and 'f16' (f16 storage of W, f32 arithmetic);
 * the CPU reference against the same goldens; subsets of the outputs; rank 64 and in 8192, and
 * more rows than one dispatch dimension allows, against the CPU reference; bad arguments throw
 * InvalidArgumentError.
 *
 * Tolerances, as |got - expected| <= rtol * |expected| (norms are well away from 0 here):
 *   GPU, both dtypes (the same f32 arithmetic on the same f32 values; f16 W is exact in f32):
 *     rtol 1e-5. Each v = W + s B A is within ~(r + 2) ulps of |W| + s |B| |A| (a few times |v|
 *     for these random factors); the sum of squares has no cancellation and the kernel sums
 *     ~in / 128 terms per invocation then a 7-level tree, PyTorch in its own order, each within
 *     a few tens of ulps relative; sqrt, 1 / n and m / n add ~2.5 ulps each. That is ~1e-6 in
 *     practice; 1e-5 leaves room without hiding a wrong term (one missing column or rank changes
 *     a norm by ~1e-2 or more).
 *   doraWeightNormRef (float64, rounded once): rtol 1e-5, PyTorch's float32 error as above.
 */
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@webtune/errors';
import { CommandRecorder, createTensor, readF32, type GpuTensor } from '../src/index.js';
import { createDoraKernels, type DoraKernels, type DoraWeightNormArgs } from '../src/kernels/dora.js';
import { doraWeightNormRef } from '../src/kernels/dora.ref.js';
import json from './fixtures/dora.json';
import { f32, type EncodedTensor } from './fixtures.js';
import { randn, worstError } from './random.js';
import { nodeContext, recordValidated, useNodeContext } from './node-context.js';

interface DoraCase {
  name: string;
  out: number;
  in: number;
  rank: number;
  scale: number;
  weight: EncodedTensor;
  a: EncodedTensor;
  b: EncodedTensor;
  magnitude?: EncodedTensor;
  norm: EncodedTensor;
  invNorm: EncodedTensor;
  mOverNorm?: EncodedTensor;
}

const F = json as unknown as { generatedBy: string; cases: DoraCase[]; f16: DoraCase[] };

const RTOL = 1e-5;
const SENTINEL = 7;

const gpu = useNodeContext();

function tensor(label: string, data: Float32Array, shape: number[], dtype: 'f32' | 'f16' = 'f32'): GpuTensor {
  return createTensor(gpu(), { shape, dtype, label, data });
}

/** Records `body` into one command buffer, submits it, and fails on any validation error. */
const record = (label: string, body: (rec: CommandRecorder) => void) => recordValidated(gpu(), label, body);

function expectClose(name: string, got: ArrayLike<number>, expected: ArrayLike<number>, rtol = RTOL): void {
  const r = worstError(got, expected, 0, rtol);
  expect(r.ratio, `${name}: ${JSON.stringify(r)} (rtol ${rtol})`).toBeLessThanOrEqual(1);
}

function expectExact(name: string, got: Float32Array, expected: Float32Array): void {
  expect(got.length, `${name}: length`).toBe(expected.length);
  const first = got.findIndex((v, i) => !Object.is(v, expected[i]));
  expect(first, first < 0 ? name : `${name}: first difference at ${first}: got ${got[first]}, expected ${expected[first]}`).toBe(-1);
}

interface Inputs {
  weight: GpuTensor;
  a: GpuTensor;
  b: GpuTensor;
  magnitude?: GpuTensor;
  release(): void;
}

function upload(k: DoraKernels, c: { out: number; in: number; rank: number }, w: Float32Array, a: Float32Array, b: Float32Array, m?: Float32Array): Inputs {
  const t = {
    weight: tensor('W', w, [c.out, c.in], k.dtype),
    a: tensor('A', a, [c.rank, c.in]),
    b: tensor('B', b, [c.out, c.rank]),
    magnitude: m ? tensor('m', m, [c.out]) : undefined,
  };
  return { ...t, release: () => Object.values(t).forEach((x) => x?.release()) };
}

function output(label: string, n: number): GpuTensor {
  return tensor(label, new Float32Array(n).fill(SENTINEL), [n]);
}

async function runCase(k: DoraKernels, c: DoraCase): Promise<void> {
  const inputs = upload(k, c, f32(c.weight), f32(c.a), f32(c.b), c.magnitude ? f32(c.magnitude) : undefined);
  const norm = output('norm', c.out);
  const invNorm = output('invNorm', c.out);
  const mOverNorm = c.magnitude ? output('mOverNorm', c.out) : undefined;
  await record(`weightNorm ${c.name}`, (rec) =>
    k.weightNorm(rec, { ...inputs, scale: c.scale, norm, invNorm, mOverNorm, out: c.out, in: c.in, rank: c.rank }));
  expectClose('norm', await readF32(gpu(), norm), f32(c.norm));
  expectClose('invNorm', await readF32(gpu(), invNorm), f32(c.invNorm));
  if (mOverNorm) expectClose('mOverNorm', await readF32(gpu(), mOverNorm), f32(c.mOverNorm!));
  for (const t of [norm, invNorm, mOverNorm]) t?.release();
  inputs.release();
}

describe.each([
  ['f32', F.cases],
  ['f16', F.f16],
] as const)("dtype '%s' against PyTorch", (dtype, cases) => {
  if (dtype === 'f16') {
    it('the lane has shader-f16 (lavapipe does)', () => {
      expect(gpu().features.shaderF16, 'the f16 cases need shader-f16').toBe(true);
    });
  }
  for (const c of cases) it(`weightNorm ${c.name}`, async () => runCase(await createDoraKernels(gpu(), { dtype }), c));
});

describe('doraWeightNormRef against PyTorch', () => {
  for (const [dtype, cases] of [['f32', F.cases], ['f16', F.f16]] as const) {
    it(`${dtype} cases`, () => {
      for (const c of cases) {
        const r = doraWeightNormRef({ weight: f32(c.weight), a: f32(c.a), b: f32(c.b), scale: c.scale,
          magnitude: c.magnitude ? f32(c.magnitude) : undefined, out: c.out, in: c.in, rank: c.rank });
        expectClose(`${c.name} norm`, r.norm, f32(c.norm));
        expectClose(`${c.name} invNorm`, r.invNorm, f32(c.invNorm));
        expect(r.mOverNorm === undefined, `${c.name}: mOverNorm only with a magnitude`).toBe(c.magnitude === undefined);
        if (c.mOverNorm) expectClose(`${c.name} mOverNorm`, r.mOverNorm!, f32(c.mOverNorm));
      }
    });
  }
});

describe('outputs, shapes and determinism against the CPU reference', () => {
  it('each output alone, the others untouched', async () => {
    const k = await createDoraKernels(gpu());
    const c = F.cases.find((x) => x.out === 64 && x.magnitude)!;
    const inputs = upload(k, c, f32(c.weight), f32(c.a), f32(c.b), f32(c.magnitude!));
    const expected = { norm: f32(c.norm), invNorm: f32(c.invNorm), mOverNorm: f32(c.mOverNorm!) };
    for (const name of ['norm', 'invNorm', 'mOverNorm'] as const) {
      const outs = { norm: output('norm', c.out), invNorm: output('invNorm', c.out), mOverNorm: output('mOverNorm', c.out) };
      await record(`${name} alone`, (rec) =>
        k.weightNorm(rec, { ...inputs, scale: c.scale, [name]: outs[name], out: c.out, in: c.in, rank: c.rank }));
      for (const other of ['norm', 'invNorm', 'mOverNorm'] as const) {
        const got = await readF32(gpu(), outs[other]);
        if (other === name) expectClose(`${name} alone`, got, expected[name]);
        else expectExact(`${other} while asking for ${name} only`, got, new Float32Array(c.out).fill(SENTINEL));
        outs[other].release();
      }
    }
    inputs.release();
  });

  it('rank 64, in 8192: within tolerance, and the same bits on every call', async () => {
    const k = await createDoraKernels(gpu());
    const s = { out: 6, in: 8192, rank: 64 };
    const w = randn(s.out * s.in, 1, s.in ** -0.5);
    const a = randn(s.rank * s.in, 2, s.in ** -0.5);
    const b = randn(s.out * s.rank, 3, 0.3);
    const m = randn(s.out, 4);
    const inputs = upload(k, s, w, a, b, m);
    const outs = [0, 1].map((i) => ({ norm: output(`norm ${i}`, s.out), mOverNorm: output(`mOverNorm ${i}`, s.out) }));
    await record('rank 64', (rec) => {
      for (const o of outs) k.weightNorm(rec, { ...inputs, scale: 0.25, ...o, ...s });
    });
    const ref = doraWeightNormRef({ weight: w, a, b, magnitude: m, scale: 0.25, ...s });
    const [first, second] = await Promise.all(outs.map(async (o) => [await readF32(gpu(), o.norm), await readF32(gpu(), o.mOverNorm)]));
    expectClose('norm', first![0]!, ref.norm);
    expectClose('mOverNorm', first![1]!, ref.mOverNorm!);
    expectExact('norm, a second call', second![0]!, first![0]!);
    expectExact('mOverNorm, a second call', second![1]!, first![1]!);
    for (const o of outs) Object.values(o).forEach((t) => t.release());
    inputs.release();
  });

  it('more rows than one dispatch dimension allows continue along y', async () => {
    const ctx = gpu();
    const k = await createDoraKernels(ctx);
    const s = { out: ctx.limits.maxComputeWorkgroupsPerDimension + 37, in: 3, rank: 2 };
    const w = randn(s.out * s.in, 5);
    const a = randn(s.rank * s.in, 6);
    const b = randn(s.out * s.rank, 7);
    const inputs = upload(k, s, w, a, b);
    const invNorm = output('invNorm', s.out);
    await record('past the x limit', (rec) => k.weightNorm(rec, { ...inputs, scale: 1.5, invNorm, ...s }));
    expectClose('invNorm', await readF32(ctx, invNorm), doraWeightNormRef({ weight: w, a, b, scale: 1.5, ...s }).invNorm);
    invNorm.release();
    inputs.release();
  });
});

describe('bad arguments throw InvalidArgumentError', () => {
  it('counts, sizes, dtypes, outputs and aliasing', async () => {
    const ctx = gpu();
    const k = await createDoraKernels(ctx);
    const k16 = await createDoraKernels(ctx, { dtype: 'f16' });
    expect(k16.dtype).toBe('f16');
    const t = (shape: number[], label = 't', dtype: 'f32' | 'f16' | 'u32' = 'f32') => createTensor(ctx, { shape, dtype, label });
    const w = t([5, 7], 'W');
    const a = t([3, 7], 'A');
    const b = t([5, 3], 'B');
    const m = t([5], 'm');
    const base = (): DoraWeightNormArgs => ({ weight: w, a, b, scale: 2, magnitude: m, norm: t([5], 'norm'), out: 5, in: 7, rank: 3 });
    const rec = new CommandRecorder(ctx, 'bad arguments');
    const cases: [Partial<DoraWeightNormArgs>, RegExp, DoraKernels?][] = [
      [{ out: 0 }, /dora weightNorm: out must be an integer >= 1, got 0/],
      [{ in: 2.5 }, /in must be an integer >= 1, got 2.5/],
      [{ rank: 65, a: t([65, 7]), b: t([5, 65]) }, /rank must be at most 64, got 65/],
      [{ scale: NaN }, /scale must be a finite number, got NaN/],
      [{ weight: t([4, 7], 'W small') }, /weight "W small" must be f32 with at least 35 elements \(\[5, 7\]\); got f32 \[4, 7\]/],
      [{ weight: t([5, 7], 'W16', 'f16') }, /weight "W16" must be f32.*got f16/],
      [{}, /weight "W" must be f16.*got f32/, k16],
      [{ a: t([3, 6], 'A small') }, /a "A small".*\[3, 7\]/],
      [{ b: t([5, 3], 'B16', 'f16') }, /b "B16" must be f32.*got f16/],
      [{ magnitude: t([4], 'm small') }, /magnitude "m small".*\[5\]/],
      [{ norm: undefined }, /give at least one output tensor \(norm, invNorm or mOverNorm\)/],
      [{ magnitude: undefined, mOverNorm: t([5], 'scale') }, /mOverNorm "scale" needs the magnitude tensor/],
      [{ invNorm: t([4], 'inv') }, /invNorm "inv" must be f32.*\[5\].*got f32 \[4\]/],
      [{ norm: t([5], 'n16', 'f16') }, /norm "n16" must be f32.*got f16/],
      [{ norm: m }, /norm "m" and magnitude "m" are the same buffer/],
      [{ norm: a }, /norm "A" and a "A" are the same buffer/],
      [{ invNorm: m, norm: undefined, mOverNorm: m }, /(invNorm|mOverNorm) "m" and (mOverNorm|invNorm|magnitude) "m" are the same buffer/],
    ];
    for (const [patch, message, kernels = k] of cases) {
      let error: unknown;
      try {
        kernels.weightNorm(rec, { ...base(), ...patch });
      } catch (e) {
        error = e;
      }
      expect(error, String(message)).toBeInstanceOf(InvalidArgumentError);
      expect((error as Error).message).toMatch(message);
    }
    const norm = t([5], 'n');
    let error: unknown;
    try {
      k.weightNorm(rec, { ...base(), norm, invNorm: norm });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as Error).message).toMatch(/"n" and .* "n" are the same buffer/);
    const bad = await createDoraKernels(ctx, { dtype: 'bf16' as 'f32' }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(InvalidArgumentError);
    rec.submit();
  });

  it("without shader-f16, dtype 'f16' is refused with a hint to use 'f32'", async () => {
    const ctx = await nodeContext({ disableFeatures: ['shader-f16'] });
    try {
      const error = await createDoraKernels(ctx, { dtype: 'f16' }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect((error as Error).message).toMatch(/createDoraKernels: dtype 'f16' needs the 'shader-f16' feature.*use dtype 'f32'/);
    } finally {
      ctx.destroy();
    }
  });
});
