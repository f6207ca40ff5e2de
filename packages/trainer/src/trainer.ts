/**
 * The training loop: micro-batches through the model (forward + backward on the GPU), gradient
 * accumulation, AdamW with global-norm clipping and a warmup schedule, progress per optimizer
 * step, and the accounted GPU peak next to the planner's estimate at the end.
 */
import { IGNORE_INDEX, type GpuContext } from '@webtune/gpu';
import { InvalidArgumentError } from '@webtune/errors';
import { adapterLayout, Rng, type Adapter, type BaseFormat, type HostTensor, type Transformer } from '@webtune/model';
import { batchFromWindows, BatchStream, rowLength, type DataCursor, type TrainingRow } from './data/windows.js';
import { checkEarlyStopping, EMPTY_EVALUATION_STATE, perplexity, recordEvaluation, shouldStop, type EarlyStoppingOptions, type Evaluation, type EvaluationState } from './evaluation.js';
import { AdamW, type AdamWOptions } from './optimizer.js';
import { checkMemoryPlan, type MemoryEstimate, type PlanCheckOptions } from './planner.js';
import { learningRateFactor, type ScheduleKind } from './schedule.js';
import type { CheckpointMeta, PrivacyCheckpointState } from './checkpoint.js';
import { PerExampleClipper } from './privacy/dp-sgd.js';
import { RdpAccountant } from './privacy/accountant.js';
import { DP_SGD_ORDERS } from './privacy/budget.js';
import { gaussianNoise } from './privacy/noise.js';
import { PoissonSampler } from './privacy/poisson.js';

/**
 * DP-SGD (Abadi et al. 2016, as Opacus): every example's gradient clipped to `maxGradNorm`,
 * Gaussian noise N(0, (noiseMultiplier * maxGradNorm)^2) on their sum, divided by the expected
 * batch size (batchSize x gradientAccumulation), with Poisson sampling at rate
 * q = expected batch / rows. The privacy unit is one training row.
 */
export interface DpSgdConfig {
  /** sigma: the noise std as a multiple of maxGradNorm. */
  noiseMultiplier: number;
  /** C: the per-example clipping bound (L2 over every trainable tensor). */
  maxGradNorm: number;
  /** delta of the (epsilon, delta) guarantee that progress and the budget are stated in. */
  delta: number;
  /** Stop, before the step that would spend more, when epsilon would exceed this. */
  epsilonBudget?: number;
  /** Seeds the Poisson sampler (reproducible runs and tests); default: crypto.getRandomValues. The noise is always fresh CSPRNG output. */
  samplerSeed?: number;
}

export interface TrainConfig {
  /** Optimizer steps. */
  steps: number;
  batchSize: number;
  seqLen: number;
  /** Micro-batches per optimizer step. Default 1. */
  gradientAccumulation: number;
  /**
   * Rows per forward/backward pass; a divisor of batchSize (default: batchSize). Each batch of
   * batchSize rows, drawn in the same order whatever this is, runs as batchSize / microBatchSize
   * passes whose gradients are averaged, so a smaller micro-batch lowers activation memory and
   * keeps the effective batch, the data order and the schedule. Automatic recovery halves it.
   */
  microBatchSize?: number;
  learningRate: number;
  schedule: ScheduleKind;
  warmupSteps: number;
  adamw: AdamWOptions;
  /** Seeds data order and LoRA dropout. */
  seed: number;
  recompute: boolean;
  /** DP-SGD instead of plain minibatches (see DpSgdConfig). */
  privacy?: DpSgdConfig;
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
  /** DP-SGD runs: the privacy spent so far and this step's Poisson batch. */
  privacy?: StepPrivacy;
}

/** A DP-SGD step's privacy figures (StepProgress.privacy). */
export interface StepPrivacy {
  /** epsilon spent after this step, at `delta` (RDP accountant). */
  epsilon: number;
  delta: number;
  noiseMultiplier: number;
  sampleRate: number;
  /** Examples Poisson sampling put in this step (it varies; it can be 0). */
  batchSize: number;
  /** Share of this step's examples whose gradient norm exceeded maxGradNorm. */
  clippedFraction: number;
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
  /** DP-SGD runs: the sampler's state and the accountant's history. */
  privacy?: PrivacyCheckpointState;
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
  /**
   * 'early-stopped': the held-out loss did not improve for `patience` evaluations.
   * 'budget-exhausted': DP-SGD's next step would have spent more than privacy.epsilonBudget.
   */
  stopped: 'completed' | 'paused' | 'cancelled' | 'early-stopped' | 'budget-exhausted';
  /** Optimizer steps taken in total. */
  step: number;
  estimate: MemoryEstimate;
  /** Peak GPU bytes webtune accounted during training. */
  peakBytes: number;
  tokensPerSecond: number;
  cursor: DataCursor;
  /** Every evaluation of the run so far (resumed runs included) and the early-stopping state. */
  evaluation: EvaluationState;
  /** DP-SGD runs: epsilon spent (at privacy.delta) over every step of the run, resumed parts included. */
  privacy?: { epsilon: number; delta: number; steps: number };
}

