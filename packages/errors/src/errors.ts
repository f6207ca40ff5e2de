/**
 * Typed errors. Every error webtune throws is a `WebtuneError` with a stable `code`, and its
 * message says what went wrong and what to do about it. `name` is the class name, so code on
 * the far side of a worker boundary can tell them apart.
 */

export type WebtuneErrorCode =
  | 'WEBGPU_UNAVAILABLE'
  | 'DEVICE_LOST'
  | 'SHADER_COMPILE'
  | 'OUT_OF_MEMORY'
  | 'INVALID_ARGUMENT'
  | 'BINDING_LIMIT'
  | 'GPU_VALIDATION'
  | 'MODEL_FORMAT'
  | 'UNSUPPORTED_MODEL'
  | 'MODEL_FILE_MISSING'
  | 'DOWNLOAD_FAILED'
  | 'MEMORY_PLAN'
  | 'CHECKPOINT_CORRUPT'
  | 'CHECKPOINT_MISMATCH'
  | 'CHECKPOINT_NOT_FOUND'
  | 'STORAGE_FULL'
  | 'WORKER_START'
  | 'DATA_FORMAT'
  | 'CHAT_TEMPLATE'
  | 'RUN_LOCKED'
  | 'CHECKPOINT_WRITE';

/**
 * The base class of every error webtune throws: `code` is stable for programmatic handling and the message
 * says what to do. Errors from the trainer's worker arrive as the same classes, so `instanceof` works on the page.
 */
