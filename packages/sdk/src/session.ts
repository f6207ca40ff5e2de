/**
 * TrainerSession: everything an app does with webtune, as one object with plain-data arguments
 * and results, so it can live in a Web Worker behind Comlink (worker.ts, client.ts) or be used
 * directly in Node or on a page. It owns the GPU context, the model, the data, the run and its
 * checkpoints.
 */
import * as Comlink from 'comlink';
import { ChatTemplateError, CheckpointMismatchError, DataFormatError, DeviceLostError, InvalidArgumentError, MemoryPlanError, OutOfMemoryError, UnsupportedModelError, WebtuneError } from '@webtune/errors';
import { createGpuContext, IGNORE_INDEX, type CreateGpuContextOptions, type GpuContext } from '@webtune/gpu';
import {
  ChatTemplate,
  checkChatMessage,
  exportPeftAdapter,
  filesSource,
  Rng,
  generate,
  importPeftAdapter,
  loadModelFiles,
  adapterFromTensors,
  createAdapterOnBase,
  resolveAdapterSpec,
  Transformer,
  uploadBaseModel,
  storedFourBit,
  urlSource,
  weightReader,
  mergeAdapterFiles,
  adapterSpecProblem,
  parseSafetensors,
  serializeSafetensors,
  tensorToFloat32,
  type Architecture,
  type BaseFormat,
  type BaseModel,
  type ChatMessage,
  type GenerateOptions,
  type HostTensor,
  type LoadedModelFiles,
  type LoadProgress,
  type LoraConfig,
  type IA3Config,
  type DoraConfig,
  type BitFitConfig,
  type PromptTuningConfig,
  type PTuningConfig,
  type PrefixTuningConfig,
  type BottleneckConfig,
  type UniPeltConfig,
  adapterMethod,
  type ModelConfig,
  type AdapterSpec,
  type Adapter,
  type ModelCache,
  type ModelFileSource,
  type PeftFiles,
  type Tokenizer,
  type WeightFormat,
} from '@webtune/model';
import {
  checkMemoryPlan,
  checkpointFromFile,
  checkpointToFile,
  decodeCheckpoint,
  encodeCheckpoint,
  modelFingerprint,
  sha256Hex,
  DEFAULT_TRAIN_CONFIG,
  estimateTrainingMemory,
  MemoryCheckpointStore,
  checkEarlyStopping,
  evaluateRows,
  packTokens,
  perplexity,
  readRecords,
  rowsFromExamples,
  tokenizeConversation,
  tokenizeDocuments,
  tokenizePromptCompletion,
  Trainer,
  type CheckpointMeta,
  type CheckpointStore,
  type DataCursor,
  type DataRecord,
  type Evaluation,
  type FileFormat,
  type JsonObject,
  type ReadProgress,
  type RecordKind,
  type RecordsResult,
  type TokenizedExample,
  type TrainingRow,
  type MemoryEstimate,
  type StepProgress,
  type TrainConfig,
  type TrainerState,
  type DpSgdConfig,
  type PrivacyPreset,
  PRIVACY_PRESETS,
  defaultDelta,
  noiseMultiplierFor,
} from '@webtune/trainer';
import type { ExportOnnxOptions } from '@webtune/onnx';
import { checkConditions, powerDecision, resolvePowerPolicy, type DeviceConditions, type PowerPolicy } from './device-conditions.js';
import { acquireRunLock, checkIfRunLocked, type IfRunLocked } from './run-lock.js';
import { autoConfigure, type AutoConfigureOptions, type AutoPlan } from './auto-configure.js';

/** Options of TrainerSession.generate: sampling settings, and whether the adapter takes part. */
export interface SessionGenerateOptions extends Omit<GenerateOptions, 'onToken' | 'signal'> {
  /** false: generate from the base model alone (the adapter is kept). Default true. */
  useAdapter?: boolean;
  /** Chat messages only: a Jinja chat template to render them with, instead of the model's (or prepareData's). */
  chatTemplate?: string;
}

export interface SessionEnvironment {
  /** WebGPU entry point; default navigator.gpu (in Node pass createNodeGpu()). */
  gpu?: GPU;
  /** Where checkpoints go; default in memory (the worker passes IndexedDB). */
  checkpoints?: CheckpointStore;
  /** Where downloaded model files are cached (default: the Cache API where it exists). */
  modelCache?: ModelCache | false;
  /**
   * ONNX files, in and out. Absent unless the app asked for them (createOnnxTrainer(), or a worker
   * on 'webtune/onnx-worker'), so that apps training safetensors models never bundle the ONNX
   * reader and protobufjs.
   */
  onnx?: OnnxSupport;
  /**
   * Device options: caps on the limits webtune uses (to behave as a smaller device would), or
   * features left off (e.g. `['shader-f16']`). Every device the session creates, recovery's included, uses them.
   */
  gpuOptions?: Pick<CreateGpuContextOptions, 'limits' | 'disableFeatures' | 'tuning'>;
}

/** What the session needs from @webtune/onnx: the loader's WeightFormat for a graph, and the export. */
export interface OnnxSupport {
  weightFormat(file: string): WeightFormat;
  exportModel(files: LoadedModelFiles, config: LoraConfig, tensors: Map<string, HostTensor>, options: ExportOnnxOptions): Map<string, Uint8Array>;
}

/**
 * Options of loadModel(): how the frozen weights and activations are stored on the GPU, download
 * progress, caching, and reading an ONNX export instead of safetensors. All are optional; `format: 'nf4'`
 * (QLoRA) is the usual choice when GPU memory is tight.
 */
export interface LoadOptions {
  /**
   * Frozen linear weights on the GPU: 'f32' (LoRA), 'nf4' (QLoRA: quantized to NF4 at load), or
   * 'q4' (a 4-bit ONNX file's MatMulNBits weights kept 4-bit as stored). Default: 'q4' for an ONNX
   * file whose linear weights are all 4-bit, otherwise 'f32'.
   */
  format?: BaseFormat;
  /** Activation storage: 'f32', 'f16' (needs shader-f16), or 'auto' (f16 where available). Default 'f32'. */
  dtype?: 'f32' | 'f16' | 'auto';
  /** Called as each file's bytes arrive (cached files once, whole), with per-file and overall byte counts. */
  onProgress?: (p: LoadProgress) => void;
  /**
   * false: read the files from their source every time instead of keeping them in the model
   * cache (the Cache API in a browser), e.g. when the app's service worker already keeps them.
   * Default true.
   */
  cache?: boolean;
  /**
   * Read the weights from this ONNX graph in the folder (transformers.js / Optimum layout, e.g.
   * 'onnx/model.onnx' or 'onnx/model_q4.onnx'; f32, f16 and 4-bit MatMulNBits weights) instead of
   * safetensors. exportOnnx() then writes the fine-tuned model back as ONNX.
   */
  onnx?: string;
}

/**
 * What loadModel() and recoverDevice() resolve to: the model's shape from config.json (`modelType` is its
 * model_type, `architecture` the family webtune runs it as: 'llama' or 'gpt2'), how the weights sit on
 * the GPU (`format`, `dtype`, and `weightBytes`, the bytes of GPU memory the frozen weights take) and
 * `adapter`, the GPU adapter's vendor, architecture and description (empty where the browser hides them).
 */
export interface ModelInfo {
  modelType: string;
  architecture: string;
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  maxPositions: number;
  format: BaseFormat;
  dtype: 'f32' | 'f16';
  weightBytes: number;
  adapter: string;
}

/**
 * Training data for prepareData():
 * - `{ text }` / `{ texts }`: raw text (one string, or documents each followed by the EOS token), cut into windows;
 * - `{ file }`: a File or Blob, JSONL, a JSON array, CSV (header row) or plain text, by its name or `format`;
 * - `{ content, format }`: the same formats as a string (pasted JSONL, say);
 * - `{ records }`: records as objects.
 * Records are `{ text }`, `{ prompt, completion }` or `{ messages: [{ role, content }] }`, one kind per data set.
 */
export type DataInput =
  | { text: string }
  | { texts: string[] }
  | { file: Blob; format?: FileFormat }
  | { content: string; format?: FileFormat }
  | { records: readonly DataRecord[] };

/** Options of prepareData(): sequence length, held-out data, and how supervised examples are built. */
export interface DataOptions {
  /** Tokens per training sequence (default 128). */
  seqLen?: number;
  /**
   * Share held out for evaluation (default 0.1; 0 for none). For raw text, the last sequences of the
   * text; for examples, a seeded random choice of whole examples (`seed`). Ignored when `heldOutData` is given.
   */
  heldOut?: number;
  /** A separate held-out set, prepared the same way (instead of the `heldOut` share). */
  heldOutData?: DataInput;
  /** Seeds the held-out choice among examples (default 0). */
  seed?: number;
  /**
   * Prompt/completion and conversation data: learn only the completion / assistant tokens (default
   * true; TRL's completion_only_loss, also on by default there, and assistant_only_loss, which TRL
   * leaves off by default); false learns every token, template text included.
   */
  completionOnly?: boolean;
  /** A record or example that cannot be used: 'error' (default) throws DataFormatError with its line; 'skip' skips and counts it (DataInfo.skipped). */
  onInvalid?: 'error' | 'skip';
  /** An example longer than seqLen + 1 tokens: 'truncate' (default; the end is cut and counted), 'skip', or 'error'. */
  overlong?: 'truncate' | 'skip' | 'error';
  /**
   * A Jinja chat template for conversations, instead of the model's own (which comes from
   * chat_template.jinja or tokenizer_config.json). A model that ships none needs this: webtune
   * does not guess a format. generate() with messages uses the same template afterwards.
   */
  chatTemplate?: string;
  /** Progress while reading and tokenizing (may also be passed as prepareData's third argument). */
  onProgress?: (p: DataProgress) => void;
}

/** prepareData() progress: bytes read of a file, then examples tokenized. */
export interface DataProgress {
  phase: 'read' | 'tokenize';
  done: number;
  total: number | undefined;
}

/**
 * What prepareData() resolves to. `kind` says what the data was; the sequences it gave (each
 * `seqLen` positions), how many are held out, and for examples what was learned, cut and skipped.
 */
export interface DataInfo {
  kind: RecordKind;
  /** Tokens in the data (EOS tokens included); for examples, before truncation. */
  tokens: number;
  seqLen: number;
  trainSequences: number;
  heldOutSequences: number;
  /** Examples read (prompt/completion pairs or conversations; for text, documents). */
  examples: number;
  /** Targets with a loss in the training sequences, held-out ones not counted (completion/assistant tokens for examples). */
  learnedTokens: number;
  /** Padding positions over all sequences (examples are right-padded to seqLen; a batch runs only to its longest row, rounded up to 16). */
  paddingTokens: number;
  /** Examples longer than seqLen + 1 tokens whose end was cut, and the tokens cut. */
  truncatedExamples: number;
  truncatedTokens: number;
  /** Records or examples skipped (onInvalid: 'skip', overlong: 'skip'): how many, and the first 100 with line and reason. */
  skippedCount: number;
  skipped: Array<{ line: number; message: string }>;
  /**
   * Examples only: the lines (or, for records and JSON arrays, the 1-based indexes) of the examples
   * held out from training by the `heldOut` share, so an app can tell which ones the model never saw.
   */
  heldOutLines: number[] | undefined;
  /** Where the chat template came from, for conversations ('tokenizer_config.json', 'chat_template.jinja', or the app's). */
  chatTemplate: string | undefined;
  /** What the app should know, e.g. prompt/completion pairs whose tokens merged across the boundary. */
  warnings: string[];
  /** SHA-256 of the training and held-out sequences: a checkpoint only resumes on the same data. */
  fingerprint: string;
}

