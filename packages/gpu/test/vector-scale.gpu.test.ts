/**
 * The vector-scale kernels (IA3's per-column scaling, BitFit's bias gradient) on Dawn against
 * PyTorch (fixtures/vector-scale.json from scripts/make_vector_scale_fixtures.py), with dtype
 * 'f32' and 'f16' (f16 storage, f32 arithmetic), each case both overwriting and accumulating;
 * the CPU references against the same goldens; large shapes against the CPU reference; bad
 * arguments throw InvalidArgumentError.
 *
 * Tolerances, as |got - expected| <= atol + rtol * |expected|:
 *   scaleColumns f32: rtol 1e-6, atol 1e-6 (one f32 multiply, correctly rounded; += may fuse into
 *     one multiply-add, which rounds once instead of twice; |values| are O(1))
 *   scaleColumns f16: atol 2^-14, rtol 2^-10: one f16 ulp relative (the f32 result may sit on
 *     either side of a rounding boundary, and WGSL lets f32 -> f16 round to either neighbour), and
 *     f16's smallest normal absolute (subnormals may flush to zero)
 *   columnDot (f32 out for both dtypes; products of f16 values are exact in f32): per column,
 *     atol 1e-5 * (sum over r of |a b| + |outInit|), rtol 0: the kernel and PyTorch sum in
 *     different orders, each within ~(rows / 8 + 3) ulps of that absolute sum in the worst case,
 *     far less in practice; the absolute sum, not the result, scales the error when terms cancel
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

interface Cases {
  scaleColumns: ScaleColumnsCase[];
  columnDot: ColumnDotCase[];
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
