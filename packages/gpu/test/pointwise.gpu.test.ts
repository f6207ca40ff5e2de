/**
 * The pointwise activations (relu, silu, tanh, sigmoid) and their gradients on Dawn against
 * PyTorch (fixtures/pointwise.json from scripts/make_pointwise_fixtures.py), with dtype 'f32' and
 * 'f16' (f16 storage, f32 arithmetic): forward, backward overwriting and backward accumulating, all
 * four functions from one kernel object; bad arguments throw InvalidArgumentError.
 *
 * Tolerances, as |got - expected| <= atol + rtol * |expected|:
 *   relu f32: exact (a select, and for += one correctly rounded f32 add on both sides)
 *   silu, tanh, sigmoid f32: rtol 2e-6 (a few ulps: exp within a few ulps, then a handful of
 *     roundings), atol 1e-7 for y (sigmoid(-100) is a float32 subnormal the shader's exp may
 *     flush to 0) and 2e-7 for the silu and tanh gradients: where silu' crosses zero (x ~ -1.28)
 *     1 + x (1 - s) cancels, and PyTorch's tanh' = 1 - y^2 from its float32 y carries y's
 *     rounding (up to 2^-24 next to +-1, so ~1.2e-7 in 1 - y^2, times |upstream|), which the
 *     shader's 4e / (1 + e)^2 does not. sigmoid's gradient: atol 5e-7, as PyTorch's y (1 - y)
 *     takes 1 - y from a float32 y a couple of ulps (2^-24 each) from the true value, ~1.2e-7
 *     times |upstream| (< 4), where the shader's e / (1 + e)^2 is exact to f32 rounding (the
 *     fixture's x = 5.96 is 1.6e-7 off in PyTorch's value)
 *   f16: atol 2^-14, rtol 2^-10: one f16 ulp relative (the f32 result may sit on either side of a
 *     rounding boundary, and WGSL lets f32 -> f16 round to either neighbour), and f16's smallest
 *     normal absolute (an implementation may flush subnormal results to zero)
 */
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@webtune/errors';
import { CommandRecorder, createTensor, readF32, type GpuTensor } from '../src/index.js';
import { createPointwiseKernels, POINTWISE_FUNCTIONS, type PointwiseFunction, type PointwiseKernels } from '../src/kernels/pointwise.js';
import json from './fixtures/pointwise.json';
import { f32, type EncodedTensor } from './fixtures.js';
import { worstError } from './random.js';
import { nodeContext, recordValidated, useNodeContext } from './node-context.js';

interface PointwiseCase {
  name: string;
  fn: PointwiseFunction;
  size: number;
  x: EncodedTensor;
  upstream: EncodedTensor;
  gradInit: EncodedTensor;
  /** fn(x) */
  y: EncodedTensor;
  /** autograd: upstream * fn'(x) */
  gradX: EncodedTensor;
  /** gradInit + gradX */
  gradAccumulated: EncodedTensor;
}

const F = json as unknown as { generatedBy: string; cases: PointwiseCase[]; f16: PointwiseCase[] };

interface Tol {
  atol: number;
  rtol: number;
}
const EXACT: Tol = { atol: 0, rtol: 0 };
const F16_TOL: Tol = { atol: 2 ** -14, rtol: 2 ** -10 };
/** [y, gradients] per function for f32. */
const F32_TOL: Record<PointwiseFunction, [Tol, Tol]> = {
  relu: [EXACT, EXACT],
  silu: [{ atol: 1e-7, rtol: 2e-6 }, { atol: 2e-7, rtol: 2e-6 }],
  tanh: [{ atol: 1e-7, rtol: 2e-6 }, { atol: 2e-7, rtol: 2e-6 }],
  sigmoid: [{ atol: 1e-7, rtol: 2e-6 }, { atol: 5e-7, rtol: 2e-6 }],
};

const gpu = useNodeContext();

function tensor(label: string, data: Float32Array, dtype: 'f32' | 'f16'): GpuTensor {
  return createTensor(gpu(), { shape: [data.length], dtype, label, data });
}

function expectClose(name: string, got: ArrayLike<number>, expected: ArrayLike<number>, tol: Tol): void {
  const r = worstError(got, expected, tol.atol, tol.rtol);
  expect(r.ratio, `${name}: ${JSON.stringify(r)} (atol ${tol.atol}, rtol ${tol.rtol})`).toBeLessThanOrEqual(1);
}

