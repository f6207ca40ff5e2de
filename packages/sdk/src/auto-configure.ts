/**
 * Automatic configuration (TrainerSession.autoConfigure): from the device (limits, features,
 * navigator.deviceMemory), the model, the data and a memory-optimisation level, the training
 * settings that fit, then a short measured calibration to choose between the ones that do.
 *
 * planCandidates (which settings fit the planner's estimate) and chooseCandidate (which measured
 * one wins) are pure; autoConfigure() runs the calibration passes through the session (its host).
 *
 * The levels follow the on-device fine-tuning guide's "memory optimisation" levels:
 * - 'minimal': least memory optimisation: no recomputation unless nothing else fits, the largest
 *   micro-batch that fits the whole budget.
 * - 'balanced' (default): as 'minimal' within 75% of the budget (room for the page, other tabs,
 *   the driver), and recomputation preferred over a micro-batch below 2.
 * - 'maximum': the smallest plan: 4-bit weights (QLoRA) where the model allows, f16 activations
 *   where the adapter has shader-f16, recomputation, micro-batch 1.
 * At 'minimal' and 'balanced' the measured candidates compete: the fastest wins, or a smaller one
 * within 10% of it ("fastest and smallest").
 */
import { InvalidArgumentError, MemoryPlanError, OutOfMemoryError, formatBytes } from '@webtune/errors';
import type { GpuContext, GpuFeatures, GpuLimits } from '@webtune/gpu';
import { adapterLayout, createAdapterOnBase, Rng, type AdapterSpec, type BaseFormat, type BaseModel, type LoadedModelFiles, type LoraConfig, type ModelConfig, type Transformer } from '@webtune/model';
import { checkMemoryPlan, Trainer, type MemoryEstimate, type TrainingRow } from '@webtune/trainer';
import type { AdapterRequest } from './session.js';

/** How hard to optimise memory, as the on-device fine-tuning guide names the levels (see the file comment). */
export type MemoryOptimization = 'minimal' | 'balanced' | 'maximum';

/** Settings autoConfigure() chooses; any of them can be fixed by the app (AutoConfigureOptions.override). */
export interface AutoSettings {
  /** Frozen weights: 'f32' (LoRA), 'nf4' (QLoRA), or 'q4' for a 4-bit ONNX file (kept as stored). */
  format: BaseFormat;
  /** Activations (and dense frozen weights) in 'f16' needs the shader-f16 feature. */
  dtype: 'f32' | 'f16';
  /** Rows per forward/backward pass (train()'s batchSize). */
  microBatchSize: number;
  /** Passes per optimizer step (train()'s gradientAccumulation): micro-batch x this = the effective batch. */
  gradientAccumulation: number;
  /** Tokens per training row (prepareData()'s seqLen). */
  seqLen: number;
  /** Activation recomputation in the backward pass (less memory, about a third more compute). */
  recompute: boolean;
  /** LoRA / DoRA rank (undefined for methods without one). */
  rank: number | undefined;
}

/** Settings the app fixes (the accumulation follows from the micro-batch and the effective batch). */
export type AutoOverride = Partial<Omit<AutoSettings, 'gradientAccumulation'>>;

/** Throws InvalidArgumentError for an override that cannot work. */
export function checkOverride(o: AutoOverride, spec: AdapterSpec): void {
  if (typeof o !== 'object' || o === null) throw new InvalidArgumentError('override must be an object of settings to fix, e.g. { format: \'nf4\' }.');
  const positive = (key: 'microBatchSize' | 'seqLen' | 'rank') => {
    const v = o[key];
    if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new InvalidArgumentError(`override.${key} must be a positive integer, got ${String(v)}.`);
  };
  positive('microBatchSize');
  positive('seqLen');
  positive('rank');
  if (o.format !== undefined && !['f32', 'nf4', 'q4'].includes(o.format)) throw new InvalidArgumentError(`override.format must be 'f32', 'nf4' or 'q4', got ${String(o.format)}.`);
  if (o.dtype !== undefined && o.dtype !== 'f32' && o.dtype !== 'f16') throw new InvalidArgumentError(`override.dtype must be 'f32' or 'f16', got ${String(o.dtype)}.`);
  if (o.recompute !== undefined && typeof o.recompute !== 'boolean') throw new InvalidArgumentError(`override.recompute must be true or false, got ${String(o.recompute)}.`);
  if (o.rank !== undefined && typeof spec.config['rank'] !== 'number') throw new InvalidArgumentError(`override.rank: the ${spec.method} adapter has no rank.`);
}

