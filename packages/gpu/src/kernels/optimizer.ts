/**
 * AdamW (torch.optim.AdamW's update) and global gradient-norm clipping
 * (torch.nn.utils.clip_grad_norm_) on the GPU. The clip factor never leaves the GPU: adamw reads
 * it from the tensor clipCoefficient writes, so a step needs no readback; the norm (element 1)
 * can be read whenever the caller wants to log it.
 * Shaders: shaders/adamw.wgsl, shaders/sum-squares.wgsl, shaders/clip-coefficient.wgsl,
 * shaders/clip-accumulate.wgsl (DP-SGD's per-example clipping).
 * Expected values: PyTorch (scripts/make_transformer_op_fixtures.py).
 */
import sumLib from '../shaders/lib/workgroup-sum.wgsl.js';
import adamwSource from '../shaders/adamw.wgsl.js';
import sumSquaresSource from '../shaders/sum-squares.wgsl.js';
import clipSource from '../shaders/clip-coefficient.wgsl.js';
import clipAccumulateSource from '../shaders/clip-accumulate.wgsl.js';
import type { GpuContext } from '../device.js';
import { InvalidArgumentError } from '@webtune/errors';
import type { KernelDefinition } from '../pipeline-cache.js';
import { packParams, type CommandRecorder } from '../recorder.js';
import { createTensor, type GpuTensor } from '../tensor.js';
import { grid1D } from './grid.js';
import { requireCount, requireDistinct, requireFinite, requireTensor } from './tensor-checks.js';

const SUM = { path: 'shaders/lib/workgroup-sum.wgsl', source: sumLib };

export const ADAMW_KERNEL: KernelDefinition = {
  name: 'adamw',
  files: [{ path: 'shaders/adamw.wgsl', source: adamwSource }],
  bindings: ['read-write', 'read-write', 'read-write', 'read-write', 'read', 'uniform'],
};
export const SUM_SQUARES_KERNEL: KernelDefinition = {
  name: 'sum-squares',
  files: [SUM, { path: 'shaders/sum-squares.wgsl', source: sumSquaresSource }],
  bindings: ['read', 'read-write', 'uniform'],
};
export const CLIP_COEFFICIENT_KERNEL: KernelDefinition = {
  name: 'clip-coefficient',
  files: [SUM, { path: 'shaders/clip-coefficient.wgsl', source: clipSource }],
  bindings: ['read', 'read-write', 'uniform'],
};

export const CLIP_ACCUMULATE_KERNEL: KernelDefinition = {
  name: 'clip-accumulate',
  files: [{ path: 'shaders/clip-accumulate.wgsl', source: clipAccumulateSource }],
  bindings: ['read-write', 'read-write', 'read', 'read-write', 'uniform'],
};

const ADAMW_WG = 256;
const SUM_SQUARES_WG = 256;
const CLIP_WG = 64;

export interface AdamWStepArgs {
  param: GpuTensor;
  /** Zeroed by the step. */
  grad: GpuTensor;
  /** First moment (exp_avg), zeros before step 1. */
  m: GpuTensor;
  /** Second moment (exp_avg_sq), zeros before step 1. */
  v: GpuTensor;
  size: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count for bias correction */
  step: number;
  /** multiply grads by this first (e.g. 1/accumulation steps) */
  gradScale?: number;
  /** [2] f32 written by clipCoefficient: element 0 multiplies the gradient */
  clip?: GpuTensor;
}

export interface SumSquaresArgs {
  /** The gradient of one parameter tensor. */
  x: GpuTensor;
  size: number;
  /** One slot per parameter tensor. */
  partials: GpuTensor;
  slot: number;
}

export interface ClipCoefficientArgs {
  /** partials[0..count) from sumSquares. */
  partials: GpuTensor;
  count: number;
  /** Infinity: no clipping, only measure the norm. */
  maxNorm: number;
  /** The gradScale the adamw steps will use, so the norm is that of the scaled gradient. */
  gradScale?: number;
  /** [2] f32: out[0] = clip factor, out[1] = total norm. */
  out: GpuTensor;
}