/**
 * gradInit + gradX: the product's error is relative to |gradX|, not to the sum, which can cancel;
 * so |got - expected| <= atol + rtol (|gradInit| + |gradX|) per element.
 */
function expectSumClose(name: string, got: Float32Array, expected: Float32Array, init: Float32Array, grad: Float32Array, tol: Tol): void {
  expect(got.length, `${name}: length`).toBe(expected.length);
  let worst = { ratio: 0, index: -1, got: 0, expected: 0 };
  for (let i = 0; i < expected.length; i++) {
    const diff = Math.abs(got[i]! - expected[i]!);
    const ratio = diff === 0 ? 0 : diff / (tol.atol + tol.rtol * (Math.abs(init[i]!) + Math.abs(grad[i]!)));
    if (!(ratio <= worst.ratio)) worst = { ratio: Number.isNaN(ratio) ? Infinity : ratio, index: i, got: got[i]!, expected: expected[i]! };
  }
  expect(worst.ratio, `${name}: ${JSON.stringify(worst)} (atol ${tol.atol}, rtol ${tol.rtol} of |init| + |grad|)`).toBeLessThanOrEqual(1);
}

async function runCase(k: PointwiseKernels, c: PointwiseCase): Promise<void> {
  const { fn, size } = c;
  const dtype = k.dtype;
  const x = tensor('x', f32(c.x), dtype);
  const gradOutput = tensor('dy', f32(c.upstream), dtype);
  // NaN-filled, so an element the kernel skips fails the comparison.
  const y = tensor('y', new Float32Array(size).fill(Number.NaN), dtype);
  const gradInput = tensor('dx', new Float32Array(size).fill(Number.NaN), dtype);
  const gradAcc = tensor('dx accumulated', f32(c.gradInit), dtype);
  await recordValidated(gpu(), `pointwise ${c.name}`, (rec) => {
    k.forward(rec, { fn, x, y, size });
    k.backward(rec, { fn, x, gradOutput, gradInput, size });
    k.backward(rec, { fn, x, gradOutput, gradInput: gradAcc, size, accumulate: true });
  });
  const [yTol, gradTol] = dtype === 'f16' ? [F16_TOL, F16_TOL] : F32_TOL[fn];
  expectClose('y', await readF32(gpu(), y), f32(c.y), yTol);
  expectClose('dx', await readF32(gpu(), gradInput), f32(c.gradX), gradTol);
  expectSumClose('dx +=', await readF32(gpu(), gradAcc), f32(c.gradAccumulated), f32(c.gradInit), f32(c.gradX), gradTol);
  for (const t of [x, gradOutput, y, gradInput, gradAcc]) t.release();
}

describe.each([
  ['f32', F.cases],
  ['f16', F.f16],
] as const)("dtype '%s' against PyTorch (F.relu, F.silu, torch.tanh, torch.sigmoid and autograd)", (dtype, cases) => {
  if (dtype === 'f16') {
    it('the lane has shader-f16 (lavapipe does)', () => {
      expect(gpu().features.shaderF16, 'the f16 cases need shader-f16').toBe(true);
    });
  }
  it('the fixture covers every function', () => {
    expect(new Set(cases.map((c) => c.fn))).toEqual(new Set(POINTWISE_FUNCTIONS));
  });
  for (const c of cases) {
    it(`${c.name}: forward, backward =, backward +=`, async () => {
      const k = await createPointwiseKernels(gpu(), { dtype });
      expect(k.dtype).toBe(dtype);
      await runCase(k, c);
    });
  }
});

describe('one kernel object, every function', () => {
  // Each dispatch carries its function in its own uniform: four in one command buffer must not mix.
  it('records relu, silu, tanh and sigmoid into one command buffer, each with its own result', async () => {
    const k = await createPointwiseKernels(gpu());
    const c = POINTWISE_FUNCTIONS.map((fn) => F.cases.find((x) => x.fn === fn && x.size > 1000)!);
    const inputs = c.map((cc) => tensor(`x ${cc.fn}`, f32(cc.x), 'f32'));
    const outputs = c.map((cc) => tensor(`y ${cc.fn}`, new Float32Array(cc.size), 'f32'));
    await recordValidated(gpu(), 'three functions', (rec) => {
      c.forEach((cc, i) => k.forward(rec, { fn: cc.fn, x: inputs[i]!, y: outputs[i]!, size: cc.size }));
    });
    for (const [i, cc] of c.entries()) {
      expectClose(`y ${cc.fn}`, await readF32(gpu(), outputs[i]!), f32(cc.y), F32_TOL[cc.fn][0]);
    }
    for (const t of [...inputs, ...outputs]) t.release();
  });
});

