/**
 * The training loop: micro-batches through the model (forward + backward on the GPU), gradient
 * accumulation, AdamW with global-norm clipping and a warmup schedule, progress per optimizer
 * step, and the accounted GPU peak next to the planner's estimate at the end.
 */
import { InvalidArgumentError, type GpuContext } from '@webtune/gpu';
import type { BaseFormat, LoraAdapter, Transformer } from '@webtune/model';
import { BatchStream, type DataCursor } from './data.js';
import { AdamW, type AdamWOptions } from './optimizer.js';
import { checkMemoryPlan, type MemoryEstimate, type PlanCheckOptions } from './planner.js';
import { learningRateFactor, type ScheduleKind } from './schedule.js';

export interface TrainConfig {
  /** Optimizer steps. */
  steps: number;
  batchSize: number;
  seqLen: number;
  /** Micro-batches per optimizer step. Default 1. */
  gradientAccumulation: number;
  learningRate: number;
  schedule: ScheduleKind;
  warmupSteps: number;
  adamw: AdamWOptions;
  /** Seeds data order and LoRA dropout. */
  seed: number;
  recompute: boolean;
}

export const DEFAULT_TRAIN_CONFIG: Omit<TrainConfig, 'steps'> = {
  batchSize: 4,
  seqLen: 128,
  gradientAccumulation: 1,
  learningRate: 2e-4,
  schedule: 'linear',
  warmupSteps: 0,
  adamw: { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 },
  seed: 0,
  recompute: false,
};

export interface StepProgress {
  step: number;
  totalSteps: number;
  epoch: number;
  loss: number;
  learningRate: number;
  gradNorm: number;
  tokensPerSecond: number;
  /** Seconds left at the current speed. */
  etaSeconds: number;
  gpuBytes: number;
}

export interface TrainResult {
  losses: number[];
  estimate: MemoryEstimate;
  /** Peak GPU bytes webtune accounted during training. */
  peakBytes: number;
  tokensPerSecond: number;
  cursor: DataCursor;
}

export class Trainer {
  readonly config: TrainConfig;
  private constructor(
    readonly ctx: GpuContext,
    readonly model: Transformer,
    readonly adapter: LoraAdapter,
    readonly optimizer: AdamW,
    config: TrainConfig,
    readonly estimate: MemoryEstimate,
  ) {
    this.config = config;
  }

  /** Checks the memory plan (throws MemoryPlanError), attaches the adapter and makes the optimizer. */
  static async create(
    ctx: GpuContext,
    model: Transformer,
    adapter: LoraAdapter,
    config: Partial<TrainConfig> & Pick<TrainConfig, 'steps'>,
    plan: PlanCheckOptions = {},
  ): Promise<Trainer> {
    const full: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, ...config, adamw: { ...DEFAULT_TRAIN_CONFIG.adamw, ...config.adamw } };
    for (const key of ['steps', 'batchSize', 'seqLen', 'gradientAccumulation'] as const) {
      if (!Number.isInteger(full[key]) || full[key] < 1) throw new InvalidArgumentError(`${key} must be a positive integer, got ${full[key]}.`);
    }
    if (!(full.learningRate > 0) || !Number.isFinite(full.learningRate)) throw new InvalidArgumentError(`learningRate must be a positive number, got ${full.learningRate}.`);
    const format: BaseFormat = model.base.format;
    const estimate = checkMemoryPlan(ctx, { config: model.config, format, lora: adapter.config, batch: full.batchSize, seq: full.seqLen, recompute: full.recompute, blockSize: model.base.nf4?.blockSize, dtype: model.base.dtype }, plan);
    model.setAdapter(adapter);
    const optimizer = await AdamW.create(ctx, adapter, full.adamw);
    return new Trainer(ctx, model, adapter, optimizer, full, estimate);
  }

  /**
   * Runs `config.steps` optimizer steps over `windows` (token windows of seqLen + 1).
   * `onStep` gets progress after every optimizer step; `signal` stops between steps.
   */
  async train(
    windows: readonly Uint32Array[],
    options: { onStep?: (p: StepProgress) => void; signal?: AbortSignal; cursor?: DataCursor } = {},
  ): Promise<TrainResult> {
    const c = this.config;
    for (const w of windows) {
      if (w.length !== c.seqLen + 1) throw new InvalidArgumentError(`Training windows must have seqLen + 1 = ${c.seqLen + 1} tokens; got ${w.length}.`);
    }
    const stream = new BatchStream(windows, c.batchSize, options.cursor ?? c.seed);
    const losses: number[] = [];
    this.ctx.memory.resetPeak();
    const started = performance.now();
    let tokens = 0;
    for (let s = 0; s < c.steps; s++) {
      options.signal?.throwIfAborted();
      let loss = 0;
      for (let micro = 0; micro < c.gradientAccumulation; micro++) {
        const batch = stream.next();
        const r = await this.model.trainStep(batch, { recompute: c.recompute, dropoutSeed: c.seed, step: this.optimizer.step * c.gradientAccumulation + micro });
        if (!Number.isFinite(r.loss)) {
          throw new InvalidArgumentError(`The loss became ${r.loss} at step ${this.optimizer.step + 1}; lower the learning rate or check the data.`);
        }
        loss += r.loss / c.gradientAccumulation;
        tokens += batch.batch * batch.seq;
      }
      const lr = c.learningRate * learningRateFactor(this.optimizer.step, { kind: c.schedule, warmupSteps: c.warmupSteps, totalSteps: c.steps });
      const { gradNorm } = await this.optimizer.update(lr, c.gradientAccumulation);
      losses.push(loss);
      const seconds = (performance.now() - started) / 1000;
      const tps = tokens / seconds;
      options.onStep?.({
        step: s + 1,
        totalSteps: c.steps,
        epoch: stream.position.epoch,
        loss,
        learningRate: lr,
        gradNorm,
        tokensPerSecond: tps,
        etaSeconds: (seconds / (s + 1)) * (c.steps - s - 1),
        gpuBytes: this.ctx.memory.liveBytes,
      });
    }
    const seconds = (performance.now() - started) / 1000;
    return { losses, estimate: this.estimate, peakBytes: this.ctx.memory.peakBytes, tokensPerSecond: tokens / seconds, cursor: stream.position };
  }

  /** Mean loss over windows, batch by batch, without gradients. */
  async evaluate(windows: readonly Uint32Array[]): Promise<number> {
    const stream = new BatchStream(windows, Math.min(this.config.batchSize, windows.length), 0, false);
    const batches = Math.floor(windows.length / Math.min(this.config.batchSize, windows.length));
    let sum = 0;
    let count = 0;
    for (let i = 0; i < batches; i++) {
      const r = await this.model.evaluate(stream.next());
      sum += r.loss * r.tokens;
      count += r.tokens;
    }
    return sum / count;
  }

  release(): void {
    this.optimizer.release();
  }
}