/**
 * What train() runs: the number of optimizer steps, the LoRA settings, checkpointing and resuming, and any
 * TrainConfig field to override (batchSize 4, learningRate 2e-4, warmupSteps 0, seed 0, ... by default).
 * seqLen is fixed by prepareData(). Give a stable `runId` with `resume: true` to continue after a reload.
 */
export interface TrainRequest extends Partial<Omit<TrainConfig, 'seqLen' | 'privacy'>> {
  steps: number;
  /**
   * Train with DP-SGD (per-example clipping, Gaussian noise, Poisson sampling; Opacus' method)
   * under a privacy budget: `{ preset: 'medium' }`, `{ targetEpsilon: 3 }`, or a fixed
   * `{ noiseMultiplier }`. The privacy unit is one training row (one example, or one window of a
   * single text). See PrivacyRequest.
   */
  privacy?: PrivacyRequest;
  /**
   * The adaptation method and any of its settings (defaults fill the rest): LoRA (default), IA3
   * or BitFit, each optionally on a subset of layers (`layers`). Example:
   * `{ method: 'ia3' }`, `{ method: 'bitfit', config: { learningRateScale: 10 } }`,
   * `{ method: 'lora', config: { rank: 8, layers: [26, 27, 28, 29] } }`.
   */
  adapter?: AdapterRequest;
  /** LoRA settings; shorthand for `adapter: { method: 'lora', config: lora }`. */
  lora?: Partial<LoraConfig>;
  /** Names the run's checkpoints; default 'run'. A fresh run (resume: false) deletes that run's earlier checkpoints. */
  runId?: string;
  /** Checkpoint every N optimizer steps (and on pause and at the end). Default 50; 0: only on pause and at the end. */
  checkpointEvery?: number;
  /** Checkpoints kept per run. Default 3. */
  keepLast?: number;
  /** Continue from the run's newest valid checkpoint instead of starting over. */
  resume?: boolean;
  /** Progress at most this often (ms); the first and last steps always report. Default 250. */
  progressIntervalMs?: number;
  /** GPU memory budget for the planner (bytes; default 4 GiB). */
  memoryBudgetBytes?: number;
  /** 'fresh' (default): a new PEFT-initialised adapter; 'current': start from the adapter in place (imported or restored), e.g. a federated round's global adapter. */
  startFrom?: 'fresh' | 'current';
  /** FedProx: pull towards the starting weights with this weight (default 0). */
  proximalMu?: number;
  /**
   * Automatic recovery from an OutOfMemoryError or a lost GPU device during the run: a fresh
   * device, the model uploaded again, and the run resumed from its newest checkpoint (or its start)
   * with half the micro-batch (`microBatchSize`; the batch, and so the effective batch, the data
   * order and the schedule, stay the same). Each attempt is a progress event (`recovery`) and an
   * entry of TrainSummary.recoveries. Default `{ maxRetries: 2 }`; false turns it off.
   */
  recovery?: { maxRetries?: number } | false;
  /** Battery and heat (see PowerPolicy): off unless given. The page feeds the conditions (watchDeviceConditions()). */
  power?: PowerPolicy;
  /**
   * Another tab of this site is training the same runId (Web Locks): 'error' (default) rejects with
   * RunLockedError (after a 2-second grace for a tab that is just reloading); 'wait' waits until that
   * tab's train() or resume() returns. pause() or cancel() ends the wait (RunLockedError).
   */
  ifRunLocked?: IfRunLocked;
  /**
   * Evaluate the held-out data every N optimizer steps (loss and perplexity over its target
   * tokens, in progress events and the summary). Default: only once, when the run completes.
   */
  evalEvery?: number;
  /** Stop when the held-out loss has not improved by more than `minDelta` for `patience` evaluations (needs evalEvery). */
  earlyStopping?: { patience: number; minDelta?: number };
  /**
   * When the run ends (completed or stopped early), put back the adapter of the best evaluation
   * (kept as checkpoint run `<runId>.best`). Needs evalEvery. Default false.
   */
  restoreBest?: boolean;
}

/**
 * DP-SGD settings of a run (TrainRequest.privacy). Give the budget as a preset or a target epsilon
 * (the noise multiplier is then the smallest that spends at most the target over `steps`, as
 * Opacus' get_noise_multiplier), or a fixed noise multiplier (with or without a budget).
 */
export interface PrivacyRequest {
  /** Target epsilon from the on-device fine-tuning guide: low 10, medium 3, high 1, veryHigh 0.1. */
  preset?: PrivacyPreset;
  /** The budget: training stops (with a checkpoint) before a step would spend more. */
  targetEpsilon?: number;
  /** sigma, the noise std as a multiple of maxGradNorm; default: chosen for the target. */
  noiseMultiplier?: number;
  /** delta; default 1 / (10 x training rows). */
  delta?: number;
  /** C, each example's gradient clipped to this L2 norm; default 1. */
  maxGradNorm?: number;
  /** Seeds the Poisson sampler (reproducible runs, tests); default: the CSPRNG. The noise is always fresh. */
  samplerSeed?: number;
}

/** The privacy of a DP-SGD run (TrainSummary.privacy, and `webtune_privacy` in the exported adapter_config.json). */
export interface PrivacySummary {
  /** epsilon spent over every step of the run (resumed parts included), at `delta`. */
  epsilon: number;
  delta: number;
  /** The budget the run stopped at, if it had one. */
  targetEpsilon: number | undefined;
  noiseMultiplier: number;
  maxGradNorm: number;
  /** Poisson sampling rate q = expected batch / training rows. */
  sampleRate: number;
  /** Optimizer steps taken (each one Gaussian mechanism release). */
  steps: number;
  /** Training rows (the privacy unit is one row). */
  dataSize: number;
  accountant: 'rdp';
  mechanism: 'dp-sgd';
  /**
   * 'current' when the run started from the adapter in place (startFrom): epsilon covers this
   * run's steps only, not whatever trained that adapter (if it saw the same rows, the total
   * privacy loss is larger: the two runs compose).
   */
  startedFrom: 'fresh' | 'current';
}

/**
 * What train() and resume() resolve to when the run stops (completed, paused, cancelled, early-stopped or,
 * under DP-SGD, budget-exhausted): the step
 * reached, the loss of the last step this call took and, for a completed run with held-out data, the mean
 * held-out loss; throughput in tokens per second, and the GPU bytes webtune accounted at peak next to the
 * planner's estimate.
 */
export interface TrainSummary {
  runId: string;
  /**
   * 'early-stopped': the held-out loss stopped improving (TrainRequest.earlyStopping).
   * 'budget-exhausted': the next step would have spent more than the privacy budget (a checkpoint was written).
   */
  stopped: 'completed' | 'paused' | 'cancelled' | 'early-stopped' | 'budget-exhausted';
  step: number;
  totalSteps: number;
  lastLoss: number | undefined;
  heldOutLoss: number | undefined;
  tokensPerSecond: number;
  peakBytes: number;
  estimateBytes: number;
  /** The checkpoint written when the run stopped (pause or completion), if any. */
  checkpoint: CheckpointMeta | undefined;
  /** Newer checkpoints that failed verification and were skipped when resuming. */
  skippedCheckpoints: Array<{ id: string; message: string }>;
  /** The step of the checkpoint this call resumed from (train with resume: true). */
  resumedFrom: number | undefined;
  /** Every held-out evaluation of the run (evalEvery), resumed parts included. */
  evaluations: Array<Evaluation & { perplexity: number }>;
  /** The best evaluation, if any. */
  best: Evaluation | undefined;
  /** True when the adapter in place is the best evaluation's (restoreBest). */
  restoredBest: boolean;
  /** DP-SGD runs: the privacy spent and the settings that spent it. */
  privacy?: PrivacySummary;
  /**
   * What the app should know but that did not stop the run, e.g. that it resumed from a checkpoint
   * written by an older webtune, whose metadata (step, data position, settings) had no checksum.
   */
  warnings: string[];
  /** Automatic recoveries (TrainRequest.recovery) this call made, oldest first. */
  recoveries: RecoveryEvent[];
  /** Waits for battery or heat (TrainRequest.power) this call made, oldest first. */
  pauses: PowerPause[];
  /** Rows per forward/backward pass at the end (smaller than batchSize after a recovery). */
  microBatchSize: number;
}

/** One automatic recovery: what failed, where the run went on from, and the smaller micro-batch it took. */
export interface RecoveryEvent {
  /** 1 for the first recovery of this call. */
  attempt: number;
  /** 'OutOfMemoryError' or 'DeviceLostError', and its message. */
  error: string;
  message: string;
  /** The step being taken when it failed (the next optimizer step). */
  failedAtStep: number;
  /** The checkpoint step it resumed from (0: the run's start). */
  resumedFrom: number;
  /** Rows per pass from now on, and passes per optimizer step (gradientAccumulation x batchSize / microBatchSize). */
  microBatchSize: number;
  passesPerStep: number;
}

/** One wait for battery or heat (TrainRequest.power). */
export interface PowerPause {
  reason: 'battery' | 'thermal';
  /** Optimizer steps taken when it began (a checkpoint at that step was written first). */
  step: number;
  milliseconds: number;
}

/**
 * Training progress for train()'s and resume()'s callback, after an optimizer step: step, loss, learning
 * rate, gradient norm, speed, seconds left and live GPU bytes. At most one per `progressIntervalMs` (default
 * 250 ms); the first and last steps always report. Not the DOM's ProgressEvent.
 */
export interface ProgressEvent extends StepProgress {
  /** The run this progress belongs to (TrainRequest.runId). */
  runId: string;
  /** Set while the run waits (TrainRequest.power): on battery below the threshold, or at critical CPU pressure. Reported when the wait begins. */
  paused?: 'battery' | 'thermal';
  /** Set while the run paces itself at serious CPU pressure: the idle milliseconds between steps. */
  pacingMs?: number;
  /** The conditions the page last reported (runs with TrainRequest.power). */
  conditions?: DeviceConditions;
  /** Set on the event of an automatic recovery (the step is the one it resumed from). */
  recovery?: RecoveryEvent;
  /** Set while train() waits for another tab's run of the same runId (ifRunLocked: 'wait'). */
  waitingForLock?: boolean;
}