describe('bad arguments throw InvalidArgumentError', () => {
  it('unknown functions, sizes, dtypes and aliasing (in place is refused)', async () => {
    const ctx = gpu();
    const k = await createPointwiseKernels(ctx);
    const k16 = await createPointwiseKernels(ctx, { dtype: 'f16' });
    const t = (shape: number[], label = 't', dtype: 'f32' | 'f16' | 'u32' = 'f32') => createTensor(ctx, { shape, dtype, label });
    const x = t([10], 'x');
    const y = t([10], 'y');
    const dy = t([10], 'dy');
    const dx = t([10], 'dx');
    const rec = new CommandRecorder(ctx, 'bad pointwise arguments');
    const cases: [() => void, RegExp][] = [
      [() => k.forward(rec, { fn: 'gelu' as PointwiseFunction, x, y, size: 10 }),
        /pointwise forward: fn must be one of 'relu', 'silu', 'tanh', 'sigmoid', got "gelu" \(the tanh GELU.*createGeluKernels\)/],
      [() => k.backward(rec, { fn: 'swish' as PointwiseFunction, x, gradOutput: dy, gradInput: dx, size: 10 }), /pointwise backward: fn must be one of/],
      [() => k.forward(rec, { fn: 'relu', x, y: x, size: 10 }), /pointwise forward: y "x" and x "x" are the same buffer/],
      [() => k.forward(rec, { fn: 'relu', x, y, size: 11 }), /pointwise forward: x "x" must be f32 with at least 11 elements.*got f32 \[10\]/],
      [() => k.forward(rec, { fn: 'tanh', x, y: t([9], 'short y'), size: 10 }), /y "short y" must be f32 with at least 10 elements.*\[9\]/],
      [() => k.forward(rec, { fn: 'silu', x, y, size: 0 }), /size must be an integer >= 1, got 0/],
      [() => k.forward(rec, { fn: 'silu', x, y, size: 2.5 }), /size must be an integer >= 1, got 2.5/],
      [() => k.backward(rec, { fn: 'silu', x, gradOutput: dy, gradInput: dy, size: 10 }), /gradInput "dy" and gradOutput "dy" are the same buffer/],
      [() => k.backward(rec, { fn: 'silu', x, gradOutput: dy, gradInput: x, size: 10, accumulate: true }), /gradInput "x" and x "x" are the same buffer/],
      [() => k.backward(rec, { fn: 'tanh', x, gradOutput: t([9], 'short dy'), gradInput: dx, size: 10 }), /gradOutput "short dy".*got f32 \[9\]/],
      [() => k16.forward(rec, { fn: 'relu', x, y: t([10], 'y16', 'f16'), size: 10 }), /x "x" must be f16.*got f32 \[10\]/],
      [() => k16.backward(rec, { fn: 'relu', x: t([10], 'x16', 'f16'), gradOutput: t([10], 'dy16', 'f16'), gradInput: dx, size: 10 }),
        /gradInput "dx" must be f16.*got f32/],
      [() => k.forward(rec, { fn: 'relu', x: t([10], 'ids', 'u32'), y, size: 10 }), /x "ids" must be f32.*got u32/],
    ];
    for (const [call, message] of cases) {
      let error: unknown;
      try {
        call();
      } catch (e) {
        error = e;
      }
      expect(error, String(message)).toBeInstanceOf(InvalidArgumentError);
      expect((error as Error).message).toMatch(message);
    }
    const bad = await createPointwiseKernels(ctx, { dtype: 'bf16' as 'f32' }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(InvalidArgumentError);
    rec.submit();
  });

  it("without shader-f16, dtype 'f16' is refused with a hint to use 'f32'", async () => {
    const ctx = await nodeContext({ disableFeatures: ['shader-f16'] });
    try {
      const error = await createPointwiseKernels(ctx, { dtype: 'f16' }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect((error as Error).message).toMatch(/createPointwiseKernels: dtype 'f16' needs the 'shader-f16' feature.*use dtype 'f32'/);
      await expect(createPointwiseKernels(ctx)).resolves.toBeDefined();
    } finally {
      ctx.destroy();
    }
  });
});
