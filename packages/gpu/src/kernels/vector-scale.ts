/**
 * Learned per-column vectors and per-row gates: IA3's scaling (`y * l`, with its gradients),
 * BitFit's bias gradient, and UniPELT's per-token gates (`g * y`, g one scalar per token).
 * scaleColumns multiplies each column of a [rows, cols] activation by a vector entry; columnDot
 * reduces a product of two activations (or one) over rows into a vector. scaleRows multiplies each
 * row by a gate entry; rowDot reduces a product of two activations over columns, one value per row
 * (the gate's gradient). Activations are the family's `dtype` (f32, or f16 storage with
 * shader-f16); vectors, gates and their gradients are always f32, and all arithmetic is f32. A gate
 * (or a gate gradient) is one column of an f32 [rows, stride] tensor, `offset` naming the column,
 * so a layer's gates can share one buffer.
 * Shaders: shaders/scale-columns.wgsl, shaders/column-dot.wgsl, shaders/scale-rows.wgsl,
 * shaders/row-dot.wgsl (with shaders/lib/workgroup-sum.wgsl). CPU reference: vector-scale.ref.ts
 * (columns only). Expected values: PyTorch (scripts/make_vector_scale_fixtures.py).
 */
import scaleColumnsSource from '../shaders/scale-columns.wgsl.js';
import columnDotSource from '../shaders/column-dot.wgsl.js';
import scaleRowsSource from '../shaders/scale-rows.wgsl.js';
import rowDotSource from '../shaders/row-dot.wgsl.js';
import sumLib from '../shaders/lib/workgroup-sum.wgsl.js';
import { InvalidArgumentError } from '@webtune/errors';
import type { GpuContext } from '../device.js';
import type { ElementType, KernelDefinition } from '../pipeline-cache.js';
import { packParams, type CommandRecorder } from '../recorder.js';
import type { GpuTensor } from '../tensor.js';
import { grid1D } from './grid.js';
import { requireCount, requireDistinct, requireElementType, requireTensor } from './tensor-checks.js';

/** shaders/scale-columns.wgsl: src (elem), vector (f32), dst (elem), params. */
export const SCALE_COLUMNS_KERNEL: KernelDefinition = {
  name: 'scale-columns',
  files: [{ path: 'shaders/scale-columns.wgsl', source: scaleColumnsSource }],
  bindings: ['read', 'read', 'read-write', 'uniform'],
};

/** shaders/column-dot.wgsl: a (elem), b (elem), out (f32), params. */
export const COLUMN_DOT_KERNEL: KernelDefinition = {
  name: 'column-dot',
  files: [{ path: 'shaders/column-dot.wgsl', source: columnDotSource }],
  bindings: ['read', 'read', 'read-write', 'uniform'],
};

/** shaders/scale-rows.wgsl: src (elem), gate (f32), dst (elem), params. */
export const SCALE_ROWS_KERNEL: KernelDefinition = {
  name: 'scale-rows',
  files: [{ path: 'shaders/scale-rows.wgsl', source: scaleRowsSource }],
  bindings: ['read', 'read', 'read-write', 'uniform'],
};

/** shaders/row-dot.wgsl: a (elem), b (elem), out (f32), params. */
export const ROW_DOT_KERNEL: KernelDefinition = {
  name: 'row-dot',
  files: [{ path: 'shaders/lib/workgroup-sum.wgsl', source: sumLib }, { path: 'shaders/row-dot.wgsl', source: rowDotSource }],
  bindings: ['read', 'read', 'read-write', 'uniform'],
};

const WG = 256;
/**
 * rowDot's workgroup: one per row, 64 invocations striding its columns, then a 6-level tree.
 * Fixed, so the sum order, and hence the result bits, never change between calls; 64 rather than
 * 256 because rows are short (a hidden size) and WebGPU on CPUs pays per barrier and invocation.
 */
const ROW_DOT_WG = 64;
/**
 * columnDot's workgroup: 32 adjacent columns (128 contiguous bytes of an f32 row per strip, so
 * reads coalesce) by 8 invocations splitting the rows. Fixed, so the sum order, and hence the
 * result bits, never change between calls.
 */
const TILE_COLS = 32;
const ROW_THREADS = 8;