/**
 * TrainRequest.privacy -> the trainer's DP-SGD settings: delta defaults to 1/(10 N), a preset or
 * target epsilon becomes the budget, and sigma, unless given, is the smallest that spends at most
 * the budget over the run's steps at q = expected batch / N. Refuses packed text (several
 * documents joined into windows), whose rows are not one person's example each.
 */
export function resolvePrivacy(request: Pick<TrainRequest, 'privacy' | 'steps' | 'batchSize' | 'gradientAccumulation'>, dataSize: number, data?: Pick<DataInfo, 'kind' | 'examples'>): DpSgdConfig {
  const p = request.privacy!;
  if (typeof p !== 'object' || p === null) throw new InvalidArgumentError('privacy must be an object such as { preset: \'medium\' } or { targetEpsilon: 3 }.');
  if (data && data.kind === 'text' && data.examples > 1) {
    throw new InvalidArgumentError(
      `DP-SGD protects one training row, but this text data packs ${data.examples} documents into windows, so one document can span several rows and one row can mix documents. ` +
        'Give one example per row instead ({ prompt, completion } or { messages } records), or a single text whose windows are the unit.',
    );
  }
  if (p.preset !== undefined && !(p.preset in PRIVACY_PRESETS)) {
    throw new InvalidArgumentError(`privacy.preset "${String(p.preset)}" is not one of ${Object.keys(PRIVACY_PRESETS).join(', ')}.`);
  }
  if (p.preset !== undefined && p.targetEpsilon !== undefined) throw new InvalidArgumentError('privacy: give a preset or a targetEpsilon, not both.');
  const target = p.preset !== undefined ? PRIVACY_PRESETS[p.preset] : p.targetEpsilon;
  if (target !== undefined && (typeof target !== 'number' || !(target > 0) || !Number.isFinite(target))) {
    throw new InvalidArgumentError(`privacy.targetEpsilon must be a finite number > 0, got ${String(target)}.`);
  }
  if (target === undefined && p.noiseMultiplier === undefined) {
    throw new InvalidArgumentError('privacy needs a budget (preset or targetEpsilon) or a noiseMultiplier.');
  }
  const expected = (request.batchSize ?? DEFAULT_TRAIN_CONFIG.batchSize) * (request.gradientAccumulation ?? DEFAULT_TRAIN_CONFIG.gradientAccumulation);
  if (expected > dataSize) {
    throw new InvalidArgumentError(`DP-SGD samples each row with probability batchSize x gradientAccumulation / rows = ${expected} / ${dataSize} > 1; add data or lower the batch size.`);
  }
  const delta = p.delta ?? defaultDelta(dataSize);
  const noiseMultiplier = p.noiseMultiplier ?? noiseMultiplierFor({ targetEpsilon: target!, delta, sampleRate: expected / dataSize, steps: request.steps });
  return {
    noiseMultiplier, maxGradNorm: p.maxGradNorm ?? 1, delta,
    ...(target !== undefined ? { epsilonBudget: target } : {}), ...(p.samplerSeed !== undefined ? { samplerSeed: p.samplerSeed } : {}),
  };
}

/** TrainRequest.recovery's retries (0 when off); throws for a setting that cannot work. */
function recoveryRetries(recovery: TrainRequest['recovery']): number {
  if (recovery === false) return 0;
  if (recovery === undefined) return 2;
  if (typeof recovery !== 'object' || recovery === null) throw new InvalidArgumentError('recovery must be false or { maxRetries }.');
  const n = recovery.maxRetries ?? 2;
  if (!Number.isInteger(n) || n < 0 || n > 10) throw new InvalidArgumentError(`recovery.maxRetries must be an integer from 0 to 10, got ${String(recovery.maxRetries)}.`);
  return n;
}

/** The largest divisor of `batch` at most half of `micro` (1 stays 1: a lost device is retried at the same size). */
export function smallerMicroBatch(batch: number, micro: number): number {
  for (let d = Math.floor(micro / 2); d > 1; d--) if (batch % d === 0) return d;
  return 1;
}

/** A progress event for a moment without a step result (before the first step, or a wait). */
function idleProgress(step: number, totalSteps: number): StepProgress {
  return { step, totalSteps, epoch: 0, loss: Number.NaN, learningRate: 0, gradNorm: 0, tokensPerSecond: 0, etaSeconds: Number.NaN, gpuBytes: 0 };
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** The run that holds a run's best-evaluation adapter (restoreBest). */
const bestRunId = (runId: string) => `${runId}.best`;

/** What tokenizeData() makes of one DataInput. */
interface PreparedRows {
  kind: RecordKind;
  rows: TrainingRow[];
  /** The line (or record index) of each row's example; undefined for text windows. */
  lines: number[] | undefined;
  tokens: number;
  examples: number;
  paddingTokens: number;
  truncatedExamples: number;
  truncatedTokens: number;
  skipped: { count: number; list: Array<{ line: number; message: string }> };
  warnings: string[];
  chatTemplate: string | undefined;
}

/** Targets with a loss in the rows (a text window learns all its seq targets). */
function countLearned(rows: readonly TrainingRow[]): number {
  let n = 0;
  for (const r of rows) {
    if (r instanceof Uint32Array) n += r.length - 1;
    else for (const t of r.targets) if (t !== IGNORE_INDEX) n++;
  }
  return n;
}

/** SHA-256 of the rows' bytes in order (a text window's seq + 1 tokens; an example's inputs, then its targets). */
async function rowsFingerprint(rows: readonly TrainingRow[]): Promise<string> {
  let total = 0;
  for (const r of rows) total += r instanceof Uint32Array ? r.byteLength : r.ids.byteLength + r.targets.byteLength;
  const all = new Uint8Array(total);
  let at = 0;
  const put = (a: Uint32Array) => {
    all.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), at);
    at += a.byteLength;
  };
  for (const r of rows) {
    if (r instanceof Uint32Array) put(r);
    else {
      put(r.ids);
      put(r.targets);
    }
  }
  return sha256Hex(all);
}

interface Loaded {
  files: LoadedModelFiles;
  base: BaseModel;
  model: Transformer;
  format: BaseFormat;
  dtype: 'f32' | 'f16';
}

/** A merged model folder's two files (exportMerged()). */
export interface MergedFiles {
  'config.json': string;
  'model.safetensors': Uint8Array;
}

/**
 * An adapter's trainable state (exportAdapterState / importAdapterState): what federated rounds
 * exchange. Unlike the adapter files, it holds every tensor training updates, P-tuning's encoder
 * and a prefix projection included, under the keys `Adapter.trainable()` names them.
 */
export interface AdapterState {
  /** The method and its resolved config. */
  spec: AdapterSpec;
  /** The model family it belongs to (importAdapterState refuses a model of another family). */
  architecture: Architecture;
  /** safetensors: every trainable tensor as F32 under its trainable key. */
  weights: Uint8Array;
}

/** Which adaptation method train() uses, with any subset of its config. */
export type AdapterRequest =
  | { method: 'lora'; config?: Partial<LoraConfig> }
  | { method: 'dora'; config?: Partial<DoraConfig> }
  | { method: 'ia3'; config?: Partial<IA3Config> }
  | { method: 'bitfit'; config?: Partial<BitFitConfig> }
  | { method: 'prompt-tuning'; config?: Partial<PromptTuningConfig> }
  | { method: 'p-tuning'; config?: Partial<PTuningConfig> }
  | { method: 'prefix-tuning'; config?: Partial<PrefixTuningConfig> }
  | { method: 'bottleneck'; config?: Partial<BottleneckConfig> }
  | { method: 'unipelt'; config?: Partial<UniPeltConfig> };

/** The resolved adapter spec of a request (`adapter`, or the `lora` shorthand, or LoRA's defaults). */
export function adapterSpecOf(model: ModelConfig, request: Pick<TrainRequest, 'adapter' | 'lora'>): AdapterSpec {
  if (request.adapter && request.lora) {
    throw new InvalidArgumentError('Give the adapter settings once: `adapter: { method, config }` or the `lora` shorthand, not both.');
  }
  if (request.adapter) return resolveAdapterSpec(model, request.adapter.method, (request.adapter.config ?? {}) as Record<string, unknown>);
  return resolveAdapterSpec(model, 'lora', (request.lora ?? {}) as Record<string, unknown>);
}

interface Run {
  runId: string;
  request: TrainRequest;
  trainer: Trainer;
  adapter: Adapter;
  controller: AbortController | undefined;
  cursor: DataCursor | undefined;
  resumedFrom: number | undefined;
  warnings: string[];
  /** The data it trains on (DataInfo.fingerprint): resume() refuses other data. */
  dataFingerprint: string;
  /** The adapter it started from (startFrom: 'current'), kept on the CPU for a recovery before the first checkpoint. */
  startTensors: Map<string, HostTensor> | undefined;
  recoveries: RecoveryEvent[];
  pauses: PowerPause[];
  /** The last progress the run computed (reported or not), the base of pause and recovery events. */
  lastProgress: ProgressEvent | undefined;
  /** Stopped by pause() and not resumed since: resume() can continue it, and autoConfigure() would end it. */
  paused: boolean;
}

export class TrainerSession {
  private ctx: GpuContext | undefined;
  private loaded: Loaded | undefined;
  private data: { train: TrainingRow[]; heldOut: TrainingRow[]; info: DataInfo } | undefined;
  /** The template the app chose in prepareData({ chatTemplate }), used again by generate(messages). */
  private chatTemplate: ChatTemplate | undefined;
  private run: Run | undefined;
  private adapter: Adapter | undefined;
  /** The privacy of the run that trained the adapter in place (DP-SGD), for exportAdapter. */
  private adapterPrivacy: PrivacySummary | undefined;
  private readonly store: CheckpointStore;
  /** The page's latest battery and pressure report (updateConditions). */
  private conditions: DeviceConditions = {};
  private conditionWaiters: Array<() => void> = [];
  /** Set while train() or resume() waits for a run lock, runs or recovers, and during autoConfigure(): nothing else may start. */
  private busy: string | undefined;
  /** pause() or cancel() asked while no step was running (a lock wait, a recovery): the next continueRun() stops at once. */
  private stopRequested: 'pause' | 'cancel' | undefined;
  /** Ends a wait for another tab's run lock (pause(), cancel()). */
  private lockWait: AbortController | undefined;
  /** The model files and how they were uploaded, kept while a new device is set up, so a failed recovery can be retried. */
  private modelSource: Pick<Loaded, 'files' | 'format' | 'dtype'> | undefined;

  constructor(private readonly env: SessionEnvironment = {}) {
    this.store = env.checkpoints ?? new MemoryCheckpointStore();
  }

  private async context(): Promise<GpuContext> {
    if (this.ctx && !this.ctx.lostError) return this.ctx;
    this.ctx = await createGpuContext({ ...this.env.gpuOptions, gpu: this.env.gpu });
    return this.ctx;
  }

