/**
 * AdamW over an adapter's trainable tensors (any method; its learningRateScale multiplies the rate), one fused kernel per parameter tensor (decoupled weight decay,
 * bias-corrected moments, as torch.optim.AdamW), preceded by global-norm clipping computed on the
 * GPU (as torch.nn.utils.clip_grad_norm_): per-tensor sums of squares, then one coefficient that
 * every AdamW dispatch reads, so no gradient comes back to the CPU. The kernel clears each
 * gradient after using it, ready for the next accumulation.
 */
import { CommandRecorder, createElementwiseKernels, createOptimizerKernels, createTensor, readF32, writeTensor, type GpuContext, type GpuTensor, type ElementwiseKernels, type OptimizerKernels } from '@webtune/gpu';
import { InvalidArgumentError } from '@webtune/errors';
import type { Adapter, HostTensor } from '@webtune/model';

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Global gradient-norm limit; Infinity measures the norm without clipping. */
  maxGradNorm: number;
}

export const DEFAULT_ADAMW: AdamWOptions = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 };

interface Slot {
  key: string;
  param: GpuTensor;
  grad: GpuTensor;
  m: GpuTensor;
  v: GpuTensor;
}

export class AdamW {
  private readonly slots: Slot[] = [];
  private readonly partials: GpuTensor;
  private readonly clip: GpuTensor;
  /** Optimizer steps taken (bias correction uses step + 1). */
  step = 0;
  /** FedProx: mu and a copy of the parameters the proximal term pulls towards. */
  private proximal: { mu: number; reference: GpuTensor[] } | undefined;

  private constructor(
    private readonly ctx: GpuContext,
    private readonly kernels: OptimizerKernels,
    private readonly elementwise: ElementwiseKernels,
    private readonly adapter: Adapter,
    readonly options: AdamWOptions,
  ) {
    for (const t of adapter.trainable()) {
      const zeros = new Float32Array(t.param.size);
      this.slots.push({
        key: t.key,
        param: t.param,
        grad: t.grad,
        m: createTensor(ctx, { shape: t.param.shape, label: 'adamw moments', data: zeros }),
        v: createTensor(ctx, { shape: t.param.shape, label: 'adamw moments', data: zeros }),
      });
    }
    this.partials = createTensor(ctx, { shape: [this.slots.length], label: 'grad norm partials' });
    this.clip = createTensor(ctx, { shape: [2], label: 'grad clip' });
  }

  static async create(ctx: GpuContext, adapter: Adapter, options: Partial<AdamWOptions> = {}): Promise<AdamW> {
    const [kernels, elementwise] = await Promise.all([createOptimizerKernels(ctx), createElementwiseKernels(ctx)]);
    return new AdamW(ctx, kernels, elementwise, adapter, { ...DEFAULT_ADAMW, ...options });
  }

  /**
   * FedProx (Li et al. 2020): from now on every update adds mu (w - w0) to the gradient, with w0
   * the parameters as they are at this call (a federated round's global adapter). 0 turns it off.
   */
  setProximal(mu: number): void {
    if (!(mu >= 0) || !Number.isFinite(mu)) throw new InvalidArgumentError(`The proximal weight mu must be >= 0, got ${mu}.`);
    for (const t of this.proximal?.reference ?? []) t.release();
    this.proximal = undefined;
    if (mu === 0) return;
    const rec = new CommandRecorder(this.ctx, 'fedprox reference');
    const reference = this.slots.map((s) => {
      const t = createTensor(this.ctx, { shape: s.param.shape, label: 'fedprox reference' });
      this.elementwise.cast(rec, { src: s.param, dst: t, size: s.param.size });
      return t;
    });
    rec.submit();
    this.proximal = { mu, reference };
  }

  /**
   * One update with learning rate `lr` from gradients accumulated over `microBatches` micro-batches
   * (averaged here). Returns the global gradient norm before clipping.
   */
  async update(lr: number, microBatches = 1): Promise<{ gradNorm: number }> {
    const o = this.options;
    const gradScale = 1 / microBatches;
    const rec = new CommandRecorder(this.ctx, 'adamw');
    if (this.proximal) {
      // The gradients hold a sum over micro-batches that the kernel divides by microBatches.
      const w = this.proximal.mu * microBatches;
      this.slots.forEach((s, i) => {
        this.elementwise.axpy(rec, { target: s.grad, source: s.param, size: s.param.size, alpha: w });
        this.elementwise.axpy(rec, { target: s.grad, source: this.proximal!.reference[i]!, size: s.param.size, alpha: -w });
      });
    }
    this.slots.forEach((s, slot) => this.kernels.sumSquares(rec, { x: s.grad, size: s.grad.size, partials: this.partials, slot }));
    this.kernels.clipCoefficient(rec, { partials: this.partials, count: this.slots.length, maxNorm: o.maxGradNorm, gradScale, out: this.clip });
    this.step += 1;
    for (const s of this.slots) {
      this.kernels.adamw(rec, {
        param: s.param, grad: s.grad, m: s.m, v: s.v, size: s.param.size, lr: lr * this.adapter.learningRateScale,
        beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay, step: this.step, gradScale, clip: this.clip,
      });
    }
    rec.submit();
    this.adapter.version++;
    const clip = await readF32(this.ctx, this.clip);
    return { gradNorm: clip[1]! };
  }

  /** Moments under `<key>.exp_avg` / `<key>.exp_avg_sq`, for checkpoints. */
  async readState(): Promise<Map<string, HostTensor>> {
    const out = new Map<string, HostTensor>();
    for (const s of this.slots) {
      out.set(`${s.key}.exp_avg`, { data: await readF32(this.ctx, s.m), shape: [...s.m.shape] });
      out.set(`${s.key}.exp_avg_sq`, { data: await readF32(this.ctx, s.v), shape: [...s.v.shape] });
    }
    return out;
  }

  writeState(state: ReadonlyMap<string, HostTensor>, step: number): void {
    for (const s of this.slots) {
      const m = state.get(`${s.key}.exp_avg`);
      const v = state.get(`${s.key}.exp_avg_sq`);
      if (!m || !v) throw new InvalidArgumentError(`The optimizer state has no moments for ${s.key}; it was saved for another adapter.`);
      writeTensor(this.ctx, s.m, m.data);
      writeTensor(this.ctx, s.v, v.data);
    }
    this.step = step;
  }

  /** GPU bytes of the moments. */
  get byteLength(): number {
    return this.slots.reduce((n, s) => n + s.m.byteLength + s.v.byteLength, 0);
  }

  release(): void {
    for (const s of this.slots) {
      s.m.release();
      s.v.release();
    }
    this.partials.release();
    this.clip.release();
    for (const t of this.proximal?.reference ?? []) t.release();
  }
}