export interface ClipAccumulateArgs {
  /** One example's gradient of one parameter tensor; zeroed by the kernel. */
  grad: GpuTensor;
  /** The running sum of clipped per-example gradients. */
  sum: GpuTensor;
  size: number;
  /** [2] from clipCoefficient over all of the example's tensors: element 0 multiplies the gradient. */
  clip: GpuTensor;
  /** Per-example norms; with `example` given, norms[example] = clip[1] (pass it for one tensor per example). */
  norms: GpuTensor;
  example?: number;
}

export interface OptimizerKernels {
  /**
   * torch.optim.AdamW (decoupled weight decay p -= lr*wd*p, then Adam with bias correction, eps
   * added after sqrt(v_hat)); sets grad to 0 afterwards so the next step can accumulate into it.
   */
  adamw(rec: CommandRecorder, a: AdamWStepArgs): void;
  /** partials[slot] = sum of squares of x (the grad of one parameter tensor) */
  sumSquares(rec: CommandRecorder, a: SumSquaresArgs): void;
  /**
   * out[0] = min(1, maxNorm / (sqrt(sum(partials[0..count))) * gradScale + 1e-6)) as
   * torch.nn.utils.clip_grad_norm_, out[1] = total norm of grad * gradScale.
   */
  clipCoefficient(rec: CommandRecorder, a: ClipCoefficientArgs): void;
  /**
   * DP-SGD's per-example clipping of one tensor (Opacus' clip_and_accumulate): sum += clip[0] * grad,
   * then grad = 0; optionally records the example's norm clip[1] in norms[example].
   */
  clipAccumulate(rec: CommandRecorder, a: ClipAccumulateArgs): void;
}

/**
 * @example
 * ```ts
 * const opt = await createOptimizerKernels(ctx);
 * const rec = new CommandRecorder(ctx, 'optimizer step');
 * params.forEach((p, i) => opt.sumSquares(rec, { x: p.grad, size: p.size, partials, slot: i }));
 * opt.clipCoefficient(rec, { partials, count: params.length, maxNorm: 1, gradScale: 1 / accum, out: clip });
 * for (const p of params) opt.adamw(rec, { ...p, lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step, gradScale: 1 / accum, clip });
 * rec.submit();
 * ```
 */