/** One setting autoConfigure() considered: what it is, the planner's estimate, and what was measured. */
export interface AutoCandidate extends AutoSettings {
  adapter: AdapterSpec;
  estimate: MemoryEstimate;
}

/** A calibrated candidate: the median time of a micro-batch pass, and what that means per optimizer step. */
export interface CalibrationMeasurement {
  format: BaseFormat;
  dtype: 'f32' | 'f16';
  microBatchSize: number;
  recompute: boolean;
  seqLen: number;
  estimateBytes: number;
  /** Median milliseconds of one forward + backward + optimizer pass over a micro-batch (the first, compiling, pass not counted). */
  msPerPass: number;
  /** msPerPass x gradientAccumulation. */
  msPerStep: number;
  tokensPerSecond: number;
  /** Passes timed. */
  passes: number;
  /** Set when the candidate could not be measured (out of memory while calibrating). */
  failed?: string;
}

/** What the planner knows about the device (GpuContext's limits and features, navigator.deviceMemory). */
export interface DeviceFacts {
  adapter: string;
  isSoftware: boolean;
  features: Pick<GpuFeatures, 'shaderF16' | 'subgroups'>;
  limits: Pick<GpuLimits, 'maxStorageBufferBindingSize' | 'maxBufferSize'>;
  /** navigator.deviceMemory in GiB (a rounded, capped hint), where the browser gives it. */
  deviceMemoryGiB: number | undefined;
}

export interface CandidateInput {
  config: ModelConfig;
  device: DeviceFacts;
  /** The format the model was loaded in ('q4' files can only stay 'q4'). */
  loadedFormat: BaseFormat;
  /** The adapter, resolved; its rank is the starting rank. */
  adapter: AdapterSpec;
  level: MemoryOptimization;
  budgetBytes: number;
  effectiveBatch: number;
  /** The sequence length to plan for first (the prepared data's, or maxSeqLen). */
  seqLen: number;
  override: AutoOverride;
  /** DP-SGD: examples run one at a time and their clipped sum is kept. */
  perExampleClipping?: boolean;
  blockSize?: number;
}

export interface CandidatePlan {
  /** Fitting candidates, one per weight format and activation type, in the level's order of preference. */
  candidates: AutoCandidate[];
  /** Settings tried and refused, with why, in the order tried, e.g. "f32 weights, ..., micro-batch 8" / "needs 612 MiB, over the budget of 460 MiB". */
  rejected: Array<{ what: string; reason: string; bytes: number }>;
  /** What was lowered to make anything fit (rank, sequence length), in words. */
  lowered: string[];
}

/** The fraction of the budget a level plans into. */
export const LEVEL_HEADROOM: Record<MemoryOptimization, number> = { minimal: 1, balanced: 0.75, maximum: 1 };

/**
 * The memory budget when the app gives none: half of navigator.deviceMemory (a GPU on the same
 * memory as the CPU shares it with everything else), at most 4 GiB; 4 GiB where the browser does
 * not say (the planner's default). WebGPU does not report a device's memory.
 */
export function defaultBudget(deviceMemoryGiB: number | undefined): number {
  const cap = 4 * 2 ** 30;
  if (deviceMemoryGiB === undefined || !(deviceMemoryGiB > 0)) return cap;
  return Math.min(cap, Math.floor((deviceMemoryGiB * 2 ** 30) / 2));
}

/** Divisors of n, largest first (the micro-batches that split an effective batch evenly). */
export function divisorsDescending(n: number): number[] {
  const out: number[] = [];
  for (let d = n; d >= 1; d--) if (n % d === 0) out.push(d);
  return out;
}

const describe = (s: Pick<AutoSettings, 'format' | 'dtype' | 'microBatchSize' | 'recompute' | 'seqLen' | 'rank'>) =>
  `${s.format} weights, ${s.dtype} activations, micro-batch ${s.microBatchSize}, seqLen ${s.seqLen}${s.recompute ? ', recompute' : ''}${s.rank !== undefined ? `, rank ${s.rank}` : ''}`;

