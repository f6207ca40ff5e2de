/**
 * Inverted dropout with a counter-based mask: keep(i) is a hash of (seed, stream, i), so the
 * backward pass recomputes the mask instead of storing it, and a run replays exactly from its
 * seed. `stream` tells apart the dropout sites of one step (layer and position in the block).
 * Tensors are f32 or f16 (`dtype`, scaling in f32); the mask does not depend on the dtype.
 * Shaders: shaders/dropout-forward.wgsl, shaders/dropout-backward.wgsl, shaders/lib/dropout-hash.wgsl.
 */
import hashLib from '../shaders/lib/dropout-hash.wgsl.js';
import forwardSource from '../shaders/dropout-forward.wgsl.js';
import backwardSource from '../shaders/dropout-backward.wgsl.js';
import type { GpuContext } from '../device.js';
import { InvalidArgumentError } from '@webtune/errors';
import type { ElementType, KernelDefinition } from '../pipeline-cache.js';
import { packParams, type CommandRecorder } from '../recorder.js';
import type { GpuTensor } from '../tensor.js';
import { grid1D } from './grid.js';
import { requireCount, requireElementType, requireDistinct, requireTensor } from './tensor-checks.js';

const HASH = { path: 'shaders/lib/dropout-hash.wgsl', source: hashLib };

export const DROPOUT_FORWARD_KERNEL: KernelDefinition = {
  name: 'dropout-forward',
  files: [HASH, { path: 'shaders/dropout-forward.wgsl', source: forwardSource }],
  bindings: ['read', 'read-write', 'uniform'],
};
export const DROPOUT_BACKWARD_KERNEL: KernelDefinition = {
  name: 'dropout-backward',
  files: [HASH, { path: 'shaders/dropout-backward.wgsl', source: backwardSource }],
  bindings: ['read', 'read-write', 'uniform'],
};

const WG = 256;

function lowbias32(v: number): number {
  let x = v >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x ^= x >>> 16;
  return x >>> 0;
}

/** The mask's u32 hash of (seed, stream, index); bit-identical to dropout_hash in shaders/lib/dropout-hash.wgsl. */
export function dropoutHash(seed: number, stream: number, index: number): number {
  const keyA = lowbias32((seed ^ 0x9e3779b9) >>> 0);
  const keyB = lowbias32((stream ^ keyA ^ 0x85ebca6b) >>> 0);
  return lowbias32((lowbias32((index + keyA) >>> 0) ^ keyB) >>> 0);
}

/** floor(p * 2^32): an element is kept when its hash is >= this. */
export function dropoutThreshold(p: number): number {
  return Math.min(0xffffffff, Math.floor(p * 4294967296));
}

/**
 * Whether element `index` survives dropout with probability `p` under (seed, stream): the CPU
 * twin of the shaders' mask, for tests and for anyone replaying a step.
 *
 * @example
 * ```ts
 * const kept = Array.from({ length: 8 }, (_, i) => dropoutKeep(42, 0, i, 0.1));
 * ```
 */
export function dropoutKeep(seed: number, stream: number, index: number, p: number): boolean {
  return dropoutHash(seed, stream, index) >= dropoutThreshold(p);
}

export interface DropoutOptions {
  /** Element type of x, y and the gradients (default 'f32'; 'f16' needs shader-f16). */
  dtype?: ElementType;
}

export interface DropoutForwardArgs {
  x: GpuTensor;
  y: GpuTensor;
  size: number;
  /** Drop probability, 0 <= p < 1. */
  p: number;
  /** u32 */
  seed: number;
  /** u32: one per dropout site in a step, so sites do not share a mask. */
  stream: number;
}

export interface DropoutBackwardArgs {
  gradOutput: GpuTensor;
  gradInput: GpuTensor;
  size: number;
  p: number;
  seed: number;
  stream: number;
  /** Add into gradInput instead of overwriting it. */
  accumulate?: boolean;
}

export interface DropoutKernels {
  readonly dtype: ElementType;
  /** y = x * keep / (1 - p), keep = hash(seed, stream, i) >= p * 2^32 (as u32 arithmetic) */
  forward(rec: CommandRecorder, a: DropoutForwardArgs): void;
  /** gradInput (+)= gradOutput * keep / (1 - p) with the same mask */
  backward(rec: CommandRecorder, a: DropoutBackwardArgs): void;
}

/** Params shared by both shaders; size must already be checked. */
function maskParams(op: string, size: number, p: number, seed: number, stream: number, rowStride: number): ArrayBuffer {
  if (!(p >= 0 && p < 1)) throw new InvalidArgumentError(`${op}: p must be in [0, 1), got ${p}.`);
  for (const [name, value] of [['seed', seed], ['stream', stream]] as const) {
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
      throw new InvalidArgumentError(`${op}: ${name} must be an integer in [0, 2^32), got ${value}.`);
    }
  }
  return packParams([
    ['u32', size], ['u32', rowStride], ['u32', seed], ['u32', stream],
    ['u32', dropoutThreshold(p)], ['f32', 1 / (1 - p)],
  ]);
}

/**
 * @example
 * ```ts
 * const dropout = await createDropoutKernels(ctx); // or (ctx, { dtype: 'f16' })
 * dropout.forward(rec, { x, y, size, p: 0.1, seed: step, stream: layer * 4 + 1 });
 * dropout.backward(rec, { gradOutput: dy, gradInput: dx, size, p: 0.1, seed: step, stream: layer * 4 + 1 });
 * ```
 */
export async function createDropoutKernels(ctx: GpuContext, options: DropoutOptions = {}): Promise<DropoutKernels> {
  const dtype = requireElementType(ctx, 'createDropoutKernels', options.dtype);
  const [forward, backward, backwardAcc] = await Promise.all([
    ctx.pipelines.get(DROPOUT_FORWARD_KERNEL, dtype, { WG }),
    ctx.pipelines.get(DROPOUT_BACKWARD_KERNEL, dtype, { WG, ACCUMULATE: false }),
    ctx.pipelines.get(DROPOUT_BACKWARD_KERNEL, dtype, { WG, ACCUMULATE: true }),
  ]);
  const grid = (n: number) => grid1D(n, WG, ctx.limits.maxComputeWorkgroupsPerDimension);
  return {
    dtype,
    forward(rec, a) {
      const op = 'dropout forward';
      requireCount(op, 'size', a.size);
      const g = grid(a.size);
      const params = maskParams(op, a.size, a.p, a.seed, a.stream, g.rowStride);
      requireTensor(op, 'x', a.x, a.size, `size ${a.size}`, dtype);
      requireTensor(op, 'y', a.y, a.size, `size ${a.size}`, dtype);
      requireDistinct(op, { y: a.y }, { x: a.x });
      rec.dispatch(forward, [a.x.buffer, a.y.buffer], params, g.workgroups);
    },
    backward(rec, a) {
      const op = 'dropout backward';
      requireCount(op, 'size', a.size);
      const g = grid(a.size);
      const params = maskParams(op, a.size, a.p, a.seed, a.stream, g.rowStride);
      requireTensor(op, 'gradOutput', a.gradOutput, a.size, `size ${a.size}`, dtype);
      requireTensor(op, 'gradInput', a.gradInput, a.size, `size ${a.size}`, dtype);
      requireDistinct(op, { gradInput: a.gradInput }, { gradOutput: a.gradOutput });
      rec.dispatch(a.accumulate ? backwardAcc : backward, [a.gradOutput.buffer, a.gradInput.buffer], params, g.workgroups);
    },
  };
}
