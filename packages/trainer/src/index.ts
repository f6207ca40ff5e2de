/** @webtune/trainer: the training loop, AdamW, schedules, data batching and the memory planner. */
export { Trainer, DEFAULT_TRAIN_CONFIG } from './trainer.js';
export type { TrainConfig, StepProgress, TrainResult, TrainerState } from './trainer.js';
export { AdamW, DEFAULT_ADAMW } from './optimizer.js';
export type { AdamWOptions } from './optimizer.js';
export { learningRateFactor } from './schedule.js';
export type { ScheduleKind, ScheduleOptions } from './schedule.js';
export { packTokens, tokenizeDocuments, batchFromWindows, BatchStream } from './data.js';
export type { DataCursor } from './data.js';
export { estimateTrainingMemory, checkMemoryPlan } from './planner.js';
export type { MemoryEstimate, MemoryPlanInput, PlanCheckOptions } from './planner.js';
export {
  CHECKPOINT_SCHEMA_VERSION, CHECKPOINT_FILE_METADATA_KEY, modelFingerprint, checkpointId, encodeCheckpoint, decodeCheckpoint,
  migrateCheckpointMeta, checkpointDifferences, checkpointToFile, checkpointFromFile, sha256Hex,
} from './checkpoint.js';
export type { JsonValue, JsonObject, ModelFingerprint, CheckpointMeta, CheckpointRecord, CheckpointInput, DecodedCheckpoint, CheckpointExpectation } from './checkpoint.js';
export { indexedDbCheckpointStore, MemoryCheckpointStore, isQuotaExceededError, DEFAULT_CHECKPOINT_DB, DEFAULT_CHECKPOINT_STORE } from './checkpoint-store.js';
export type { CheckpointStore } from './checkpoint-store.js';
export { TrainerSession } from './session.js';
export type {
  SessionEnvironment, LoadOptions, ModelInfo, DataInput, DataOptions, DataInfo, TrainRequest, TrainSummary, ProgressEvent, SessionGenerateOptions,
} from './session.js';
export { createTrainer } from './client.js';
export type { TrainerApi, CreateTrainerOptions } from './client.js';
export { registerErrorTransfer, serializeWebtuneError, deserializeWebtuneError } from './transfer.js';
