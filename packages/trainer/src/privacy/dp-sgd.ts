/**
 * DP-SGD's per-example clipping on the GPU (Abadi et al. 2016, as Opacus implements it in
 * `opacus/optimizers/optimizer.py`, `clip_and_accumulate` and `add_noise`).
 *
 * How per-example gradients are computed, and why: each example of a step runs forward and
 * backward on its own (a physical batch of one row), so its gradient lands in the adapter's own
 * gradient buffers; the total L2 norm over every trainable tensor is reduced on the GPU, the
 * factor min(1, C / (norm + 1e-6)) is computed there, and one kernel adds factor x gradient to a
 * running sum and clears the gradient. Nothing comes back to the CPU per example, and the memory
 * is one extra copy of the trainable tensors (the sum), whatever the batch size. This is the
 * "per-example gradients where they are small" case: a PEFT adapter's gradients are small (LoRA r8
 * on a 135M model is about 0.5% of the weights), so materialising one example's gradient at a time
 * costs less memory than Opacus' ghost-norm path, which keeps a [T x T] Gram matrix per example and
 * per linear layer. It works unchanged for every method on the adapter seam (LoRA, DoRA, IA3,
 * BitFit, prompt and prefix methods, bottleneck adapters, UniPELT), since it needs only the
 * adapter's gradient buffers. What it costs is time: the examples of a step do not share one
 * batched pass. A ghost-norm pass for LoRA's linear layers (batched, no per-example gradient) is
 * left for later; bench/results/dp-sgd.md measures the current cost.
 */
import { CommandRecorder, createElementwiseKernels, createOptimizerKernels, createTensor, readF32, writeTensor, type ElementwiseKernels, type GpuContext, type GpuTensor, type OptimizerKernels } from '@webtune/gpu';
import { InvalidArgumentError } from '@webtune/errors';
import type { Adapter, HostTensor, Transformer } from '@webtune/model';
import { batchFromWindows, type TrainingRow } from '../data/windows.js';

/** Options of PerExampleClipper.create. */
export interface PerExampleClipperOptions {
  /** C: every example's gradient, over all trainable tensors together, is clipped to this L2 norm. */
  maxGradNorm: number;
}

/** What PerExampleClipper.add passes to the model's train step (dropout seeding, recomputation). */
export interface ExampleStepOptions {
  recompute?: boolean;
  dropoutSeed?: number;
  step?: number;
}

interface Slot {
  key: string;
  grad: GpuTensor;
  sum: GpuTensor;
}

/** Norms recorded on the GPU before they are read back in one go. */
const NORM_SLOTS = 256;

/**
 * Runs examples one at a time and keeps the sum of their clipped gradients on the GPU.
 *
 * @example
 * ```ts
 * model.setAdapter(adapter);
 * const clipper = await PerExampleClipper.create(ctx, adapter, { maxGradNorm: 1 });
 * for (const row of rows) await clipper.add(model, row);
 * clipper.commit([...noise]);          // adapter gradients = clipped sum + noise
 * await optimizer.update(lr, expectedBatchSize);
 * ```
 */
export class PerExampleClipper {
  private readonly slots: Slot[] = [];
  private readonly partials: GpuTensor;
  private readonly clip: GpuTensor;
  private readonly norms: GpuTensor;
  /** Examples whose norms are still on the GPU. */
  private pending = 0;
  private readonly hostNorms: number[] = [];

  private constructor(
    private readonly ctx: GpuContext,
    private readonly kernels: OptimizerKernels,
    private readonly elementwise: ElementwiseKernels,
    private readonly adapter: Adapter,
    readonly maxGradNorm: number,
  ) {
    for (const t of adapter.trainable()) {
      this.slots.push({ key: t.key, grad: t.grad, sum: createTensor(ctx, { shape: t.param.shape, label: 'dp-sgd clipped sum', data: new Float32Array(t.param.size) }) });
    }
    this.partials = createTensor(ctx, { shape: [this.slots.length], label: 'dp-sgd norm partials' });
    this.clip = createTensor(ctx, { shape: [2], label: 'dp-sgd clip factor' });
    this.norms = createTensor(ctx, { shape: [NORM_SLOTS], label: 'dp-sgd example norms' });
    // The first example's backward must start from zero gradients.
    adapter.zeroGradients();
  }

  /** Allocates the clipped sum (one copy of the trainable tensors). Throws InvalidArgumentError for a bad C. */
  static async create(ctx: GpuContext, adapter: Adapter, options: PerExampleClipperOptions): Promise<PerExampleClipper> {
    const c = options.maxGradNorm;
    if (typeof c !== 'number' || !(c > 0) || !Number.isFinite(c)) {
      throw new InvalidArgumentError(`maxGradNorm (the per-example clipping bound C) must be a finite number > 0, got ${String(c)}; 1.0 is the usual start.`);
    }
    const [kernels, elementwise] = await Promise.all([createOptimizerKernels(ctx), createElementwiseKernels(ctx)]);
    return new PerExampleClipper(ctx, kernels, elementwise, adapter, c);
  }

