/**
 * The vector-scale kernels (IA3's per-column scaling, BitFit's bias gradient, UniPELT's per-token
 * gates) on Dawn against PyTorch (fixtures/vector-scale.json from
 * scripts/make_vector_scale_fixtures.py), with dtype 'f32' and 'f16' (f16 storage, f32
 * arithmetic), each case both overwriting and accumulating; the CPU references against the same
 * goldens; large shapes against the CPU reference (rowDot: a float64 loop here); bad arguments
 * throw InvalidArgumentError.
 *
 * Tolerances, as |got - expected| <= atol + rtol * |expected|:
 *   scaleColumns, scaleRows f32: rtol 1e-6, atol 1e-6 (one f32 multiply, correctly rounded; += may fuse into
 *     one multiply-add, which rounds once instead of twice; |values| are O(1))
 *   scaleColumns, scaleRows f16: atol 2^-14, rtol 2^-10: one f16 ulp relative (the f32 result may sit on
 *     either side of a rounding boundary, and WGSL lets f32 -> f16 round to either neighbour), and
 *     f16's smallest normal absolute (subnormals may flush to zero)
 *   columnDot (f32 out for both dtypes; products of f16 values are exact in f32): per column,
 *     atol 1e-5 * (sum over r of |a b| + |outInit|), rtol 0: the kernel and PyTorch sum in
 *     different orders, each within ~(rows / 8 + 3) ulps of that absolute sum in the worst case,
 *     far less in practice; the absolute sum, not the result, scales the error when terms cancel
 *   rowDot: as columnDot, per row (each invocation sums cols / 64 terms, then a 6-level tree);
 *     the columns it must not write are compared exactly
 *   CPU references: scaleColumnsRef bit-exact (f32 product, then an f32 add; for f16 then rounded
 *     to f16); columnDotRef (float64 sum) as columnDot.
 */
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@webtune/errors';
import { CommandRecorder, createTensor, fromF16Bits, readF32, toF16Bits, type GpuTensor } from '../src/index.js';
import { createVectorScaleKernels, type VectorScaleKernels } from '../src/kernels/vector-scale.js';
import { columnDotRef, scaleColumnsRef } from '../src/kernels/vector-scale.ref.js';
import json from './fixtures/vector-scale.json';
import { f32, type EncodedTensor } from './fixtures.js';
import { randn, worstError } from './random.js';
import { nodeContext, recordValidated, useNodeContext } from './node-context.js';

interface ScaleColumnsCase {
  name: string;
  rows: number;
  cols: number;
  src: EncodedTensor;
  vector: EncodedTensor;
  dstInit: EncodedTensor;
  out: EncodedTensor;
  outAccumulated: EncodedTensor;
}

interface ColumnDotCase {
  name: string;
  rows: number;
  cols: number;
  a: EncodedTensor;
  b?: EncodedTensor;
  outInit: EncodedTensor;
  out: EncodedTensor;
  outAccumulated: EncodedTensor;
}

interface ScaleRowsCase {
  name: string;
  rows: number;
  cols: number;
  gateStride: number;
  gateOffset: number;
  src: EncodedTensor;
  /** [rows, gateStride] */
  gate: EncodedTensor;
  dstInit: EncodedTensor;
  out: EncodedTensor;
  outAccumulated: EncodedTensor;
}

interface RowDotCase {
  name: string;
  rows: number;
  cols: number;
  outStride: number;
  outOffset: number;
  a: EncodedTensor;
  b: EncodedTensor;
  /** [rows, outStride]: out's contents before either call */
  outInit: EncodedTensor;
  /** outInit with column outOffset replaced by the row sums */
  out: EncodedTensor;
  /** outInit with the row sums added to column outOffset */
  outAccumulated: EncodedTensor;
}

interface Cases {
  scaleColumns: ScaleColumnsCase[];
  columnDot: ColumnDotCase[];
  scaleRows: ScaleRowsCase[];
  rowDot: RowDotCase[];
}

const F = json as unknown as Cases & { generatedBy: string; f16: Cases };

