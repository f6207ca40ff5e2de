/**
 * The transformer training ops on Dawn against PyTorch (fixtures/transformer-ops.json from
 * scripts/make_transformer_op_fixtures.py): RMSNorm, LayerNorm, SwiGLU, tanh GELU, embedding
 * gather and its gradient, elementwise ops, AdamW with global-norm clipping; dropout by its
 * statistics and its CPU twin. Bad shapes throw InvalidArgumentError.
 *
 * Tolerances (float32 against PyTorch's float32; only the summation order and the last-ulp
 * behaviour of rsqrt/exp/tanh differ), as |got - expected| <= atol + rtol * |expected|:
 *   norms: rtol 1e-5, atol 1e-5 * max|expected| of the tensor (the row sums cancel)
 *   swiglu, gelu: rtol 1e-5, atol 1e-6 (elementwise; exp within a few ulps), except the gelu
 *     gradient: atol 4e-6, because PyTorch's own 1 - tanh(u)^2 in float32 keeps only a few bits
 *     where tanh is within ulps of +-1 (|x| ~ 3..9): up to ~1e-6 * |dy| of its own error there
 *     (the shader's sigmoid form does not cancel)
 *   embedding: gather exact; gradient rtol 1e-5, atol 1e-6 (sums of a few rows)
 *   elementwise: exact where no rounding can differ, rtol 1e-6 otherwise (a fused multiply-add
 *     may round once instead of twice)
 *   adamw: rtol 1e-5, atol 1e-6 on parameters and moments; total norm rtol 1e-5
 *   dropout: the mask bit-exact against the CPU twin, scaling exact
 */
import { describe, expect, it } from 'vitest';
import {
  CommandRecorder,
  createTensor,
  InvalidArgumentError,
  readF32,
  writeTensor,
  type GpuContext,
  type GpuTensor,
} from '../src/index.js';
import { createNormKernels } from '../src/kernels/norm.js';
import { createGeluKernels, createSwigluKernels } from '../src/kernels/activation.js';
import { createEmbeddingKernels } from '../src/kernels/embedding.js';
import { createElementwiseKernels } from '../src/kernels/elementwise.js';
import { createDropoutKernels, dropoutKeep } from '../src/kernels/dropout.js';
import { createOptimizerKernels } from '../src/kernels/optimizer.js';
import { f32 } from './fixtures.js';
import { randn, worstError } from './random.js';
import { useNodeContext } from './node-context.js';
import { transformerOpsFixture as F, type NormCase } from './transformer-ops-fixtures.js';

const gpu = useNodeContext();

const NORM_TOL = { rtol: 1e-5, atolOfMax: 1e-5 };
const ELEMENTWISE_TOL = { atol: 1e-6, rtol: 1e-5 };
const GELU_GRAD_TOL = { atol: 4e-6, rtol: 1e-5 };
const EMBEDDING_GRAD_TOL = { atol: 1e-6, rtol: 1e-5 };
const ADAMW_TOL = { atol: 1e-6, rtol: 1e-5 };

function tensor(label: string, data: Float32Array, shape: number[] = [data.length]): GpuTensor {
  return createTensor(gpu(), { shape, label, data });
}