/** The options of {@link createVectorScaleKernels}. */
export interface VectorScaleOptions {
  /** Element type of the activations (src, dst, a, b); default 'f32', 'f16' needs shader-f16. Vectors are always f32. */
  dtype?: ElementType;
}

/** Arguments of {@link VectorScaleKernels.scaleColumns}. */
export interface ScaleColumnsArgs {
  /** [rows, cols], the family's dtype. */
  src: GpuTensor;
  /** [cols], f32: the learned per-column vector. */
  vector: GpuTensor;
  /** [rows, cols], the family's dtype; a different buffer from src and vector. */
  dst: GpuTensor;
  rows: number;
  cols: number;
  /** dst += src * vector instead of dst = src * vector (default false). */
  accumulate?: boolean;
}

/** Arguments of {@link VectorScaleKernels.columnDot}. */
export interface ColumnDotArgs {
  /** [rows, cols], the family's dtype. */
  a: GpuTensor;
  /** [rows, cols], the family's dtype; omitted, each row of `a` is summed as is (b = 1). */
  b?: GpuTensor;
  /** [cols], f32; a different buffer from a and b. */
  out: GpuTensor;
  rows: number;
  cols: number;
  /** out += the column sums instead of out = them (default false). */
  accumulate?: boolean;
}

/** Arguments of {@link VectorScaleKernels.scaleRows}. */
export interface ScaleRowsArgs {
  /** [rows, cols], the family's dtype. */
  src: GpuTensor;
  /** [rows, gateStride], f32: column gateOffset holds each row's gate. */
  gate: GpuTensor;
  /** Columns of `gate` (default 1). */
  gateStride?: number;
  /** The gate's column, 0 <= gateOffset < gateStride (default 0). */
  gateOffset?: number;
  /** [rows, cols], the family's dtype; a different buffer from src and gate. */
  dst: GpuTensor;
  rows: number;
  cols: number;
  /** dst += src * gate instead of dst = src * gate (default false). */
  accumulate?: boolean;
}

/** Arguments of {@link VectorScaleKernels.rowDot}. */
export interface RowDotArgs {
  /** [rows, cols], the family's dtype. */
  a: GpuTensor;
  /** [rows, cols], the family's dtype. */
  b: GpuTensor;
  /** [rows, outStride], f32: column outOffset receives each row's sum; a different buffer from a and b. */
  out: GpuTensor;
  /** Columns of `out` (default 1). */
  outStride?: number;
  /** The written column, 0 <= outOffset < outStride (default 0). */
  outOffset?: number;
  rows: number;
  cols: number;
  /** out += the row sums instead of out = them (default false). */
  accumulate?: boolean;
}

/** The kernels made by {@link createVectorScaleKernels}. */
export interface VectorScaleKernels {
  /** Element type of the activations. */
  readonly dtype: ElementType;
  /** dst[r, c] = (accumulate ? dst[r, c] : 0) + src[r, c] * vector[c], in f32, rounded to dtype on the store. */
  scaleColumns(rec: CommandRecorder, a: ScaleColumnsArgs): void;
  /**
   * out[c] = (accumulate ? out[c] : 0) + sum over r of a[r, c] * (b ? b[r, c] : 1), in f32. One
   * workgroup per 32 columns, no atomics: the same inputs give the same bits on every call.
   */
  columnDot(rec: CommandRecorder, a: ColumnDotArgs): void;
  /**
   * dst[r, c] = (accumulate ? dst[r, c] : 0) + src[r, c] * gate[r * gateStride + gateOffset], in
   * f32, rounded to dtype on the store.
   */
  scaleRows(rec: CommandRecorder, a: ScaleRowsArgs): void;
  /**
   * out[r * outStride + outOffset] = (accumulate ? that : 0) + sum over c of a[r, c] * b[r, c], in
   * f32; out's other columns are untouched. One workgroup per row, no atomics: the same inputs give
   * the same bits on every call.
   */
  rowDot(rec: CommandRecorder, a: RowDotArgs): void;
}

/** stride >= 1 and 0 <= offset < stride, integers: one column of a [rows, stride] tensor. */
function requireColumn(op: string, strideName: string, stride: number, offsetName: string, offset: number): void {
  requireCount(op, strideName, stride);
  if (!Number.isInteger(offset) || offset < 0 || offset >= stride) {
    throw new InvalidArgumentError(`${op}: ${offsetName} must be an integer in [0, ${strideName} = ${stride}), got ${offset}.`);
  }
}

