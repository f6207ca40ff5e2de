/**
 * Cross-entropy of LM-head logits, one chunk of rows at a time, with the logits gradient written in
 * place (softmax - onehot, scaled), so the [rows, vocab] logits buffer is the only one of that
 * size. Numerically stable (max-subtracted), deterministic. Logits may be f32 or f16 (`dtype`):
 * f16 is read into f32, the max, log-sum-exp, loss and gradient are f32, and the gradient is stored
 * back as f16; losses are always f32. Shader: shaders/cross-entropy.wgsl.
 * Reference values: torch.nn.functional.cross_entropy (scripts/make_attention_fixtures.py).
 */
import source from '../shaders/cross-entropy.wgsl.js';
import type { GpuContext } from '../device.js';
import { InvalidArgumentError } from '@webtune/errors';
import { requireElementType } from './tensor-checks.js';
import type { ElementType, KernelDefinition } from '../pipeline-cache.js';
import { packParams, type CommandRecorder } from '../recorder.js';
import type { GpuTensor } from '../tensor.js';
import { grid1D } from './grid.js';

/** A target that contributes no loss and no gradient (PyTorch's ignore_index), as a u32. */
export const IGNORE_INDEX = 0xffffffff;

export const CROSS_ENTROPY_KERNEL: KernelDefinition = {
  name: 'cross-entropy',
  files: [{ path: 'shaders/cross-entropy.wgsl', source }],
  bindings: ['read-write', 'read', 'read-write', 'uniform'],
};

export interface CrossEntropyKernelOptions {
  /** Element type of the logits (and of the gradient written over them): 'f16' needs shader-f16. Default 'f32'. */
  dtype?: ElementType;
}

export interface CrossEntropyArgs {
  /** [rows, vocab] of the kernel's dtype; replaced in place by gradScale * (softmax - onehot(target)). */
  logits: GpuTensor;
  /** Elements from one row of logits to the next (default vocab): padded rows, see paddedRowStride. */
  logitsRowStride?: number;
  /** u32 [totalRows]; IGNORE_INDEX for rows without a target. */
  targets: GpuTensor;
  /** f32 [totalRows]; rows targetOffset .. targetOffset + rows - 1 are written. */
  losses: GpuTensor;
  rows: number;
  vocab: number;
  /** Index of this chunk's first row in targets and losses. */
  targetOffset: number;
  /** 1 / (number of targets not ignored) for a mean loss, 1 for a sum. */
  gradScale: number;
}

export interface CrossEntropyKernel {
  readonly dtype: ElementType;
  /**
   * For each row r < rows of logits [rows, vocab] (one chunk of the LM head output):
   * losses[targetOffset + r] = logsumexp(logits[r]) - logits[r, t] with t = targets[targetOffset + r];
   * 0 when t == IGNORE_INDEX, NaN when t >= vocab (validate targets on the CPU; NaN makes a bug visible).
   * Then logits[r] is replaced in place by gradScale * (softmax(logits[r]) - onehot(t)) (a zero row
   * when ignored), ready for the matmuls that give the LM head's input gradient.
   *
   * @example
   * ```ts
   * const ce = await createCrossEntropyKernel(ctx);
   * ce.encode(rec, { logits, targets, losses, rows: 512, vocab: 151936, targetOffset: 0, gradScale: 1 / counted });
   * ```
   */
  encode(recorder: CommandRecorder, args: CrossEntropyArgs): void;
}

/** Compiles the kernel for logits of element type `dtype` (default f32). */
export async function createCrossEntropyKernel(ctx: GpuContext, options: CrossEntropyKernelOptions = {}): Promise<CrossEntropyKernel> {
  const dtype = requireElementType(ctx, 'cross-entropy', options.dtype);
  const compiled = await ctx.pipelines.get(CROSS_ENTROPY_KERNEL, dtype);
  return {
    dtype,
    encode(recorder, a) {
      const { rows, vocab, targetOffset } = a;
      for (const [name, value] of [['rows', rows], ['vocab', vocab]] as const) {
        if (!Number.isInteger(value) || value < 1) throw new InvalidArgumentError(`cross-entropy: ${name} must be a positive integer, got ${value}.`);
      }
      if (!Number.isInteger(targetOffset) || targetOffset < 0) {
        throw new InvalidArgumentError(`cross-entropy: targetOffset must be a non-negative integer, got ${targetOffset}.`);
      }
      if (a.logits.dtype !== dtype) {
        throw new InvalidArgumentError(
          `cross-entropy: logits "${a.logits.label}" is ${a.logits.dtype} but the kernel was created for ${dtype}.`,
        );
      }
      const stride = a.logitsRowStride ?? vocab;
      if (!Number.isInteger(stride) || stride < vocab) {
        throw new InvalidArgumentError(`cross-entropy: logitsRowStride must be an integer of at least vocab (${vocab}), got ${stride}.`);
      }
      const extent = (rows - 1) * stride + vocab;
      if (a.logits.size < extent) {
        throw new InvalidArgumentError(
          `cross-entropy: logits "${a.logits.label}" must be ${dtype} with at least ${rows} x ${vocab} elements (rows x vocab), rows ${stride} apart: ${extent}; ` +
            `got ${a.logits.dtype} [${a.logits.shape.join(', ')}].`,
        );
      }
      const needed = targetOffset + rows;
      if (a.targets.dtype !== 'u32' || a.targets.size < needed) {
        throw new InvalidArgumentError(
          `cross-entropy: targets "${a.targets.label}" must be u32 with at least targetOffset ${targetOffset} + rows ${rows} = ${needed} elements; ` +
            `got ${a.targets.dtype} [${a.targets.shape.join(', ')}].`,
        );
      }
      if (a.losses.dtype !== 'f32' || a.losses.size < needed) {
        throw new InvalidArgumentError(
          `cross-entropy: losses "${a.losses.label}" must be f32 with at least targetOffset ${targetOffset} + rows ${rows} = ${needed} elements; ` +
            `got ${a.losses.dtype} [${a.losses.shape.join(', ')}].`,
        );
      }
      if (a.logits.buffer === a.losses.buffer || a.logits.buffer === a.targets.buffer || a.losses.buffer === a.targets.buffer) {
        throw new InvalidArgumentError('cross-entropy: logits, targets and losses must be three distinct tensors.');
      }
      if (!Number.isFinite(a.gradScale)) throw new InvalidArgumentError(`cross-entropy: gradScale must be finite, got ${a.gradScale}.`);
      const g = grid1D(rows, 1, ctx.limits.maxComputeWorkgroupsPerDimension);
      recorder.dispatch(compiled, [a.logits.buffer, a.targets.buffer, a.losses.buffer],
        packParams([['u32', rows], ['u32', vocab], ['u32', targetOffset], ['u32', g.rowStride], ['f32', a.gradScale], ['u32', stride]]), g.workgroups);
    },
  };
}
