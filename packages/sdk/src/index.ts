/**
 * @webtune/sdk: what an app imports. createTrainer() runs the training session in a Web Worker
 * (or inline), with typed errors that keep their class across the worker.
 * @packageDocumentation
 */
/// <reference types="@webgpu/types" preserve="true" />
export { createTrainer } from './client.js';
export type { TrainerApi, CreateTrainerOptions } from './facade.js';
export { TrainerSession } from './session.js';
export type {
  SessionEnvironment, OnnxSupport, LoadOptions, ModelInfo, DataInput, DataOptions, DataInfo, TrainRequest, TrainSummary, ProgressEvent,
  SessionGenerateOptions, DataProgress, AdapterRequest, MergedFiles, AdapterState, PrivacyRequest, PrivacySummary, RecoveryEvent, PowerPause,
} from './session.js';
export { planCandidates, chooseCandidate, defaultBudget } from './auto-configure.js';
export type {
  AutoConfigureOptions, AutoConfigureProgress, AutoPlan, AutoSettings, AutoCandidate, CalibrationMeasurement, DeviceFacts, MemoryOptimization, CandidateInput, CandidatePlan,
} from './auto-configure.js';
export { watchDeviceConditions, powerDecision, resolvePowerPolicy } from './device-conditions.js';
export type { DeviceConditions, PowerPolicy, PowerDecision, PressureState, ConditionsWatch } from './device-conditions.js';
export type { IfRunLocked } from './run-lock.js';
export { adapterSpecOf, resolvePrivacy } from './session.js';
export type { DataRecord, FileFormat, RecordKind, Evaluation } from '@webtune/trainer';
export type {
  ChatMessage, ChatRole, AdapterSpec, AdapterMethod, AdapterMethodInfo, LoraConfig, DoraConfig, IA3Config, BitFitConfig, PromptTuningConfig, PTuningConfig, PrefixTuningConfig,
  BottleneckConfig, UniPeltConfig,
} from '@webtune/model';
export { registerErrorTransfer, serializeWebtuneError, deserializeWebtuneError } from './transfer.js';
export type { SerializedWebtuneError } from './transfer.js';
export { exposeTrainerSession } from './expose.js';