export async function createOptimizerKernels(ctx: GpuContext): Promise<OptimizerKernels> {
  const [adamw, sumSquares, clipCoefficient, clipAccumulate] = await Promise.all([
    ctx.pipelines.get(ADAMW_KERNEL, 'f32', { WG: ADAMW_WG }),
    ctx.pipelines.get(SUM_SQUARES_KERNEL, 'f32', { WG: SUM_SQUARES_WG }),
    ctx.pipelines.get(CLIP_COEFFICIENT_KERNEL, 'f32', { WG: CLIP_WG }),
    ctx.pipelines.get(CLIP_ACCUMULATE_KERNEL, 'f32', { WG: ADAMW_WG }),
  ]);
  // Bound as `clip` when the caller passes none: factor 1. Lives as long as the device.
  const noClip = createTensor(ctx, { shape: [2], label: 'adamw no-clip factor', data: Float32Array.from([1, 0]) });
  const maxGroups = ctx.limits.maxComputeWorkgroupsPerDimension;
  return {
    adamw(rec, a) {
      const op = 'adamw';
      requireCount(op, 'size', a.size);
      requireCount(op, 'step', a.step);
      const gradScale = a.gradScale ?? 1;
      for (const [name, value] of [['lr', a.lr], ['beta1', a.beta1], ['beta2', a.beta2], ['eps', a.eps], ['weightDecay', a.weightDecay], ['gradScale', gradScale]] as const) {
        requireFinite(op, name, value);
      }
      if (!(a.beta1 >= 0 && a.beta1 < 1 && a.beta2 >= 0 && a.beta2 < 1)) {
        throw new InvalidArgumentError(`${op}: betas must be in [0, 1), got (${a.beta1}, ${a.beta2}).`);
      }
      if (a.lr < 0 || a.eps < 0 || a.weightDecay < 0) {
        throw new InvalidArgumentError(`${op}: lr, eps and weightDecay must be >= 0, got lr ${a.lr}, eps ${a.eps}, weightDecay ${a.weightDecay}.`);
      }
      const tensors = { param: a.param, grad: a.grad, m: a.m, v: a.v };
      for (const [name, t] of Object.entries(tensors)) requireTensor(op, name, t, a.size, `size ${a.size}`);
      const clip = a.clip ?? noClip;
      requireTensor(op, 'clip', clip, 2, '[2] from clipCoefficient');
      requireDistinct(op, tensors, { clip });
      // As torch's single-tensor AdamW: the bias corrections in double precision on the host.
      const biasCorrection1 = 1 - a.beta1 ** a.step;
      const biasCorrection2 = 1 - a.beta2 ** a.step;
      const g = grid1D(a.size, ADAMW_WG, maxGroups);
      rec.dispatch(adamw, [a.param.buffer, a.grad.buffer, a.m.buffer, a.v.buffer, clip.buffer],
        packParams([
          ['u32', a.size], ['u32', g.rowStride],
          ['f32', 1 - a.lr * a.weightDecay], ['f32', a.beta1], ['f32', a.beta2], ['f32', 1 - a.beta1], ['f32', 1 - a.beta2],
          ['f32', a.lr / biasCorrection1], ['f32', Math.sqrt(biasCorrection2)], ['f32', a.eps], ['f32', gradScale],
        ]), g.workgroups);
    },
    sumSquares(rec, a) {
      const op = 'sumSquares';
      requireCount(op, 'size', a.size);
      requireCount(op, 'slot', a.slot, 0);
      requireTensor(op, 'x', a.x, a.size, `size ${a.size}`);
      requireTensor(op, 'partials', a.partials, a.slot + 1, `slot ${a.slot}`);
      requireDistinct(op, { partials: a.partials }, { x: a.x });
      rec.dispatch(sumSquares, [a.x.buffer, a.partials.buffer], packParams([['u32', a.size], ['u32', a.slot]]), [1]);
    },
    clipCoefficient(rec, a) {
      const op = 'clipCoefficient';
      const gradScale = a.gradScale ?? 1;
      requireCount(op, 'count', a.count);
      requireFinite(op, 'gradScale', gradScale);
      if (!(a.maxNorm > 0)) throw new InvalidArgumentError(`${op}: maxNorm must be > 0 (Infinity to only measure), got ${a.maxNorm}.`);
      requireTensor(op, 'partials', a.partials, a.count, `[${a.count}]`);
      requireTensor(op, 'out', a.out, 2, '[2]');
      requireDistinct(op, { out: a.out }, { partials: a.partials });
      const clip = Number.isFinite(a.maxNorm);
      rec.dispatch(clipCoefficient, [a.partials.buffer, a.out.buffer],
        packParams([['u32', a.count], ['u32', clip ? 1 : 0], ['f32', clip ? a.maxNorm : 0], ['f32', gradScale]]), [1]);
    },
    clipAccumulate(rec, a) {
      const op = 'clipAccumulate';
      requireCount(op, 'size', a.size);
      requireTensor(op, 'grad', a.grad, a.size, `size ${a.size}`);
      requireTensor(op, 'sum', a.sum, a.size, `size ${a.size}`);
      requireTensor(op, 'clip', a.clip, 2, '[2] from clipCoefficient');
      const record = a.example !== undefined;
      if (record) {
        requireCount(op, 'example', a.example!, 0);
        requireTensor(op, 'norms', a.norms, a.example! + 1, `example ${a.example}`);
      }
      requireDistinct(op, { grad: a.grad, sum: a.sum, norms: a.norms }, { clip: a.clip });
      const g = grid1D(a.size, ADAMW_WG, maxGroups);
      rec.dispatch(clipAccumulate, [a.grad.buffer, a.sum.buffer, a.clip.buffer, a.norms.buffer],
        packParams([['u32', a.size], ['u32', g.rowStride], ['u32', record ? 1 : 0], ['u32', a.example ?? 0]]), g.workgroups);
    },
  };
}
