/**
 * Small building blocks of a transformer step: axpy (gradient and residual adds), bias add,
 * column-block copies (fused qkv split, head merge, KV cache append), fill, and casts between
 * f32 and f16 (master weights and their half copies). The family's tensors are f32 or f16
 * (`dtype`; biases stay f32), arithmetic f32; cast takes either dtype on each side.
 * Shaders: shaders/axpy.wgsl, shaders/add-bias.wgsl, shaders/copy-columns.wgsl, shaders/fill.wgsl,
 * shaders/cast.wgsl.
 * Expected values: PyTorch (scripts/make_transformer_op_fixtures.py).
 */
import axpySource from '../shaders/axpy.wgsl.js';
import addBiasSource from '../shaders/add-bias.wgsl.js';
import copyColumnsSource from '../shaders/copy-columns.wgsl.js';
import fillSource from '../shaders/fill.wgsl.js';
import castSource from '../shaders/cast.wgsl.js';
import type { GpuContext } from '../device.js';
import { InvalidArgumentError } from '@webtune/errors';
import type { CompiledKernel, ElementType, KernelDefinition } from '../pipeline-cache.js';
import { packParams, type CommandRecorder } from '../recorder.js';
import type { GpuTensor } from '../tensor.js';
import { grid1D } from './grid.js';
import { compileLaneForms, laneForms, laneGrid } from './lanes.js';
import { requireCount, requireElementType, requireDistinct, requireFinite, requireTensor } from './tensor-checks.js';

/** In scalar and vec4 form (kernels/lanes.ts): vec4 where the size is a multiple of 4. */
export const AXPY_KERNELS = laneForms({
  name: 'axpy',
  files: [{ path: 'shaders/axpy.wgsl', source: axpySource }],
  bindings: ['read', 'read-write', 'uniform'],
});
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

/**
 * The cast kernel from `src` to `dst`: shaders/cast.wgsl after a one-line snippet naming the two
 * element types (`alias src_elem = f32; alias dst_elem = f16;`).
 */
export function castKernel(src: ElementType, dst: ElementType): KernelDefinition {
  return {
    name: `cast-${src}-to-${dst}`,
    files: [
      { path: `<cast types ${src} -> ${dst}>`, source: `alias src_elem = ${src};\nalias dst_elem = ${dst};\n` },
      { path: 'shaders/cast.wgsl', source: castSource },
    ],
    bindings: ['read', 'read-write', 'uniform'],
  };
}

const WG = 256;

/** f16's largest finite value. */
const F16_MAX = 65504;

/**
 * The dtype option of a kernel family: 'f32' when not given, and 'f16' only on a device with
 * shader-f16. Shared by the norm, activation, embedding, elementwise and dropout families.
 */
export interface ElementwiseOptions {
  /** Element type of axpy, addBias's target, copyColumns and fill (default 'f32'; 'f16' needs shader-f16). cast takes either. */
  dtype?: ElementType;
}

export interface AxpyArgs {
  target: GpuTensor;
  source: GpuTensor;
  size: number;
  /** Default 1. */
  alpha?: number;
}