const SCALE_TOL = { f32: { atol: 1e-6, rtol: 1e-6 }, f16: { atol: 2 ** -14, rtol: 2 ** -10 } } as const;
const DOT_TOL_OF_ABS_SUM = 1e-5;

const gpu = useNodeContext();

function tensor(label: string, data: Float32Array, shape: number[], dtype: 'f32' | 'f16' = 'f32'): GpuTensor {
  return createTensor(gpu(), { shape, dtype, label, data });
}

function roundHalf(a: Float32Array): Float32Array {
  return fromF16Bits(toF16Bits(a));
}

/** Records `body` into one command buffer, submits it, and fails on any validation error. */
const record = (label: string, body: (rec: CommandRecorder) => void) => recordValidated(gpu(), label, body);

function expectClose(name: string, got: ArrayLike<number>, expected: ArrayLike<number>, atol: number, rtol: number): void {
  const r = worstError(got, expected, atol, rtol);
  expect(r.ratio, `${name}: ${JSON.stringify(r)} (atol ${atol}, rtol ${rtol})`).toBeLessThanOrEqual(1);
}

function expectExact(name: string, got: Float32Array, expected: Float32Array): void {
  expect(got.length, `${name}: length`).toBe(expected.length);
  const first = got.findIndex((v, i) => !Object.is(v, expected[i]));
  expect(first, first < 0 ? name : `${name}: first difference at ${first}: got ${got[first]}, expected ${expected[first]}`).toBe(-1);
}

/** Per column: sum over r of |a[r, c] * b[r, c]| (b = 1 when absent), plus |init[c]|. */
function absColumnSums(a: Float32Array, b: Float32Array | undefined, rows: number, cols: number, init?: Float32Array): Float64Array {
  const s = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) s[c]! += Math.abs(a[r * cols + c]! * (b ? b[r * cols + c]! : 1));
  }
  if (init) for (let c = 0; c < cols; c++) s[c]! += Math.abs(init[c]!);
  return s;
}

/** columnDot's tolerance: DOT_TOL_OF_ABS_SUM times each column's absolute sum. */
function expectColumnsClose(name: string, got: Float32Array, expected: Float32Array, absSums: Float64Array): void {
  expect(got.length, `${name}: length`).toBe(expected.length);
  let worst = { ratio: 0, column: -1, got: 0, expected: 0 };
  for (let c = 0; c < expected.length; c++) {
    const diff = Math.abs(got[c]! - expected[c]!);
    const ratio = diff === 0 ? 0 : diff / (DOT_TOL_OF_ABS_SUM * absSums[c]!);
    if (!(ratio <= worst.ratio)) worst = { ratio: Number.isNaN(ratio) ? Infinity : ratio, column: c, got: got[c]!, expected: expected[c]! };
  }
  expect(worst.ratio, `${name}: ${JSON.stringify(worst)}`).toBeLessThanOrEqual(1);
}

async function runScaleCase(k: VectorScaleKernels, c: ScaleColumnsCase): Promise<void> {
  const { rows, cols } = c;
  const dtype = k.dtype;
  const src = tensor('src', f32(c.src), [rows, cols], dtype);
  const vector = tensor('vector', f32(c.vector), [cols]);
  const dst = tensor('dst', new Float32Array(rows * cols).fill(7), [rows, cols], dtype);
  const dstAcc = tensor('dst accumulated', f32(c.dstInit), [rows, cols], dtype);
  await record(`scaleColumns ${c.name}`, (rec) => {
    k.scaleColumns(rec, { src, vector, dst, rows, cols });
    k.scaleColumns(rec, { src, vector, dst: dstAcc, rows, cols, accumulate: true });
  });
  const { atol, rtol } = SCALE_TOL[dtype];
  expectClose('dst = src * vector', await readF32(gpu(), dst), f32(c.out), atol, rtol);
  expectClose('dst += src * vector', await readF32(gpu(), dstAcc), f32(c.outAccumulated), atol, rtol);
  for (const t of [src, vector, dst, dstAcc]) t.release();
}