  /**
   * After a lost device (status().deviceLost, or a DeviceLostError from any call): a new device,
   * the loaded model uploaded again from the files already in memory. The run's adapter is gone
   * with the old device; continue with train({ ..., resume: true }) from the last checkpoint.
   * (train() does this by itself for a device lost during a run: TrainRequest.recovery.)
   */
  async recoverDevice(): Promise<ModelInfo> {
    await this.freshDevice();
    return this.modelInfo();
  }

  /** Everything on the GPU let go (a lost device's buffers included), a new device, and the loaded model uploaded again in its format. */
  private async freshDevice(): Promise<void> {
    // From modelSource when a failed recovery left nothing loaded: recoverDevice() can then try again.
    const source = this.loaded ?? this.modelSource;
    if (!source) throw new InvalidArgumentError('No model is loaded: call loadModel() first.');
    const { files, format, dtype } = source;
    this.releaseModel();
    this.ctx?.destroy();
    this.ctx = undefined;
    await this.uploadModel(files, format, dtype);
  }

  private async uploadModel(files: LoadedModelFiles, format: BaseFormat, dtype: 'f32' | 'f16'): Promise<void> {
    this.modelSource = { files, format, dtype };
    const ctx = await this.context();
    const base = await uploadBaseModel(ctx, files.config, weightReader(files), { format, dtype });
    try {
      this.loaded = { files, base, model: await Transformer.create(ctx, base), format, dtype };
    } catch (error) {
      base.release();
      throw error;
    } finally {
      // Quantizing to NF4 goes through float32 copies that the pool would keep: free them now.
      ctx.pool.trim();
    }
  }

  /**
   * The battery and CPU pressure the page observed (watchDeviceConditions() sends them); runs
   * with TrainRequest.power wait or pace on them. Fields left out keep their last value.
   */
  updateConditions(conditions: DeviceConditions): void {
    checkConditions(conditions);
    this.conditions = { ...this.conditions, ...conditions };
    for (const wake of this.conditionWaiters.splice(0)) wake();
  }

  /**
   * Chooses training settings for this device and model, measures the ones that fit, and leaves
   * the model loaded in the chosen weight format (see AutoConfigureOptions and AutoPlan): spread
   * `plan.train` into train(), and prepare the data with `plan.seqLen`.
   *
   * @example
   * ```ts
   * const plan = await trainer.autoConfigure({ memoryOptimization: 'balanced', batchSize: 8 });
   * console.log(plan.reasons, plan.rejected);
   * await trainer.prepareData({ text }, { seqLen: plan.seqLen });
   * await trainer.train({ steps: 100, ...plan.train });
   * ```
   */
  async autoConfigure(options: AutoConfigureOptions = {}, onProgress: AutoConfigureOptions['onProgress'] = options.onProgress): Promise<AutoPlan> {
    if (this.run?.controller || this.busy) throw new InvalidArgumentError('A run is in progress; configure after it stops.');
    if (this.run?.paused) {
      throw new InvalidArgumentError(`Run "${this.run.runId}" is paused; autoConfigure() may upload the model again, which would end it. Finish it (resume()) or cancel() it first (its checkpoints stay: train({ ..., resume: true }) continues it later).`);
    }
    const loaded = this.requireModel();
    this.busy = 'autoConfigure';
    try {
      return await this.configure(await this.context(), loaded, options, onProgress);
    } finally {
      this.busy = undefined;
    }
  }

  private configure(ctx: GpuContext, loaded: Loaded, options: AutoConfigureOptions, onProgress: AutoConfigureOptions['onProgress']): Promise<AutoPlan> {
    return autoConfigure({
      ctx, files: loaded.files, loadedFormat: loaded.format, loadedDtype: loaded.dtype, data: this.data ? { rows: this.data.train, seqLen: this.data.info.seqLen } : undefined,
      spec: (request) => this.withInitTokens(adapterSpecOf(loaded.files.config, request)),
      releaseModel: () => this.releaseModel(),
      loadModel: async (format, dtype) => {
        await this.uploadModel(loaded.files, format, dtype);
        return this.loaded!;
      },
      current: () => this.loaded,
    }, options, onProgress);
  }

  /** Loads a Hugging Face model folder: a URL, picked files, or (in Node) a ModelFileSource. */
  async loadModel(
    source: string | File[] | Array<{ name: string; bytes: Uint8Array }> | ModelFileSource,
    options: LoadOptions = {},
    /** Progress as a separate argument: Comlink proxies only top-level callbacks (createTrainer passes it here). */
    onProgress: ((p: LoadProgress) => void) | undefined = options.onProgress,
  ): Promise<ModelInfo> {
    const ctx = await this.context();
    this.releaseModel();
    this.chatTemplate = undefined;
    this.data = undefined;
    const src = typeof source === 'string' ? urlSource(source) : Array.isArray(source) ? filesSource(source) : source;
    const files = await loadModelFiles(src, {
      onProgress, cache: options.cache === false ? false : this.env.modelCache, ...(options.onnx ? { weights: this.onnx().weightFormat(options.onnx) } : {}),
    });
    const format = options.format ?? ('blockSize' in storedFourBit(files.config, weightReader(files)) ? 'q4' : 'f32');
    const dtype = options.dtype === 'auto' ? (ctx.features.shaderF16 ? 'f16' : 'f32') : (options.dtype ?? 'f32');
    await this.uploadModel(files, format, dtype);
    return this.modelInfo();
  }

  private onnx(): OnnxSupport {
    if (this.env.onnx) return this.env.onnx;
    throw new InvalidArgumentError(
      "This trainer has no ONNX support, which is kept out of apps that do not ask for it: create it with createOnnxTrainer() from 'webtune/onnx' " +
        "(or, with your own worker, import 'webtune/onnx-worker' in it).",
    );
  }

  private modelInfo(): ModelInfo {
    const { files, base, format, dtype } = this.requireModel();
    const c = files.config;
    return {
      modelType: c.modelType, architecture: c.architecture, vocabSize: c.vocabSize, hiddenSize: c.hiddenSize,
      numLayers: c.numLayers, maxPositions: c.maxPositions, format, dtype, weightBytes: base.byteLength, adapter: this.ctx!.adapter.name,
    };
  }

  private requireModel(): Loaded {
    if (!this.loaded) throw new InvalidArgumentError('No model is loaded: call loadModel() first.');
    return this.loaded;
  }

  /** The model's own chat template; a ChatTemplateError that says what to pass (`how`) when it has none or it did not parse. */
  private modelChatTemplate(how: string): ChatTemplate {
    const files = this.requireModel().files;
    if (files.chatTemplateError) throw files.chatTemplateError;
    if (files.chatTemplate) return files.chatTemplate;
    throw new ChatTemplateError(
      'This model ships no chat template (no chat_template.jinja, and no chat_template in tokenizer_config.json), so conversations cannot be ' +
        `rendered as it expects. Pass ${how} to choose one explicitly (webtune does not guess a format), or use prompt/completion data.`,
    );
  }

  /** Prompt tuning's TEXT init names a text; the adapter starts from the embeddings of its tokens. */
  private withInitTokens(spec: AdapterSpec): AdapterSpec {
    const text = spec.config['initText'];
    if (spec.method !== 'prompt-tuning' || typeof text !== 'string' || spec.config['initTokenIds'] !== undefined) return spec;
    // As PEFT's tokenizer(init_text)["input_ids"], special tokens (a BOS) included.
    const ids = this.tokenizer().encode(text);
    if (ids.length === 0) throw new InvalidArgumentError(`Prompt tuning initText ${JSON.stringify(text)} gives no tokens.`);
    return { method: spec.method, config: { ...spec.config, initTokenIds: ids } };
  }

  private tokenizer(): Tokenizer {
    const t = this.requireModel().files.tokenizer;
    if (!t) throw new InvalidArgumentError('This model folder has no tokenizer.json, so text cannot be tokenized.');
    return t;
  }

  /**
   * Reads and tokenizes training data (see DataInput): raw text is cut into windows; prompt/completion
   * pairs and conversations (rendered with the model's chat template) become one right-padded
   * sequence each, with the loss on completion/assistant tokens only by default. Holds out a share
   * (or `heldOutData`) for evaluation.
   */
  async prepareData(input: DataInput, options: DataOptions = {}, onProgress: ((p: DataProgress) => void) | undefined = options.onProgress): Promise<DataInfo> {
    const tok = this.tokenizer();
    const seqLen = options.seqLen ?? 128;
    if (!Number.isInteger(seqLen) || seqLen < 1) throw new InvalidArgumentError(`seqLen must be a positive integer, got ${seqLen}.`);
    const share = options.heldOut ?? 0.1;
    if (!(share >= 0 && share < 1)) throw new InvalidArgumentError(`heldOut must be a share in [0, 1), got ${options.heldOut}.`);
    const template = options.chatTemplate !== undefined ? ChatTemplate.parse(options.chatTemplate, tok.specialTokens, 'prepareData({ chatTemplate })') : undefined;
    const main = await this.tokenizeData(input, options, template, onProgress);
    let train: TrainingRow[];
    let heldOut: TrainingRow[];
    let heldOutPart: PreparedRows | undefined;
    let heldOutLines: number[] | undefined;
    if (options.heldOutData) {
      heldOutPart = await this.tokenizeData(options.heldOutData, options, template, undefined, 'heldOutData');
      if (heldOutPart.kind !== main.kind) throw new InvalidArgumentError(`heldOutData is "${heldOutPart.kind}" data but the training data is "${main.kind}"; use one kind.`);
      [train, heldOut] = [main.rows, heldOutPart.rows];
    } else if (main.kind === 'text') {
      const count = Math.floor(main.rows.length * share);
      [train, heldOut] = [main.rows.slice(0, main.rows.length - count), main.rows.slice(main.rows.length - count)];
    } else {
      // Whole examples, chosen by a seeded shuffle, kept in their order.
      const order = main.rows.map((_, i) => i);
      new Rng(options.seed ?? 0).shuffle(order);
      const held = new Set(order.slice(0, Math.floor(main.rows.length * share)));
      train = main.rows.filter((_, i) => !held.has(i));
      heldOut = main.rows.filter((_, i) => held.has(i));
      heldOutLines = main.lines!.filter((_, i) => held.has(i));
    }
    if (train.length < 1) {
      throw new InvalidArgumentError(
        main.kind === 'text'
          ? `The text gives ${main.tokens} tokens, fewer than one sequence of ${seqLen + 1}; add text or lower seqLen.`
          : `Only ${main.rows.length} example(s), and all were held out; add examples or lower heldOut.`,
      );
    }
    const info: DataInfo = {
      kind: main.kind, tokens: main.tokens, seqLen, trainSequences: train.length, heldOutSequences: heldOut.length, examples: main.examples,
      learnedTokens: countLearned(train), paddingTokens: main.paddingTokens + (heldOutPart?.paddingTokens ?? 0),
      truncatedExamples: main.truncatedExamples + (heldOutPart?.truncatedExamples ?? 0), truncatedTokens: main.truncatedTokens + (heldOutPart?.truncatedTokens ?? 0),
      skippedCount: main.skipped.count + (heldOutPart?.skipped.count ?? 0), skipped: [...main.skipped.list, ...(heldOutPart?.skipped.list ?? [])].slice(0, 100),
      heldOutLines, chatTemplate: main.chatTemplate, warnings: [...main.warnings, ...(heldOutPart?.warnings ?? [])],
      fingerprint: await rowsFingerprint([...train, ...heldOut]),
    };
    this.data = { train, heldOut, info };
    this.chatTemplate = template;
    return info;
  }