/**
 * Kernels for learned per-column vectors: IA3 (activations scaled by a vector l) and BitFit
 * (only biases train).
 *
 * @example
 * ```ts
 * const vs = await createVectorScaleKernels(ctx); // or (ctx, { dtype: 'f16' })
 * // IA3 on a Linear output yPre [tokens, n] with l [n]: forward, then backward from gy
 * vs.scaleColumns(rec, { src: yPre, vector: l, dst: y, rows: tokens, cols: n });
 * vs.columnDot(rec, { a: gy, b: yPre, out: gradL, rows: tokens, cols: n, accumulate: true });
 * vs.scaleColumns(rec, { src: gy, vector: l, dst: gyPre, rows: tokens, cols: n });
 * // BitFit: the bias gradient is the column sum of the output gradient
 * vs.columnDot(rec, { a: gy, out: gradBias, rows: tokens, cols: n });
 * // A per-token gate g (column 1 of an f32 [tokens, 2] tensor) on yAdapter [tokens, n]: y += g * yAdapter,
 * // then from gy: gradG = sum over columns of gy * yAdapter, gyAdapter = g * gy
 * vs.scaleRows(rec, { src: yAdapter, gate: gates, gateStride: 2, gateOffset: 1, dst: y, rows: tokens, cols: n, accumulate: true });
 * vs.rowDot(rec, { a: gy, b: yAdapter, out: gradGates, outStride: 2, outOffset: 1, rows: tokens, cols: n });
 * vs.scaleRows(rec, { src: gy, gate: gates, gateStride: 2, gateOffset: 1, dst: gyAdapter, rows: tokens, cols: n });
 * ```
 */