function zeros(label: string, shape: number[]): GpuTensor {
  return createTensor(gpu(), { shape, label, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
}

function u32Tensor(label: string, ids: ArrayLike<number>): GpuTensor {
  return createTensor(gpu(), { shape: [ids.length], dtype: 'u32', label, data: Uint32Array.from(ids) });
}

/** Records `body` into one command buffer, submits it, and fails on any validation error. */
async function record(label: string, body: (rec: CommandRecorder) => void): Promise<void> {
  const ctx: GpuContext = gpu();
  ctx.device.pushErrorScope('validation');
  const rec = new CommandRecorder(ctx, label);
  body(rec);
  rec.submit();
  const error = await ctx.device.popErrorScope();
  expect(error?.message ?? null, `validation error in ${label}`).toBeNull();
}

function expectClose(name: string, got: ArrayLike<number>, expected: ArrayLike<number>, atol: number, rtol: number): void {
  const r = worstError(got, expected, atol, rtol);
  expect(r.ratio, `${name}: ${JSON.stringify(r)} (atol ${atol}, rtol ${rtol})`).toBeLessThanOrEqual(1);
}

/** Bit-exact equality, reported as a count and the first mismatch (a diff of big arrays is too slow to print). */
function expectExact(name: string, got: ArrayLike<number>, expected: ArrayLike<number>): void {
  let wrong = 0;
  let first = -1;
  for (let i = 0; i < expected.length; i++) {
    if (got[i] !== expected[i]) {
      wrong++;
      if (first < 0) first = i;
    }
  }
  const where = first < 0 ? '' : ` first at ${first}: got ${got[first]}, expected ${expected[first]}`;
  expect(got.length, `${name}: length`).toBe(expected.length);
  expect(wrong, `${name}: ${wrong} of ${expected.length} differ${where}`).toBe(0);
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

function expectNormClose(name: string, got: Float32Array, expected: Float32Array): void {
  expectClose(name, got, expected, NORM_TOL.atolOfMax * maxAbs(expected), NORM_TOL.rtol);
}

function sumF32(a: Float32Array, b: Float32Array): Float32Array {
  return a.map((v, i) => v + b[i]!);
}

async function runNormCase(kind: 'rms' | 'layer', c: NormCase): Promise<void> {
  const norm = await createNormKernels(gpu(), { kind, eps: c.eps });
  const { rows, cols } = c;
  const x = tensor('x', f32(c.x), [rows, cols]);
  const weight = tensor('weight', f32(c.weight));
  const bias = c.bias ? tensor('bias', f32(c.bias)) : undefined;
  const upstream = f32(c.upstream);
  const gradOutput = tensor('dy', upstream, [rows, cols]);
  const y = zeros('y', [rows, cols]);
  const rstd = zeros('rstd', [rows]);
  const mean = kind === 'layer' ? zeros('mean', [rows]) : undefined;
  const dx = zeros('dx', [rows, cols]);
  // accumulate: true adds onto what is there, here the upstream gradient itself.
  const dxAcc = tensor('dx accumulated', upstream, [rows, cols]);
  await record(`${kind} norm ${c.name}`, (rec) => {
    norm.forward(rec, { x, weight, bias, y, rstd, mean, rows, cols });
    norm.backward(rec, { x, weight, rstd, mean, gradOutput, gradInput: dx, rows, cols });
    norm.backward(rec, { x, weight, rstd, mean, gradOutput, gradInput: dxAcc, rows, cols, accumulate: true });
  });
  const expectedDx = f32(c.dx);
  expectNormClose('y', await readF32(gpu(), y), f32(c.y));
  expectNormClose('dx', await readF32(gpu(), dx), expectedDx);
  expectNormClose('dx accumulated', await readF32(gpu(), dxAcc), sumF32(expectedDx, upstream));
  for (const t of [x, weight, bias, gradOutput, y, rstd, mean, dx, dxAcc]) t?.release();
}

describe('RMSNorm (HF LlamaRMSNorm) against PyTorch autograd', () => {
  for (const c of F.rmsnorm) it(c.name, () => runNormCase('rms', c));

  it('rows past 65535 workgroups continue along y', async () => {
    const c = F.rmsnorm[0]!;
    const tiles = Math.ceil(70_000 / c.rows);
    const rows = tiles * c.rows;
    const tile = (t: Float32Array) => {
      const out = new Float32Array(t.length * tiles);
      for (let i = 0; i < tiles; i++) out.set(t, i * t.length);
      return out;
    };
    const norm = await createNormKernels(gpu(), { kind: 'rms', eps: c.eps });
    const x = tensor('x', tile(f32(c.x)), [rows, c.cols]);
    const weight = tensor('weight', f32(c.weight));
    const y = zeros('y', [rows, c.cols]);
    const rstd = zeros('rstd', [rows]);
    await record('rms norm 70k rows', (rec) => norm.forward(rec, { x, weight, y, rstd, rows, cols: c.cols }));
    expectNormClose('y', await readF32(gpu(), y), tile(f32(c.y)));
    for (const t of [x, weight, y, rstd]) t.release();
  });
});

describe('LayerNorm (torch.nn.LayerNorm) against PyTorch autograd', () => {
  for (const c of F.layernorm) it(c.name, () => runNormCase('layer', c));
});

describe('SwiGLU and tanh GELU against PyTorch autograd', () => {
  for (const c of F.swiglu) {
    it(`swiglu: ${c.name}`, async () => {
      const k = await createSwigluKernels(gpu());
      const gate = tensor('gate', f32(c.gate));
      const up = tensor('up', f32(c.up));
      const gradOutput = tensor('dy', f32(c.upstream));
      const [out, gradGate, gradUp] = ['out', 'dgate', 'dup'].map((l) => zeros(l, [c.size])) as [GpuTensor, GpuTensor, GpuTensor];
      await record('swiglu', (rec) => {
        k.forward(rec, { gate, up, out, size: c.size });
        k.backward(rec, { gate, up, gradOutput, gradGate, gradUp, size: c.size });
      });
      const { atol, rtol } = ELEMENTWISE_TOL;
      expectClose('out', await readF32(gpu(), out), f32(c.out), atol, rtol);
      expectClose('dGate', await readF32(gpu(), gradGate), f32(c.dGate), atol, rtol);
      expectClose('dUp', await readF32(gpu(), gradUp), f32(c.dUp), atol, rtol);
      for (const t of [gate, up, gradOutput, out, gradGate, gradUp]) t.release();
    });
  }
  for (const c of F.gelu) {
    it(`gelu: ${c.name}`, async () => {
      const k = await createGeluKernels(gpu());
      const x = tensor('x', f32(c.x));
      const gradOutput = tensor('dy', f32(c.upstream));
      const y = zeros('y', [c.size]);
      const dx = zeros('dx', [c.size]);
      await record('gelu', (rec) => {
        k.forward(rec, { x, y, size: c.size });
        k.backward(rec, { x, gradOutput, gradInput: dx, size: c.size });
      });
      const { atol, rtol } = ELEMENTWISE_TOL;
      expectClose('y', await readF32(gpu(), y), f32(c.y), atol, rtol);
      expectClose('dx', await readF32(gpu(), dx), f32(c.dx), GELU_GRAD_TOL.atol, GELU_GRAD_TOL.rtol);
      for (const t of [x, gradOutput, y, dx]) t.release();
    });
  }
});

describe('embedding gather and gradient against PyTorch autograd', () => {
  for (const c of F.embedding) {
    it(c.name, async () => {
      const k = await createEmbeddingKernels(gpu());
      const table = tensor('table', f32(c.table), [c.vocab, c.dim]);
      const ids = u32Tensor('ids', c.ids);
      const positions = c.positions ? tensor('positions', f32(c.positions), [c.maxPositions!, c.dim]) : undefined;
      const out = zeros('out', [c.rows, c.dim]);
      const gradOutput = tensor('dy', f32(c.upstream), [c.rows, c.dim]);
      const gradTable = zeros('dtable', [c.vocab, c.dim]);
      const gradAcc = c.gradInit ? tensor('dtable accumulated', f32(c.gradInit), [c.vocab, c.dim]) : undefined;
      await record('embedding', (rec) => {
        k.gather(rec, {
          table, ids, out, rows: c.rows,
          positions: positions ? { table: positions, seqLen: c.seqLen!, offset: c.positionOffset } : undefined,
        });
        k.scatterAdd(rec, { ids, gradOutput, gradTable, rows: c.rows });
        if (gradAcc) k.scatterAdd(rec, { ids, gradOutput, gradTable: gradAcc, rows: c.rows });
      });
      // A sum of two float32 values rounds the same everywhere.
      expectExact('out', await readF32(gpu(), out), f32(c.out));
      const { atol, rtol } = EMBEDDING_GRAD_TOL;
      const grad = await readF32(gpu(), gradTable);
      expectClose('gradTable', grad, f32(c.gradTable), atol, rtol);
      if (gradAcc) expectClose('gradTable accumulated', await readF32(gpu(), gradAcc), f32(c.gradTableAccumulated!), atol, rtol);

      // Deterministic: the same inputs give the same bits.
      const again = zeros('dtable again', [c.vocab, c.dim]);
      await record('embedding again', (rec) => k.scatterAdd(rec, { ids, gradOutput, gradTable: again, rows: c.rows }));
      expectExact('gradTable again', await readF32(gpu(), again), grad);
      for (const t of [table, ids, positions, out, gradOutput, gradTable, gradAcc, again]) t?.release();
    });
  }

  it('an out-of-range id gives a zero row, reads nothing outside the table, and adds no gradient', async () => {
    const k = await createEmbeddingKernels(gpu());
    const c = F.embedding[1]!;
    const dim = c.dim;
    // Views of the first vocab rows of bigger buffers, so an unchecked id = vocab would find real
    // data (and a real row to write) instead of WebGPU's out-of-bounds clamping.
    const vocab = c.vocab - 1;
    const view = (t: GpuTensor): GpuTensor => ({ ...t, shape: [vocab, dim], size: vocab * dim, byteLength: vocab * dim * 4 });
    const fullTable = tensor('table', f32(c.table), [c.vocab, dim]);
    const fullGrad = zeros('dtable', [c.vocab, dim]);
    const ids = u32Tensor('ids', [3, vocab, 0xffffffff, 3]);
    const out = tensor('out', new Float32Array(4 * dim).fill(7), [4, dim]);
    const gradOutput = tensor('dy', new Float32Array(4 * dim).fill(1), [4, dim]);
    await record('embedding bad ids', (rec) => {
      k.gather(rec, { table: view(fullTable), ids, out, rows: 4 });
      k.scatterAdd(rec, { ids, gradOutput, gradTable: view(fullGrad), rows: 4 });
    });
    const got = await readF32(gpu(), out);
    expectExact('valid row', got.subarray(0, dim), f32(c.table).subarray(3 * dim, 4 * dim));
    expectExact('rows of bad ids', got.subarray(dim, 3 * dim), new Float32Array(2 * dim));
    const expected = new Float32Array(c.vocab * dim);
    expected.fill(2, 3 * dim, 4 * dim);
    expectExact('gradTable', await readF32(gpu(), fullGrad), expected);
    for (const t of [fullTable, fullGrad, ids, out, gradOutput]) t.release();
  });
});

describe('elementwise ops against PyTorch', () => {
  const E = F.elementwise;

  it('axpy, addBias, copyColumns (= and +=, row and column offsets)', async () => {
    const k = await createElementwiseKernels(gpu());
    const a = E.axpy;
    const target = tensor('target', f32(a.target));
    const source = tensor('source', f32(a.source));
    const b = E.addBias;
    const biasTarget = tensor('bias target', f32(b.target), [b.rows, b.cols]);
    const bias = tensor('bias', f32(b.bias));
    const c = E.copyColumns;
    const src = tensor('src', f32(c.src), [f32(c.src).length / c.srcCols, c.srcCols]);
    const dstShape = [f32(c.dst).length / c.dstCols, c.dstCols];
    const dst = tensor('dst', f32(c.dst), dstShape);
    const dstAcc = tensor('dst accumulated', f32(c.dst), dstShape);
    const copy = {
      src, srcCols: c.srcCols, srcOffset: c.srcOffset, srcRowOffset: c.srcRowOffset,
      dstCols: c.dstCols, dstOffset: c.dstOffset, dstRowOffset: c.dstRowOffset, rows: c.rows, cols: c.cols,
    };
    await record('elementwise', (rec) => {
      k.axpy(rec, { target, source, size: a.size, alpha: a.alpha });
      k.addBias(rec, { target: biasTarget, bias, rows: b.rows, cols: b.cols });
      k.copyColumns(rec, { ...copy, dst });
      k.copyColumns(rec, { ...copy, dst: dstAcc, accumulate: true });
    });
    expectClose('axpy', await readF32(gpu(), target), f32(a.expected), 0, 1e-6);
    expectExact('addBias', await readF32(gpu(), biasTarget), f32(b.expected));
    expectExact('copyColumns', await readF32(gpu(), dst), f32(c.overwrite));
    expectExact('copyColumns accumulate', await readF32(gpu(), dstAcc), f32(c.accumulate));
    for (const t of [target, source, biasTarget, bias, src, dst, dstAcc]) t.release();
  });

  it('fill, over more than 65535 workgroups (the grid continues along y)', async () => {
    const k = await createElementwiseKernels(gpu());
    const size = 65535 * 256 + 999;
    const target = zeros('fill target', [size + 1]);
    await record('fill', (rec) => k.fill(rec, { target, size, value: -2.5 }));
    const got = await readF32(gpu(), target);
    let wrong = 0;
    for (let i = 0; i < size; i++) if (got[i] !== -2.5) wrong++;
    expect(wrong).toBe(0);
    expect(got[size]).toBe(0); // one past the end is untouched
    target.release();
  });
});

describe('dropout: counter-based mask', () => {
  const N = 200_003;
  const x = Float32Array.from(randn(N, 5), (v) => 1 + Math.abs(v)); // never 0, so y != 0 <=> kept
  const seed = 1234567;

  async function forward(p: number, stream: number, s = seed): Promise<Float32Array> {
    const k = await createDropoutKernels(gpu());
    const xt = tensor('x', x);
    const y = zeros('y', [N]);
    await record('dropout forward', (rec) => k.forward(rec, { x: xt, y, size: N, p, seed: s, stream }));
    const out = await readF32(gpu(), y);
    xt.release();
    y.release();
    return out;
  }

  for (const p of [0.1, 0.5]) {
    it(`p = ${p}: keep fraction within 5 sigma, exact scaling, the CPU twin's mask bit for bit`, async () => {
      const y = await forward(p, 3);
      const scale = Math.fround(1 / (1 - p));
      let kept = 0;
      let keptPairs = 0;
      let mismatched = 0;
      let badScale = 0;
      for (let i = 0; i < N; i++) {
        const keep = y[i] !== 0;
        if (keep) kept++;
        if (keep && i + 1 < N && y[i + 1] !== 0) keptPairs++;
        if (keep !== dropoutKeep(seed, 3, i, p)) mismatched++;
        if (keep && y[i] !== Math.fround(x[i]! * scale)) badScale++;
      }
      const sigma = Math.sqrt(N * p * (1 - p));
      expect(Math.abs(kept - N * (1 - p)), `kept ${kept} of ${N}`).toBeLessThanOrEqual(5 * sigma);
      // Neighbours independent: P(keep i and i+1) = (1-p)^2.
      const q = (1 - p) ** 2;
      expect(Math.abs(keptPairs - (N - 1) * q), `kept pairs ${keptPairs}`).toBeLessThanOrEqual(5 * Math.sqrt(N * q * (1 - q)) * 2);
      expect(mismatched).toBe(0);
      expect(badScale).toBe(0);
    });
  }

  it('backward recomputes the forward mask (overwrite and accumulate)', async () => {
    const p = 0.3;
    const k = await createDropoutKernels(gpu());
    const y = await forward(p, 9);
    const g = randn(N, 6);
    const init = randn(N, 7);
    const gradOutput = tensor('dy', g);
    const dx = zeros('dx', [N]);
    const dxAcc = tensor('dx accumulated', init);
    await record('dropout backward', (rec) => {
      k.backward(rec, { gradOutput, gradInput: dx, size: N, p, seed, stream: 9 });
      k.backward(rec, { gradOutput, gradInput: dxAcc, size: N, p, seed, stream: 9, accumulate: true });
    });
    const got = await readF32(gpu(), dx);
    const gotAcc = await readF32(gpu(), dxAcc);
    const scale = Math.fround(1 / (1 - p));
    const expected = new Float32Array(N);
    let maskDiffers = 0;
    for (let i = 0; i < N; i++) {
      const keep = y[i] !== 0;
      expected[i] = keep ? Math.fround(g[i]! * scale) : 0;
      if ((got[i] !== 0) !== keep && g[i] !== 0) maskDiffers++;
    }
    expect(maskDiffers).toBe(0);
    expectExact('gradInput', got, expected);
    expectClose('accumulated', gotAcc, sumF32(expected, init), 0, 1e-6);
    for (const t of [gradOutput, dx, dxAcc]) t.release();
  });

  it('different streams and seeds give independent masks; p = 0 is the identity', async () => {
    const p = 0.5;
    const a = await forward(p, 0);
    for (const other of [await forward(p, 1), await forward(p, 0, seed + 1)]) {
      let agree = 0;
      for (let i = 0; i < N; i++) if ((a[i] !== 0) === (other[i] !== 0)) agree++;
      // Independent masks agree on a fraction p^2 + (1-p)^2 = 0.5 of the elements.
      expect(Math.abs(agree - N / 2), `masks agree on ${agree} of ${N}`).toBeLessThanOrEqual(5 * Math.sqrt(N / 4));
    }
    expectExact('p = 0', await forward(0, 0), x);
  });
});

describe('AdamW with global-norm clipping against torch.optim.AdamW + clip_grad_norm_', () => {
  for (const c of F.adamw) {
    it(c.name, async () => {
      const k = await createOptimizerKernels(gpu());
      const maxNorm = c.maxNorm === 'inf' ? Infinity : c.maxNorm;
      const params = c.initial.map((t, i) => tensor(`param ${i}`, f32(t)));
      const grads = c.sizes.map((n, i) => zeros(`grad ${i}`, [n]));
      const ms = c.sizes.map((n, i) => zeros(`m ${i}`, [n]));
      const vs = c.sizes.map((n, i) => zeros(`v ${i}`, [n]));
      const partials = zeros('partials', [c.sizes.length]);
      const clip = zeros('clip', [2]);
      for (const [s, step] of c.steps.entries()) {
        step.grads.forEach((g, i) => writeTensor(gpu(), grads[i]!, f32(g)));
        await record(`adamw step ${s + 1}`, (rec) => {
          c.sizes.forEach((size, slot) => k.sumSquares(rec, { x: grads[slot]!, size, partials, slot }));
          k.clipCoefficient(rec, { partials, count: c.sizes.length, maxNorm, gradScale: c.gradScale, out: clip });
          c.sizes.forEach((size, i) => k.adamw(rec, {
            param: params[i]!, grad: grads[i]!, m: ms[i]!, v: vs[i]!, size,
            lr: c.lr, beta1: c.beta1, beta2: c.beta2, eps: c.eps, weightDecay: c.weightDecay,
            step: s + 1, gradScale: c.gradScale, clip,
          }));
        });
        const [coefficient, norm] = await readF32(gpu(), clip);
        expect(norm! / step.totalNorm, `step ${s + 1} norm ${norm} vs ${step.totalNorm}`).toBeCloseTo(1, 5);
        if (maxNorm === Infinity) expect(coefficient).toBe(1);
        else expect(coefficient!).toBeLessThan(1); // the fixtures' gradients are large enough to clip
        for (const [i, p] of params.entries()) {
          expectClose(`step ${s + 1} param ${i}`, await readF32(gpu(), p), f32(step.params[i]!), ADAMW_TOL.atol, ADAMW_TOL.rtol);
          expect(maxAbs(await readF32(gpu(), grads[i]!)), 'the step zeroes the gradient').toBe(0);
        }
      }
      for (const [i, m] of ms.entries()) expectClose(`exp_avg ${i}`, await readF32(gpu(), m), f32(c.m[i]!), ADAMW_TOL.atol, ADAMW_TOL.rtol);
      for (const [i, v] of vs.entries()) expectClose(`exp_avg_sq ${i}`, await readF32(gpu(), v), f32(c.v[i]!), ADAMW_TOL.atol * 1e-2, ADAMW_TOL.rtol);
      for (const t of [...params, ...grads, ...ms, ...vs, partials, clip]) t.release();
    });
  }

  it('without a clip tensor the gradient is used as is', async () => {
    const k = await createOptimizerKernels(gpu());
    const c = F.adamw[2]!; // max_norm inf: torch's clip factor is 1
    const param = tensor('param', f32(c.initial[0]!));
    const grad = tensor('grad', f32(c.steps[0]!.grads[0]!));
    const m = zeros('m', [c.sizes[0]!]);
    const v = zeros('v', [c.sizes[0]!]);
    await record('adamw no clip', (rec) => k.adamw(rec, {
      param, grad, m, v, size: c.sizes[0]!, lr: c.lr, beta1: c.beta1, beta2: c.beta2, eps: c.eps, weightDecay: c.weightDecay, step: 1,
    }));
    expectClose('param', await readF32(gpu(), param), f32(c.steps[0]!.params[0]!), ADAMW_TOL.atol, ADAMW_TOL.rtol);
    for (const t of [param, grad, m, v]) t.release();
  });
});

describe('bad arguments throw InvalidArgumentError naming the shapes', () => {
  it('every op checks sizes, dtypes and aliasing', async () => {
    const ctx = gpu();
    const t = (shape: number[], label = 't') => zeros(label, shape);
    const norm = await createNormKernels(ctx, { kind: 'rms', eps: 1e-6 });
    const layer = await createNormKernels(ctx, { kind: 'layer', eps: 1e-5 });
    const swiglu = await createSwigluKernels(ctx);
    const gelu = await createGeluKernels(ctx);
    const emb = await createEmbeddingKernels(ctx);
    const ew = await createElementwiseKernels(ctx);
    const dropout = await createDropoutKernels(ctx);
    const opt = await createOptimizerKernels(ctx);
    const x = t([4, 8], 'x');
    const rec = new CommandRecorder(ctx, 'bad arguments');
    const cases: [() => void, RegExp][] = [
      [() => norm.forward(rec, { x, weight: t([7], 'w'), y: t([4, 8]), rstd: t([4]), rows: 4, cols: 8 }), /weight "w".*\[8\].*got f32 \[7\]/],
      [() => norm.forward(rec, { x, weight: t([8]), y: t([3, 8], 'y'), rstd: t([4]), rows: 4, cols: 8 }), /y "y".*\[4, 8\].*got f32 \[3, 8\]/],
      [() => norm.forward(rec, { x, weight: t([8]), y: x, rstd: t([4]), rows: 4, cols: 8 }), /same buffer/],
      [() => layer.forward(rec, { x, weight: t([8]), y: t([4, 8]), rstd: t([4]), rows: 4, cols: 8 }), /mean \[rows\] is required/],
      [() => layer.backward(rec, { x, weight: t([8]), rstd: t([4]), mean: t([2], 'mean'), gradOutput: t([4, 8]), gradInput: t([4, 8]), rows: 4, cols: 8 }), /mean "mean".*\[4\]/],
      [() => swiglu.forward(rec, { gate: t([10]), up: t([9], 'up'), out: t([10]), size: 10 }), /up "up".*size 10.*\[9\]/],
      [() => gelu.backward(rec, { x: t([10]), gradOutput: t([10]), gradInput: t([10]), size: 0 }), /size must be an integer >= 1/],
      [() => emb.gather(rec, { table: t([10, 4], 'table'), ids: t([3], 'ids'), out: t([3, 4]), rows: 3 }), /ids "ids" must be u32/],
      [() => emb.gather(rec, {
        table: t([10, 4]), ids: u32Tensor('ids', [1, 2, 3]), out: t([3, 4]), rows: 3,
        positions: { table: t([5, 4], 'wpe'), seqLen: 3, offset: 3 },
      }), /positions.table \[5, 4\].*seqLen \+ offset = 6/],
      [() => emb.scatterAdd(rec, { ids: u32Tensor('ids', [1, 2]), gradOutput: t([1, 5], 'dy'), gradTable: t([10, 4]), rows: 2 }), /gradOutput "dy".*\[2, 4\].*got f32 \[1, 5\]/],
      [() => ew.addBias(rec, { target: t([3, 4]), bias: t([3], 'b'), rows: 3, cols: 4 }), /bias "b".*\[4\]/],
      [() => ew.copyColumns(rec, { src: t([2, 6]), srcCols: 6, srcOffset: 4, dst: t([2, 4]), dstCols: 4, dstOffset: 0, rows: 2, cols: 3 }), /outside a row/],
      [() => ew.copyColumns(rec, { src: t([2, 6]), srcCols: 6, srcOffset: 0, dst: t([2, 3], 'cache'), dstCols: 3, dstOffset: 0, rows: 2, cols: 3, dstRowOffset: 1 }), /dst "cache".*\[1 \+ 2, 3\]/],
      [() => ew.axpy(rec, { target: x, source: x, size: 32 }), /same buffer/],
      [() => dropout.forward(rec, { x: t([8]), y: t([8]), size: 8, p: 1, seed: 0, stream: 0 }), /p must be in \[0, 1\)/],
      [() => dropout.backward(rec, { gradOutput: t([8]), gradInput: t([8]), size: 8, p: 0.1, seed: -1, stream: 0 }), /seed must be an integer/],
      [() => opt.adamw(rec, {
        param: t([8]), grad: t([8]), m: t([8]), v: t([7], 'v'), size: 8, lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1,
      }), /v "v".*size 8.*\[7\]/],
      [() => opt.adamw(rec, {
        param: t([8]), grad: t([8]), m: t([8]), v: t([8]), size: 8, lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 0,
      }), /step must be an integer >= 1/],
      [() => opt.sumSquares(rec, { x: t([8]), size: 8, partials: t([2], 'partials'), slot: 2 }), /partials "partials".*slot 2/],
      [() => opt.clipCoefficient(rec, { partials: t([2]), count: 2, maxNorm: 0, out: t([2]) }), /maxNorm must be > 0/],
    ];
    for (const [i, [call, message]] of cases.entries()) {
      expect(call, `case ${i}: ${String(message)}`).toThrowError(InvalidArgumentError);
      expect(call, `case ${i}`).toThrowError(message);
    }
    rec.submit();
    await expect(createNormKernels(ctx, { kind: 'rms', eps: NaN })).rejects.toThrowError(InvalidArgumentError);
  });
});
