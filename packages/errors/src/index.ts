/**
 * @webtune/errors: every error webtune throws, and the registry that lets each keep its class
 * across a worker boundary. Depends on nothing; importing it registers nothing.
 * @packageDocumentation
 */
export {
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
  FederatedError,
  UpdateRejectedError,
  ERROR_CLASSES,
  formatBytes,
} from './errors.js';
export type { WebtuneErrorCode, ShaderMessage, ProtocolErrorCode, WebtuneErrorClass } from './errors.js';