  /** Records → rows (windows for text, one padded row per example otherwise). */
  private async tokenizeData(input: DataInput, options: DataOptions, explicit: ChatTemplate | undefined, onProgress: ((p: DataProgress) => void) | undefined, name?: string): Promise<PreparedRows> {
    const tok = this.tokenizer();
    const seqLen = options.seqLen ?? 128;
    const readOptions = { onInvalid: options.onInvalid, ...(name ? { source: name } : {}), onProgress: (p: ReadProgress) => onProgress?.({ phase: 'read', done: p.bytesRead, total: p.totalBytes }) };
    let read: RecordsResult;
    if ('text' in input || 'texts' in input) {
      const texts = 'text' in input ? [input.text] : input.texts;
      if (!Array.isArray(texts) || texts.some((t) => typeof t !== 'string')) throw new InvalidArgumentError('texts must be a list of strings.');
      if (texts.every((t) => t.trim().length === 0)) throw new InvalidArgumentError(`The ${name ?? 'training'} text is empty.`);
      read = { kind: 'text', records: texts.map((text) => ({ text })), lines: texts.map((_, i) => i + 1), unit: 'record', skipped: [], skippedCount: 0 };
    } else if ('file' in input) {
      read = await readRecords(input.file, { ...readOptions, format: input.format });
    } else if ('content' in input) {
      read = await readRecords(input.content, { ...readOptions, format: input.format, source: name ?? 'the pasted data' });
    } else if ('records' in input) {
      if (!Array.isArray(input.records)) throw new InvalidArgumentError('records must be an array of { text } / { prompt, completion } / { messages } objects.');
      read = await readRecords(input.records, { ...readOptions, source: name ?? 'records' });
    } else {
      throw new InvalidArgumentError('prepareData needs { text }, { texts }, { file }, { content } or { records }.');
    }
    const skipped = { count: read.skippedCount, list: [...read.skipped] };
    const base = { truncatedExamples: 0, truncatedTokens: 0, warnings: [] as string[], skipped, examples: read.records.length };

    if (read.kind === 'text') {
      const tokens = tokenizeDocuments((t) => tok.encode(t), read.records.map((r) => (r as { text: string }).text), tok.eosTokenId);
      const rows = packTokens(tokens, seqLen);
      return { ...base, kind: 'text', rows, lines: undefined, tokens: tokens.length, paddingTokens: 0, chatTemplate: undefined };
    }

    const completionOnly = options.completionOnly ?? true;
    const template = read.kind === 'messages' ? (explicit ?? this.modelChatTemplate('prepareData(data, { chatTemplate })')) : undefined;
    const source = name ?? ('file' in input && 'name' in input.file ? (input.file as File).name : 'the data');
    let tokens = 0;
    const examples: Array<{ example: TokenizedExample; line: number; mismatch?: boolean }> = [];
    const total = read.records.length;
    for (let i = 0; i < total; i++) {
      const record = read.records[i]!;
      const line = read.lines[i]!;
      try {
        if ('messages' in record) {
          examples.push({ example: tokenizeConversation(record.messages, template!, (t) => tok.encode(t, { addSpecialTokens: false }), completionOnly), line });
        } else if ('prompt' in record) {
          const e = tokenizePromptCompletion(record.prompt, record.completion, (t) => tok.encode(t), { id: tok.eosTokenId, text: tok.specialTokens.eos_token }, completionOnly);
          examples.push({ example: e, line, mismatch: e.mismatch });
        }
        tokens += examples.at(-1)!.example.ids.length;
      } catch (error) {
        if (!(error instanceof ChatTemplateError)) throw error;
        // A template that fails on one conversation (raise_exception) is that example's problem.
        if (options.onInvalid !== 'skip') throw new DataFormatError(source, error.message, line, { cause: error, unit: read.unit });
        skipped.count++;
        if (skipped.list.length < 100) skipped.list.push({ line, message: error.message });
      }
      if ((i + 1) % 256 === 0 || i + 1 === total) onProgress?.({ phase: 'tokenize', done: i + 1, total });
      // Let the worker answer messages (pause, status) during a long tokenization.
      if ((i + 1) % 1024 === 0) await new Promise((r) => setTimeout(r, 0));
    }
    const rows = rowsFromExamples(examples, { seqLen, padId: tok.padTokenId ?? tok.eosTokenId ?? 0, completionOnly, overlong: options.overlong, onInvalid: options.onInvalid, source, unit: read.unit });
    skipped.count += rows.skipped.length;
    skipped.list.push(...rows.skipped.slice(0, Math.max(0, 100 - skipped.list.length)));
    if (rows.rows.length === 0) throw new DataFormatError(source, `no example is left to train on (${skipped.count} skipped; first: ${skipped.list[0]?.message ?? 'none'})`);
    const warnings = rows.boundaryMismatches > 0
      ? [`${rows.boundaryMismatches} prompt/completion pair(s) tokenize differently at the boundary (the tokens of prompt + completion do not start with the prompt's); as in TRL, the prompt's token count marks where the completion begins. End prompts with a space or newline to avoid it.`]
      : [];
    return {
      ...base, kind: read.kind, rows: rows.rows, lines: rows.lines, tokens, paddingTokens: rows.paddingTokens,
      truncatedExamples: rows.truncatedExamples, truncatedTokens: rows.truncatedTokens, warnings, chatTemplate: template?.source,
    };
  }

  /**
   * Trains a LoRA adapter on the prepared data. With `resume`, continues the run from its newest
   * checkpoint that verifies (the same model, adapter settings and data are required).
   */
  async train(request: TrainRequest, onProgress?: (p: ProgressEvent) => void): Promise<TrainSummary> {
    if (this.run?.controller || this.busy) throw new InvalidArgumentError('A run is already in progress; pause or cancel it first.');
    this.requireModel();
    if (!this.data) throw new InvalidArgumentError('No training data: call prepareData() first.');
    const runId = request.runId ?? 'run';
    resolvePowerPolicy(request.power);
    recoveryRetries(request.recovery);
    checkIfRunLocked(request.ifRunLocked);
    return this.holdingRun(runId, request.ifRunLocked, () => onProgress?.({ ...idleProgress(0, request.steps), runId, waitingForLock: true }), () => this.runWithRecovery(onProgress, request));
  }

  /**
   * Runs `body` with the session busy (nothing else starts) and the run's Web Lock held (run-lock.ts),
   * for train() and resume(). pause() and cancel() end a wait for the lock with RunLockedError, and
   * reach the run between its attempts (stopRequested).
   */
  private async holdingRun<T>(runId: string, ifLocked: IfRunLocked | undefined, onWait: (() => void) | undefined, body: () => Promise<T>): Promise<T> {
    this.busy = runId;
    this.stopRequested = undefined;
    this.lockWait = new AbortController();
    try {
      const release = await acquireRunLock(runId, ifLocked ?? 'error', { onWait, signal: this.lockWait.signal }).finally(() => {
        this.lockWait = undefined;
      });
      try {
        return await body();
      } finally {
        release?.();
      }
    } finally {
      this.busy = undefined;
      this.stopRequested = undefined;
    }
  }

  /**
   * Everything train() does before the first step: checks, the checkpoint to resume from, the
   * adapter and the trainer. `startTensors` stands in for the adapter in place after a recovery.
   */
  private async setUpRun(request: TrainRequest, startTensors: Map<string, HostTensor> | undefined): Promise<TrainSummary['skippedCheckpoints']> {
    // A device lost between runs: the model goes to a new one first (it cannot be used across devices).
    if (this.ctx?.lostError) await this.freshDevice();
    const { files, model, base } = this.requireModel();
    if (!this.data) throw new InvalidArgumentError('No training data: call prepareData() first.');
    const ctx = await this.context();
    const runId = request.runId ?? 'run';
    if (request.evalEvery !== undefined && (!Number.isInteger(request.evalEvery) || request.evalEvery < 1)) {
      throw new InvalidArgumentError(`evalEvery must be a positive integer (optimizer steps), got ${request.evalEvery}.`);
    }
    if (request.earlyStopping !== undefined) checkEarlyStopping(request.earlyStopping);
    if ((request.earlyStopping || request.restoreBest) && request.evalEvery === undefined) {
      throw new InvalidArgumentError('earlyStopping and restoreBest need evalEvery: how many optimizer steps between held-out evaluations.');
    }
    if (request.evalEvery !== undefined && this.data.heldOut.length === 0) {
      throw new InvalidArgumentError('evalEvery needs held-out data: prepareData() with heldOut > 0 or heldOutData.');
    }
    const privacy = request.privacy ? resolvePrivacy(request, this.data.train.length, this.data.info) : undefined;
    const spec = this.withInitTokens(adapterSpecOf(files.config, request));
    const expect = { model: modelFingerprint(files.config), adapter: spec };
    let restored: { state: Omit<TrainerState, 'cursor'>; cursor: DataCursor } | undefined;
    const skipped: TrainSummary['skippedCheckpoints'] = [];
    const warnings: string[] = [];
    if (request.resume) {
      const latest = await this.store.latest(runId, expect);
      for (const s of latest?.skipped ?? []) skipped.push({ id: s.id, message: s.error.message });
      if (latest) {
        const decoded = await decodeCheckpoint(latest.record, expect);
        if (decoded.meta.label !== undefined && decoded.meta.label !== `data:${this.data.info.fingerprint}`) {
          throw new CheckpointMismatchError(decoded.meta.id, 'it was trained on different data (the token windows differ); prepare the same data to resume');
        }
        restored = {
          state: {
            step: decoded.meta.step, adapter: decoded.adapter, optimizer: decoded.optimizer,
            ...(decoded.meta.evaluation ? { evaluation: decoded.meta.evaluation } : {}), ...(decoded.meta.privacy ? { privacy: decoded.meta.privacy } : {}),
          },
          cursor: decoded.meta.cursor,
        };
        if (!decoded.metaProtected) {
          warnings.push(`Checkpoint ${decoded.meta.id} was written by an older webtune: its tensors were verified, but its metadata (step, data position, settings) had no checksum and could not be.`);
        }
      }
    }
    let start: Map<string, HostTensor> | undefined = startTensors;
    if (request.startFrom === 'current' && !start) {
      if (!this.adapter) throw new InvalidArgumentError("startFrom: 'current' needs an adapter in place: importAdapter() or restoreCheckpoint() first.");
      start = await this.adapter.read();
      if (privacy) {
        warnings.push("This private run starts from the adapter in place (startFrom: 'current'): its epsilon covers this run's steps only. If that adapter was trained on the same rows, the total privacy loss is larger (the runs compose).");
      }
    }
    if (!request.resume) {
      // A fresh run replaces the run of the same name: its old checkpoints would otherwise be
      // what a later resume: true picks up (the newest checkpoint is the highest step).
      for (const meta of [...(await this.store.list(runId)), ...(await this.store.list(bestRunId(runId)))]) await this.store.delete(meta.id);
    }
    this.disposeRun();
    const adapter = await createAdapterOnBase(ctx, base, spec, request.seed ?? DEFAULT_TRAIN_CONFIG.seed);
    if (start) {
      // Every tensor of the adapter in place must be one the new adapter has (no magnitude or layer silently dropped).
      const keys = new Set([...adapter.trainable()].map((t) => t.key));
      const unused = [...start.keys()].filter((k) => !keys.has(k));
      try {
        if (unused.length > 0) throw new Error(`it has ${unused.slice(0, 2).join(', ')}${unused.length > 2 ? ', ...' : ''}, which ${spec.method} with these settings does not`);
        adapter.write(start);
      } catch (cause) {
        adapter.release();
        throw new InvalidArgumentError(`The adapter in place does not match the requested adapter settings (method, rank, targets, layers): ${(cause as Error).message}`);
      }
    }
    const {
      lora: _lora, adapter: _adapter, runId: _runId, checkpointEvery: _every, keepLast: _keep, resume: _resume, progressIntervalMs: _interval,
      memoryBudgetBytes, startFrom: _start, proximalMu, evalEvery: _evalEvery, earlyStopping: _early, restoreBest: _restore, privacy: _privacy,
      recovery: _recovery, power: _power, ifRunLocked: _ifLocked, ...config
    } = request;
    let trainer: Trainer;
    try {
      trainer = await Trainer.create(ctx, model, adapter, { ...config, seqLen: this.data.info.seqLen, ...(privacy ? { privacy } : {}) }, { budgetBytes: memoryBudgetBytes });
      // FedProx pulls towards the run's starting weights: anchored before a checkpoint's weights are restored.
      if (proximalMu) trainer.optimizer.setProximal(proximalMu);
      if (restored) trainer.restore(restored.state);
    } catch (error) {
      // Refused (a plan that does not fit, bad settings): nothing of this run stays allocated.
      model.setAdapter(undefined);
      adapter.release();
      throw error;
    }
    this.adapter = adapter;
    this.adapterPrivacy = undefined;
    this.run = {
      runId, request, trainer, adapter, controller: undefined, cursor: restored?.cursor, resumedFrom: restored?.state.step, warnings,
      dataFingerprint: this.data.info.fingerprint, startTensors: request.startFrom === 'current' ? start : undefined, recoveries: [], pauses: [], lastProgress: undefined,
      paused: false,
    };
    return skipped;
  }

