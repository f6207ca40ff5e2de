/**
 * @webtune/trainer: the training core: the loop, AdamW, schedules, data batching, the memory
 * planner and checkpoints (format and stores). The worker SDK on top of it is @webtune/sdk.
 * @packageDocumentation
 */
/// <reference types="@webgpu/types" preserve="true" />
export { Trainer, DEFAULT_TRAIN_CONFIG, evaluateRows, checkDpSgdConfig, nextStepExceedsBudget, checkpointBudgetSpent } from './trainer.js';
export type { TrainConfig, StepProgress, TrainResult, TrainerState, EvaluationOptions, DpSgdConfig, StepPrivacy } from './trainer.js';
export { recordEvaluation, checkEarlyStopping, perplexity, EMPTY_EVALUATION_STATE } from './evaluation.js';
export type { Evaluation, EvaluationState, EarlyStoppingOptions } from './evaluation.js';
export { AdamW, DEFAULT_ADAMW } from './optimizer.js';
export type { AdamWOptions } from './optimizer.js';
export { learningRateFactor } from './schedule.js';
export type { ScheduleKind, ScheduleOptions } from './schedule.js';
export { packTokens, tokenizeDocuments, batchFromWindows, BatchStream, rowLength } from './data/windows.js';
export type { DataCursor, TrainingRow } from './data/windows.js';
export { readRecords, formatFromName } from './data/records.js';
export type { DataRecord, RecordKind, FileFormat, ReadRecordsOptions, ReadProgress, RecordsResult, SkippedRecord } from './data/records.js';
export { tokenizeConversation, tokenizePromptCompletion, exampleToRow, rowsFromExamples } from './data/examples.js';
export type { TokenizedExample, RowResult, ExampleOptions, ExampleRows } from './data/examples.js';
export { estimateTrainingMemory, checkMemoryPlan } from './planner.js';
export type { MemoryEstimate, MemoryPlanInput, PlanCheckOptions } from './planner.js';
export {
  CHECKPOINT_SCHEMA_VERSION, CHECKPOINT_FILE_METADATA_KEY, modelFingerprint, checkpointId, encodeCheckpoint, decodeCheckpoint,
  migrateCheckpointMeta, checkpointDifferences, checkpointToFile, checkpointFromFile, sha256Hex, metaDigest,
} from './checkpoint.js';
export type { JsonValue, JsonObject, ModelFingerprint, PrivacyCheckpointState, CheckpointMeta, CheckpointRecord, CheckpointInput, DecodedCheckpoint, CheckpointExpectation } from './checkpoint.js';
export { indexedDbCheckpointStore, MemoryCheckpointStore, isQuotaExceededError, DEFAULT_CHECKPOINT_DB, DEFAULT_CHECKPOINT_STORE } from './checkpoint-store.js';
export type { CheckpointStore } from './checkpoint-store.js';
export { PerExampleClipper } from './privacy/dp-sgd.js';
export type { PerExampleClipperOptions, ExampleStepOptions } from './privacy/dp-sgd.js';
export {
  DEFAULT_ORDERS, computeRdp, rdpToEpsilon, computeDpEpsilon, RdpAccountant, secureUniform, secureStandardNormal, float32Tensors, gaussianNoise, addGaussianNoise, PoissonSampler,
  PRIVACY_PRESETS, DP_SGD_ORDERS, defaultDelta, estimatePrivacy, noiseMultiplierFor,
} from './privacy/index.js';
export type {
  RdpHistoryEntry, RdpAccountantJSON, PrivacyPreset, PrivacyEstimateInput, PrivacyEstimate, NoiseMultiplierInput,
} from './privacy/index.js';