/** DP-SGD's running parts: the clipper on the GPU, the sampler and the accountant. */
interface PrivateTraining {
  config: DpSgdConfig;
  clipper: PerExampleClipper;
  accountant: RdpAccountant;
  /** Made by train(), which knows the data size, from samplerState. */
  sampler?: PoissonSampler;
  /**
   * The sampler's state after the last step taken (or restored): every train() call continues
   * from it, so a pause and resume never draws the same subsets again.
   */
  samplerState?: PrivacyCheckpointState['sampler'];
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
    private readonly dp: PrivateTraining | undefined,
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
    if (full.microBatchSize !== undefined && (!Number.isInteger(full.microBatchSize) || full.microBatchSize < 1 || full.batchSize % full.microBatchSize !== 0)) {
      throw new InvalidArgumentError(`microBatchSize must be a positive divisor of batchSize (${full.batchSize}), got ${full.microBatchSize}.`);
    }
    if (!(full.learningRate > 0) || !Number.isFinite(full.learningRate)) throw new InvalidArgumentError(`learningRate must be a positive number, got ${full.learningRate}.`);
    // Checked before the first step, not when a long enough batch first comes along mid-run.
    const { virtualTokens, prefixTokens } = adapterLayout(model.config, adapter.spec()).sequence;
    if (full.seqLen + virtualTokens + prefixTokens > model.config.maxPositions) {
      const lead = virtualTokens + prefixTokens;
      throw new InvalidArgumentError(`seqLen ${full.seqLen}${lead > 0 ? ` plus the adapter's ${lead} virtual or prefix tokens` : ''} exceeds the model's context of ${model.config.maxPositions} positions; prepare the data with seqLen <= ${model.config.maxPositions - lead}.`);
    }
    if (full.privacy) checkDpSgdConfig(full.privacy);
    const format: BaseFormat = model.base.format;
    // DP-SGD runs one example at a time (per-example gradients), so its activations are a batch of one.
    const batch = full.privacy ? 1 : (full.microBatchSize ?? full.batchSize);
    const estimate = checkMemoryPlan(ctx, { config: model.config, format, adapter: adapter.spec(), batch, seq: full.seqLen, recompute: full.recompute, blockSize: model.base.nf4?.blockSize, dtype: model.base.dtype, perExampleClipping: full.privacy !== undefined }, plan);
    model.setAdapter(adapter);
    // Under DP-SGD the per-example clip is the only clipping (as Opacus): the optimizer only measures the norm.
    const optimizer = await AdamW.create(ctx, adapter, full.privacy ? { ...full.adamw, maxGradNorm: Infinity } : full.adamw);
    const dp: PrivateTraining | undefined = full.privacy
      ? { config: full.privacy, clipper: await PerExampleClipper.create(ctx, adapter, { maxGradNorm: full.privacy.maxGradNorm }), accountant: new RdpAccountant(DP_SGD_ORDERS) }
      : undefined;
    return new Trainer(ctx, model, adapter, optimizer, full, estimate, dp);
  }

  /** DP-SGD's expected batch: batchSize x gradientAccumulation examples per optimizer step. */
  get expectedBatchSize(): number {
    return this.config.batchSize * this.config.gradientAccumulation;
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
      /**
       * Awaited before every optimizer step (after the abort check, which runs again after it):
       * where a caller waits or paces (battery, heat). `state` gives it the state to checkpoint.
       */
      beforeStep?: (state: () => Promise<TrainerState>) => Promise<void>;
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
    const dp = this.dp;
    let sampleRate = 1;
    if (dp) {
      sampleRate = this.expectedBatchSize / windows.length;
      if (sampleRate > 1) {
        throw new InvalidArgumentError(`DP-SGD samples each of the ${windows.length} rows with probability batchSize x gradientAccumulation / rows = ${this.expectedBatchSize} / ${windows.length} > 1; add data or lower the batch size.`);
      }
      dp.sampler = new PoissonSampler(sampleRate, dp.samplerState ?? (dp.config.samplerSeed !== undefined ? new Rng(dp.config.samplerSeed).state : undefined));
      dp.samplerState = dp.sampler.state;
    }
    // Plain runs take batches in a seeded shuffled order; DP-SGD runs take Poisson samples instead.
    const stream = dp ? undefined : new BatchStream(windows, c.batchSize, options.cursor ?? c.seed);
    const position = (): DataCursor => stream?.position ?? options.cursor ?? { epoch: 0, index: 0, epochRng: new Rng(c.seed).state };
    const losses: number[] = [];
    this.ctx.memory.resetPeak();
    const started = performance.now();
    const firstStep = this.optimizer.step;
    let tokens = 0;
    // A run resumed from a checkpoint written when early stopping had decided takes no more steps.
    let stopped: TrainResult['stopped'] = evaluation && shouldStop(this.evaluationState, evaluation.earlyStopping) ? 'early-stopped' : 'completed';
    const micro = c.microBatchSize ?? c.batchSize;
    const passes = c.batchSize / micro;
    while (stopped === 'completed' && this.optimizer.step < c.steps) {
      if (options.beforeStep && !options.signal?.aborted) await options.beforeStep(() => this.state(position()));
      if (options.signal?.aborted) {
        stopped = options.signal.reason === 'pause' ? 'paused' : 'cancelled';
        break;
      }
      if (dp && this.wouldExceedBudget(dp, sampleRate)) {
        stopped = 'budget-exhausted';
        break;
      }
      let loss = 0;
      let privacy: StepPrivacy | undefined;
      if (dp) {
        const r = await this.privateStep(dp, windows, sampleRate);
        ({ loss, privacy } = r);
        tokens += r.tokens;
      } else {
        for (let m = 0; m < c.gradientAccumulation; m++) {
          const rows = stream!.nextRows();
          for (let p = 0; p < passes; p++) {
            const batch = batchFromWindows(rows.slice(p * micro, (p + 1) * micro));
            // One dropout stream per pass; with one pass per batch this is (step x accumulation + m), as before micro-batches split.
            const r = await this.model.trainStep(batch, { recompute: c.recompute, dropoutSeed: c.seed, step: (this.optimizer.step * c.gradientAccumulation + m) * passes + p });
            if (!Number.isFinite(r.loss)) {
              throw new InvalidArgumentError(`The loss became ${r.loss} at step ${this.optimizer.step + 1}; lower the learning rate or check the data.`);
            }
            loss += r.loss / (c.gradientAccumulation * passes);
            tokens += batch.batch * batch.seq;
          }
        }
      }
      const lr = c.learningRate * learningRateFactor(this.optimizer.step, { kind: c.schedule, warmupSteps: c.warmupSteps, totalSteps: c.steps });
      // DP-SGD divides the noisy sum by the expected batch size, whatever Poisson sampling drew.
      const { gradNorm } = await this.optimizer.update(lr, dp ? this.expectedBatchSize : c.gradientAccumulation * passes);
      if (dp) {
        dp.accountant.step({ noiseMultiplier: dp.config.noiseMultiplier, sampleRate });
        privacy = { ...privacy!, epsilon: dp.accountant.epsilon(dp.config.delta).epsilon };
      }
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
        if (isBest && evaluation.onBest) await evaluation.onBest(await this.state(position()));
        stopEarly = shouldStop(state, evaluation.earlyStopping);
      }
      const seconds = (performance.now() - started) / 1000;
      options.onStep?.({
        step,
        totalSteps: c.steps,
        // DP-SGD: expected passes over the data (q per step).
        epoch: stream ? stream.position.epoch : Math.floor(step * sampleRate),
        loss,
        learningRate: lr,
        gradNorm,
        tokensPerSecond: tokens / seconds,
        etaSeconds: (seconds / (step - firstStep)) * (c.steps - step),
        gpuBytes: this.ctx.memory.liveBytes,
        ...(evaluated ? { evaluation: evaluated } : {}),
        ...(privacy ? { privacy } : {}),
      });
      if (stopEarly) {
        stopped = 'early-stopped';
        break;
      }
      if (options.onCheckpoint && options.checkpointEvery && step % options.checkpointEvery === 0 && step < c.steps) {
        await options.onCheckpoint(await this.state(position()));
      }
    }
    const seconds = (performance.now() - started) / 1000;
    return {
      losses, stopped, step: this.optimizer.step, estimate: this.estimate, peakBytes: this.ctx.memory.peakBytes,
      tokensPerSecond: tokens / Math.max(seconds, 1e-9), cursor: position(), evaluation: this.evaluationState,
      ...(dp ? { privacy: { epsilon: dp.accountant.epsilon(dp.config.delta).epsilon, delta: dp.config.delta, steps: this.optimizer.step } } : {}),
    };
  }

  /** True when one more step would take epsilon past the budget (checked before the step, so the budget is never exceeded). */
  private wouldExceedBudget(dp: PrivateTraining, sampleRate: number): boolean {
    return nextStepExceedsBudget(dp.accountant, dp.config, sampleRate);
  }

  /**
   * One DP-SGD step's gradient: a Poisson sample of the rows, each example's gradient clipped to
   * C and summed on the GPU, plus N(0, (sigma C)^2) noise from the CSPRNG; left in the adapter's
   * gradient buffers for the optimizer, which divides by the expected batch size.
   */
  private async privateStep(dp: PrivateTraining, windows: readonly TrainingRow[], sampleRate: number): Promise<{ loss: number; tokens: number; privacy: StepPrivacy }> {
    const c = this.config;
    const picked = dp.sampler!.sample(windows.length);
    dp.samplerState = dp.sampler!.state;
    let lossSum = 0;
    let tokens = 0;
    try {
      for (const [i, index] of picked.entries()) {
        const row = windows[index]!;
        // Dropout streams by (step, position in the sample): a sample can exceed the expected batch, so the stride is the data size.
        const r = await dp.clipper.add(this.model, row, { recompute: c.recompute, dropoutSeed: c.seed, step: this.optimizer.step * windows.length + i });
        if (!Number.isFinite(r.loss)) {
          throw new InvalidArgumentError(`The loss became ${r.loss} at step ${this.optimizer.step + 1}; lower the learning rate or check the data.`);
        }
        lossSum += r.loss;
        tokens += rowLength(row);
      }
    } catch (error) {
      // Nothing of a failed step may reach a later one: its examples would be released twice.
      dp.clipper.reset();
      this.adapter.zeroGradients();
      throw error;
    }
    const norms = await dp.clipper.readNorms();
    const clipped = norms.filter((n) => n > dp.config.maxGradNorm).length;
    const std = dp.config.noiseMultiplier * dp.config.maxGradNorm;
    dp.clipper.commit(std > 0 ? dp.clipper.sizes.map((n) => gaussianNoise(n, std)) : undefined);
    return {
      // An empty Poisson sample (possible at small q) still takes a noise-only step; it has no loss to report.
      loss: picked.length > 0 ? lossSum / picked.length : Number.NaN,
      tokens,
      privacy: { epsilon: 0, delta: dp.config.delta, noiseMultiplier: dp.config.noiseMultiplier, sampleRate, batchSize: picked.length, clippedFraction: picked.length > 0 ? clipped / picked.length : 0 },
    };
  }

  /** Everything a checkpoint needs to resume exactly: adapter, AdamW moments, step and data position. */
  async state(cursor: DataCursor): Promise<TrainerState> {
    const dp = this.dp;
    const sampler = dp?.samplerState;
    return {
      step: this.optimizer.step, cursor, adapter: await this.adapter.read(), optimizer: await this.optimizer.readState(),
      ...(this.evaluationState.history.length > 0 ? { evaluation: this.evaluationState } : {}),
      ...(dp && sampler ? { privacy: { sampler, accountant: dp.accountant.toJSON().history } } : {}),
    };
  }

  /** Puts a saved state back (same model, adapter shape and config); train() then continues from it. */
  restore(state: Omit<TrainerState, 'cursor'>): void {
    if (this.dp && !state.privacy && state.step > 0) {
      throw new InvalidArgumentError(`This checkpoint is ${state.step} steps into a run without DP-SGD; its data was already used without the privacy guarantee, so it cannot continue as a private run. Start a new run with privacy.`);
    }
    if (this.dp && state.privacy) {
      // Every step taken is a release the accountant must hold: a history shorter than the step count would undercount epsilon.
      const counted = state.privacy.accountant.reduce((n, h) => n + h.steps, 0);
      if (counted !== state.step) {
        throw new InvalidArgumentError(`This checkpoint is at step ${state.step} but its privacy accountant counts ${counted} steps; it was altered or written by another program, and its privacy spent cannot be trusted. Start a new run.`);
      }
    }
    if (!this.dp && state.privacy) {
      throw new InvalidArgumentError('This checkpoint was written by a DP-SGD run; resume it with the same privacy settings (train({ privacy })).');
    }
    this.adapter.write(state.adapter);
    this.optimizer.writeState(state.optimizer, state.step);
    this.evaluationState = state.evaluation ?? EMPTY_EVALUATION_STATE;
    if (this.dp) {
      this.dp.accountant = RdpAccountant.fromJSON({ format: 'webtune-rdp-accountant', version: 1, orders: [...this.dp.accountant.orders], history: state.privacy?.accountant ?? [] });
      this.dp.samplerState = state.privacy?.sampler;
      this.dp.sampler = undefined;
    }
  }

  /** Mean loss over the targets of `rows` (see evaluateRows), in batches of the training micro-batch, so the training workspace is reused. */
  async evaluate(rows: readonly TrainingRow[]): Promise<number> {
    return (await evaluateRows(this.model, rows, this.config.microBatchSize ?? this.config.batchSize)).loss;
  }

  release(): void {
    this.optimizer.release();
    this.dp?.clipper.release();
  }
}

/** Whether one more DP-SGD step at (sigma, q) would take `accountant`'s epsilon at delta past config.epsilonBudget (false without a budget). */
export function nextStepExceedsBudget(accountant: RdpAccountant, config: Pick<DpSgdConfig, 'noiseMultiplier' | 'delta' | 'epsilonBudget'>, sampleRate: number): boolean {
  const budget = config.epsilonBudget;
  if (budget === undefined) return false;
  const next = RdpAccountant.fromJSON(accountant.toJSON());
  next.step({ noiseMultiplier: config.noiseMultiplier, sampleRate });
  return next.epsilon(config.delta).epsilon > budget;
}

/**
 * For a checkpoint of a DP-SGD run with a budget: true when its budget is spent, i.e. the run
 * stopped 'budget-exhausted' and resuming it would take no step (an app can offer a new run
 * instead of "resume"). False for other checkpoints.
 */
export function checkpointBudgetSpent(meta: Pick<CheckpointMeta, 'privacy' | 'train'>): boolean {
  const dp = meta.train['privacy'] as Partial<DpSgdConfig> | null | undefined;
  const history = meta.privacy?.accountant;
  if (!dp || typeof dp !== 'object' || !history || history.length === 0) return false;
  const { noiseMultiplier, delta, epsilonBudget } = dp;
  if (typeof epsilonBudget !== 'number' || typeof noiseMultiplier !== 'number' || typeof delta !== 'number') return false;
  const accountant = RdpAccountant.fromJSON({ format: 'webtune-rdp-accountant', version: 1, orders: [...DP_SGD_ORDERS], history });
  return nextStepExceedsBudget(accountant, { noiseMultiplier, delta, epsilonBudget }, history.at(-1)!.sampleRate);
}

/** Throws InvalidArgumentError, saying what to change, for DP-SGD settings that cannot work. */
export function checkDpSgdConfig(p: DpSgdConfig): void {
  const where = 'privacy';
  if (typeof p.noiseMultiplier !== 'number' || !(p.noiseMultiplier >= 0) || !Number.isFinite(p.noiseMultiplier)) {
    throw new InvalidArgumentError(`${where}.noiseMultiplier must be a finite number >= 0, got ${String(p.noiseMultiplier)}; noiseMultiplierFor() picks one for a target epsilon.`);
  }
  if (typeof p.maxGradNorm !== 'number' || !(p.maxGradNorm > 0) || !Number.isFinite(p.maxGradNorm)) {
    throw new InvalidArgumentError(`${where}.maxGradNorm (C) must be a finite number > 0, got ${String(p.maxGradNorm)}; 1.0 is the usual start.`);
  }
  if (typeof p.delta !== 'number' || !(p.delta > 0 && p.delta < 1)) {
    throw new InvalidArgumentError(`${where}.delta must be in (0, 1), got ${String(p.delta)}; use less than 1 / (number of training rows).`);
  }
  if (p.epsilonBudget !== undefined && !(p.epsilonBudget > 0)) {
    throw new InvalidArgumentError(`${where}.epsilonBudget must be > 0, got ${String(p.epsilonBudget)}.`);
  }
  if (p.samplerSeed !== undefined && !Number.isInteger(p.samplerSeed)) {
    throw new InvalidArgumentError(`${where}.samplerSeed must be an integer, got ${String(p.samplerSeed)}.`);
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
