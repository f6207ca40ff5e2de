/**
 * Small f32 building blocks of a transformer step: axpy (gradient and residual adds), bias add,
 * column-block copies (fused qkv split, head merge, KV cache append) and fill.
 * Shaders: shaders/axpy.wgsl, shaders/add-bias.wgsl, shaders/copy-columns.wgsl, shaders/fill.wgsl.
 * Expected values: PyTorch (scripts/make_transformer_op_fixtures.py).
 */
import axpySource from '../../../../shaders/axpy.wgsl?raw';
import addBiasSource from '../../../../shaders/add-bias.wgsl?raw';
import copyColumnsSource from '../../../../shaders/copy-columns.wgsl?raw';
import fillSource from '../../../../shaders/fill.wgsl?raw';
import type { GpuContext } from '../device.js';
import { InvalidArgumentError } from '../errors.js';
import type { KernelDefinition } from '../pipeline-cache.js';
import { packParams, type CommandRecorder } from '../recorder.js';
import type { GpuTensor } from '../tensor.js';
import { grid1D } from './grid.js';
import { requireCount, requireDistinct, requireFinite, requireTensor } from './tensor-checks.js';

export const AXPY_KERNEL: KernelDefinition = {
  name: 'axpy',
  files: [{ path: 'shaders/axpy.wgsl', source: axpySource }],
  bindings: ['read', 'read-write', 'uniform'],
};
export const ADD_BIAS_KERNEL: KernelDefinition = {
  name: 'add-bias',
  files: [{ path: 'shaders/add-bias.wgsl', source: addBiasSource }],
  bindings: ['read', 'read-write', 'uniform'],
};
export const COPY_COLUMNS_KERNEL: KernelDefinition = {
  name: 'copy-columns',
  files: [{ path: 'shaders/copy-columns.wgsl', source: copyColumnsSource }],
  bindings: ['read', 'read-write', 'uniform'],
};
export const FILL_KERNEL: KernelDefinition = {
  name: 'fill',
  files: [{ path: 'shaders/fill.wgsl', source: fillSource }],
  bindings: ['read-write', 'uniform'],
};

const WG = 256;

export interface AxpyArgs {
  target: GpuTensor;
  source: GpuTensor;
  size: number;
  /** Default 1. */
  alpha?: number;
}

export interface AddBiasArgs {
  /** [rows, cols] */
  target: GpuTensor;
  /** [cols] */
  bias: GpuTensor;
  rows: number;
  cols: number;
}

export interface CopyColumnsArgs {
  /** [rows, srcCols] */
  src: GpuTensor;
  srcCols: number;
  /** First source column copied. */
  srcOffset: number;
  /** [dstRowOffset + rows, dstCols] at least */
  dst: GpuTensor;
  dstCols: number;
  /** First destination column written. */
  dstOffset: number;
  rows: number;
  /** Columns copied per row. */
  cols: number;
  /** First destination row written (KV cache appends); default 0. */
  dstRowOffset?: number;
  /** First source row read; default 0. */
  srcRowOffset?: number;
  /** Add into dst instead of overwriting it. */
  accumulate?: boolean;
}

export interface FillArgs {
  target: GpuTensor;
  size: number;
  value: number;
}

export interface ElementwiseKernels {
  /** target += alpha * source (size elements) */
  axpy(rec: CommandRecorder, a: AxpyArgs): void;
  /** target[r, c] += bias[c] */
  addBias(rec: CommandRecorder, a: AddBiasArgs): void;
  /**
   * dst[dstRowOffset + r, dstOffset + c] (= or +=) src[srcRowOffset + r, srcOffset + c] for r < rows, c < cols;
   * row strides srcCols / dstCols (splits GPT-2's fused qkv, writes KV caches).
   */
  copyColumns(rec: CommandRecorder, a: CopyColumnsArgs): void;
  /** target[i] = value; value must be finite (WGSL implementations may assume floats are). */
  fill(rec: CommandRecorder, a: FillArgs): void;
}

/**
 * @example
 * ```ts
 * const ew = await createElementwiseKernels(ctx);
 * // q = qkv[:, 0:768] for GPT-2's fused c_attn output [tokens, 2304]
 * ew.copyColumns(rec, { src: qkv, srcCols: 2304, srcOffset: 0, dst: q, dstCols: 768, dstOffset: 0, rows: tokens, cols: 768 });
 * ```
 */
