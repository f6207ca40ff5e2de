/**
 * The transformer training ops on Dawn against PyTorch (fixtures/transformer-ops.json from
 * scripts/make_transformer_op_fixtures.py): RMSNorm, LayerNorm, SwiGLU, tanh GELU, embedding
 * gather and its gradient, elementwise ops, AdamW with global-norm clipping; dropout by its
 * statistics and its CPU twin. Then the same kernels with dtype 'f16' (f16 storage, f32
 * arithmetic) and the f32 <-> f16 cast. Bad shapes and dtypes throw InvalidArgumentError.
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
 *
 * f16 (PyTorch's reference in float32 from the f16-rounded inputs, then rounded to float16, as
 * the shaders do): |got - expected| <= atol + 2^-10 |expected|, i.e. one f16 ulp relative
 * (the f32 results may sit on either side of a rounding boundary, and WGSL lets an f32 -> f16
 * conversion round to either neighbour), with atol = 2^-14, f16's smallest normal (an
 * implementation may flush subnormal results to zero), plus for the norms the f32 tolerance
 * above (1e-5 * max|expected|, the row sums cancel) and for the embedding gradient 1e-6.
 * float32 outputs of f16 kernels (norm rstd/mean, cast to f32) keep the f32 tolerances; an
 * f16 -> f32 cast is exact, and its += is one correctly rounded f32 add.
 */
import { describe, expect, it } from 'vitest';
import { CommandRecorder, createTensor, fromF16Bits, readF32, toF16Bits, writeTensor, type GpuTensor } from '../src/index.js';
import { InvalidArgumentError } from '@webtune/errors';
import { createNormKernels } from '../src/kernels/norm.js';
import { createGeluKernels, createSwigluKernels } from '../src/kernels/activation.js';
import { createEmbeddingKernels } from '../src/kernels/embedding.js';
import { createElementwiseKernels } from '../src/kernels/elementwise.js';
import { createDropoutKernels, dropoutKeep } from '../src/kernels/dropout.js';
import { createOptimizerKernels } from '../src/kernels/optimizer.js';
import { capturedKernels } from './capture.js';
import { f32, type EncodedTensor } from './fixtures.js';
import { randn, worstError } from './random.js';
import { nodeContext, recordValidated, useNodeContext } from './node-context.js';
import { transformerOpsFixture as F, type NormCase, type NormCaseF16 } from './transformer-ops-fixtures.js';

const gpu = useNodeContext();

const NORM_TOL = { rtol: 1e-5, atolOfMax: 1e-5 };
const ELEMENTWISE_TOL = { atol: 1e-6, rtol: 1e-5 };
const GELU_GRAD_TOL = { atol: 4e-6, rtol: 1e-5 };
const EMBEDDING_GRAD_TOL = { atol: 1e-6, rtol: 1e-5 };
const ADAMW_TOL = { atol: 1e-6, rtol: 1e-5 };
/** f16 outputs; see the header. */
const HALF_TOL = { atol: 2 ** -14, rtol: 2 ** -10 };

function tensor(label: string, data: Float32Array, shape: number[] = [data.length]): GpuTensor {
  return createTensor(gpu(), { shape, label, data });
}