async function runDotCase(k: VectorScaleKernels, c: ColumnDotCase): Promise<void> {
  const { rows, cols } = c;
  const dtype = k.dtype;
  const aData = f32(c.a);
  const bData = c.b ? f32(c.b) : undefined;
  const init = f32(c.outInit);
  const a = tensor('a', aData, [rows, cols], dtype);
  const b = bData ? tensor('b', bData, [rows, cols], dtype) : undefined;
  const out = tensor('out', new Float32Array(cols).fill(7), [cols]);
  const outAcc = tensor('out accumulated', init, [cols]);
  await record(`columnDot ${c.name}`, (rec) => {
    k.columnDot(rec, { a, b, out, rows, cols });
    k.columnDot(rec, { a, b, out: outAcc, rows, cols, accumulate: true });
  });
  expectColumnsClose('out', await readF32(gpu(), out), f32(c.out), absColumnSums(aData, bData, rows, cols));
  expectColumnsClose('out accumulated', await readF32(gpu(), outAcc), f32(c.outAccumulated), absColumnSums(aData, bData, rows, cols, init));
  for (const t of [a, b, out, outAcc]) t?.release();
}

async function runScaleRowsCase(k: VectorScaleKernels, c: ScaleRowsCase): Promise<void> {
  const { rows, cols, gateStride, gateOffset } = c;
  const dtype = k.dtype;
  const src = tensor('src', f32(c.src), [rows, cols], dtype);
  const gate = tensor('gate', f32(c.gate), [rows, gateStride]);
  const dst = tensor('dst', new Float32Array(rows * cols).fill(7), [rows, cols], dtype);
  const dstAcc = tensor('dst accumulated', f32(c.dstInit), [rows, cols], dtype);
  // The defaults (stride 1, offset 0) are left out, as a caller with a one-column gate would.
  const column = gateStride === 1 && gateOffset === 0 ? {} : { gateStride, gateOffset };
  await record(`scaleRows ${c.name}`, (rec) => {
    k.scaleRows(rec, { src, gate, dst, rows, cols, ...column });
    k.scaleRows(rec, { src, gate, dst: dstAcc, rows, cols, ...column, accumulate: true });
  });
  const { atol, rtol } = SCALE_TOL[dtype];
  expectClose('dst = src * gate', await readF32(gpu(), dst), f32(c.out), atol, rtol);
  expectClose('dst += src * gate', await readF32(gpu(), dstAcc), f32(c.outAccumulated), atol, rtol);
  for (const t of [src, gate, dst, dstAcc]) t.release();
}

/** Per row: sum over c of |a[r, c] * b[r, c]|, plus |init| at the written column. */
function absRowSums(a: Float32Array, b: Float32Array, rows: number, cols: number, init?: Float32Array, stride = 1, offset = 0): Float64Array {
  const s = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) s[r]! += Math.abs(a[r * cols + c]! * b[r * cols + c]!);
    if (init) s[r]! += Math.abs(init[r * stride + offset]!);
  }
  return s;
}

/** rowDot's output: column `offset` within DOT_TOL_OF_ABS_SUM of each row's absolute sum, the others exact. */
function expectRowsClose(name: string, got: Float32Array, expected: Float32Array, absSums: Float64Array, stride: number, offset: number): void {
  expect(got.length, `${name}: length`).toBe(expected.length);
  const column = (t: Float32Array) => Float32Array.from({ length: absSums.length }, (_, r) => t[r * stride + offset]!);
  expectColumnsClose(name, column(got), column(expected), absSums);
  const other = got.findIndex((v, i) => i % stride !== offset && !Object.is(v, expected[i]));
  expect(other, `${name}: a column other than ${offset} changed at ${other}`).toBe(-1);
}