function withRank(spec: AdapterSpec, rank: number | undefined): AdapterSpec {
  if (rank === undefined || !('rank' in spec.config)) return spec;
  const config = { ...spec.config, rank } as Record<string, unknown>;
  // PEFT's scaling is alpha / rank: keep the update's scale when the rank changes.
  if (typeof spec.config['alpha'] === 'number' && typeof spec.config['rank'] === 'number') config['alpha'] = (spec.config['alpha'] / spec.config['rank']) * rank;
  return { method: spec.method, config } as AdapterSpec;
}

/**
 * Every weight format and activation type the device and model allow, each with the first setting
 * (in the level's order) that fits the budget; ranks, then sequence lengths, are lowered only when
 * nothing fits at all.
 */
export function planCandidates(input: CandidateInput): CandidatePlan {
  const { config, device, override, level } = input;
  checkOverride(override, input.adapter);
  if (!Number.isInteger(input.seqLen) || input.seqLen < 1) throw new InvalidArgumentError(`The sequence length to plan for must be a positive integer, got ${String(input.seqLen)}.`);
  if (!Number.isInteger(input.effectiveBatch) || input.effectiveBatch < 1) throw new InvalidArgumentError(`batchSize (the effective batch) must be a positive integer, got ${input.effectiveBatch}.`);
  const formats: BaseFormat[] = override.format ? [override.format] : input.loadedFormat === 'q4' ? ['q4'] : level === 'maximum' ? ['nf4'] : ['f32', 'nf4'];
  if (input.loadedFormat === 'q4' && formats.some((f) => f !== 'q4')) throw new InvalidArgumentError('This model was loaded from 4-bit ONNX weights; its format can only be \'q4\'.');
  if (input.loadedFormat !== 'q4' && formats.includes('q4')) throw new InvalidArgumentError("format 'q4' needs a model loaded from a 4-bit ONNX file; use 'f32' or 'nf4'.");
  if (override.dtype === 'f16' && !device.features.shaderF16) throw new InvalidArgumentError("dtype 'f16' needs the shader-f16 feature, which this GPU adapter does not offer; use 'f32'.");
  const dtypes: Array<'f32' | 'f16'> = override.dtype ? [override.dtype] : !device.features.shaderF16 ? ['f32'] : level === 'maximum' ? ['f16'] : ['f32', 'f16'];
  const recomputes = override.recompute !== undefined ? [override.recompute] : level === 'maximum' ? [true] : [false, true];
  const micros = input.perExampleClipping ? [1] : override.microBatchSize !== undefined ? [override.microBatchSize] : level === 'maximum' ? [1] : divisorsDescending(input.effectiveBatch);
  if (override.microBatchSize !== undefined && input.effectiveBatch % override.microBatchSize !== 0) {
    throw new InvalidArgumentError(`microBatchSize ${override.microBatchSize} does not divide the effective batch ${input.effectiveBatch}.`);
  }
  const startRank = override.rank ?? (typeof input.adapter.config['rank'] === 'number' ? (input.adapter.config['rank'] as number) : undefined);
  const ranks: Array<number | undefined> = [startRank];
  if (startRank !== undefined && override.rank === undefined) for (let r = startRank >> 1; r >= 2; r >>= 1) ranks.push(r);
  const virtual = adapterLayout(config, input.adapter).sequence;
  const maxSeq = config.maxPositions - virtual.virtualTokens - virtual.prefixTokens;
  const firstSeq = Math.min(override.seqLen ?? input.seqLen, maxSeq);
  const seqs: number[] = [firstSeq];
  if (override.seqLen === undefined) for (let s = firstSeq >> 1; s >= 16; s >>= 1) seqs.push(s);
  const budget = Math.floor(input.budgetBytes * LEVEL_HEADROOM[level]);
  const rejected: CandidatePlan['rejected'] = [];
  const lowered: string[] = [];

  for (const seqLen of seqs) {
    for (const rank of ranks) {
      const adapter = withRank(input.adapter, rank);
      const candidates: AutoCandidate[] = [];
      for (const format of formats) {
        for (const dtype of dtypes) {
          const found = firstFit({ format, dtype, seqLen, rank, adapter }, recomputes, micros, level, (s) => {
            try {
              return checkMemoryPlan({ limits: device.limits as GpuLimits }, {
                config, format: s.format, dtype: s.dtype, adapter, batch: s.microBatchSize, seq: s.seqLen, recompute: s.recompute,
                blockSize: input.blockSize, perExampleClipping: input.perExampleClipping,
              }, { budgetBytes: budget });
            } catch (error) {
              if (!(error instanceof MemoryPlanError)) throw error;
              rejected.push({
                what: describe(s), bytes: error.estimatedBytes,
                reason: error.limitBytes === budget
                  ? `needs ${formatBytes(error.estimatedBytes)}, over the budget of ${formatBytes(budget)}`
                  : `one buffer of ${formatBytes(error.estimatedBytes)} is over this device's largest binding (${formatBytes(error.limitBytes)})`,
              });
              return undefined;
            }
          });
          if (found) candidates.push({ ...found, gradientAccumulation: input.effectiveBatch / found.microBatchSize });
        }
      }
      if (candidates.length > 0) {
        if (rank !== startRank) lowered.push(`rank ${startRank} -> ${rank}: nothing fit the budget at rank ${startRank}`);
        if (seqLen !== firstSeq) lowered.push(`seqLen ${firstSeq} -> ${seqLen}: nothing fit the budget at seqLen ${firstSeq}`);
        return { candidates, rejected, lowered };
      }
    }
  }
  return { candidates: [], rejected, lowered };
}