function zeros(label: string, shape: number[]): GpuTensor {
  return createTensor(gpu(), { shape, label, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
}

/** An f16 tensor holding `data` (f16 values stored as f32, so the upload is exact). */
function half(label: string, data: Float32Array, shape: number[] = [data.length]): GpuTensor {
  return createTensor(gpu(), { shape, dtype: 'f16', label, data });
}

function halfZeros(label: string, shape: number[]): GpuTensor {
  return half(label, new Float32Array(shape.reduce((a, b) => a * b, 1)), shape);
}

/** Rounds each value to the nearest f16 (ties to even) and back. */
function roundHalf(a: Float32Array): Float32Array {
  return fromF16Bits(toF16Bits(a));
}

function u32Tensor(label: string, ids: ArrayLike<number>): GpuTensor {
  return createTensor(gpu(), { shape: [ids.length], dtype: 'u32', label, data: Uint32Array.from(ids) });
}

/** Records `body` into one command buffer, submits it, and fails on any validation error. */
const record = (label: string, body: (rec: CommandRecorder) => void) => recordValidated(gpu(), label, body);

/** `record`, returning the kernels it dispatched (the dispatch cache's capture, as the profiler uses it). */
function recordKernels(label: string, body: (rec: CommandRecorder) => void): Promise<string[]> {
  return capturedKernels(gpu(), () => record(label, body));
}

/**
 * The elementwise activations run in vec4 form when the size is a multiple of 4 and scalar
 * otherwise: each fixture (1031 elements) runs whole, then as its first 1028 elements, whose
 * expected values are the same PyTorch outputs' prefix.
 */
const ACTIVATION_FORMS = (size: number) => [
  { size, suffix: '' },
  { size: size - (size % 4), suffix: '-vec4' },
];

/** How one precision's cases upload, allocate and compare (f32 tolerances, or f16 rounding). */
interface Precision {
  dtype: 'f32' | 'f16';
  upload: (label: string, data: Float32Array) => GpuTensor;
  zeros: (label: string, size: number) => GpuTensor;
  close: (name: string, got: Float32Array, expected: Float32Array, gelu?: 'gradient') => void;
}
const F32: Precision = {
  dtype: 'f32',
  upload: (label, data) => tensor(label, data),
  zeros: (label, size) => zeros(label, [size]),
  close: (name, got, expected, gelu) => {
    const { atol, rtol } = gelu ? GELU_GRAD_TOL : ELEMENTWISE_TOL;
    expectClose(name, got, expected, atol, rtol);
  },
};
const F16: Precision = {
  dtype: 'f16',
  upload: (label, data) => half(label, data),
  zeros: (label, size) => halfZeros(label, [size]),
  close: (name, got, expected) => expectHalfClose(name, got, expected),
};

/**
 * Runs the first `size` elements of a SwiGLU fixture (forward and backward) and checks them, the
 * kernels that ran, and that nothing past `size` was written.
 */
async function runSwiglu(p: Precision, c: { size: number; gate: EncodedTensor; up: EncodedTensor; upstream: EncodedTensor; out: EncodedTensor; dGate: EncodedTensor; dUp: EncodedTensor }, form: { size: number; suffix: string }): Promise<void> {
  const k = await createSwigluKernels(gpu(), { dtype: p.dtype });
  const [gate, up, gradOutput] = [['gate', c.gate], ['up', c.up], ['dy', c.upstream]].map(([l, d]) => p.upload(l as string, f32(d as EncodedTensor)));
  const [out, gradGate, gradUp] = ['out', 'dgate', 'dup'].map((l) => p.zeros(l, c.size)) as [GpuTensor, GpuTensor, GpuTensor];
  const kernels = await recordKernels(`${p.dtype} swiglu`, (rec) => {
    k.forward(rec, { gate: gate!, up: up!, out, size: form.size });
    k.backward(rec, { gate: gate!, up: up!, gradOutput: gradOutput!, gradGate, gradUp, size: form.size });
  });
  expect(kernels).toEqual([`swiglu-forward${form.suffix}`, `swiglu-backward${form.suffix}`]);
  for (const [name, t, expected] of [['out', out, c.out], ['dGate', gradGate, c.dGate], ['dUp', gradUp, c.dUp]] as const) {
    const got = await readF32(gpu(), t);
    p.close(name, got.subarray(0, form.size), f32(expected).subarray(0, form.size));
    expect(got.subarray(form.size).every((v) => v === 0), `${name}: nothing past ${form.size} written`).toBe(true);
  }
  for (const t of [gate, up, gradOutput, out, gradGate, gradUp]) t!.release();
}

/** The same for a tanh-GELU fixture. */
async function runGelu(p: Precision, c: { size: number; x: EncodedTensor; upstream: EncodedTensor; y: EncodedTensor; dx: EncodedTensor }, form: { size: number; suffix: string }): Promise<void> {
  const k = await createGeluKernels(gpu(), { dtype: p.dtype });
  const x = p.upload('x', f32(c.x));
  const gradOutput = p.upload('dy', f32(c.upstream));
  const [y, dx] = ['y', 'dx'].map((l) => p.zeros(l, c.size)) as [GpuTensor, GpuTensor];
  const kernels = await recordKernels(`${p.dtype} gelu`, (rec) => {
    k.forward(rec, { x, y, size: form.size });
    k.backward(rec, { x, gradOutput, gradInput: dx, size: form.size });
  });
  expect(kernels).toEqual([`gelu-forward${form.suffix}`, `gelu-backward${form.suffix}`]);
  for (const [name, t, expected] of [['y', y, c.y], ['dx', dx, c.dx]] as const) {
    const got = await readF32(gpu(), t);
    p.close(name, got.subarray(0, form.size), f32(expected).subarray(0, form.size), name === 'dx' ? 'gradient' : undefined);
    expect(got.subarray(form.size).every((v) => v === 0), `${name}: nothing past ${form.size} written`).toBe(true);
  }
  for (const t of [x, gradOutput, y, dx]) t.release();
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

/** An f16 output against PyTorch's float32 reference rounded to f16; `atol` adds to HALF_TOL.atol. */
function expectHalfClose(name: string, got: Float32Array, expected: Float32Array, atol = 0): void {
  expectClose(name, got, expected, HALF_TOL.atol + atol, HALF_TOL.rtol);
}

function sumF32(a: Float32Array, b: Float32Array): Float32Array {
  return a.map((v, i) => v + b[i]!);
}

/**
 * The norms run in vec4 form when cols is a multiple of 4 and scalar otherwise; the fixtures hold
 * both (cols 96, 576 and 4096; 67 and 33), f32 and f16 (f16 has no odd-width RMSNorm case: the
 * scalar form is covered by f32 RMSNorm and f16 LayerNorm).
 */
function expectNormForms(kind: 'rms' | 'layer', cols: number, kernels: string[]): void {
  const form = cols % 4 === 0 ? '-vec4' : '';
  expect(kernels).toEqual([`${kind}-norm-forward${form}`, `${kind}-norm-backward${form}`, `${kind}-norm-backward${form}`]);
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
  const kernels = await recordKernels(`${kind} norm ${c.name}`, (rec) => {
    norm.forward(rec, { x, weight, bias, y, rstd, mean, rows, cols });
    norm.backward(rec, { x, weight, rstd, mean, gradOutput, gradInput: dx, rows, cols });
    norm.backward(rec, { x, weight, rstd, mean, gradOutput, gradInput: dxAcc, rows, cols, accumulate: true });
  });
  expectNormForms(kind, cols, kernels);
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
    for (const form of ACTIVATION_FORMS(c.size)) it(`swiglu: ${c.name}, first ${form.size} (swiglu-*${form.suffix})`, () => runSwiglu(F32, c, form));
  }
  for (const c of F.gelu) {
    for (const form of ACTIVATION_FORMS(c.size)) it(`gelu: ${c.name}, first ${form.size} (gelu-*${form.suffix})`, () => runGelu(F32, c, form));
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
    // axpy in both forms: all 1000 elements (vec4), and the first 999 (scalar) of a second target.
    const targetOdd = tensor('target, first 999', f32(a.target));
    const kernels = await recordKernels('elementwise', (rec) => {
      k.axpy(rec, { target, source, size: a.size, alpha: a.alpha });
      k.axpy(rec, { target: targetOdd, source, size: a.size - 1, alpha: a.alpha });
      k.addBias(rec, { target: biasTarget, bias, rows: b.rows, cols: b.cols });
      k.copyColumns(rec, { ...copy, dst });
      k.copyColumns(rec, { ...copy, dst: dstAcc, accumulate: true });
    });
    expect(a.size % 4).toBe(0);
    expect(kernels.slice(0, 2)).toEqual(['axpy-vec4', 'axpy']);
    expectClose('axpy', await readF32(gpu(), target), f32(a.expected), 0, 1e-6);
    const odd = await readF32(gpu(), targetOdd);
    expectClose('axpy, first 999', odd.subarray(0, a.size - 1), f32(a.expected).subarray(0, a.size - 1), 0, 1e-6);
    expect(odd[a.size - 1], 'axpy over 999 leaves element 999').toBe(f32(a.target)[a.size - 1]);
    targetOdd.release();
    expectExact('addBias', await readF32(gpu(), biasTarget), f32(b.expected));
    expectExact('copyColumns', await readF32(gpu(), dst), f32(c.overwrite));
    expectExact('copyColumns accumulate', await readF32(gpu(), dstAcc), f32(c.accumulate));
    for (const t of [target, source, biasTarget, bias, src, dst, dstAcc]) t.release();
  });

  it('addBias on padded rows (rowStride): the fixture rows come out as PyTorch gives them, the padding untouched', async () => {
    const k = await createElementwiseKernels(gpu());
    const b = E.addBias;
    const ld = b.cols + 5;
    const SENTINEL = -77.25;
    const spread = (rows: Float32Array) => {
      const out = new Float32Array(b.rows * ld).fill(SENTINEL);
      for (let r = 0; r < b.rows; r++) out.set(rows.subarray(r * b.cols, (r + 1) * b.cols), r * ld);
      return out;
    };
    const target = tensor('padded bias target', spread(f32(b.target)), [b.rows, ld]);
    const bias = tensor('bias', f32(b.bias));
    await record('addBias padded', (rec) => k.addBias(rec, { target, bias, rows: b.rows, cols: b.cols, rowStride: ld }));
    expectExact('addBias padded', await readF32(gpu(), target), spread(f32(b.expected)));
    const rec = new CommandRecorder(gpu(), 'addBias overlapping rows');
    expect(() => k.addBias(rec, { target, bias, rows: b.rows, cols: b.cols, rowStride: b.cols - 1 })).toThrowError(InvalidArgumentError);
    expect(() => k.addBias(rec, { target, bias, rows: b.rows + 1, cols: b.cols, rowStride: ld })).toThrowError(/at least/);
    rec.submit();
    for (const t of [target, bias]) t.release();
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

async function runNormCaseF16(kind: 'rms' | 'layer', c: NormCaseF16): Promise<void> {
  const norm = await createNormKernels(gpu(), { kind, eps: c.eps, dtype: 'f16' });
  expect(norm.dtype).toBe('f16');
  const { rows, cols } = c;
  const x = half('x', f32(c.x), [rows, cols]);
  const weight = tensor('weight', f32(c.weight));
  const bias = c.bias ? tensor('bias', f32(c.bias)) : undefined;
  const upstream = f32(c.upstream);
  const gradOutput = half('dy', upstream, [rows, cols]);
  const y = halfZeros('y', [rows, cols]);
  const rstd = zeros('rstd', [rows]);
  const mean = kind === 'layer' ? zeros('mean', [rows]) : undefined;
  const dx = halfZeros('dx', [rows, cols]);
  const dxAcc = half('dx accumulated', upstream, [rows, cols]);
  const kernels = await recordKernels(`f16 ${kind} norm ${c.name}`, (rec) => {
    norm.forward(rec, { x, weight, bias, y, rstd, mean, rows, cols });
    norm.backward(rec, { x, weight, rstd, mean, gradOutput, gradInput: dx, rows, cols });
    norm.backward(rec, { x, weight, rstd, mean, gradOutput, gradInput: dxAcc, rows, cols, accumulate: true });
  });
  expectNormForms(kind, cols, kernels);
  for (const [name, t, expected] of [['y', y, c.y], ['dx', dx, c.dx], ['dx accumulated', dxAcc, c.dxAccumulated]] as const) {
    const e = f32(expected);
    expectHalfClose(name, await readF32(gpu(), t), e, NORM_TOL.atolOfMax * maxAbs(e));
  }
  expectNormClose('rstd (f32)', await readF32(gpu(), rstd), f32(c.rstd));
  if (mean) expectNormClose('mean (f32)', await readF32(gpu(), mean), f32(c.mean!));
  for (const t of [x, weight, bias, gradOutput, y, rstd, mean, dx, dxAcc]) t?.release();
}

describe("dtype 'f16' (f16 storage, f32 arithmetic) against PyTorch from f16-rounded inputs", () => {
  const H = F.f16;
  it('the lane has shader-f16 (lavapipe does)', () => {
    expect(gpu().features.shaderF16, 'the f16 cases need shader-f16').toBe(true);
  });

  for (const c of H.rmsnorm) it(`rms norm ${c.name}`, () => runNormCaseF16('rms', c));
  for (const c of H.layernorm) it(`layer norm ${c.name}`, () => runNormCaseF16('layer', c));

  for (const c of H.swiglu) {
    for (const form of ACTIVATION_FORMS(c.size)) it(`swiglu ${c.name}, first ${form.size} (swiglu-*${form.suffix})`, () => runSwiglu(F16, c, form));
  }
  for (const c of H.gelu) {
    for (const form of ACTIVATION_FORMS(c.size)) it(`gelu ${c.name}, first ${form.size} (gelu-*${form.suffix})`, () => runGelu(F16, c, form));
  }

  for (const c of H.embedding) {
    it(`embedding ${c.name}`, async () => {
      const k = await createEmbeddingKernels(gpu(), { dtype: 'f16' });
      const table = half('table', f32(c.table), [c.vocab, c.dim]);
      const ids = u32Tensor('ids', c.ids);
      const positions = half('positions', f32(c.positions!), [c.maxPositions!, c.dim]);
      const out = halfZeros('out', [c.rows, c.dim]);
      const gradOutput = half('dy', f32(c.upstream), [c.rows, c.dim]);
      const gradTable = halfZeros('dtable', [c.vocab, c.dim]);
      const gradAcc = half('dtable accumulated', f32(c.gradInit!), [c.vocab, c.dim]);
      await record('f16 embedding', (rec) => {
        k.gather(rec, { table, ids, out, rows: c.rows, positions: { table: positions, seqLen: c.seqLen!, offset: c.positionOffset } });
        k.scatterAdd(rec, { ids, gradOutput, gradTable, rows: c.rows });
        k.scatterAdd(rec, { ids, gradOutput, gradTable: gradAcc, rows: c.rows });
      });
      expectHalfClose('out', await readF32(gpu(), out), f32(c.out));
      expectHalfClose('gradTable', await readF32(gpu(), gradTable), f32(c.gradTable), EMBEDDING_GRAD_TOL.atol);
      expectHalfClose('gradTable accumulated', await readF32(gpu(), gradAcc), f32(c.gradTableAccumulated!), EMBEDDING_GRAD_TOL.atol);
      for (const t of [table, ids, positions, out, gradOutput, gradTable, gradAcc]) t.release();
    });
  }

  it('axpy, addBias (f32 bias), copyColumns (= and +=), fill', async () => {
    const k = await createElementwiseKernels(gpu(), { dtype: 'f16' });
    expect(k.dtype).toBe('f16');
    const E = H.elementwise;
    const a = E.axpy;
    const target = half('target', f32(a.target));
    const source = half('source', f32(a.source));
    const b = E.addBias;
    const biasTarget = half('bias target', f32(b.target), [b.rows, b.cols]);
    const bias = tensor('bias', f32(b.bias));
    const c = E.copyColumns;
    const src = half('src', f32(c.src), [f32(c.src).length / c.srcCols, c.srcCols]);
    const dstShape = [f32(c.dst).length / c.dstCols, c.dstCols];
    const dst = half('dst', f32(c.dst), dstShape);
    const dstAcc = half('dst accumulated', f32(c.dst), dstShape);
    const filled = halfZeros('fill target', [1001]);
    const copy = {
      src, srcCols: c.srcCols, srcOffset: c.srcOffset, srcRowOffset: c.srcRowOffset,
      dstCols: c.dstCols, dstOffset: c.dstOffset, dstRowOffset: c.dstRowOffset, rows: c.rows, cols: c.cols,
    };
    const targetOdd = half('target, first 999', f32(a.target));
    const kernels = await recordKernels('f16 elementwise', (rec) => {
      k.axpy(rec, { target, source, size: a.size, alpha: a.alpha });
      k.axpy(rec, { target: targetOdd, source, size: a.size - 1, alpha: a.alpha });
      k.addBias(rec, { target: biasTarget, bias, rows: b.rows, cols: b.cols });
      k.copyColumns(rec, { ...copy, dst });
      k.copyColumns(rec, { ...copy, dst: dstAcc, accumulate: true });
      k.fill(rec, { target: filled, size: 1000, value: -2.5 });
    });
    expect(a.size % 4).toBe(0);
    expect(kernels.slice(0, 2)).toEqual(['axpy-vec4', 'axpy']);
    expectHalfClose('axpy', await readF32(gpu(), target), f32(a.expected));
    const odd = await readF32(gpu(), targetOdd);
    expectHalfClose('axpy, first 999', odd.subarray(0, a.size - 1), f32(a.expected).subarray(0, a.size - 1));
    expect(odd[a.size - 1], 'axpy over 999 leaves element 999').toBe(f32(a.target)[a.size - 1]);
    targetOdd.release();
    expectHalfClose('addBias', await readF32(gpu(), biasTarget), f32(b.expected));
    expectExact('copyColumns', await readF32(gpu(), dst), f32(c.overwrite));
    expectHalfClose('copyColumns accumulate', await readF32(gpu(), dstAcc), f32(c.accumulate));
    const expectedFill = new Float32Array(1001).fill(-2.5);
    expectedFill[1000] = 0;
    expectExact('fill', await readF32(gpu(), filled), expectedFill);
    for (const t of [target, source, biasTarget, bias, src, dst, dstAcc, filled]) t.release();
  });

  for (const family of ['f32', 'f16'] as const) {
    it(`cast f32 -> f16 and f16 -> f32, = and +=, from a family of dtype ${family}`, async () => {
      const k = await createElementwiseKernels(gpu(), { dtype: family });
      const c = H.elementwise.cast;
      const n = c.size;
      const float = tensor('float', f32(c.float));
      const toHalf = halfZeros('to half', [n]);
      const toHalfAcc = half('to half accumulated', f32(c.halfInit));
      const halfSrc = half('half', f32(c.half));
      const toFloat = zeros('to float', [n]);
      const toFloatAcc = tensor('to float accumulated', f32(c.floatInit));
      await record('cast', (rec) => {
        k.cast(rec, { src: float, dst: toHalf, size: n });
        k.cast(rec, { src: float, dst: toHalfAcc, size: n, accumulate: true });
        k.cast(rec, { src: halfSrc, dst: toFloat, size: n });
        k.cast(rec, { src: halfSrc, dst: toFloatAcc, size: n, accumulate: true });
      });
      expectHalfClose('f32 -> f16', await readF32(gpu(), toHalf), f32(c.toHalf));
      expectHalfClose('f32 -> f16 accumulate', await readF32(gpu(), toHalfAcc), f32(c.toHalfAccumulated));
      expectExact('f16 -> f32', await readF32(gpu(), toFloat), f32(c.toFloat));
      expectExact('f16 -> f32 accumulate', await readF32(gpu(), toFloatAcc), f32(c.toFloatAccumulated));
      for (const t of [float, toHalf, toHalfAcc, halfSrc, toFloat, toFloatAcc]) t.release();
    });
  }

  it('cast between equal dtypes copies (and adds in f32), and stops at size', async () => {
    const k = await createElementwiseKernels(gpu());
    const n = 777;
    const a = randn(n + 1, 21);
    const b = randn(n + 1, 22);
    const a16 = roundHalf(a);
    const b16 = roundHalf(b);
    const [fa, fb, fbAcc] = [tensor('a', a), tensor('b', b.slice()), tensor('b accumulated', b.slice())];
    const [ha, hb, hbAcc] = [half('a16', a16), half('b16', b16.slice()), half('b16 accumulated', b16.slice())];
    await record('cast same dtype', (rec) => {
      k.cast(rec, { src: fa, dst: fb, size: n });
      k.cast(rec, { src: fa, dst: fbAcc, size: n, accumulate: true });
      k.cast(rec, { src: ha, dst: hb, size: n });
      k.cast(rec, { src: ha, dst: hbAcc, size: n, accumulate: true });
    });
    const untouchedLast = (v: Float32Array, last: number) => { const out = v.slice(); out[n] = last; return out; };
    expectExact('f32 copy', await readF32(gpu(), fb), untouchedLast(a, b[n]!));
    expectExact('f32 accumulate', await readF32(gpu(), fbAcc), untouchedLast(sumF32(a, b), b[n]!));
    expectExact('f16 copy', await readF32(gpu(), hb), untouchedLast(a16, b16[n]!));
    expectHalfClose('f16 accumulate', await readF32(gpu(), hbAcc), untouchedLast(roundHalf(sumF32(a16, b16)), b16[n]!));
    for (const t of [fa, fb, fbAcc, ha, hb, hbAcc]) t.release();
  });

  it('dropout: the f32 mask bit for bit, scaling within one f16 ulp, backward (= and +=)', async () => {
    const N = 50_001;
    const p = 0.3;
    const seed = 98765;
    const stream = 4;
    const x = roundHalf(Float32Array.from(randn(N, 8), (v) => 1 + Math.abs(v))); // never 0
    const k16 = await createDropoutKernels(gpu(), { dtype: 'f16' });
    const k32 = await createDropoutKernels(gpu());
    const x16 = half('x', x);
    const x32 = tensor('x f32', x);
    const y16 = halfZeros('y', [N]);
    const y32 = zeros('y f32', [N]);
    const g = roundHalf(randn(N, 9));
    const init = roundHalf(randn(N, 10));
    const gradOutput = half('dy', g);
    const dx = halfZeros('dx', [N]);
    const dxAcc = half('dx accumulated', init);
    await record('f16 dropout', (rec) => {
      k16.forward(rec, { x: x16, y: y16, size: N, p, seed, stream });
      k32.forward(rec, { x: x32, y: y32, size: N, p, seed, stream });
      k16.backward(rec, { gradOutput, gradInput: dx, size: N, p, seed, stream });
      k16.backward(rec, { gradOutput, gradInput: dxAcc, size: N, p, seed, stream, accumulate: true });
    });
    const got = await readF32(gpu(), y16);
    const ref = await readF32(gpu(), y32);
    let maskDiffers = 0;
    for (let i = 0; i < N; i++) if ((got[i] !== 0) !== (ref[i] !== 0) || (ref[i] !== 0) !== dropoutKeep(seed, stream, i, p)) maskDiffers++;
    expect(maskDiffers).toBe(0);
    // The f32 kernel's output is the f16 kernel's f32 value before its store.
    expectHalfClose('y', got, roundHalf(ref));
    const scale = Math.fround(1 / (1 - p));
    const grad32 = Float32Array.from(g, (v, i) => (ref[i] !== 0 ? v * scale : 0));
    expectHalfClose('gradInput', await readF32(gpu(), dx), roundHalf(grad32));
    expectHalfClose('gradInput accumulated', await readF32(gpu(), dxAcc), roundHalf(sumF32(grad32, init)));
    for (const t of [x16, x32, y16, y32, gradOutput, dx, dxAcc]) t.release();
  });

  it("without shader-f16, dtype 'f16' is refused with a hint to use 'f32', and so is a cast touching f16", async () => {
    const ctx = await nodeContext({ disableFeatures: ['shader-f16'] });
    try {
      const creators: [string, () => Promise<unknown>][] = [
        ['createNormKernels', () => createNormKernels(ctx, { kind: 'rms', eps: 1e-6, dtype: 'f16' })],
        ['createSwigluKernels', () => createSwigluKernels(ctx, { dtype: 'f16' })],
        ['createGeluKernels', () => createGeluKernels(ctx, { dtype: 'f16' })],
        ['createEmbeddingKernels', () => createEmbeddingKernels(ctx, { dtype: 'f16' })],
        ['createElementwiseKernels', () => createElementwiseKernels(ctx, { dtype: 'f16' })],
        ['createDropoutKernels', () => createDropoutKernels(ctx, { dtype: 'f16' })],
      ];
      for (const [name, create] of creators) {
        const error = await create().catch((e: unknown) => e);
        expect(error, name).toBeInstanceOf(InvalidArgumentError);
        expect((error as Error).message, name).toMatch(new RegExp(`${name}: dtype 'f16' needs the 'shader-f16' feature.*use dtype 'f32'`));
      }
      const k = await createElementwiseKernels(ctx);
      const src = createTensor(ctx, { shape: [4], label: 'src', data: new Float32Array(4) });
      const dst = createTensor(ctx, { shape: [4], dtype: 'f16', label: 'dst' });
      const rec = new CommandRecorder(ctx, 'cast without f16');
      expect(() => k.cast(rec, { src, dst, size: 4 })).toThrowError(/f32 "src" to f16 "dst" needs the 'shader-f16' feature/);
      rec.submit();
      src.release();
      dst.release();
    } finally {
      ctx.destroy();
    }
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
    const h = (shape: number[], label = 'h') => halfZeros(label, shape);
    const layer16 = await createNormKernels(ctx, { kind: 'layer', eps: 1e-5, dtype: 'f16' });
    const swiglu16 = await createSwigluKernels(ctx, { dtype: 'f16' });
    const gelu16 = await createGeluKernels(ctx, { dtype: 'f16' });
    const emb16 = await createEmbeddingKernels(ctx, { dtype: 'f16' });
    const ew16 = await createElementwiseKernels(ctx, { dtype: 'f16' });
    const dropout16 = await createDropoutKernels(ctx, { dtype: 'f16' });
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
      // dtypes: activations must match the family's dtype; weights, biases and stats stay f32.
      [() => layer16.forward(rec, { x, weight: t([8]), y: h([4, 8]), rstd: t([4]), mean: t([4]), rows: 4, cols: 8 }),
        /layer norm: x "x" must be f16 with at least 32 elements \(\[4, 8\]\); got f32 \[4, 8\]/],
      [() => layer16.forward(rec, { x: h([4, 8]), weight: h([8], 'w16'), y: h([4, 8]), rstd: t([4]), mean: t([4]), rows: 4, cols: 8 }),
        /weight "w16" must be f32 .*got f16 \[8\]/],
      [() => layer16.backward(rec, { x: h([4, 8]), weight: t([8]), rstd: h([4], 'r16'), mean: t([4]), gradOutput: h([4, 8]), gradInput: h([4, 8]), rows: 4, cols: 8 }),
        /rstd "r16" must be f32 .*got f16 \[4\]/],
      [() => norm.backward(rec, { x, weight: t([8]), rstd: t([4]), gradOutput: t([4, 8]), gradInput: h([4, 8], 'dx16'), rows: 4, cols: 8 }),
        /gradInput "dx16" must be f32 .*got f16 \[4, 8\]/],
      [() => swiglu16.forward(rec, { gate: h([10]), up: t([10], 'up'), out: h([10]), size: 10 }), /swiglu forward: up "up" must be f16 .*got f32/],
      [() => gelu16.backward(rec, { x: h([10]), gradOutput: h([10]), gradInput: t([10], 'dx'), size: 10 }), /gradInput "dx" must be f16 .*got f32/],
      [() => emb16.gather(rec, { table: t([10, 4], 'table'), ids: u32Tensor('ids', [1]), out: h([1, 4]), rows: 1 }),
        /table "table" must be a 2-D f16 tensor \[vocab, dim\]; got f32 \[10, 4\]/],
      [() => emb16.gather(rec, {
        table: h([10, 4]), ids: u32Tensor('ids', [1]), out: h([1, 4]), rows: 1, positions: { table: t([5, 4], 'wpe'), seqLen: 1 },
      }), /positions.table "wpe" must be a 2-D f16 tensor/],
      [() => emb16.scatterAdd(rec, { ids: u32Tensor('ids', [1]), gradOutput: t([1, 4], 'dy'), gradTable: h([10, 4]), rows: 1 }),
        /gradOutput "dy" must be f16 .*got f32 \[1, 4\]/],
      [() => ew16.axpy(rec, { target: h([8]), source: t([8], 's'), size: 8 }), /axpy: source "s" must be f16 .*got f32/],
      [() => ew16.addBias(rec, { target: h([3, 4]), bias: h([4], 'b16'), rows: 3, cols: 4 }), /bias "b16" must be f32 .*got f16 \[4\]/],
      [() => ew16.copyColumns(rec, { src: h([2, 6]), srcCols: 6, srcOffset: 0, dst: t([2, 6], 'd'), dstCols: 6, dstOffset: 0, rows: 2, cols: 6 }),
        /dst "d" must be f16 .*got f32/],
      [() => ew16.fill(rec, { target: h([8]), size: 8, value: 1e5 }), /value 100000 is outside f16's finite range/],
      [() => ew.cast(rec, { src: u32Tensor('ids', [1, 2]), dst: t([2]), size: 2 }), /cast: src "ids" must be f32 or f16; got u32 \[2\]/],
      [() => ew.cast(rec, { src: t([9]), dst: h([8], 'd'), size: 9 }), /cast: dst "d" must be f16 with at least 9 elements .*got f16 \[8\]/],
      [() => ew16.cast(rec, { src: x, dst: x, size: 32 }), /same buffer/],
      [() => dropout16.forward(rec, { x: h([8]), y: t([8], 'y'), size: 8, p: 0.1, seed: 0, stream: 0 }), /y "y" must be f16 .*got f32/],
      [() => dropout.backward(rec, { gradOutput: h([8], 'g16'), gradInput: t([8]), size: 8, p: 0.1, seed: 0, stream: 0 }), /gradOutput "g16" must be f32 .*got f16/],
    ];
    for (const [i, [call, message]] of cases.entries()) {
      expect(call, `case ${i}: ${String(message)}`).toThrowError(InvalidArgumentError);
      expect(call, `case ${i}`).toThrowError(message);
    }
    rec.submit();
    await expect(createNormKernels(ctx, { kind: 'rms', eps: NaN })).rejects.toThrowError(InvalidArgumentError);
    await expect(createSwigluKernels(ctx, { dtype: 'bf16' as never })).rejects.toThrowError(/createSwigluKernels: dtype must be 'f32' or 'f16', got bf16/);
  });
});