  /** Examples added since the last reset or commit. */
  get count(): number {
    return this.hostNorms.length + this.pending;
  }

  /**
   * Forward and backward of one example (the mean cross-entropy over its targets), then its whole
   * gradient clipped to C and added to the sum. The model must run this clipper's adapter.
   */
  async add(model: Transformer, row: TrainingRow, options: ExampleStepOptions = {}): Promise<{ loss: number; tokens: number }> {
    if (model.activeAdapter !== this.adapter) throw new InvalidArgumentError('PerExampleClipper.add: the model runs another adapter; call model.setAdapter(adapter) with the clipper\'s adapter first.');
    const r = await model.trainStep(batchFromWindows([row]), options);
    if (this.pending === NORM_SLOTS) await this.flushNorms();
    const rec = new CommandRecorder(this.ctx, 'dp-sgd clip');
    this.slots.forEach((s, slot) => this.kernels.sumSquares(rec, { x: s.grad, size: s.grad.size, partials: this.partials, slot }));
    this.kernels.clipCoefficient(rec, { partials: this.partials, count: this.slots.length, maxNorm: this.maxGradNorm, out: this.clip });
    this.slots.forEach((s, i) => this.kernels.clipAccumulate(rec, {
      grad: s.grad, sum: s.sum, size: s.grad.size, clip: this.clip, norms: this.norms, ...(i === 0 ? { example: this.pending } : {}),
    }));
    rec.submit();
    this.pending++;
    return r;
  }

  private async flushNorms(): Promise<void> {
    if (this.pending === 0) return;
    const all = await readF32(this.ctx, this.norms);
    for (let i = 0; i < this.pending; i++) this.hostNorms.push(all[i]!);
    this.pending = 0;
  }

  /** Each example's gradient norm before clipping, in the order added. */
  async readNorms(): Promise<Float32Array> {
    await this.flushNorms();
    return Float32Array.from(this.hostNorms);
  }

  /** The sum of clipped gradients under the adapter's keys. */
  async readSum(): Promise<Map<string, HostTensor>> {
    const out = new Map<string, HostTensor>();
    for (const s of this.slots) out.set(s.key, { data: await readF32(this.ctx, s.sum), shape: [...s.sum.shape] });
    return out;
  }

  /** Zeroes the sum and forgets the norms. */
  reset(): void {
    const rec = new CommandRecorder(this.ctx, 'dp-sgd reset');
    for (const s of this.slots) this.elementwise.fill(rec, { target: s.sum, size: s.sum.size, value: 0 });
    rec.submit();
    this.pending = 0;
    this.hostNorms.length = 0;
  }

  /**
   * Hands the step's gradient to the optimizer: each adapter gradient becomes sum + noise (noise
   * per trainable tensor in trainable() order, or none), and the clipper is reset. The optimizer
   * then divides by the expected batch size (its `microBatches`).
   */
  commit(noise?: readonly Float32Array[]): void {
    if (noise && noise.length !== this.slots.length) throw new InvalidArgumentError(`PerExampleClipper.commit: ${noise.length} noise tensors for ${this.slots.length} trainable tensors.`);
    // The gradients are zero here (clipAccumulate cleared them): grad = noise, then += sum.
    this.slots.forEach((s, i) => {
      const n = noise?.[i];
      if (!n) return;
      if (n.length !== s.grad.size) throw new InvalidArgumentError(`PerExampleClipper.commit: noise for ${s.key} has ${n.length} values, the tensor ${s.grad.size}.`);
      writeTensor(this.ctx, s.grad, n);
    });
    const rec = new CommandRecorder(this.ctx, 'dp-sgd commit');
    for (const s of this.slots) this.elementwise.axpy(rec, { target: s.grad, source: s.sum, size: s.sum.size, alpha: 1 });
    for (const s of this.slots) this.elementwise.fill(rec, { target: s.sum, size: s.sum.size, value: 0 });
    rec.submit();
    this.pending = 0;
    this.hostNorms.length = 0;
  }

  /** Trainable tensor sizes in trainable() order (what commit's noise must match). */
  get sizes(): number[] {
    return this.slots.map((s) => s.sum.size);
  }

  /** GPU bytes of the clipped sum. */
  get byteLength(): number {
    return this.slots.reduce((n, s) => n + s.sum.byteLength, 0) + this.norms.byteLength;
  }

  release(): void {
    for (const s of this.slots) s.sum.release();
    this.partials.release();
    this.clip.release();
    this.norms.release();
  }
}