/** The first setting in the level's order that fits: no recomputation first (for 'balanced', only down to micro-batch 2), then recomputation. */
function firstFit(
  fixed: { format: BaseFormat; dtype: 'f32' | 'f16'; seqLen: number; rank: number | undefined; adapter: AdapterSpec },
  recomputes: boolean[],
  micros: number[],
  level: MemoryOptimization,
  fits: (s: AutoSettings) => MemoryEstimate | undefined,
): Omit<AutoCandidate, 'gradientAccumulation'> | undefined {
  let order = recomputes.flatMap((recompute) => micros.map((micro) => ({ recompute, micro })));
  // 'balanced' tries recomputation at micro-batches of 2 and more before a micro-batch of 1, whose
  // passes leave a GPU mostly idle; at 1, without recomputation first.
  if (level === 'balanced' && micros.length > 1) {
    const one = (o: { recompute: boolean; micro: number }) => o.micro === 1;
    order = [...order.filter((o) => !one(o)), ...order.filter(one)];
  }
  for (const { recompute, micro } of order) {
    const settings: AutoSettings = { format: fixed.format, dtype: fixed.dtype, microBatchSize: micro, gradientAccumulation: 1, seqLen: fixed.seqLen, recompute, rank: fixed.rank };
    const estimate = fits(settings);
    if (estimate) return { ...settings, adapter: fixed.adapter, estimate };
  }
  return undefined;
}

/**
 * The winner among measured candidates: the most tokens per second; one within 10% of the fastest
 * that needs less memory wins instead (the guide's "fastest and smallest"). Without measurements
 * (calibrationSteps: 0), the smallest estimate. Returns why, in words.
 */
export function chooseCandidate(
  candidates: readonly AutoCandidate[],
  measured: ReadonlyMap<AutoCandidate, CalibrationMeasurement>,
  level: MemoryOptimization,
  /** A time budget: the fastest measured wins outright. */
  fastestOnly = false,
): { chosen: AutoCandidate; why: string } {
  const usable = candidates.filter((c) => !measured.get(c)?.failed);
  if (usable.length === 0) {
    const failures = candidates.map((c) => `${describe(c)}: ${measured.get(c)?.failed ?? 'not measured'}`);
    // Every planned setting ran out of memory when measured: the device has less than the budget said.
    throw new OutOfMemoryError('the smallest setting autoConfigure() planned', Math.min(...candidates.map((c) => c.estimate.total)), 0, `every planned setting failed when measured: ${failures.join('; ')}; pass a smaller memoryBudgetBytes or memoryOptimization: 'maximum'`);
  }
  const bySize = [...usable].sort((a, b) => a.estimate.total - b.estimate.total);
  const unmeasured = usable.every((c) => !measured.has(c));
  if ((level === 'maximum' && !fastestOnly) || unmeasured) {
    const chosen = bySize[0]!;
    return { chosen, why: level === 'maximum' ? 'memory optimisation "maximum": the smallest plan' : `not measured: the smallest estimate (${formatBytes(chosen.estimate.total)})` };
  }
  const speed = (c: AutoCandidate) => measured.get(c)?.tokensPerSecond ?? 0;
  const fastest = usable.reduce((a, b) => (speed(b) > speed(a) ? b : a));
  if (fastestOnly) return { chosen: fastest, why: `the fastest measured (${speed(fastest).toFixed(1)} tokens/s), for the time budget` };
  const close = bySize.find((c) => speed(c) >= 0.9 * speed(fastest))!;
  if (close !== fastest) {
    return { chosen: close, why: `within 10% of the fastest (${speed(close).toFixed(1)} vs ${speed(fastest).toFixed(1)} tokens/s) and smaller (${formatBytes(close.estimate.total)} vs ${formatBytes(fastest.estimate.total)})` };
  }
  return { chosen: fastest, why: `the fastest measured (${speed(fastest).toFixed(1)} tokens/s)${usable.length > 1 ? ` of ${usable.length}` : ''}` };
}