async function runRowDotCase(k: VectorScaleKernels, c: RowDotCase): Promise<void> {
  const { rows, cols, outStride, outOffset } = c;
  const dtype = k.dtype;
  const aData = f32(c.a);
  const bData = f32(c.b);
  const init = f32(c.outInit);
  const a = tensor('a', aData, [rows, cols], dtype);
  const b = tensor('b', bData, [rows, cols], dtype);
  const out = tensor('out', init, [rows, outStride]);
  const outAcc = tensor('out accumulated', init, [rows, outStride]);
  const column = outStride === 1 && outOffset === 0 ? {} : { outStride, outOffset };
  await record(`rowDot ${c.name}`, (rec) => {
    k.rowDot(rec, { a, b, out, rows, cols, ...column });
    k.rowDot(rec, { a, b, out: outAcc, rows, cols, ...column, accumulate: true });
  });
  expectRowsClose('out', await readF32(gpu(), out), f32(c.out), absRowSums(aData, bData, rows, cols), outStride, outOffset);
  expectRowsClose('out accumulated', await readF32(gpu(), outAcc), f32(c.outAccumulated),
    absRowSums(aData, bData, rows, cols, init, outStride, outOffset), outStride, outOffset);
  for (const t of [a, b, out, outAcc]) t.release();
}

describe.each([
  ['f32', F],
  ['f16', F.f16],
] as const)("dtype '%s' against PyTorch", (dtype, cases) => {
  if (dtype === 'f16') {
    it('the lane has shader-f16 (lavapipe does)', () => {
      expect(gpu().features.shaderF16, 'the f16 cases need shader-f16').toBe(true);
    });
  }
  const kernels = () => createVectorScaleKernels(gpu(), { dtype });
  for (const c of cases.scaleColumns) it(`scaleColumns ${c.name}, = and +=`, async () => runScaleCase(await kernels(), c));
  for (const c of cases.columnDot) it(`columnDot ${c.name}, = and +=`, async () => runDotCase(await kernels(), c));
  for (const c of cases.scaleRows) it(`scaleRows ${c.name}, = and +=`, async () => runScaleRowsCase(await kernels(), c));
  for (const c of cases.rowDot) it(`rowDot ${c.name}, = and +=`, async () => runRowDotCase(await kernels(), c));
});

describe('CPU references against PyTorch', () => {
  for (const [dtype, cases] of [['f32', F], ['f16', F.f16]] as const) {
    const round = dtype === 'f16' ? roundHalf : (a: Float32Array) => a;
    it(`scaleColumnsRef, ${dtype} cases: bit-exact`, () => {
      for (const c of cases.scaleColumns) {
        const p = { src: f32(c.src), vector: f32(c.vector), rows: c.rows, cols: c.cols };
        expectExact(`${c.name} =`, round(scaleColumnsRef(p)), f32(c.out));
        expectExact(`${c.name} +=`, round(scaleColumnsRef({ ...p, accumulate: f32(c.dstInit) })), f32(c.outAccumulated));
      }
    });
    it(`columnDotRef, ${dtype} cases`, () => {
      for (const c of cases.columnDot) {
        const a = f32(c.a);
        const b = c.b ? f32(c.b) : undefined;
        const init = f32(c.outInit);
        const p = { a, b, rows: c.rows, cols: c.cols };
        expectColumnsClose(`${c.name} =`, columnDotRef(p), f32(c.out), absColumnSums(a, b, c.rows, c.cols));
        expectColumnsClose(`${c.name} +=`, columnDotRef({ ...p, accumulate: init }), f32(c.outAccumulated), absColumnSums(a, b, c.rows, c.cols, init));
      }
    });
  }
});

