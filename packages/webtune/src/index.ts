/**
 * webtune: fine-tune language models in the browser on WebGPU. The front door: createTrainer()
 * and everything it takes and gives, and every error class webtune throws. Node helpers are in
 * 'webtune/node', ONNX in 'webtune/onnx', the federated client in 'webtune/federated'; the worker
 * entries are 'webtune/worker' and 'webtune/onnx-worker'.
 *
 * @example
 * ```ts
 * import { createTrainer, ModelFileMissingError } from 'webtune';
 * const trainer = await createTrainer();
 * await trainer.loadModel('/models/my-model/');
 * await trainer.prepareData({ text: notes }, { seqLen: 128 });
 * await trainer.train({ steps: 100, runId: 'notes', resume: true }, (p) => console.log(p.step, p.loss));
 * const { text } = await trainer.generate('Dear diary,', { maxNewTokens: 40 });
 * ```
 * @packageDocumentation
 */
/// <reference types="@webgpu/types" preserve="true" />
export { createTrainer, watchDeviceConditions } from '@webtune/sdk';
export type {
  TrainerApi, CreateTrainerOptions, LoadOptions, ModelInfo, DataInput, DataOptions, DataInfo, TrainRequest, TrainSummary, ProgressEvent,
  SessionGenerateOptions, DataProgress, AdapterRequest, MergedFiles, AdapterState, PrivacyRequest, PrivacySummary, RecoveryEvent, PowerPause,
  AutoConfigureOptions, AutoConfigureProgress, AutoPlan, AutoSettings, CalibrationMeasurement, DeviceFacts, MemoryOptimization,
  DeviceConditions, PowerPolicy, PressureState, ConditionsWatch, IfRunLocked,
} from '@webtune/sdk';
export type { CheckpointMeta, CheckpointStore, DataRecord, FileFormat, RecordKind, Evaluation, StepPrivacy, PrivacyPreset, PrivacyEstimate, PrivacyEstimateInput, NoiseMultiplierInput } from '@webtune/trainer';
// Privacy planning before training (pure math, no model, no GPU): what a run will spend, the noise a budget needs.
export { estimatePrivacy, noiseMultiplierFor, defaultDelta, PRIVACY_PRESETS, DP_SGD_ORDERS, checkpointBudgetSpent } from '@webtune/trainer';
export type {
  LoadProgress, PeftFiles, BaseFormat, AdapterSpec, AdapterMethod, AdapterMethodInfo, ModelFileSource, ChatMessage, ChatRole,
  LoraConfig, DoraConfig, IA3Config, BitFitConfig, PromptTuningConfig, PTuningConfig, PrefixTuningConfig, BottleneckConfig, UniPeltConfig,
} from '@webtune/model';
// A method's title and whether it merges (no model, no GPU): apps need not list which methods have a merged form.
export { adapterMethodInfo } from '@webtune/model';
// Every error class (and ERROR_CLASSES, formatBytes and the error types).
export * from '@webtune/errors';