export async function createElementwiseKernels(ctx: GpuContext): Promise<ElementwiseKernels> {
  const [axpy, addBias, copy, copyAcc, fill] = await Promise.all([
    ctx.pipelines.get(AXPY_KERNEL, 'f32', { WG }),
    ctx.pipelines.get(ADD_BIAS_KERNEL, 'f32', { WG }),
    ctx.pipelines.get(COPY_COLUMNS_KERNEL, 'f32', { WG, ACCUMULATE: false }),
    ctx.pipelines.get(COPY_COLUMNS_KERNEL, 'f32', { WG, ACCUMULATE: true }),
    ctx.pipelines.get(FILL_KERNEL, 'f32', { WG }),
  ]);
  const grid = (n: number) => grid1D(n, WG, ctx.limits.maxComputeWorkgroupsPerDimension);
  return {
    axpy(rec, a) {
      const op = 'axpy';
      const alpha = a.alpha ?? 1;
      requireCount(op, 'size', a.size);
      requireFinite(op, 'alpha', alpha);
      requireTensor(op, 'target', a.target, a.size, `size ${a.size}`);
      requireTensor(op, 'source', a.source, a.size, `size ${a.size}`);
      requireDistinct(op, { target: a.target }, { source: a.source });
      const g = grid(a.size);
      rec.dispatch(axpy, [a.source.buffer, a.target.buffer], packParams([['u32', a.size], ['u32', g.rowStride], ['f32', alpha]]), g.workgroups);
    },
    addBias(rec, a) {
      const op = 'addBias';
      requireCount(op, 'rows', a.rows);
      requireCount(op, 'cols', a.cols);
      requireTensor(op, 'target', a.target, a.rows * a.cols, `[${a.rows}, ${a.cols}]`);
      requireTensor(op, 'bias', a.bias, a.cols, `[${a.cols}]`);
      requireDistinct(op, { target: a.target }, { bias: a.bias });
      const g = grid(a.rows * a.cols);
      rec.dispatch(addBias, [a.bias.buffer, a.target.buffer],
        packParams([['u32', a.rows * a.cols], ['u32', a.cols], ['u32', g.rowStride]]), g.workgroups);
    },
    copyColumns(rec, a) {
      const op = 'copyColumns';
      const dstRowOffset = a.dstRowOffset ?? 0;
      const srcRowOffset = a.srcRowOffset ?? 0;
      requireCount(op, 'rows', a.rows);
      requireCount(op, 'cols', a.cols);
      for (const [name, value] of [['srcOffset', a.srcOffset], ['dstOffset', a.dstOffset], ['dstRowOffset', dstRowOffset], ['srcRowOffset', srcRowOffset]] as const) {
        requireCount(op, name, value, 0);
      }
      if (a.srcOffset + a.cols > a.srcCols || a.dstOffset + a.cols > a.dstCols) {
        throw new InvalidArgumentError(
          `${op}: columns [${a.srcOffset}, ${a.srcOffset + a.cols}) of src (${a.srcCols} per row) to ` +
            `[${a.dstOffset}, ${a.dstOffset + a.cols}) of dst (${a.dstCols} per row) fall outside a row.`,
        );
      }
      requireTensor(op, 'src', a.src, (srcRowOffset + a.rows - 1) * a.srcCols + a.srcOffset + a.cols, `[${srcRowOffset} + ${a.rows}, ${a.srcCols}]`);
      requireTensor(op, 'dst', a.dst, (dstRowOffset + a.rows - 1) * a.dstCols + a.dstOffset + a.cols,
        `[${dstRowOffset} + ${a.rows}, ${a.dstCols}]`);
      requireDistinct(op, { dst: a.dst }, { src: a.src });
      const g = grid(a.rows * a.cols);
      rec.dispatch(a.accumulate ? copyAcc : copy, [a.src.buffer, a.dst.buffer],
        packParams([
          ['u32', a.rows], ['u32', a.cols], ['u32', a.srcCols], ['u32', a.srcOffset],
          ['u32', a.dstCols], ['u32', a.dstOffset], ['u32', dstRowOffset], ['u32', srcRowOffset], ['u32', g.rowStride],
        ]), g.workgroups);
    },
    fill(rec, a) {
      const op = 'fill';
      requireCount(op, 'size', a.size);
      requireFinite(op, 'value', a.value);
      requireTensor(op, 'target', a.target, a.size, `size ${a.size}`);
      const g = grid(a.size);
      rec.dispatch(fill, [a.target.buffer], packParams([['u32', a.size], ['u32', g.rowStride], ['f32', a.value]]), g.workgroups);
    },
  };
}