  /**
   * Sets the run up (train(): `setUp`) and runs it (continueRun()). On an OutOfMemoryError or a lost
   * device (TrainRequest.recovery), in either part: a fresh device, the run set up again from its
   * newest checkpoint with half the micro-batch, and on.
   */
  private async runWithRecovery(onProgress: ((p: ProgressEvent) => void) | undefined, setUp: TrainRequest | undefined): Promise<TrainSummary> {
    let request = setUp ?? this.run!.request;
    const retries = recoveryRetries(request.recovery);
    // What the run has been through, carried from one set-up to the next.
    let carried: Pick<Run, 'recoveries' | 'pauses' | 'warnings' | 'startTensors' | 'lastProgress'> | undefined = this.run && !setUp
      ? { recoveries: this.run.recoveries, pauses: this.run.pauses, warnings: this.run.warnings, startTensors: this.run.startTensors, lastProgress: this.run.lastProgress }
      : undefined;
    let pending: RecoveryEvent | undefined;
    let skipped: TrainSummary['skippedCheckpoints'] = [];
    let needsSetUp = setUp !== undefined;
    for (;;) {
      try {
        if (needsSetUp) {
          skipped = await this.setUpRun(request, carried?.startTensors);
          needsSetUp = false;
          const run = this.run!;
          if (carried) {
            run.recoveries = carried.recoveries;
            run.pauses = carried.pauses;
            run.warnings = [...carried.warnings, ...run.warnings.filter((w) => !carried!.warnings.includes(w))];
          }
          if (pending) {
            const event: RecoveryEvent = { ...pending, resumedFrom: run.resumedFrom ?? 0 };
            pending = undefined;
            run.recoveries = [...run.recoveries, event];
            run.warnings.push(`Recovered from ${event.error} at step ${event.failedAtStep}: resumed from step ${event.resumedFrom} with micro-batch ${event.microBatchSize}.`);
            onProgress?.({ ...(carried?.lastProgress ?? idleProgress(0, run.trainer.config.steps)), step: event.resumedFrom, runId: run.runId, recovery: event });
          }
        }
        return await this.continueRun(onProgress, skipped);
      } catch (error) {
        // A lost device surfaces as whatever operation noticed first (a failed mapAsync or
        // popErrorScope, say); the context learns the cause at about the same moment.
        if (!(error instanceof WebtuneError) && this.ctx && !this.ctx.lostError) await Promise.race([this.ctx.lost, new Promise((r) => setTimeout(r, 100))]);
        const cause = this.ctx?.lostError ?? error;
        // Failed while running (the run is set up) or while setting up (no step taken in this attempt).
        const run = needsSetUp ? undefined : this.run;
        // A recovery whose own set-up failed still counts.
        const history = [...(run?.recoveries ?? carried?.recoveries ?? []), ...(pending ? [pending] : [])];
        pending = undefined;
        const recovered = history.length;
        if (!(cause instanceof OutOfMemoryError || cause instanceof DeviceLostError) || recovered >= retries) throw cause;
        const batch = request.batchSize ?? DEFAULT_TRAIN_CONFIG.batchSize;
        const micro = smallerMicroBatch(batch, request.microBatchSize ?? batch);
        carried = {
          recoveries: history, pauses: run?.pauses ?? carried?.pauses ?? [],
          warnings: run?.warnings ?? carried?.warnings ?? [], startTensors: run?.startTensors ?? carried?.startTensors, lastProgress: run?.lastProgress ?? carried?.lastProgress,
        };
        pending = {
          attempt: recovered + 1, error: cause.name, message: cause.message, failedAtStep: run ? run.trainer.optimizer.step + 1 : 0, resumedFrom: 0,
          microBatchSize: micro, passesPerStep: (request.gradientAccumulation ?? DEFAULT_TRAIN_CONFIG.gradientAccumulation) * (batch / micro),
        };
        await this.freshDevice();
        // A run that never got set up keeps its request as it was (a fresh run deletes the run's old
        // checkpoints, which a resume would otherwise pick up); one that did resumes its own.
        request = { ...request, ...(run ? { resume: true } : {}), microBatchSize: micro };
        needsSetUp = true;
      }
    }
  }

  /**
   * The memory planner's estimate for a run, before starting it: bytes by part and whether it fits
   * the budget (with the planner's advice when it does not). Needs a loaded model; data optional.
   */
  async planTraining(request: Pick<TrainRequest, 'batchSize' | 'lora' | 'adapter' | 'recompute' | 'memoryBudgetBytes' | 'privacy'> & { seqLen?: number }): Promise<{
    estimate: MemoryEstimate; fits: boolean; advice: string | undefined;
  }> {
    const { files, base } = this.requireModel();
    const ctx = await this.context();
    const input = {
      config: files.config, format: base.format, dtype: base.dtype, adapter: adapterSpecOf(files.config, request),
      // DP-SGD runs examples one at a time and keeps their clipped sum.
      batch: request.privacy ? 1 : request.batchSize ?? DEFAULT_TRAIN_CONFIG.batchSize, seq: request.seqLen ?? this.data?.info.seqLen ?? DEFAULT_TRAIN_CONFIG.seqLen,
      recompute: request.recompute ?? false, blockSize: base.nf4?.blockSize, perExampleClipping: request.privacy !== undefined,
    };
    try {
      return { estimate: checkMemoryPlan(ctx, input, { budgetBytes: request.memoryBudgetBytes }), fits: true, advice: undefined };
    } catch (error) {
      if (!(error instanceof MemoryPlanError)) throw error;
      return { estimate: estimateTrainingMemory(input, Math.min(ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxBufferSize)), fits: false, advice: error.message };
    }
  }

  /** Continues a paused run of this session (after a reload, call train({ ..., resume: true }) instead). */
  async resume(onProgress?: (p: ProgressEvent) => void): Promise<TrainSummary> {
    if (!this.run) throw new InvalidArgumentError('There is no paused run to resume; call train() (with resume: true after a reload).');
    if (this.run.controller || this.busy) throw new InvalidArgumentError('The run (or another train(), or autoConfigure()) is already going.');
    if (this.run.trainer.optimizer.step >= this.run.trainer.config.steps) {
      throw new InvalidArgumentError(`Run "${this.run.runId}" has finished all ${this.run.trainer.config.steps} steps; start a new run with train().`);
    }
    if (this.data?.info.fingerprint !== this.run.dataFingerprint) {
      throw new InvalidArgumentError(
        `The data changed since run "${this.run.runId}" started (prepareData() was called with other data); prepare the same data to resume it, or start a new run with train().`,
      );
    }
    const run = this.run;
    return this.holdingRun(run.runId, run.request.ifRunLocked, undefined, async () => {
      // While this session was paused, another tab may have taken the run further: its checkpoints are newer than this state.
      const newest = (await this.store.list(run.runId))[0];
      if (newest && newest.step > run.trainer.optimizer.step) {
        throw new InvalidArgumentError(
          `Run "${run.runId}" went on elsewhere (its newest checkpoint is step ${newest.step}, this tab paused at step ${run.trainer.optimizer.step}); ` +
            'continue from that checkpoint with train({ ..., resume: true }).',
        );
      }
      run.resumedFrom = undefined;
      run.recoveries = [];
      run.pauses = [];
      return this.runWithRecovery(onProgress, undefined);
    });
  }