export async function createVectorScaleKernels(ctx: GpuContext, options: VectorScaleOptions = {}): Promise<VectorScaleKernels> {
  const dtype = requireElementType(ctx, 'createVectorScaleKernels', options.dtype);
  const tile = { TILE_COLS, ROW_THREADS };
  const [scale, scaleAcc, dot, dotAcc, sum, sumAcc, rowScale, rowScaleAcc, rowSum, rowSumAcc] = await Promise.all([
    ctx.pipelines.get(SCALE_COLUMNS_KERNEL, dtype, { WG, ACCUMULATE: false }),
    ctx.pipelines.get(SCALE_COLUMNS_KERNEL, dtype, { WG, ACCUMULATE: true }),
    ctx.pipelines.get(COLUMN_DOT_KERNEL, dtype, { ...tile, HAS_B: true, ACCUMULATE: false }),
    ctx.pipelines.get(COLUMN_DOT_KERNEL, dtype, { ...tile, HAS_B: true, ACCUMULATE: true }),
    ctx.pipelines.get(COLUMN_DOT_KERNEL, dtype, { ...tile, HAS_B: false, ACCUMULATE: false }),
    ctx.pipelines.get(COLUMN_DOT_KERNEL, dtype, { ...tile, HAS_B: false, ACCUMULATE: true }),
    ctx.pipelines.get(SCALE_ROWS_KERNEL, dtype, { WG, ACCUMULATE: false }),
    ctx.pipelines.get(SCALE_ROWS_KERNEL, dtype, { WG, ACCUMULATE: true }),
    ctx.pipelines.get(ROW_DOT_KERNEL, dtype, { WG: ROW_DOT_WG, ACCUMULATE: false }),
    ctx.pipelines.get(ROW_DOT_KERNEL, dtype, { WG: ROW_DOT_WG, ACCUMULATE: true }),
  ]);
  const maxPerDimension = ctx.limits.maxComputeWorkgroupsPerDimension;
  return {
    dtype,
    scaleColumns(rec, a) {
      const op = 'scaleColumns';
      requireCount(op, 'rows', a.rows);
      requireCount(op, 'cols', a.cols);
      const shape = `[${a.rows}, ${a.cols}]`;
      requireTensor(op, 'src', a.src, a.rows * a.cols, shape, dtype);
      requireTensor(op, 'vector', a.vector, a.cols, `[${a.cols}]`, 'f32');
      requireTensor(op, 'dst', a.dst, a.rows * a.cols, shape, dtype);
      requireDistinct(op, { dst: a.dst }, { src: a.src, vector: a.vector });
      const size = a.rows * a.cols;
      const g = grid1D(size, WG, maxPerDimension);
      rec.dispatch(a.accumulate ? scaleAcc : scale, [a.src.buffer, a.vector.buffer, a.dst.buffer],
        packParams([['u32', size], ['u32', a.cols], ['u32', g.rowStride]]), g.workgroups);
    },
    columnDot(rec, a) {
      const op = 'columnDot';
      requireCount(op, 'rows', a.rows);
      requireCount(op, 'cols', a.cols);
      const shape = `[${a.rows}, ${a.cols}]`;
      requireTensor(op, 'a', a.a, a.rows * a.cols, shape, dtype);
      if (a.b) requireTensor(op, 'b', a.b, a.rows * a.cols, shape, dtype);
      requireTensor(op, 'out', a.out, a.cols, `[${a.cols}]`, 'f32');
      requireDistinct(op, { out: a.out }, { a: a.a, b: a.b });
      const g = grid1D(a.cols, TILE_COLS, maxPerDimension);
      const pipeline = a.b ? (a.accumulate ? dotAcc : dot) : (a.accumulate ? sumAcc : sum);
      // Without b the shader never reads binding 1; a fills it (two read-only bindings of one buffer are allowed).
      rec.dispatch(pipeline, [a.a.buffer, (a.b ?? a.a).buffer, a.out.buffer],
        packParams([['u32', a.rows], ['u32', a.cols], ['u32', g.rowStride]]), g.workgroups);
    },
    scaleRows(rec, a) {
      const op = 'scaleRows';
      requireCount(op, 'rows', a.rows);
      requireCount(op, 'cols', a.cols);
      const gateStride = a.gateStride ?? 1;
      const gateOffset = a.gateOffset ?? 0;
      requireColumn(op, 'gateStride', gateStride, 'gateOffset', gateOffset);
      const shape = `[${a.rows}, ${a.cols}]`;
      requireTensor(op, 'src', a.src, a.rows * a.cols, shape, dtype);
      requireTensor(op, 'gate', a.gate, a.rows * gateStride, `[rows ${a.rows}, gateStride ${gateStride}]`, 'f32');
      requireTensor(op, 'dst', a.dst, a.rows * a.cols, shape, dtype);
      requireDistinct(op, { dst: a.dst }, { src: a.src, gate: a.gate });
      const size = a.rows * a.cols;
      const g = grid1D(size, WG, maxPerDimension);
      rec.dispatch(a.accumulate ? rowScaleAcc : rowScale, [a.src.buffer, a.gate.buffer, a.dst.buffer],
        packParams([['u32', size], ['u32', a.cols], ['u32', g.rowStride], ['u32', gateStride], ['u32', gateOffset]]), g.workgroups);
    },
    rowDot(rec, a) {
      const op = 'rowDot';
      requireCount(op, 'rows', a.rows);
      requireCount(op, 'cols', a.cols);
      const outStride = a.outStride ?? 1;
      const outOffset = a.outOffset ?? 0;
      requireColumn(op, 'outStride', outStride, 'outOffset', outOffset);
      const shape = `[${a.rows}, ${a.cols}]`;
      requireTensor(op, 'a', a.a, a.rows * a.cols, shape, dtype);
      requireTensor(op, 'b', a.b, a.rows * a.cols, shape, dtype);
      requireTensor(op, 'out', a.out, a.rows * outStride, `[rows ${a.rows}, outStride ${outStride}]`, 'f32');
      requireDistinct(op, { out: a.out }, { a: a.a, b: a.b });
      // One workgroup per row: grid1D with a workgroup size of 1 counts workgroups.
      const g = grid1D(a.rows, 1, maxPerDimension);
      rec.dispatch(a.accumulate ? rowSumAcc : rowSum, [a.a.buffer, a.b.buffer, a.out.buffer],
        packParams([['u32', a.rows], ['u32', a.cols], ['u32', g.rowStride], ['u32', outStride], ['u32', outOffset]]), g.workgroups);
    },
  };
}
