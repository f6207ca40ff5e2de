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
export { ARCHITECTURES, architectureOf, architectureForModelType, modulePath, parseModulePath, LINEAR_MODULES } from './arch/index.js';
export type { ArchitectureDescriptor, AttentionLinears, MlpLinears, ArchitectureNames, DefaultTargets } from './arch/index.js';
export { resolveLoraConfig, loraScale, peftKey } from './adapters/lora/config.js';
export type { LoraConfig } from './adapters/lora/config.js';
export { resolveDoraConfig, magnitudeKey, DORA_MAX_RANK } from './adapters/dora/config.js';
export type { DoraConfig } from './adapters/dora/config.js';
export { resolveIA3Config, ia3Key } from './adapters/ia3/config.js';
export type { IA3Config } from './adapters/ia3/config.js';
export { resolveBitFitConfig, bitfitKey } from './adapters/bitfit/config.js';
export type { BitFitConfig } from './adapters/bitfit/config.js';
export { resolvePromptTuningConfig } from './adapters/prompt-tuning/config.js';
export type { PromptTuningConfig } from './adapters/prompt-tuning/config.js';
export { resolvePTuningConfig } from './adapters/p-tuning/config.js';
export type { PTuningConfig } from './adapters/p-tuning/config.js';
export { resolvePrefixTuningConfig } from './adapters/prefix-tuning/config.js';
export type { PrefixTuningConfig } from './adapters/prefix-tuning/config.js';
export { resolveBottleneckConfig } from './adapters/bottleneck/config.js';
export type { BottleneckConfig } from './adapters/bottleneck/config.js';
export { resolveUniPeltConfig, UNIPELT_PREFIX } from './adapters/unipelt/config.js';
export type { UniPeltConfig } from './adapters/unipelt/config.js';
export { PROMPT_EMBEDDINGS } from './adapters/prompt-learning.js';
export { matchesTarget, selectModules } from './adapters/targets.js';
export { ADAPTER_METHODS, adapterMethod, resolveAdapterSpec, adapterMismatch, adapterParameterCount, adapterLayout, methodOfKeys, adapterSpecProblem, adapterMethodInfo } from './adapters/registry.js';
export type { AdapterMethodInfo } from './adapters/registry.js';
export type { MethodDefinition } from './adapters/method.js';
export { createAdapter, createAdapterOnBase, adapterFromTensors } from './adapters/create.js';
export type {
  Adapter, AdapterMethod, AdapterSpec, TrainableTensor, TargetModule, AdapterBuffers, AdapterBufferShape, AdapterRuntime, RuntimeContext, LinearOps, LinearCall, HostTensor, SequenceLayout, VirtualTokenHooks, PrefixHooks, PrefixGateHooks,
} from './adapters/types.js';
export { Rng } from './rng.js';
export type { RngState } from './rng.js';
export { uploadBaseModel, storedFourBit, linearShape, linearHasBias, transpose } from './weights.js';
export type { WeightReader, BaseModel, BaseFormat, BaseWeightOptions, FrozenLinear, LayerWeights, NormWeights } from './weights.js';
export { LoraAdapter } from './adapters/lora/adapter.js';
export type { LoraParam } from './adapters/lora/adapter.js';
export { DoraAdapter } from './adapters/dora/adapter.js';
export type { DoraParam } from './adapters/dora/adapter.js';
export { IA3Adapter } from './adapters/ia3/adapter.js';
export type { IA3Param } from './adapters/ia3/adapter.js';
export { BitFitAdapter } from './adapters/bitfit/adapter.js';
export type { BitFitParam } from './adapters/bitfit/adapter.js';
export { PromptTuningAdapter } from './adapters/prompt-tuning/adapter.js';
export { PTuningAdapter } from './adapters/p-tuning/adapter.js';
export { PrefixTuningAdapter } from './adapters/prefix-tuning/adapter.js';
export { BottleneckAdapter } from './adapters/bottleneck/adapter.js';
export { UniPeltAdapter } from './adapters/unipelt/adapter.js';
export type { BottleneckParam } from './adapters/bottleneck/adapter.js';
export { Transformer } from './transformer.js';
export type { TokenBatch, TrainOptions, KvCache } from './transformer.js';
export { planWorkspace, planBytes, defaultHeadChunk, logitsRowStride, mlpRowStride, Workspace, BYTES, ATTENTION_SCRATCH_MAX_BYTES } from './workspace.js';
export type { WorkspaceShape, BufferPlan } from './workspace.js';
export { importPeftAdapter } from './import-adapter.js';
export { exportPeftAdapter, readPeftAdapter, mergeAdapter, mergeAdapterFiles, mergedWeight, adapterPairFor, peftAdapterConfig, adapterConfigJson, toAdapterSpec } from './peft.js';
export type { PeftFiles, AdapterSpecLike } from './peft.js';
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