  /** Resolves at the next updateConditions() or when `signal` aborts (pause and cancel end a wait too). */
  private conditionsChanged(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const done = () => {
        signal.removeEventListener('abort', done);
        this.conditionWaiters = this.conditionWaiters.filter((w) => w !== done);
        resolve();
      };
      signal.addEventListener('abort', done, { once: true });
      this.conditionWaiters.push(done);
    });
  }

  /** Stops after the current step and writes a checkpoint; train() resolves with stopped: 'paused'. */
  pause(): void {
    this.requestStop('pause');
  }

  /** Stops after the current step without a checkpoint; train() resolves with stopped: 'cancelled'. */
  cancel(): void {
    // A paused run, cancelled: it is no longer one autoConfigure() would end (its checkpoints stay).
    if (this.run && !this.run.controller && !this.busy) this.run.paused = false;
    this.requestStop('cancel');
  }

  /** Stops the step in progress, or, between steps (a lock wait, a recovery), the next one before it starts. */
  private requestStop(reason: 'pause' | 'cancel'): void {
    if (!this.run?.controller && !this.busy) return;
    if (this.stopRequested !== 'cancel') this.stopRequested = reason;
    this.run?.controller?.abort(reason);
    this.lockWait?.abort(reason);
  }

  private async continueRun(onProgress: ((p: ProgressEvent) => void) | undefined, skipped: TrainSummary['skippedCheckpoints']): Promise<TrainSummary> {
    const run = this.run!;
    const data = this.data!;
    const { files } = this.requireModel();
    const controller = new AbortController();
    run.controller = controller;
    run.paused = false;
    if (this.stopRequested) controller.abort(this.stopRequested);
    const interval = run.request.progressIntervalMs ?? 250;
    let lastReport = -Infinity;
    const record = (state: TrainerState, id: string) =>
      encodeCheckpoint({
        runId: id, step: state.step, totalSteps: run.trainer.config.steps, model: modelFingerprint(files.config),
        spec: run.adapter.spec(), train: JSON.parse(JSON.stringify(run.trainer.config)) as JsonObject, cursor: state.cursor, label: `data:${data.info.fingerprint}`,
        adapter: state.adapter, optimizer: state.optimizer, ...(state.evaluation ? { evaluation: state.evaluation } : {}),
        ...(state.privacy ? { privacy: state.privacy } : {}),
      });
    const save = async (state: TrainerState) => this.store.put(await record(state, run.runId), run.request.keepLast ?? 3);
    const { evalEvery, earlyStopping, restoreBest } = run.request;
    const power = resolvePowerPolicy(run.request.power);
    const watching = power.battery !== undefined || power.thermal !== undefined;
    let stepStarted = performance.now();
    let lastStepMs = 0;
    let pacing: number | undefined;
    const report = (p: ProgressEvent) => onProgress?.(watching ? { ...p, conditions: { ...this.conditions } } : p);
    const here = () => run.lastProgress ?? { ...idleProgress(run.trainer.optimizer.step, run.trainer.config.steps), runId: run.runId };
    // Battery and heat: wait (with a checkpoint first) or pace before a step, as TrainRequest.power asks.
    const beforeStep = watching
      ? async (state: () => Promise<TrainerState>) => {
          for (;;) {
            const decision = powerDecision(power, this.conditions, lastStepMs);
            if (decision.action === 'run') {
              pacing = undefined;
              break;
            }
            if (decision.action === 'pace') {
              if (pacing !== decision.gapMs) report({ ...here(), pacingMs: decision.gapMs });
              pacing = decision.gapMs;
              await sleep(decision.gapMs, controller.signal);
              break;
            }
            // One wait, one checkpoint, one event and one entry, however many updates arrive until it clears.
            const began = performance.now();
            const step = run.trainer.optimizer.step;
            await save(await state());
            report({ ...here(), paused: decision.reason });
            do await this.conditionsChanged(controller.signal);
            while (!controller.signal.aborted && powerDecision(power, this.conditions, lastStepMs).action === 'wait');
            run.pauses.push({ reason: decision.reason, step, milliseconds: Math.round(performance.now() - began) });
            if (controller.signal.aborted) break;
          }
          stepStarted = performance.now();
        }
      : undefined;
    try {
      const result = await run.trainer.train(data.train, {
        cursor: run.cursor,
        signal: controller.signal,
        ...(beforeStep ? { beforeStep } : {}),
        checkpointEvery: run.request.checkpointEvery ?? 50,
        onCheckpoint: save,
        ...(evalEvery !== undefined
          ? {
              evaluation: {
                rows: data.heldOut, every: evalEvery, ...(earlyStopping ? { earlyStopping } : {}),
                // The best adapter is a checkpoint of its own run, so it survives a reload and restoreBest can put back its exact bytes.
                onBest: restoreBest ? async (state: TrainerState) => this.store.put(await record({ ...state, optimizer: new Map() }, bestRunId(run.runId)), 1) : undefined,
              },
            }
          : {}),
        onStep: (p) => {
          const now = performance.now();
          lastStepMs = now - stepStarted;
          stepStarted = now;
          const event: ProgressEvent = { ...p, runId: run.runId, ...(pacing !== undefined ? { pacingMs: pacing } : {}) };
          run.lastProgress = event;
          // Throttled: the first step, the last, steps that evaluated, and at most one event per interval.
          if (p.step === 1 || p.step === p.totalSteps || p.evaluation || now - lastReport >= interval) {
            lastReport = now;
            report(event);
          }
        },
      });
      run.cursor = result.cursor;
      run.paused = result.stopped === 'paused';
      let checkpoint: CheckpointMeta | undefined;
      if (result.stopped !== 'cancelled') {
        await save(await run.trainer.state(result.cursor));
        checkpoint = (await this.store.list(run.runId))[0];
      }
      const finished = result.stopped === 'completed' || result.stopped === 'early-stopped' || result.stopped === 'budget-exhausted';
      const dp = run.trainer.config.privacy;
      const privacy: PrivacySummary | undefined = dp && result.privacy
        ? {
            epsilon: result.privacy.epsilon, delta: dp.delta, targetEpsilon: dp.epsilonBudget, noiseMultiplier: dp.noiseMultiplier, maxGradNorm: dp.maxGradNorm,
            sampleRate: run.trainer.expectedBatchSize / data.train.length, steps: result.privacy.steps, dataSize: data.train.length, accountant: 'rdp', mechanism: 'dp-sgd',
            startedFrom: run.request.startFrom === 'current' ? 'current' : 'fresh',
          }
        : undefined;
      this.adapterPrivacy = privacy;
      let restoredBest = false;
      if (finished && restoreBest && result.evaluation.best) {
        const best = (await this.store.list(bestRunId(run.runId)))[0];
        if (best && best.step === result.evaluation.best.step) {
          const decoded = await decodeCheckpoint(await this.store.get(best.id), { model: modelFingerprint(files.config), adapter: run.adapter.spec() });
          run.adapter.write(decoded.adapter);
          restoredBest = true;
        } else {
          run.warnings.push(
            `restoreBest: the best evaluation is step ${result.evaluation.best.step}, but run "${bestRunId(run.runId)}" holds ` +
              `${best ? `step ${best.step}` : 'no checkpoint'} (was restoreBest off for part of the run?); the adapter of the last step is kept.`,
          );
        }
      }
      const heldOutLoss = finished && data.heldOut.length > 0 ? await run.trainer.evaluate(data.heldOut) : undefined;
      return {
        runId: run.runId, stopped: result.stopped, step: result.step, totalSteps: run.trainer.config.steps,
        lastLoss: result.losses.at(-1), heldOutLoss, tokensPerSecond: result.tokensPerSecond, peakBytes: result.peakBytes,
        estimateBytes: result.estimate.total, checkpoint, skippedCheckpoints: skipped, resumedFrom: run.resumedFrom,
        evaluations: result.evaluation.history.map((e) => ({ ...e, perplexity: perplexity(e.loss) })), best: result.evaluation.best, restoredBest,
        warnings: run.warnings, ...(privacy ? { privacy } : {}),
        recoveries: run.recoveries, pauses: run.pauses, microBatchSize: run.trainer.config.microBatchSize ?? run.trainer.config.batchSize,
      };
    } finally {
      run.controller = undefined;
    }
  }

  /**
   * Continues `prompt` with the current adapter (or the base model before training). Given chat
   * messages instead of a string, renders them with the chat template (the model's, or the one
   * passed to prepareData) and `add_generation_prompt`, stops at the template's end-of-turn token,
   * and returns only the assistant's text. With `useAdapter: false` the base model answers alone,
   * for a before/after comparison; the adapter stays in the session.
   */
  async generate(prompt: string | readonly ChatMessage[], options: SessionGenerateOptions = {}): Promise<{ text: string; tokens: number[] }> {
    const { model } = this.requireModel();
    // Generation swaps the model's adapter; a running step must keep its own.
    if (this.run?.controller || this.busy) throw new InvalidArgumentError('A run (or autoConfigure) is in progress; generate after it stops (pause() first).');
    model.setAdapter(options.useAdapter === false ? undefined : this.adapter);
    try {
      return await this.generateWith(model, prompt, options);
    } finally {
      // The base model answered alone for this call only: the adapter stays for runs and later calls.
      model.setAdapter(this.adapter);
    }
  }

  private async generateWith(model: Transformer, prompt: string | readonly ChatMessage[], options: SessionGenerateOptions): Promise<{ text: string; tokens: number[] }> {
    const tok = this.tokenizer();
    if (typeof prompt === 'string') {
      const tokens = await generate(model, tok.encode(prompt), options);
      return { text: tok.decode(tokens), tokens };
    }
    if (!Array.isArray(prompt) || prompt.length === 0) throw new InvalidArgumentError('generate needs a prompt string or a non-empty list of chat messages.');
    prompt.forEach((m, i) => checkChatMessage(m, `message ${i + 1}`));
    const template = options.chatTemplate !== undefined
      ? ChatTemplate.parse(options.chatTemplate, tok.specialTokens, 'generate({ chatTemplate })')
      : (this.chatTemplate ?? this.modelChatTemplate("generate(messages, { chatTemplate }) (or prepareData's chatTemplate)"));
    const ids = tok.encode(template.render(prompt, { addGenerationPrompt: true }), { addSpecialTokens: false });
    const stop = new Set(options.stopTokens ?? []);
    if (!options.stopTokens) {
      const eos = model.config.eosTokenId;
      for (const id of eos === undefined ? [] : Array.isArray(eos) ? eos : [eos]) stop.add(id);
      if (tok.eosTokenId !== undefined) stop.add(tok.eosTokenId);
      // The token that ends an assistant turn in this template (ChatML's <|im_end|>, Llama 3's <|eot_id|>).
      const endOfTurn = tok.encode(template.endOfTurn(), { addSpecialTokens: false })[0];
      if (endOfTurn !== undefined && tok.specialTokenId(tok.decode([endOfTurn])) === endOfTurn) stop.add(endOfTurn);
    }
    const tokens = await generate(model, ids, { ...options, stopTokens: [...stop] });
    const answer = stop.has(tokens.at(-1)!) ? tokens.slice(0, -1) : tokens;
    return { text: tok.decode(answer, { skipSpecialTokens: true }), tokens };
  }

  /**
   * Mean loss and perplexity over the prepared data's target tokens (completion/assistant tokens
   * for examples), without training: `data: 'heldOut'` (default) or `'train'`. With
   * `useAdapter: false` the base model alone is scored, for a before/after comparison.
   */
  async evaluate(options: { data?: 'heldOut' | 'train'; useAdapter?: boolean; batchSize?: number } = {}): Promise<{ loss: number; perplexity: number; tokens: number }> {
    const { model } = this.requireModel();
    if (!this.data) throw new InvalidArgumentError('No data: call prepareData() first.');
    if (this.run?.controller || this.busy) throw new InvalidArgumentError('A run (or autoConfigure) is in progress; evaluate after it stops.');
    const rows = options.data === 'train' ? this.data.train : this.data.heldOut;
    if (rows.length === 0) throw new InvalidArgumentError('There is no held-out data: prepareData() with heldOut > 0 or heldOutData, or evaluate { data: \'train\' }.');
    const size = options.batchSize ?? this.run?.trainer.config.microBatchSize ?? this.run?.trainer.config.batchSize ?? DEFAULT_TRAIN_CONFIG.batchSize;
    if (!Number.isInteger(size) || size < 1) throw new InvalidArgumentError(`batchSize must be a positive integer, got ${size}.`);
    model.setAdapter(options.useAdapter === false ? undefined : this.adapter);
    try {
      const { loss, tokens } = await evaluateRows(model, rows, size);
      return { loss, perplexity: perplexity(loss), tokens };
    } finally {
      model.setAdapter(this.adapter);
    }
  }

  /** The adapter as PEFT files (adapter_config.json + adapter_model.safetensors). */
  async exportAdapter(): Promise<PeftFiles> {
    if (!this.adapter) throw new InvalidArgumentError('There is no adapter yet: train or import one first.');
    const files = await exportPeftAdapter(this.adapter, {
      baseModel: this.requireModel().files.source ?? '',
      // A DP-SGD adapter says what protected its training data (webtune's key; PEFT ignores unknown keys).
      ...(this.adapterPrivacy && this.run?.adapter === this.adapter ? { extraConfig: { webtune_privacy: { ...this.adapterPrivacy } } } : {}),
    });
    // Across a worker boundary the bytes move instead of being copied.
    return Comlink.transfer(files, [files['adapter_model.safetensors'].buffer as ArrayBuffer]);
  }

  /**
   * The base model with the adapter merged in, as a Hugging Face folder's `config.json` and
   * `model.safetensors` (float32, the checkpoint's own tensor names and layouts) that
   * `from_pretrained` loads without PEFT: LoRA and IA3 change the weights they target; BitFit adds
   * its biases, and for a Llama without biases switches on `attention_bias` / `mlp_bias` in
   * config.json. Needs the model's weights in safetensors (a model loaded from ONNX: exportOnnx()).
   */
  async exportMerged(): Promise<MergedFiles> {
    if (!this.adapter) throw new InvalidArgumentError('There is no adapter yet: train or import one first.');
    const { files } = this.requireModel();
    if (files.format !== 'safetensors') {
      throw new UnsupportedModelError('exportMerged', `the model was loaded from ${files.format} weights; a merged safetensors export needs safetensors weights (for ONNX use exportOnnx())`);
    }
    const merged = mergeAdapterFiles(files.config, weightReader(files), this.adapter.spec(), await this.adapter.read());
    const out: MergedFiles = {
      'config.json': `${JSON.stringify({ ...files.config.raw, ...merged.config }, null, 2)}\n`,
      'model.safetensors': merged.weights,
    };
    return Comlink.transfer(out, [merged.weights.buffer as ArrayBuffer]);
  }

  /**
   * The fine-tuned model as ONNX, for a model loaded with `onnx`: the original graph with the
   * adapter merged into its f32/f16 weights, and 4-bit MatMulNBits weights kept with the adapter as
   * an exact side branch (or merged and re-quantized with `fourBit: 'requantize'`), keyed by path in
   * the model folder (e.g. onnx/model.onnx, plus onnx/model.onnx_data when the original has
   * external data). onnxruntime-web and transformers.js run it as they ran the original.
   */
  async exportOnnx(options: ExportOnnxOptions = {}): Promise<Record<string, Uint8Array>> {
    if (!this.adapter) throw new InvalidArgumentError('There is no adapter yet: train or import one first.');
    const { files } = this.requireModel();
    if (this.adapter.method !== 'lora') {
      const unmergeable = adapterMethod(this.adapter.method).unmergeable;
      const instead = unmergeable ? `${unmergeable}: export the adapter files with exportAdapter()` : 'export it with exportMerged() (safetensors weights) or exportAdapter()';
      throw new UnsupportedModelError('exportOnnx', `the ONNX export merges LoRA adapters; this one is ${this.adapter.method}, and ${instead}`);
    }
    const out = this.onnx().exportModel(files, this.adapter.config as LoraConfig, await this.adapter.read(), options);
    const result = Object.fromEntries(out);
    return Comlink.transfer(result, [...out.values()].map((b) => b.buffer as ArrayBuffer));
  }

  /** Uses a PEFT adapter (for generation, or as the start of training with resume: false). */
  async importAdapter(files: { config: string; weights: Uint8Array }): Promise<void> {
    const ctx = await this.context();
    const { files: model } = this.requireModel();
    const adapter = importPeftAdapter(ctx, model.config, files);
    this.disposeRun();
    this.adapter = adapter;
  }

  /**
   * The adapter's trainable state: its spec, the model family, and every trainable tensor as F32
   * safetensors under its trainable key. Unlike exportAdapter()'s files, it loses nothing (a
   * P-tuning encoder or a prefix projection stays an encoder), so importAdapterState() continues
   * training exactly where this left off; federated rounds exchange it.
   *
   * @example
   * ```ts
   * const state = await trainer.exportAdapterState();   // { spec, architecture, weights }
   * await other.importAdapterState(state);                // same adapter, same next step
   * ```
   */
  async exportAdapterState(): Promise<AdapterState> {
    if (!this.adapter) throw new InvalidArgumentError('There is no adapter yet: train or import one first.');
    const tensors = await this.adapter.read();
    const weights = serializeSafetensors([...tensors].map(([name, t]) => ({ name, dtype: 'F32' as const, shape: t.shape, data: t.data })), { format: 'webtune-adapter-state' });
    const state: AdapterState = { spec: this.adapter.spec(), architecture: this.adapter.model.architecture, weights };
    return Comlink.transfer(state, [weights.buffer as ArrayBuffer]);
  }

  /**
   * Puts an adapter in place from its trainable state (exportAdapterState()'s result), for
   * generation or as the start of training (`startFrom: 'current'`). The spec is resolved against
   * the loaded model and every tensor checked: a spec this model cannot use (unknown method or
   * setting, too many virtual tokens, another architecture) is InvalidArgumentError; weights that are
   * not safetensors, or that miss a tensor, have one of another shape or one the adapter does not
   * have, are ModelFormatError. The adapter in place is kept when the state is refused.
   */
  async importAdapterState(state: { spec: AdapterSpec; weights: Uint8Array; architecture?: Architecture }): Promise<void> {
    const ctx = await this.context();
    const { files } = this.requireModel();
    if (typeof state !== 'object' || state === null) throw new InvalidArgumentError('importAdapterState needs { spec, weights } (exportAdapterState()\'s result).');
    const problem = adapterSpecProblem(state.spec);
    if (problem) throw new InvalidArgumentError(`importAdapterState: ${problem}.`);
    if (state.architecture !== undefined && state.architecture !== files.config.architecture) {
      throw new InvalidArgumentError(`importAdapterState: the adapter belongs to a ${String(state.architecture)} model, and the loaded model is ${files.config.architecture}; load the model it was made for.`);
    }
    if (!(state.weights instanceof Uint8Array)) throw new InvalidArgumentError('importAdapterState: weights must be a Uint8Array of safetensors bytes.');
    const spec = resolveAdapterSpec(files.config, state.spec.method, state.spec.config);
    const source = 'adapter state';
    const file = parseSafetensors(state.weights, source);
    const tensors = new Map<string, HostTensor>();
    for (const [name, t] of file.tensors) tensors.set(name, { data: tensorToFloat32(t, source), shape: [...t.shape] });
    const adapter = adapterFromTensors(ctx, files.config, spec, tensors, source);
    this.disposeRun();
    this.adapter = adapter;
  }

  listCheckpoints(runId?: string): Promise<CheckpointMeta[]> {
    return this.store.list(runId);
  }

  deleteCheckpoint(id: string): Promise<void> {
    return this.store.delete(id);
  }

  /** Puts a checkpoint's adapter in place for generation or export (training resumes with train({ resume: true })). */
  async restoreCheckpoint(id: string): Promise<CheckpointMeta> {
    const ctx = await this.context();
    const { files } = this.requireModel();
    const decoded = await decodeCheckpoint(await this.store.get(id), { model: modelFingerprint(files.config) });
    const adapter = adapterFromTensors(ctx, files.config, decoded.meta.adapter, decoded.adapter, `checkpoint ${id}`);
    this.disposeRun();
    this.adapter = adapter;
    return decoded.meta;
  }

  /** One portable file holding the checkpoint (verified on import). */
  async exportCheckpoint(id: string): Promise<Uint8Array> {
    const bytes = checkpointToFile(await this.store.get(id));
    return Comlink.transfer(bytes, [bytes.buffer as ArrayBuffer]);
  }

  async importCheckpoint(bytes: Uint8Array): Promise<CheckpointMeta> {
    const record = checkpointFromFile(bytes, 'imported checkpoint');
    await decodeCheckpoint(record);
    await this.store.put(record, Number.MAX_SAFE_INTEGER);
    return record.meta;
  }

  /**
   * Asks the browser to keep this origin's storage (checkpoints, cached models) under pressure.
   * `persisted` is undefined where the API is missing: in Node, and in workers (persist() is
   * page-only; createTrainer() asks from the page).
   */
  async persistStorage(): Promise<{ persisted: boolean | undefined }> {
    const storage = (globalThis as { navigator?: { storage?: StorageManager } }).navigator?.storage;
    if (!storage?.persist) return { persisted: undefined };
    return { persisted: await storage.persist() };
  }

  /** GPU memory webtune holds right now, and the device it runs on. */
  status(): { liveBytes: number; peakBytes: number; adapter: string | undefined; running: boolean; deviceLost: string | undefined; conditions: DeviceConditions } {
    return {
      conditions: { ...this.conditions },
      liveBytes: this.ctx?.memory.liveBytes ?? 0,
      peakBytes: this.ctx?.memory.peakBytes ?? 0,
      adapter: this.ctx?.adapter.name,
      // Waiting for another tab's lock, or recovering, counts as running.
      running: this.run?.controller !== undefined || this.busy !== undefined,
      deviceLost: this.ctx?.lostError?.message,
    };
  }

  private disposeRun(): void {
    if (this.run) {
      this.run.trainer.release();
      if (this.run.adapter !== this.adapter) this.run.adapter.release();
    }
    this.run = undefined;
    this.adapter?.release();
    this.adapter = undefined;
    this.loaded?.model.setAdapter(undefined);
  }

  private releaseModel(): void {
    this.disposeRun();
    this.loaded?.model.release();
    this.loaded?.base.release();
    this.loaded = undefined;
  }

  dispose(): void {
    this.releaseModel();
    this.ctx?.destroy();
    this.ctx = undefined;
  }
}

