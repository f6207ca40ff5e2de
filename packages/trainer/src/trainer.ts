/**
 * The training loop: micro-batches through the model (forward + backward on the GPU), gradient
 * accumulation, AdamW with global-norm clipping and a warmup schedule, progress per optimizer
 * step, and the accounted GPU peak next to the planner's estimate at the end.
 */
import { IGNORE_INDEX, type GpuContext } from '@webtune/gpu';
import { InvalidArgumentError } from '@webtune/errors';
import { adapterLayout, type Adapter, type BaseFormat, type HostTensor, type Transformer } from '@webtune/model';
import { batchFromWindows, BatchStream, rowLength, type DataCursor, type TrainingRow } from './data/windows.js';
import { checkEarlyStopping, EMPTY_EVALUATION_STATE, perplexity, recordEvaluation, shouldStop, type EarlyStoppingOptions, type Evaluation, type EvaluationState } from './evaluation.js';
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
  /**
   * Present on steps that evaluated the held-out data (TrainRequest.evalEvery): its loss and
   * perplexity, whether it is the lowest so far (`isBest`), whether it beat the previous best by
   * more than earlyStopping.minDelta (`improved`), and the best so far.
   */
  evaluation?: { loss: number; perplexity: number; isBest: boolean; improved: boolean; best: Evaluation };
}

export interface TrainerState {
  /** Optimizer steps taken. */
  step: number;
  /** Where the next batch comes from. */
  cursor: DataCursor;
  /** LoRA A/B under PEFT keys. */
  adapter: Map<string, HostTensor>;
  /** AdamW moments under `<key>.exp_avg` / `<key>.exp_avg_sq`. */
  optimizer: Map<string, HostTensor>;
  /** Evaluations so far and the early-stopping state (runs with `evaluation`). */
  evaluation?: EvaluationState;
}

/** Held-out evaluation while training (Trainer.train's `evaluation` option). */
export interface EvaluationOptions {
  /** Held-out rows (the same sequence length as the training rows). */
  rows: readonly TrainingRow[];
  /** Evaluate after every `every` optimizer steps. */
  every: number;
  /** Stop when the held-out loss stops improving. */
  earlyStopping?: EarlyStoppingOptions;
  /** The state at a new lowest held-out loss (the caller keeps it to put back the best adapter); training waits for it. */
  onBest?: (state: TrainerState) => Promise<void>;
}

export interface TrainResult {
  /** Losses of the steps this call took. */
  losses: number[];
  /** 'early-stopped': the held-out loss did not improve for `patience` evaluations. */
  stopped: 'completed' | 'paused' | 'cancelled' | 'early-stopped';
  /** Optimizer steps taken in total. */
  step: number;
  estimate: MemoryEstimate;
  /** Peak GPU bytes webtune accounted during training. */
  peakBytes: number;
  tokensPerSecond: number;
  cursor: DataCursor;
  /** Every evaluation of the run so far (resumed runs included) and the early-stopping state. */
  evaluation: EvaluationState;
}