describe('large shapes against the CPU reference', () => {
  it('columnDot over 16384 rows: within tolerance, and the same bits on every call', async () => {
    const k = await createVectorScaleKernels(gpu());
    const rows = 16_384;
    const cols = 40;
    const aData = randn(rows * cols, 1);
    const bData = randn(rows * cols, 2);
    const a = tensor('a', aData, [rows, cols]);
    const b = tensor('b', bData, [rows, cols]);
    const outs = [0, 1].map((i) => tensor(`out ${i}`, new Float32Array(cols), [cols]));
    const sums = tensor('column sums', new Float32Array(cols), [cols]);
    await record('columnDot 16k rows', (rec) => {
      for (const out of outs) k.columnDot(rec, { a, b, out, rows, cols });
      k.columnDot(rec, { a, out: sums, rows, cols });
    });
    const [first, second] = await Promise.all(outs.map((t) => readF32(gpu(), t)));
    expectColumnsClose('a . b', first!, columnDotRef({ a: aData, b: bData, rows, cols }), absColumnSums(aData, bData, rows, cols));
    expectExact('a second call', second!, first!);
    expectColumnsClose('column sums', await readF32(gpu(), sums), columnDotRef({ a: aData, rows, cols }), absColumnSums(aData, undefined, rows, cols));
    for (const t of [a, b, sums, ...outs]) t.release();
  });

  it('rowDot over 70000 rows (past one dispatch dimension) and 4096 columns: within tolerance, and the same bits on every call', async () => {
    const ctx = gpu();
    const k = await createVectorScaleKernels(ctx);
    const rows = ctx.limits.maxComputeWorkgroupsPerDimension + 4465;
    const aData = randn(rows * 3, 4);
    const bData = randn(rows * 3, 5);
    // Long rows on a few of them, then many short rows: both ends of the dispatch geometry.
    const a = tensor('a', aData, [rows, 3]);
    const b = tensor('b', bData, [rows, 3]);
    const outs = [0, 1].map((i) => tensor(`out ${i}`, new Float32Array(rows * 2).fill(9), [rows, 2]));
    const longRows = 5;
    const longCols = 4096;
    const la = randn(longRows * longCols, 6);
    const lb = randn(longRows * longCols, 7);
    const longA = tensor('long a', la, [longRows, longCols]);
    const longB = tensor('long b', lb, [longRows, longCols]);
    const longOut = tensor('long out', new Float32Array(longRows), [longRows]);
    await record('rowDot past the x limit', (rec) => {
      for (const out of outs) k.rowDot(rec, { a, b, out, outStride: 2, outOffset: 1, rows, cols: 3 });
      k.rowDot(rec, { a: longA, b: longB, out: longOut, rows: longRows, cols: longCols });
    });
    const ref = (x: Float32Array, y: Float32Array, n: number, cols: number) => {
      const out = new Float32Array(n);
      for (let r = 0; r < n; r++) {
        let s = 0;
        for (let c = 0; c < cols; c++) s += x[r * cols + c]! * y[r * cols + c]!;
        out[r] = s;
      }
      return out;
    };
    const expected = new Float32Array(rows * 2).fill(9);
    ref(aData, bData, rows, 3).forEach((v, r) => (expected[r * 2 + 1] = v));
    const [first, second] = await Promise.all(outs.map((t) => readF32(ctx, t)));
    expectRowsClose('70000 rows', first!, expected, absRowSums(aData, bData, rows, 3), 2, 1);
    expectExact('a second call', second!, first!);
    expectRowsClose('4096 columns', await readF32(ctx, longOut), ref(la, lb, longRows, longCols), absRowSums(la, lb, longRows, longCols), 1, 0);
    for (const t of [a, b, longA, longB, longOut, ...outs]) t.release();
  });

  it('columnDot with more column tiles than one dispatch dimension allows continues along y', async () => {
    const ctx = gpu();
    const k = await createVectorScaleKernels(ctx);
    // One row: every column's sum is its single value, exactly.
    const cols = ctx.limits.maxComputeWorkgroupsPerDimension * 32 + 45;
    const aData = randn(cols, 3);
    const a = tensor('a', aData, [1, cols]);
    const out = tensor('out', new Float32Array(cols), [cols]);
    await record('columnDot past the x limit', (rec) => k.columnDot(rec, { a, out, rows: 1, cols }));
    expectExact('out', await readF32(ctx, out), aData);
    a.release();
    out.release();
  });
});

