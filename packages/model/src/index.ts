/** @webtune/model: model and tensor files. */
/// <reference types="@webgpu/types" preserve="true" />
export {
  parseSafetensors, parseSafetensorsHeader, serializeSafetensors, tensorToFloat32, parseShardIndex,
  SAFETENSORS_DTYPE_BYTES, MAX_HEADER_BYTES, MAX_SAFETENSORS_TENSORS,
} from './safetensors.js';
export type {
  SafetensorsDType, SafetensorsEntry, SafetensorsHeader, SafetensorsTensor, SafetensorsFile, TensorToWrite, ShardIndex,
} from './safetensors.js';

export { parseModelConfig } from './config.js';
export type { ModelConfig, Architecture, RopeScaling } from './config.js';
export { resolveLoraConfig, loraScale, matchesTarget, modulePath, peftKey, DEFAULT_TARGETS, LINEAR_MODULES } from './lora-config.js';
export type { LoraConfig } from './lora-config.js';
export { Rng } from './rng.js';
export type { RngState } from './rng.js';
export { uploadBaseModel, storedFourBit, linearShape, linearHasBias, transpose } from './weights.js';
export type { WeightReader, BaseModel, BaseFormat, BaseWeightOptions, FrozenLinear, LayerWeights, NormWeights } from './weights.js';
export { LoraAdapter } from './adapter.js';
export type { LoraParam, HostTensor } from './adapter.js';
export { Transformer } from './transformer.js';
export type { TokenBatch, TrainOptions, KvCache } from './transformer.js';
export { planWorkspace, planBytes, defaultHeadChunk, targetedLinears, Workspace, BYTES } from './workspace.js';
export type { WorkspaceShape, BufferPlan } from './workspace.js';
export { importPeftAdapter } from './adapter.js';
export { exportPeftAdapter, readPeftAdapter, mergeAdapter, mergedWeight, adapterPairFor, peftAdapterConfig } from './peft.js';
export type { PeftFiles } from './peft.js';
export { generate, sample } from './generate.js';
export type { GenerateOptions } from './generate.js';
export { loadModelFiles, urlSource, filesSource, readStream, weightReader, safetensorsFormat } from './loader.js';
export type { LoadProgress, ModelFileSource, WeightTensorInfo, LoadedModelFiles, LoadModelOptions, WeightFormat, WeightPlan, WeightPlanContext, WeightTensors } from './loader.js';
export { browserModelCache, DEFAULT_BROWSER_CACHE_NAME } from './model-cache.js';
export type { ModelCache } from './model-cache.js';
export { createTokenizer } from './tokenizer.js';
export type { Tokenizer } from './tokenizer.js';
export { ChatTemplate, shippedChatTemplate, checkChatMessage, chatMessageProblem, CHAT_ROLES, MAX_CHAT_MESSAGES } from './chat-template.js';
export type { ChatMessage, ChatRole, ChatTemplateVariables } from './chat-template.js';