// ---------------------------------------------------------------------------------------------
// The measured part: the session loads each candidate's weight format and times a few passes.

/** Options of autoConfigure(). Every field is optional. */
export interface AutoConfigureOptions {
  /** 'minimal' | 'balanced' (default) | 'maximum' memory optimisation (see MemoryOptimization). */
  memoryOptimization?: MemoryOptimization;
  /** GPU bytes the run may use. Default: half of navigator.deviceMemory, at most 4 GiB (4 GiB where the browser does not say). */
  memoryBudgetBytes?: number;
  /** Rows per optimizer step, the effective batch (micro-batch x accumulation). Default 8, or the prepared rows when there are fewer. */
  batchSize?: number;
  /** The longest rows to plan for when no data is prepared (default 256, at most the model's context). Prepared data's seqLen is used as it is. */
  maxSeqLen?: number;
  /** The adaptation method and settings (LoRA rank 8 by default). Its rank is where planning starts; `override: { rank }` fixes it. */
  adapter?: AdapterRequest;
  /** LoRA shorthand, as in train(). */
  lora?: Partial<LoraConfig>;
  /** Optimizer steps the run will take: with timeBudgetSeconds, the plan predicts whether they fit. */
  steps?: number;
  /** Seconds the app can give the run: the fastest candidate is chosen, and `time` says whether `steps` fit. */
  timeBudgetSeconds?: number;
  /** Passes timed per candidate after one warm-up pass (default 2); 0 measures nothing and takes the smallest plan. */
  calibrationSteps?: number;
  /** Settings fixed by the app: the rest is chosen around them (a rank here is never lowered). */
  override?: AutoOverride;
  /**
   * The run will use DP-SGD (train({ privacy })): examples run one at a time, so the micro-batch is 1
   * and the accumulation is the expected batch; the planner adds the clipped-sum copy.
   */
  privacy?: boolean;
  /** Progress: planning, each candidate's calibration, and loading the chosen format. */
  onProgress?: (p: AutoConfigureProgress) => void;
}

/** autoConfigure() progress: planning, then each candidate's calibration, then loading the chosen weight format. */
export interface AutoConfigureProgress {
  phase: 'plan' | 'calibrate' | 'load';
  done: number;
  total: number;
  /** The candidate being measured, in words. */
  candidate?: string;
}

/**
 * What autoConfigure() chose and why. The model is left loaded in `format` / `dtype`; spread
 * `train` into train() and prepare the data with `seqLen` (`reprepare` says the prepared data's
 * did not fit). Any field can be overridden by the app before training.
 */
export interface AutoPlan extends AutoSettings {
  memoryOptimization: MemoryOptimization;
  effectiveBatchSize: number;
  budgetBytes: number;
  adapter: AdapterSpec;
  /** The planner's estimate for the chosen settings. */
  estimate: MemoryEstimate;
  /** Every candidate measured (one per weight format and activation type that fit). */
  measured: CalibrationMeasurement[];
  /** Settings refused, with why and the planner's bytes. */
  rejected: Array<{ what: string; reason: string; bytes: number }>;
  /** Why this plan, in words, most important first. */
  reasons: string[];
  /** What calibration cost: passes run (warm-ups included) and wall milliseconds, model reloads included. */
  calibration: { passes: number; milliseconds: number };
  device: DeviceFacts;
  /** With timeBudgetSeconds: the predicted run time of `steps` at the measured speed, and how many steps fit. */
  time: { budgetSeconds: number; steps: number | undefined; predictedSeconds: number | undefined; fits: boolean | undefined; stepsWithinBudget: number } | undefined;
  /** True when prepared data has another seqLen than `seqLen`: prepare it again with `seqLen`. */
  reprepare: boolean;
  /**
   * True when the model was uploaded again in another format (or activation type). The adapter that
   * was in place, and a finished run's state, went with the old upload: export them first if needed.
   */
  reloaded: boolean;
  /** Fields for train(). */
  train: { batchSize: number; gradientAccumulation: number; recompute: boolean; adapter: AdapterRequest; memoryBudgetBytes: number };
}