export class WebtuneError extends Error {
  /**
   * The class's name as a literal, not `constructor.name`: minifiers rename classes (differently in
   * a page and its worker), and this string is what the worker transfer looks the class up by.
   */
  override name: string = 'WebtuneError';
  readonly code: WebtuneErrorCode;
  constructor(code: WebtuneErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** No `navigator.gpu`, or no adapter: says what to enable and which browsers ship WebGPU. */
export class WebGPUUnavailableError extends WebtuneError {
  override name = 'WebGPUUnavailableError';
  constructor(detail: string, options?: { cause?: unknown }) {
    super(
      'WEBGPU_UNAVAILABLE',
      `WebGPU is not available: ${detail}. webtune needs WebGPU: Chrome or Edge 113+ (on Linux, ` +
        'enable chrome://flags/#enable-unsafe-webgpu or start with --enable-unsafe-webgpu), ' +
        'Safari 26+, or Firefox 141+ on Windows. The page must be served from https or localhost. ' +
        "In Node, pass `gpu` from `createNodeGpu()` in 'webtune/node' (the `webgpu` package; " +
        'on Linux without a GPU it needs Mesa >= 24 lavapipe, Debian package mesa-vulkan-drivers).',
      options,
    );
  }
}

/** One compiler message of a ShaderCompileError, located in webtune's WGSL sources. */
export interface ShaderMessage {
  type: 'error' | 'warning' | 'info';
  /** File the line belongs to, within @webtune/gpu/src (shaders/*.wgsl or a shaders/lib snippet). */
  file: string;
  /** 1-based line within `file`. */
  line: number;
  column: number;
  message: string;
}

/** The WGSL compiler rejected a shader, or a pipeline could not be created from it. */
export class ShaderCompileError extends WebtuneError {
  override name = 'ShaderCompileError';
  readonly shader: string;
  readonly messages: ShaderMessage[];
  constructor(shader: string, messages: ShaderMessage[], detail?: string) {
    const lines = messages.map((m) => `  ${m.file}:${m.line}:${m.column} ${m.type}: ${m.message}`);
    super(
      'SHADER_COMPILE',
      `Shader ${shader} failed to compile${detail ? ` (${detail})` : ''}:\n${lines.join('\n')}\n` +
        'This is a bug in webtune or an adapter that rejects valid WGSL; please report it with the adapter info.',
    );
    this.shader = shader;
    this.messages = messages;
  }
}

/** The GPU device was lost (driver reset, tab in background too long, `destroy()`). */
export class DeviceLostError extends WebtuneError {
  override name = 'DeviceLostError';
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(
      'DEVICE_LOST',
      `The GPU device was lost (${reason}): ${(message || 'no message').replace(/\.+$/, '')}. With a trainer, call recoverDevice() ` +
        'and train({ ..., resume: true }) to go on from the last checkpoint; with @webtune/gpu directly, create a new context with createGpuContext().',
    );
    this.reason = reason;
  }
}

/** An allocation failed inside an out-of-memory error scope. */
export class OutOfMemoryError extends WebtuneError {
  override name = 'OutOfMemoryError';
  readonly requestedBytes: number;
  readonly liveBytes: number;
  constructor(label: string, requestedBytes: number, liveBytes: number, detail?: string) {
    super(
      'OUT_OF_MEMORY',
      `GPU out of memory allocating ${formatBytes(requestedBytes)} for "${label}" with ` +
        `${formatBytes(liveBytes)} already allocated by webtune${detail ? ` (${detail})` : ''}. ` +
        'Lower the batch size, sequence length or LoRA rank, use QLoRA (NF4 weights), or close other GPU tabs.',
    );
    this.requestedBytes = requestedBytes;
    this.liveBytes = liveBytes;
  }
}

/** A wrong shape, dtype or option: names what was given and what was expected. */
export class InvalidArgumentError extends WebtuneError {
  override name = 'InvalidArgumentError';
  constructor(message: string) {
    super('INVALID_ARGUMENT', message);
  }
}

/** A tensor is larger than one storage binding (or one buffer) may be on this adapter. */
export class BindingLimitError extends WebtuneError {
  override name = 'BindingLimitError';
  readonly requestedBytes: number;
  readonly limitBytes: number;
  constructor(label: string, requestedBytes: number, limitBytes: number, limitName: string) {
    super(
      'BINDING_LIMIT',
      `Tensor "${label}" needs ${formatBytes(requestedBytes)} but this adapter's ${limitName} is ` +
        `${formatBytes(limitBytes)}. Split it into smaller tensors (for example shard the layer or ` +
        'lower the batch or sequence length); webtune never truncates a tensor to fit.',
    );
    this.requestedBytes = requestedBytes;
    this.limitBytes = limitBytes;
  }
}

/** The validation error scope around a webtune operation was not empty. */
export class GpuValidationError extends WebtuneError {
  override name = 'GpuValidationError';
  constructor(operation: string, message: string) {
    super(
      'GPU_VALIDATION',
      `WebGPU rejected ${operation}: ${message}. This is a bug in webtune; please report it with the adapter info.`,
    );
  }
}

/**
 * A model or tensor file webtune cannot read: truncated, corrupt, or in a dtype or layout it does
 * not support. Names the file and what is wrong with it.
 */
export class ModelFormatError extends WebtuneError {
  override name = 'ModelFormatError';
  readonly source: string;
  constructor(source: string, detail: string, options?: { cause?: unknown }) {
    super('MODEL_FORMAT', `${source}: ${detail}`, options);
    this.source = source;
  }
}

/** A well-formed model that webtune cannot run (architecture, activation, RoPE type, dtype). */
export class UnsupportedModelError extends WebtuneError {
  override name = 'UnsupportedModelError';
  readonly source: string;
  constructor(source: string, detail: string, options?: { cause?: unknown }) {
    super('UNSUPPORTED_MODEL', `${source}: ${detail}.`, options);
    this.source = source;
  }
}

/** A file the model needs is not in the folder, the server answered 404, or a shard is missing. */
export class ModelFileMissingError extends WebtuneError {
  override name = 'ModelFileMissingError';
  readonly file: string;
  constructor(file: string, detail: string, options?: { cause?: unknown }) {
    super('MODEL_FILE_MISSING', `${file}: ${detail}`, options);
    this.file = file;
  }
}

/** A download failed (network error, HTTP error other than 404, or the body ended early). Nothing partial is cached. */
export class DownloadError extends WebtuneError {
  override name = 'DownloadError';
  readonly url: string;
  readonly status: number | undefined;
  constructor(url: string, detail: string, status?: number, options?: { cause?: unknown }) {
    super('DOWNLOAD_FAILED', `Downloading ${url} failed: ${detail}. Check the URL and the connection and try again; files already cached are kept.`, options);
    this.url = url;
    this.status = status;
  }
}

/**
 * The memory planner's estimate for a training run exceeds what the device allows. `suggestions`
 * lists what to lower, biggest saving first.
 */
export class MemoryPlanError extends WebtuneError {
  override name = 'MemoryPlanError';
  readonly estimatedBytes: number;
  readonly limitBytes: number;
  readonly suggestions: readonly string[];
  constructor(what: string, estimatedBytes: number, limitBytes: number, suggestions: readonly string[]) {
    super(
      'MEMORY_PLAN',
      `${what} needs about ${formatBytes(estimatedBytes)} of GPU memory but the limit is ${formatBytes(limitBytes)}. ` +
        `Lower: ${suggestions.join('; ')}.`,
    );
    this.estimatedBytes = estimatedBytes;
    this.limitBytes = limitBytes;
    this.suggestions = suggestions;
  }
}

/** A byte count in binary units for messages, e.g. `formatBytes(1536)` is '1.50 KiB'. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

/** A stored checkpoint failed verification (checksum, size, format or schema). Older checkpoints are untouched. */
export class CheckpointCorruptError extends WebtuneError {
  override name = 'CheckpointCorruptError';
  readonly id: string;
  constructor(id: string, detail: string, options?: { cause?: unknown }) {
    super('CHECKPOINT_CORRUPT', `Checkpoint ${id} is damaged: ${detail}. Restore an earlier checkpoint (listCheckpoints) or delete this one.`, options);
    this.id = id;
  }
}

/** A checkpoint made for another model, adapter configuration or data than the one it is loaded into. */
export class CheckpointMismatchError extends WebtuneError {
  override name = 'CheckpointMismatchError';
  readonly id: string;
  constructor(id: string, detail: string, options?: { cause?: unknown }) {
    super('CHECKPOINT_MISMATCH', `Checkpoint ${id} does not fit: ${detail}.`, options);
    this.id = id;
  }
}

/** No checkpoint with this id is stored (never written, deleted, or pruned by keepLast). */
export class CheckpointNotFoundError extends WebtuneError {
  override name = 'CheckpointNotFoundError';
  readonly id: string;
  constructor(id: string) {
    super('CHECKPOINT_NOT_FOUND', `There is no checkpoint "${id}"; listCheckpoints() shows the stored ones.`);
    this.id = id;
  }
}

/** The browser refused to store more (QuotaExceededError). Nothing partial was written; earlier data is intact. */
export class StorageFullError extends WebtuneError {
  override name = 'StorageFullError';
  constructor(detail: string, options?: { cause?: unknown }) {
    super(
      'STORAGE_FULL',
      `Storage is full: ${detail}. Free space (delete old checkpoints or cached models), lower keepLast, or ask for persistent storage; earlier checkpoints are intact.`,
      options,
    );
  }
}

/**
 * A checkpoint could not be written for a reason other than space: the browser aborted the
 * transaction (it timed out while the page was frozen and another tab used the database, or the
 * database was closed or deleted). Nothing partial was written; earlier checkpoints are intact.
 */
export class CheckpointWriteError extends WebtuneError {
  override name = 'CheckpointWriteError';
  readonly id: string;
  constructor(id: string, detail: string, options?: { cause?: unknown }) {
    super(
      'CHECKPOINT_WRITE',
      `Checkpoint "${id}" could not be written: ${detail}. Earlier checkpoints are intact; train({ ..., resume: true }) continues from the newest. ` +
        'If the app is open in several tabs, keep the training tab in the foreground (a frozen tab cannot finish its writes).',
      options,
    );
    this.id = id;
  }
}

/**
 * The trainer's Web Worker failed to start or never answered: its script did not load (a bundler
 * that did not emit it, a Content-Security-Policy without `worker-src`), or an app's own worker
 * file does not import the worker entry.
 */
export class WorkerStartError extends WebtuneError {
  override name = 'WorkerStartError';
  constructor(detail: string, options?: { cause?: unknown }) {
    super(
      'WORKER_START',
      `The webtune worker did not start: ${detail}. If you pass your own worker, its file must import ` +
        "'webtune/worker' (or 'webtune/onnx-worker'); check that the bundler emitted the worker and that " +
        "the page's Content-Security-Policy allows it (worker-src 'self').",
      options,
    );
  }
}

/**
 * Training data webtune cannot use: an empty file, a line that is not JSON, a record with neither
 * `text`, `prompt`/`completion` nor `messages`, an unknown role, a conversation with no assistant
 * turn, an example too long for `seqLen`. `line` is the 1-based line (JSONL, CSV, TXT) or the
 * 1-based index (JSON array, records) where it is, when there is one. Pass `onInvalid: 'skip'`
 * to prepareData() to skip such examples and count them instead.
 */
export class DataFormatError extends WebtuneError {
  override name = 'DataFormatError';
  readonly source: string;
  /** 1-based: a line of a JSONL/CSV/text file, or (unit 'record') an index into a JSON array or a list of records. */
  readonly line: number | undefined;
  readonly unit: 'line' | 'record';
  constructor(source: string, detail: string, line?: number, options?: { cause?: unknown; unit?: 'line' | 'record' }) {
    const unit = options?.unit ?? 'line';
    super('DATA_FORMAT', `${source}${line === undefined ? '' : `, ${unit} ${line}`}: ${detail}`, options);
    this.source = source;
    this.line = line;
    this.unit = unit;
  }
}

/**
 * A chat template problem: the model ships none (pass `chatTemplate` to choose one explicitly),
 * the template does not parse, it raised an error for these messages (`raise_exception`), or it
 * renders earlier turns differently once later ones are added, so the assistant's tokens cannot be
 * found in the conversation.
 */
export class ChatTemplateError extends WebtuneError {
  override name = 'ChatTemplateError';
  constructor(detail: string, options?: { cause?: unknown }) {
    super('CHAT_TEMPLATE', detail, options);
  }
}

/**
 * Why the coordinator rejected a request: the `error` field of the federated protocol's
 * ErrorResponse. Kept here, beside the errors that carry it, so this module depends on nothing.
 */
export type ProtocolErrorCode =
  | 'bad_secret' | 'unauthenticated' | 'wrong_round' | 'round_closed' | 'not_selected' | 'too_large'
  | 'malformed' | 'wrong_tensors' | 'not_finite' | 'norm_exceeded' | 'bad_request' | 'not_found' | 'unsupported_protocol'
  | 'rate_limited' | 'revoked' | 'wrong_stage';

/**
 * A federated step failed. `reason` is the coordinator's ErrorResponse code for a rejected request
 * (the message carries its text), or the client's own reason. Network failures and 5xx after every
 * retry are DownloadError instead.
 */
export class FederatedError extends WebtuneError {
  override name = 'FederatedError';
  readonly reason: ProtocolErrorCode | 'bad_response' | 'bad_global' | 'busy' | 'bad_config' | 'too_large';
  readonly status: number | undefined;
  constructor(
    code: WebtuneErrorCode,
    reason: FederatedError['reason'],
    message: string,
    options: { status?: number; cause?: unknown } = {},
  ) {
    super(code, message, options.cause === undefined ? undefined : { cause: options.cause });
    this.reason = reason;
    this.status = options.status;
  }
}

/** An update payload is unusable; `reason` is the protocol's error code. */
export class UpdateRejectedError extends WebtuneError {
  override name = 'UpdateRejectedError';
  readonly reason: ProtocolErrorCode;
  constructor(reason: ProtocolErrorCode, detail: string) {
    super('INVALID_ARGUMENT', `Update rejected (${reason}): ${detail}.`);
    this.reason = reason;
  }
}

/**
 * A secure-aggregation round this client will not go on with, so that its secrets stay secret:
 *   'bad_share'          a share addressed to it fails AES-GCM authentication or names another round or pair
 *   'both_secrets'       the coordinator asks for the self-mask seed share of a peer whose mask-key share it
 *                        asked for before (or the reverse): with both it could unmask that peer's update
 *   'too_few_survivors'  the coordinator asks to unmask fewer inputs than the round's threshold
 *   'bad_roster'         the neighbours, keys or survivor lists contradict the round's parameters
 *   'unsupported_curve'  the round's ECDH curve is not in this runtime's WebCrypto
 *   'stage_passed'       the round went past the stage this client needed (it joined late or was offline)
 *   'round_failed'       the coordinator failed the round (too many dropouts); nothing was revealed by this client
 * Nothing further is sent for the round once it is thrown (except 'stage_passed' and 'round_failed',
 * which are the coordinator's news, not a refusal).
 */
export class SecureAggregationError extends WebtuneError {
  override name = 'SecureAggregationError';
  readonly reason: 'bad_share' | 'both_secrets' | 'too_few_survivors' | 'bad_roster' | 'unsupported_curve' | 'stage_passed' | 'round_failed';
  readonly roundId: number;
  constructor(reason: SecureAggregationError['reason'], roundId: number, detail: string, options?: { cause?: unknown }) {
    super('INVALID_ARGUMENT', `Secure aggregation, round ${roundId} (${reason}): ${detail}`, options);
    this.reason = reason;
    this.roundId = roundId;
  }
}

/**
 * Another tab or window of this site is training the same run (Web Locks): two writers would
 * interleave checkpoints. Wait for it (TrainRequest `ifRunLocked: 'wait'`), train under another
 * `runId`, or stop the other tab's run. The other run and its checkpoints are untouched.
 */
export class RunLockedError extends WebtuneError {
  override name = 'RunLockedError';
  readonly runId: string;
  constructor(runId: string, detail?: string) {
    super(
      'RUN_LOCKED',
      `Run "${runId}" is being trained in another tab or window of this site${detail ? ` (${detail})` : ''}. ` +
        "Pass ifRunLocked: 'wait' to train() to wait until it stops, use another runId, or pause the run there.",
    );
    this.runId = runId;
  }
}

/** A constructor of any webtune error class. */
export type WebtuneErrorClass = abstract new (...args: never[]) => WebtuneError;

/**
 * Every webtune error class, keyed by its literal `name`. The worker transfer (in @webtune/sdk)
 * rebuilds an error as `ERROR_CLASSES[name]`, so `instanceof` holds on the page in minified
 * production builds too. A new error class is added here (a unit test checks none is missing).
 */
export const ERROR_CLASSES: Readonly<Record<string, WebtuneErrorClass>> = {
  WebtuneError,
  WebGPUUnavailableError,
  ShaderCompileError,
  DeviceLostError,
  OutOfMemoryError,
  InvalidArgumentError,
  BindingLimitError,
  GpuValidationError,
  ModelFormatError,
  UnsupportedModelError,
  ModelFileMissingError,
  DownloadError,
  MemoryPlanError,
  CheckpointCorruptError,
  CheckpointMismatchError,
  CheckpointNotFoundError,
  StorageFullError,
  WorkerStartError,
  DataFormatError,
  ChatTemplateError,
  FederatedError,
  UpdateRejectedError,
  SecureAggregationError,
  RunLockedError,
  CheckpointWriteError,
};