export interface AddBiasArgs {
  /** [rows, rowStride], the family's dtype */
  target: GpuTensor;
  /** [cols], f32 */
  bias: GpuTensor;
  rows: number;
  cols: number;
  /** Elements from one row of target to the next (default cols; more for padded rows, whose padding is left alone). */
  rowStride?: number;
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

export interface CastArgs {
  /** f32 or f16, whatever the family's dtype. */
  src: GpuTensor;
  /** f32 or f16; the same dtype as src makes a copy. */
  dst: GpuTensor;
  size: number;
  /** dst += src (the sum in f32) instead of dst = src. */
  accumulate?: boolean;
}

export interface ElementwiseKernels {
  /** Element type of axpy, addBias, copyColumns and fill. */
  readonly dtype: ElementType;
  /** target += alpha * source (size elements) */
  axpy(rec: CommandRecorder, a: AxpyArgs): void;
  /** target[r, c] += bias[c] for c < cols, rows rowStride apart (default cols) */
  addBias(rec: CommandRecorder, a: AddBiasArgs): void;
  /**
   * dst[dstRowOffset + r, dstOffset + c] (= or +=) src[srcRowOffset + r, srcOffset + c] for r < rows, c < cols;
   * row strides srcCols / dstCols (splits GPT-2's fused qkv, writes KV caches).
   */
  copyColumns(rec: CommandRecorder, a: CopyColumnsArgs): void;
  /**
   * target[i] = value; value must be finite (WGSL implementations may assume floats are), and
   * within +-65504 for f16.
   */
  fill(rec: CommandRecorder, a: FillArgs): void;
  /**
   * dst[i] (= or +=) src[i] for i < size, converted from src's dtype to dst's (f32 -> f16 rounds;
   * f16 -> f32 is exact; the accumulating add is f32). Works whatever the family's dtype; f16 on
   * either side needs shader-f16.
   */
  cast(rec: CommandRecorder, a: CastArgs): void;
}

/**
 * @example
 * ```ts
 * const ew = await createElementwiseKernels(ctx); // or (ctx, { dtype: 'f16' })
 * // q = qkv[:, 0:768] for GPT-2's fused c_attn output [tokens, 2304]
 * ew.copyColumns(rec, { src: qkv, srcCols: 2304, srcOffset: 0, dst: q, dstCols: 768, dstOffset: 0, rows: tokens, cols: 768 });
 * // the f16 copy of an f32 master weight, after the optimizer step
 * ew.cast(rec, { src: loraA, dst: loraAHalf, size: loraA.size });
 * ```
 */
export async function createElementwiseKernels(ctx: GpuContext, options: ElementwiseOptions = {}): Promise<ElementwiseKernels> {
  const dtype = requireElementType(ctx, 'createElementwiseKernels', options.dtype);
  const castPairs: [ElementType, ElementType][] = ctx.features.shaderF16
    ? [['f32', 'f32'], ['f32', 'f16'], ['f16', 'f32'], ['f16', 'f16']]
    : [['f32', 'f32']];
  const castKernels = Promise.all(castPairs.map(async ([src, dst]) => {
    const definition = castKernel(src, dst);
    // Compiled with elem f16 whenever either side is f16, for the prelude's `enable f16;`.
    const elem: ElementType = src === 'f16' || dst === 'f16' ? 'f16' : 'f32';
    const [plain, acc] = await Promise.all([
      ctx.pipelines.get(definition, elem, { WG, ACCUMULATE: false }),
      ctx.pipelines.get(definition, elem, { WG, ACCUMULATE: true }),
    ]);
    return [`${src}->${dst}`, { plain, acc }] as const;
  }));
  const [axpy, addBias, copy, copyAcc, fill, casts] = await Promise.all([
    compileLaneForms(ctx, AXPY_KERNELS, dtype, { WG }),
    ctx.pipelines.get(ADD_BIAS_KERNEL, dtype, { WG }),
    ctx.pipelines.get(COPY_COLUMNS_KERNEL, dtype, { WG, ACCUMULATE: false }),
    ctx.pipelines.get(COPY_COLUMNS_KERNEL, dtype, { WG, ACCUMULATE: true }),
    ctx.pipelines.get(FILL_KERNEL, dtype, { WG }),
    castKernels,
  ]);
  const castPipelines = new Map<string, { plain: CompiledKernel; acc: CompiledKernel }>(casts);
  const grid = (n: number) => grid1D(n, WG, ctx.limits.maxComputeWorkgroupsPerDimension);
  return {
    dtype,
    axpy(rec, a) {
      const op = 'axpy';
      const alpha = a.alpha ?? 1;
      requireCount(op, 'size', a.size);
      requireFinite(op, 'alpha', alpha);
      requireTensor(op, 'target', a.target, a.size, `size ${a.size}`, dtype);
      requireTensor(op, 'source', a.source, a.size, `size ${a.size}`, dtype);
      requireDistinct(op, { target: a.target }, { source: a.source });
      const { lanes, count, grid: g } = laneGrid(ctx, a.size, WG);
      rec.dispatch(axpy[lanes], [a.source.buffer, a.target.buffer], packParams([['u32', count], ['u32', g.rowStride], ['f32', alpha]]), g.workgroups);
    },
    addBias(rec, a) {
      const op = 'addBias';
      requireCount(op, 'rows', a.rows);
      requireCount(op, 'cols', a.cols);
      const ld = a.rowStride ?? a.cols;
      requireCount(op, 'rowStride', ld);
      if (ld < a.cols) throw new InvalidArgumentError(`${op}: rowStride ${ld} is less than cols ${a.cols}; rows would overlap.`);
      requireTensor(op, 'target', a.target, (a.rows - 1) * ld + a.cols, `[${a.rows}, ${ld}]`, dtype);
      requireTensor(op, 'bias', a.bias, a.cols, `[${a.cols}]`, 'f32');
      requireDistinct(op, { target: a.target }, { bias: a.bias });
      const g = grid(a.rows * a.cols);
      rec.dispatch(addBias, [a.bias.buffer, a.target.buffer],
        packParams([['u32', a.rows * a.cols], ['u32', a.cols], ['u32', g.rowStride], ['u32', ld]]), g.workgroups);
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
      requireTensor(op, 'src', a.src, (srcRowOffset + a.rows - 1) * a.srcCols + a.srcOffset + a.cols,
        `[${srcRowOffset} + ${a.rows}, ${a.srcCols}]`, dtype);
      requireTensor(op, 'dst', a.dst, (dstRowOffset + a.rows - 1) * a.dstCols + a.dstOffset + a.cols,
        `[${dstRowOffset} + ${a.rows}, ${a.dstCols}]`, dtype);
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
      if (dtype === 'f16' && Math.abs(a.value) > F16_MAX) {
        throw new InvalidArgumentError(`${op}: value ${a.value} is outside f16's finite range (+-${F16_MAX}).`);
      }
      requireTensor(op, 'target', a.target, a.size, `size ${a.size}`, dtype);
      const g = grid(a.size);
      rec.dispatch(fill, [a.target.buffer], packParams([['u32', a.size], ['u32', g.rowStride], ['f32', a.value]]), g.workgroups);
    },
    cast(rec, a) {
      const op = 'cast';
      requireCount(op, 'size', a.size);
      for (const [name, t] of [['src', a.src], ['dst', a.dst]] as const) {
        if (t.dtype !== 'f32' && t.dtype !== 'f16') {
          throw new InvalidArgumentError(`${op}: ${name} "${t.label}" must be f32 or f16; got ${t.dtype} [${t.shape.join(', ')}].`);
        }
        requireTensor(op, name, t, a.size, `size ${a.size}`, t.dtype);
      }
      const pipelines = castPipelines.get(`${a.src.dtype}->${a.dst.dtype}`);
      if (!pipelines) {
        throw new InvalidArgumentError(
          `${op}: ${a.src.dtype} "${a.src.label}" to ${a.dst.dtype} "${a.dst.label}" needs the 'shader-f16' feature, which this device does not have.`,
        );
      }
      requireDistinct(op, { dst: a.dst }, { src: a.src });
      const g = grid(a.size);
      rec.dispatch(a.accumulate ? pipelines.acc : pipelines.plain, [a.src.buffer, a.dst.buffer],
        packParams([['u32', a.size], ['u32', g.rowStride]]), g.workgroups);
    },
  };
}