/** What autoConfigure() needs from the session. */
export interface AutoConfigureHost {
  ctx: GpuContext;
  files: LoadedModelFiles;
  loadedFormat: BaseFormat;
  loadedDtype: 'f32' | 'f16';
  /** Prepared training rows, if any. */
  data: { rows: readonly TrainingRow[]; seqLen: number } | undefined;
  /** The adapter spec of a request, resolved as train() resolves it. */
  spec(request: { adapter?: AdapterRequest; lora?: Partial<LoraConfig> }): AdapterSpec;
  /** Lets go of the loaded model (and any adapter and run). */
  releaseModel(): void;
  /** Uploads the model in this format and activation type and makes it the loaded model; returns it. */
  loadModel(format: BaseFormat, dtype: 'f32' | 'f16'): Promise<{ model: Transformer; base: BaseModel }>;
  /** The model loaded now. */
  current(): { model: Transformer; base: BaseModel; format: BaseFormat; dtype: 'f32' | 'f16' } | undefined;
}

export async function autoConfigure(host: AutoConfigureHost, options: AutoConfigureOptions, onProgress = options.onProgress): Promise<AutoPlan> {
  const started = performance.now();
  const { ctx, files } = host;
  const config = files.config;
  const level = options.memoryOptimization ?? 'balanced';
  if (!(level in LEVEL_HEADROOM)) throw new InvalidArgumentError(`memoryOptimization must be 'minimal', 'balanced' or 'maximum', got ${String(level)}.`);
  const steps = options.calibrationSteps ?? 2;
  if (!Number.isInteger(steps) || steps < 0 || steps > 20) throw new InvalidArgumentError(`calibrationSteps must be an integer from 0 to 20, got ${String(steps)}.`);
  if (options.timeBudgetSeconds !== undefined && !(options.timeBudgetSeconds > 0)) throw new InvalidArgumentError(`timeBudgetSeconds must be > 0, got ${String(options.timeBudgetSeconds)}.`);
  if (options.steps !== undefined && (!Number.isInteger(options.steps) || options.steps < 1)) throw new InvalidArgumentError(`steps must be a positive integer, got ${String(options.steps)}.`);
  const deviceMemoryGiB = (globalThis as { navigator?: { deviceMemory?: number } }).navigator?.deviceMemory;
  const device: DeviceFacts = {
    adapter: ctx.adapter.name, isSoftware: ctx.adapter.isSoftware, features: { shaderF16: ctx.features.shaderF16, subgroups: ctx.features.subgroups },
    limits: { maxStorageBufferBindingSize: ctx.limits.maxStorageBufferBindingSize, maxBufferSize: ctx.limits.maxBufferSize }, deviceMemoryGiB,
  };
  const budgetBytes = options.memoryBudgetBytes ?? defaultBudget(deviceMemoryGiB);
  if (!(budgetBytes > 0)) throw new InvalidArgumentError(`memoryBudgetBytes must be > 0, got ${String(budgetBytes)}.`);
  const spec = host.spec({ ...(options.adapter ? { adapter: options.adapter } : {}), ...(options.lora ? { lora: options.lora } : {}) });
  // The effective batch cannot exceed the prepared rows (a batch is drawn whole from one epoch).
  const rows = host.data?.rows.length;
  if (options.batchSize !== undefined && rows !== undefined && options.batchSize > rows) {
    throw new InvalidArgumentError(`batchSize ${options.batchSize} is more than the ${rows} training rows prepared; add data or lower batchSize.`);
  }
  const effectiveBatch = options.batchSize ?? Math.min(8, rows ?? 8);
  if (options.maxSeqLen !== undefined && (!Number.isInteger(options.maxSeqLen) || options.maxSeqLen < 1)) throw new InvalidArgumentError(`maxSeqLen must be a positive integer, got ${String(options.maxSeqLen)}.`);
  const seqLen = host.data?.seqLen ?? Math.min(options.maxSeqLen ?? 256, config.maxPositions);
  onProgress?.({ phase: 'plan', done: 0, total: 1 });
  const planned = planCandidates({
    config, device, loadedFormat: host.loadedFormat, adapter: spec, level, budgetBytes, effectiveBatch, seqLen, override: options.override ?? {},
    blockSize: host.current()?.base.nf4?.blockSize, perExampleClipping: options.privacy === true,
  });
  if (planned.candidates.length === 0) {
    const smallest = planned.rejected.reduce((a, b) => (b.bytes < a.bytes ? b : a));
    throw new MemoryPlanError(
      `No setting of ${config.modelType} fits (${planned.rejected.length} tried; the smallest: ${smallest.what})`,
      smallest.bytes, Math.floor(budgetBytes * LEVEL_HEADROOM[level]),
      [`its ${smallest.reason}`, 'raise memoryBudgetBytes, or use a smaller model'],
    );
  }
  // Measure: each candidate on its own weight format (the loaded one first, so it needs no reload).
  const loaded = { format: host.loadedFormat, dtype: host.loadedDtype };
  const order = [...planned.candidates].sort((a, b) => Number(sameFormat(b, loaded)) - Number(sameFormat(a, loaded)));
  const measured = new Map<AutoCandidate, CalibrationMeasurement>();
  let passes = 0;
  // Whether the model was uploaded again on the way (the adapter in place goes with the old upload).
  let reloaded = false;
  const toMeasure = steps > 0 && !(level === 'maximum' && order.length === 1) ? order : [];
  for (const [i, candidate] of toMeasure.entries()) {
    onProgress?.({ phase: 'calibrate', done: i, total: toMeasure.length, candidate: describe(candidate) });
    reloaded = (await ensureLoaded(host, candidate)) || reloaded;
    const m = await calibrate(host, candidate, steps);
    passes += steps + 1;
    measured.set(candidate, m);
  }
  if (toMeasure.length > 0) onProgress?.({ phase: 'calibrate', done: toMeasure.length, total: toMeasure.length });
  const { chosen, why } = chooseCandidate(order, measured, level, options.timeBudgetSeconds !== undefined);
  const current = host.current();
  if (current && sameFormat(current, chosen)) {
    // Calibration's workspaces wait in the buffer pool: give them back before the run plans its own.
    ctx.pool.trim();
  } else {
    onProgress?.({ phase: 'load', done: 0, total: 1 });
    reloaded = (await ensureLoaded(host, chosen)) || reloaded;
    onProgress?.({ phase: 'load', done: 1, total: 1 });
  }
  const m = measured.get(chosen);
  const reasons = [
    `${describe(chosen)}: ${why}`,
    `fits ${formatBytes(chosen.estimate.total)} of the ${level === 'balanced' ? `75% of the ${formatBytes(budgetBytes)} budget ('balanced' leaves room)` : `${formatBytes(budgetBytes)} budget`}` +
      `${options.memoryBudgetBytes === undefined ? (deviceMemoryGiB !== undefined ? ` (half of navigator.deviceMemory ${deviceMemoryGiB} GiB, at most 4 GiB)` : ' (the default: the browser does not report device memory)') : ''}`,
    ...planned.lowered,
    ...(ctx.features.shaderF16 ? [] : ['f16 activations not considered: this adapter has no shader-f16']),
    ...(host.loadedFormat === 'q4' ? ['the model was loaded from 4-bit ONNX weights, kept as stored (q4)'] : []),
  ];
  let time: AutoPlan['time'];
  if (options.timeBudgetSeconds !== undefined) {
    const perStep = m && !m.failed ? m.msPerStep / 1000 : undefined;
    const predicted = perStep !== undefined && options.steps !== undefined ? perStep * options.steps : undefined;
    time = {
      budgetSeconds: options.timeBudgetSeconds, steps: options.steps, predictedSeconds: predicted, fits: predicted === undefined ? undefined : predicted <= options.timeBudgetSeconds,
      stepsWithinBudget: perStep ? Math.floor(options.timeBudgetSeconds / perStep) : 0,
    };
    if (time.fits === false) reasons.push(`${options.steps} steps would take about ${Math.round(predicted!)} s, over the ${options.timeBudgetSeconds} s budget: about ${time.stepsWithinBudget} steps fit`);
  }
  const adapterRequest = { method: chosen.adapter.method, config: chosen.adapter.config } as AdapterRequest;
  return {
    format: chosen.format, dtype: chosen.dtype, microBatchSize: chosen.microBatchSize, gradientAccumulation: chosen.gradientAccumulation, seqLen: chosen.seqLen,
    recompute: chosen.recompute, rank: chosen.rank, memoryOptimization: level, effectiveBatchSize: effectiveBatch, budgetBytes, adapter: chosen.adapter,
    estimate: chosen.estimate, measured: order.map((c) => measured.get(c)).filter((x): x is CalibrationMeasurement => x !== undefined), rejected: planned.rejected, reasons,
    calibration: { passes, milliseconds: Math.round(performance.now() - started) }, device, time, reloaded, reprepare: host.data !== undefined && host.data.seqLen !== chosen.seqLen,
    train: { batchSize: chosen.microBatchSize, gradientAccumulation: chosen.gradientAccumulation, recompute: chosen.recompute, adapter: adapterRequest, memoryBudgetBytes: budgetBytes },
  };
}