describe('bad arguments throw InvalidArgumentError', () => {
  it('sizes, dtypes and aliasing', async () => {
    const ctx = gpu();
    const k = await createVectorScaleKernels(ctx);
    const k16 = await createVectorScaleKernels(ctx, { dtype: 'f16' });
    expect(k16.dtype).toBe('f16');
    const t = (shape: number[], label = 't', dtype: 'f32' | 'f16' | 'u32' = 'f32') => createTensor(ctx, { shape, dtype, label });
    const x = t([4, 8], 'x');
    const rec = new CommandRecorder(ctx, 'bad arguments');
    const cases: [() => void, RegExp][] = [
      [() => k.scaleColumns(rec, { src: t([3, 8], 'src'), vector: t([8]), dst: t([4, 8]), rows: 4, cols: 8 }), /scaleColumns: src "src".*\[4, 8\].*got f32 \[3, 8\]/],
      [() => k.scaleColumns(rec, { src: x, vector: t([7], 'l'), dst: t([4, 8]), rows: 4, cols: 8 }), /scaleColumns: vector "l" must be f32 .*\[8\].*got f32 \[7\]/],
      [() => k.scaleColumns(rec, { src: x, vector: t([8]), dst: t([4, 7], 'y'), rows: 4, cols: 8 }), /scaleColumns: dst "y".*\[4, 8\]/],
      [() => k.scaleColumns(rec, { src: x, vector: t([8]), dst: x, rows: 4, cols: 8 }), /dst "x" and src "x" are the same buffer/],
      [() => k.scaleColumns(rec, { src: x, vector: t([8]), dst: t([4, 8]), rows: 0, cols: 8 }), /rows must be an integer >= 1, got 0/],
      [() => k.scaleColumns(rec, { src: x, vector: t([8]), dst: t([4, 8]), rows: 4, cols: 2.5 }), /cols must be an integer >= 1/],
      [() => k16.scaleColumns(rec, { src: t([4, 8], 'h', 'f16'), vector: t([8], 'l16', 'f16'), dst: t([4, 8], 'y', 'f16'), rows: 4, cols: 8 }),
        /vector "l16" must be f32.*got f16 \[8\]/],
      [() => k16.scaleColumns(rec, { src: x, vector: t([8]), dst: t([4, 8], 'y', 'f16'), rows: 4, cols: 8 }), /src "x" must be f16.*got f32/],
      [() => k.columnDot(rec, { a: x, b: t([4, 6], 'b'), out: t([8]), rows: 4, cols: 8 }), /columnDot: b "b".*\[4, 8\].*got f32 \[4, 6\]/],
      [() => k.columnDot(rec, { a: x, out: t([6], 'grad'), rows: 4, cols: 8 }), /columnDot: out "grad" must be f32 .*\[8\]/],
      [() => k.columnDot(rec, { a: x, out: x, rows: 4, cols: 8 }), /out "x" and a "x" are the same buffer/],
      [() => k.columnDot(rec, { a: t([4, 8]), b: x, out: x, rows: 4, cols: 8 }), /out "x" and b "x" are the same buffer/],
      [() => k16.columnDot(rec, { a: t([4, 8], 'h', 'f16'), out: t([8], 'g16', 'f16'), rows: 4, cols: 8 }), /out "g16" must be f32.*got f16/],
      [() => k.columnDot(rec, { a: t([4, 8], 'ids', 'u32'), out: t([8]), rows: 4, cols: 8 }), /a "ids" must be f32.*got u32/],
      [() => k.scaleRows(rec, { src: t([3, 8], 'src'), gate: t([4]), dst: t([4, 8]), rows: 4, cols: 8 }), /scaleRows: src "src".*\[4, 8\].*got f32 \[3, 8\]/],
      [() => k.scaleRows(rec, { src: x, gate: t([3], 'g'), dst: t([4, 8]), rows: 4, cols: 8 }), /scaleRows: gate "g" must be f32 with at least 4 elements \(\[rows 4, gateStride 1\]\).*got f32 \[3\]/],
      [() => k.scaleRows(rec, { src: x, gate: t([4, 2], 'g2'), gateStride: 3, gateOffset: 1, dst: t([4, 8]), rows: 4, cols: 8 }),
        /scaleRows: gate "g2" must be f32 with at least 12 elements \(\[rows 4, gateStride 3\]\)/],
      [() => k.scaleRows(rec, { src: x, gate: t([4, 2]), gateStride: 2, gateOffset: 2, dst: t([4, 8]), rows: 4, cols: 8 }),
        /scaleRows: gateOffset must be an integer in \[0, gateStride = 2\), got 2/],
      [() => k.scaleRows(rec, { src: x, gate: t([4, 2]), gateStride: 2, gateOffset: -1, dst: t([4, 8]), rows: 4, cols: 8 }), /gateOffset must be an integer in/],
      [() => k.scaleRows(rec, { src: x, gate: t([4, 2]), gateStride: 0, dst: t([4, 8]), rows: 4, cols: 8 }), /scaleRows: gateStride must be an integer >= 1, got 0/],
      [() => k.scaleRows(rec, { src: x, gate: t([4]), dst: x, rows: 4, cols: 8 }), /scaleRows: dst "x" and src "x" are the same buffer/],
      [() => k.scaleRows(rec, { src: t([4, 8]), gate: x, dst: x, rows: 4, cols: 8 }), /scaleRows: dst "x" and gate "x" are the same buffer/],
      [() => k.scaleRows(rec, { src: x, gate: t([4]), dst: t([4, 8]), rows: 0, cols: 8 }), /scaleRows: rows must be an integer >= 1, got 0/],
      [() => k16.scaleRows(rec, { src: t([4, 8], 'h', 'f16'), gate: t([4], 'g16', 'f16'), dst: t([4, 8], 'y', 'f16'), rows: 4, cols: 8 }),
        /scaleRows: gate "g16" must be f32.*got f16 \[4\]/],
      [() => k16.scaleRows(rec, { src: x, gate: t([4]), dst: t([4, 8], 'y', 'f16'), rows: 4, cols: 8 }), /scaleRows: src "x" must be f16.*got f32/],
      [() => k.rowDot(rec, { a: x, b: t([4, 6], 'b'), out: t([4]), rows: 4, cols: 8 }), /rowDot: b "b".*\[4, 8\].*got f32 \[4, 6\]/],
      [() => k.rowDot(rec, { a: x, b: x, out: t([3], 'gradG'), rows: 4, cols: 8 }), /rowDot: out "gradG" must be f32 with at least 4 elements \(\[rows 4, outStride 1\]\)/],
      [() => k.rowDot(rec, { a: x, b: x, out: t([4, 2], 'gradG'), outStride: 3, outOffset: 0, rows: 4, cols: 8 }), /out "gradG" must be f32 with at least 12 elements/],
      [() => k.rowDot(rec, { a: x, b: x, out: t([4, 2]), outStride: 2, outOffset: 5, rows: 4, cols: 8 }), /rowDot: outOffset must be an integer in \[0, outStride = 2\), got 5/],
      [() => k.rowDot(rec, { a: x, b: x, out: t([4, 2]), outStride: 1.5, rows: 4, cols: 8 }), /rowDot: outStride must be an integer >= 1, got 1.5/],
      [() => k.rowDot(rec, { a: x, b: t([4, 8]), out: x, rows: 4, cols: 8 }), /rowDot: out "x" and a "x" are the same buffer/],
      [() => k.rowDot(rec, { a: t([4, 8]), b: x, out: x, rows: 4, cols: 8 }), /rowDot: out "x" and b "x" are the same buffer/],
      [() => k.rowDot(rec, { a: x, b: x, out: t([4]), rows: 4, cols: 0 }), /rowDot: cols must be an integer >= 1, got 0/],
      [() => k16.rowDot(rec, { a: t([4, 8], 'h', 'f16'), b: t([4, 8], 'h2', 'f16'), out: t([4], 'g16', 'f16'), rows: 4, cols: 8 }), /rowDot: out "g16" must be f32.*got f16/],
      [() => k16.rowDot(rec, { a: t([4, 8], 'h', 'f16'), b: x, out: t([4]), rows: 4, cols: 8 }), /rowDot: b "x" must be f16.*got f32/],
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
    const bad = await createVectorScaleKernels(ctx, { dtype: 'bf16' as 'f32' }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(InvalidArgumentError);
    rec.submit();
  });

  it("without shader-f16, dtype 'f16' is refused with a hint to use 'f32'", async () => {
    const ctx = await nodeContext({ disableFeatures: ['shader-f16'] });
    try {
      const error = await createVectorScaleKernels(ctx, { dtype: 'f16' }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect((error as Error).message).toMatch(/createVectorScaleKernels: dtype 'f16' needs the 'shader-f16' feature.*use dtype 'f32'/);
    } finally {
      ctx.destroy();
    }
  });
});