export class Trainer {
  readonly config: TrainConfig;
  private evaluationState: EvaluationState = EMPTY_EVALUATION_STATE;
  private constructor(
    readonly ctx: GpuContext,
    readonly model: Transformer,
    readonly adapter: Adapter,
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
    adapter: Adapter,
    config: Partial<TrainConfig> & Pick<TrainConfig, 'steps'>,
    plan: PlanCheckOptions = {},
  ): Promise<Trainer> {
    const full: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, ...config, adamw: { ...DEFAULT_TRAIN_CONFIG.adamw, ...config.adamw } };
    for (const key of ['steps', 'batchSize', 'seqLen', 'gradientAccumulation'] as const) {
      if (!Number.isInteger(full[key]) || full[key] < 1) throw new InvalidArgumentError(`${key} must be a positive integer, got ${full[key]}.`);
    }
    if (!(full.learningRate > 0) || !Number.isFinite(full.learningRate)) throw new InvalidArgumentError(`learningRate must be a positive number, got ${full.learningRate}.`);
    // Checked before the first step, not when a long enough batch first comes along mid-run.
    const { virtualTokens, prefixTokens } = adapterLayout(model.config, adapter.spec()).sequence;
    if (full.seqLen + virtualTokens + prefixTokens > model.config.maxPositions) {
      const lead = virtualTokens + prefixTokens;
      throw new InvalidArgumentError(`seqLen ${full.seqLen}${lead > 0 ? ` plus the adapter's ${lead} virtual or prefix tokens` : ''} exceeds the model's context of ${model.config.maxPositions} positions; prepare the data with seqLen <= ${model.config.maxPositions - lead}.`);
    }
    const format: BaseFormat = model.base.format;
    const estimate = checkMemoryPlan(ctx, { config: model.config, format, adapter: adapter.spec(), batch: full.batchSize, seq: full.seqLen, recompute: full.recompute, blockSize: model.base.nf4?.blockSize, dtype: model.base.dtype }, plan);
    model.setAdapter(adapter);
    const optimizer = await AdamW.create(ctx, adapter, full.adamw);
    return new Trainer(ctx, model, adapter, optimizer, full, estimate);
  }

  /**
   * Runs optimizer steps over `windows` (token windows of seqLen + 1) until `config.steps` have
   * been taken in total, starting from the optimizer's current step (0, or a restored
   * checkpoint's) and the data position `cursor` (default: the start of the seeded order).
   * `onStep` gets progress after every optimizer step. Aborting `signal` stops after the current
   * step: with reason 'pause' the result says 'paused' (the caller checkpoints and later calls
   * train again with the returned cursor), any other reason 'cancelled'. Every
   * `checkpointEvery` steps `onCheckpoint` receives the state to save; training waits for it.
   */
  async train(
    windows: readonly TrainingRow[],
    options: {
      onStep?: (p: StepProgress) => void;
      signal?: AbortSignal;
      cursor?: DataCursor;
      checkpointEvery?: number;
      onCheckpoint?: (state: TrainerState) => Promise<void>;
      evaluation?: EvaluationOptions;
    } = {},
  ): Promise<TrainResult> {
    const c = this.config;
    for (const w of [...windows, ...(options.evaluation?.rows ?? [])]) {
      if (rowLength(w) !== c.seqLen) throw new InvalidArgumentError(`Training rows must have seqLen = ${c.seqLen} positions (a window of seqLen + 1 tokens); got ${rowLength(w)}.`);
    }
    const evaluation = options.evaluation;
    if (evaluation) {
      if (!Number.isInteger(evaluation.every) || evaluation.every < 1) throw new InvalidArgumentError(`evaluation.every must be a positive integer, got ${evaluation.every}.`);
      if (evaluation.rows.length === 0) throw new InvalidArgumentError('evaluation.rows is empty: hold out some data to evaluate on.');
      if (evaluation.earlyStopping) checkEarlyStopping(evaluation.earlyStopping);
    }
    const stream = new BatchStream(windows, c.batchSize, options.cursor ?? c.seed);
    const losses: number[] = [];
    this.ctx.memory.resetPeak();
    const started = performance.now();
    const firstStep = this.optimizer.step;
    let tokens = 0;
    // A run resumed from a checkpoint written when early stopping had decided takes no more steps.
    let stopped: TrainResult['stopped'] = evaluation && shouldStop(this.evaluationState, evaluation.earlyStopping) ? 'early-stopped' : 'completed';
    while (stopped === 'completed' && this.optimizer.step < c.steps) {
      if (options.signal?.aborted) {
        stopped = options.signal.reason === 'pause' ? 'paused' : 'cancelled';
        break;
      }
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
      const step = this.optimizer.step;
      // Evaluate before reporting the step, so its progress event carries the evaluation.
      let evaluated: StepProgress['evaluation'];
      let stopEarly = false;
      if (evaluation && step % evaluation.every === 0) {
        const heldOut = await this.evaluate(evaluation.rows);
        if (!Number.isFinite(heldOut)) {
          throw new InvalidArgumentError(`The held-out loss became ${heldOut} at step ${step}; lower the learning rate or check the data.`);
        }
        const { state, isBest, improved } = recordEvaluation(this.evaluationState, { step, loss: heldOut }, evaluation.earlyStopping?.minDelta);
        this.evaluationState = state;
        evaluated = { loss: heldOut, perplexity: perplexity(heldOut), isBest, improved, best: state.best! };
        if (isBest && evaluation.onBest) await evaluation.onBest(await this.state(stream.position));
        stopEarly = shouldStop(state, evaluation.earlyStopping);
      }
      const seconds = (performance.now() - started) / 1000;
      options.onStep?.({
        step,
        totalSteps: c.steps,
        epoch: stream.position.epoch,
        loss,
        learningRate: lr,
        gradNorm,
        tokensPerSecond: tokens / seconds,
        etaSeconds: (seconds / (step - firstStep)) * (c.steps - step),
        gpuBytes: this.ctx.memory.liveBytes,
        ...(evaluated ? { evaluation: evaluated } : {}),
      });
      if (stopEarly) {
        stopped = 'early-stopped';
        break;
      }
      if (options.onCheckpoint && options.checkpointEvery && step % options.checkpointEvery === 0 && step < c.steps) {
        await options.onCheckpoint(await this.state(stream.position));
      }
    }
    const seconds = (performance.now() - started) / 1000;
    return {
      losses, stopped, step: this.optimizer.step, estimate: this.estimate, peakBytes: this.ctx.memory.peakBytes,
      tokensPerSecond: tokens / Math.max(seconds, 1e-9), cursor: stream.position, evaluation: this.evaluationState,
    };
  }

  /** Everything a checkpoint needs to resume exactly: adapter, AdamW moments, step and data position. */
  async state(cursor: DataCursor): Promise<TrainerState> {
    return {
      step: this.optimizer.step, cursor, adapter: await this.adapter.read(), optimizer: await this.optimizer.readState(),
      ...(this.evaluationState.history.length > 0 ? { evaluation: this.evaluationState } : {}),
    };
  }

  /** Puts a saved state back (same model, adapter shape and config); train() then continues from it. */
  restore(state: Omit<TrainerState, 'cursor'>): void {
    this.adapter.write(state.adapter);
    this.optimizer.writeState(state.optimizer, state.step);
    this.evaluationState = state.evaluation ?? EMPTY_EVALUATION_STATE;
  }

  /** Mean loss over the targets of `rows` (see evaluateRows), in batches of the training batch size, so the training workspace is reused. */
  async evaluate(rows: readonly TrainingRow[]): Promise<number> {
    return (await evaluateRows(this.model, rows, this.config.batchSize)).loss;
  }

  release(): void {
    this.optimizer.release();
  }
}

/**
 * Mean loss over every target of `rows` that has one, without gradients, in batches of
 * `batchSize` rows (the last padded with ignored rows, so no row is left out and the workspace
 * keeps its shape). Throws if no row has a target.
 */
export async function evaluateRows(model: Transformer, rows: readonly TrainingRow[], batchSize: number): Promise<{ loss: number; tokens: number }> {
  let sum = 0;
  let tokens = 0;
  for (let i = 0; i < rows.length; i += batchSize) {
    const part = rows.slice(i, i + batchSize);
    const batch = batchFromWindows(part, batchSize - part.length);
    if (!batch.targets!.some((t) => t !== IGNORE_INDEX)) continue;
    const r = await model.evaluate(batch);
    sum += r.loss * r.tokens;
    tokens += r.tokens;
  }
  if (tokens === 0) throw new InvalidArgumentError('The data to evaluate has no target with a loss.');
  return { loss: sum / tokens, tokens };
}