/**
 * Times `passes` training passes (forward, backward, AdamW, each read back) of one candidate, in
 * the format ensureLoaded() put in place, after a warm-up pass that compiles its pipelines, on the
 * prepared rows where they have its seqLen (random tokens otherwise: the time does not depend on
 * the values). The adapter it trains is
 * thrown away. An OutOfMemoryError marks the candidate failed instead of ending the search.
 */
async function calibrate(host: AutoConfigureHost, c: AutoCandidate, passes: number): Promise<CalibrationMeasurement> {
  const base = { format: c.format, dtype: c.dtype, microBatchSize: c.microBatchSize, recompute: c.recompute, seqLen: c.seqLen, estimateBytes: c.estimate.total };
  const current = host.current()!;
  const rows = calibrationRows(host, c.seqLen, c.microBatchSize);
  const { ctx } = host;
  const adapter = await createAdapterOnBase(ctx, current.base, c.adapter, 0);
  let trainer: Trainer | undefined;
  const times: number[] = [];
  try {
    trainer = await Trainer.create(ctx, current.model, adapter, {
      steps: passes + 1, batchSize: c.microBatchSize, seqLen: c.seqLen, recompute: c.recompute, learningRate: 1e-4, schedule: 'constant',
    }, { budgetBytes: Number.POSITIVE_INFINITY });
    let last = performance.now();
    await trainer.train(rows, {
      onStep: () => {
        const now = performance.now();
        times.push(now - last);
        last = now;
      },
    });
  } catch (error) {
    if (!(error instanceof OutOfMemoryError)) throw error;
    return { ...base, msPerPass: Number.NaN, msPerStep: Number.NaN, tokensPerSecond: 0, passes: 0, failed: error.message };
  } finally {
    trainer?.release();
    current.model.setAdapter(undefined);
    adapter.release();
  }
  const timed = times.slice(1).sort((a, b) => a - b);
  const msPerPass = timed[Math.floor((timed.length - 1) / 2)]!;
  const msPerStep = msPerPass * c.gradientAccumulation;
  return { ...base, msPerPass, msPerStep, tokensPerSecond: (c.microBatchSize * c.seqLen) / (msPerPass / 1000), passes: timed.length };
}

const sameFormat = (a: { format: BaseFormat; dtype: 'f32' | 'f16' }, b: { format: BaseFormat; dtype: 'f32' | 'f16' }) => a.format === b.format && a.dtype === b.dtype;

/**
 * Uploads the model in `want`'s format and activation type unless it is loaded so; true when it
 * uploaded. The loaded model is let go and the buffer pool emptied first, so that released weights
 * and workspaces are freed before the next format is uploaded (the pool keeps released buffers for
 * reuse, and another format's sizes would never reuse them).
 */
async function ensureLoaded(host: AutoConfigureHost, want: { format: BaseFormat; dtype: 'f32' | 'f16' }): Promise<boolean> {
  const current = host.current();
  if (current && sameFormat(current, want)) return false;
  host.releaseModel();
  host.ctx.pool.trim();
  await host.loadModel(want.format, want.dtype);
  return true;
}

/** Rows of the candidate's length: the prepared data's where it has that length and enough rows, seeded random tokens otherwise. */
function calibrationRows(host: AutoConfigureHost, seqLen: number, count: number): readonly TrainingRow[] {
  if (host.data && host.data.seqLen === seqLen && host.data.rows.length >= count) return host.data.rows.slice(0, Math.max(count, 1));
  const rng = new Rng(7);
  const vocab = host.files.config.vocabSize;
  return Array.from({ length: count }, () => Uint32Array.from({ length: seqLen + 1 }, () => rng.nextU32() % vocab));
}
