/**
 * @webtune/gpu: WebGPU runtime and WGSL kernels. Importing this module registers nothing and
 * touches no GPU; call `createGpuContext()` first. Its errors are @webtune/errors'.
 * @packageDocumentation
 */
/// <reference types="@webgpu/types" preserve="true" />

export { createGpuContext, defaultTuning, canUseSubgroupMatmul, OPTIONAL_FEATURES } from './device.js';
export type { GpuContext, GpuFeatures, GpuLimits, AdapterSummary, CreateGpuContextOptions, KernelTuning } from './device.js';

export { MemoryTracker } from './memory.js';
export type { MemorySnapshot, LabelUsage } from './memory.js';
export { BufferPool } from './buffer-pool.js';
export { PipelineCache } from './pipeline-cache.js';
export type { KernelDefinition, ShaderFile, BindingKind, ElementType, OverrideConstants, CompiledKernel } from './pipeline-cache.js';
export { CommandRecorder, packParams } from './recorder.js';
export type { DispatchCost, Workgroups } from './recorder.js';
export { DispatchCache } from './dispatch-cache.js';
export type { DispatchCacheStats, CapturedDispatch } from './dispatch-cache.js';
export { profileDispatches } from './profiler.js';
export type { DispatchProfile, KernelTime } from './profiler.js';

export { createTensor, writeTensor, readTensor, readF32, readBuffer, shapeSize, BYTES_PER_ELEMENT } from './tensor.js';
export type { GpuTensor, DType, CreateTensorOptions, TensorData } from './tensor.js';
export { f32ToF16Bits, f16BitsToF32, toF16Bits, fromF16Bits } from './f16.js';

export { createMatmulKernel, matmul, paddedRowStride, MATMUL_KERNEL, DEFAULT_MATMUL_WORKGROUP } from './kernels/matmul.js';
export type { MatmulKernel, MatmulVariant, MatmulArgs, MatmulOptions } from './kernels/matmul.js';
export { matmulRef } from './kernels/matmul.ref.js';

export { quantizeNF4, dequantizeNF4, nf4BlockScales, doubleQuantizeAbsmax } from './nf4/quantize.js';
export type { NF4Quantized, NF4Scales, QuantizeNF4Options } from './nf4/quantize.js';
export { NF4_CODEBOOK, INT4_CODEBOOK, NF4_BLOCK_SIZES, NESTED_BLOCK_SIZE, createDynamicMap } from './nf4/format.js';
export type { Codebook4 } from './nf4/format.js';
export {
  uploadNF4,
  downloadNF4,
  quantizeNF4Gpu,
  dequantizeNF4Gpu,
  createNF4MatmulKernel,
  createNF4DequantizeKernel,
  matmulNF4,
  NF4_MATMUL_KERNEL,
  NF4_GRAD_INPUT_KERNEL,
} from './kernels/nf4.js';
export type { NF4Weight, NF4DequantizeKernel, NF4MatmulKernel, NF4MatmulVariant, NF4MatmulArgs, QuantizeNF4GpuOptions } from './kernels/nf4.js';
export { nf4MatmulRef, nf4GradInputRef } from './kernels/nf4-matmul.ref.js';

export { createLoraKernels } from './kernels/lora.js';
export type { LoraKernels, LoraLayer, FrozenWeight, LoraForwardArgs, LoraBackwardArgs, LoraKernelOptions } from './kernels/lora.js';
export { loraForwardRef, loraBackwardRef } from './kernels/lora.ref.js';

export { createNormKernels } from './kernels/norm.js';
export type { NormKernels, NormForwardArgs, NormBackwardArgs, NormOptions } from './kernels/norm.js';
export { createSwigluKernels, createGeluKernels } from './kernels/activation.js';
export type { SwigluKernels, GeluKernels, ActivationOptions } from './kernels/activation.js';
export { createPointwiseKernels, POINTWISE_FUNCTIONS } from './kernels/pointwise.js';
export type { PointwiseKernels, PointwiseFunction, PointwiseForwardArgs, PointwiseBackwardArgs, PointwiseOptions } from './kernels/pointwise.js';
export { createEmbeddingKernels } from './kernels/embedding.js';
export type { EmbeddingKernels, EmbeddingOptions } from './kernels/embedding.js';
export { createElementwiseKernels } from './kernels/elementwise.js';
export type { ElementwiseKernels, ElementwiseOptions, CopyColumnsArgs, CastArgs } from './kernels/elementwise.js';
export { createDropoutKernels, dropoutKeep } from './kernels/dropout.js';
export type { DropoutKernels, DropoutOptions } from './kernels/dropout.js';
export { createOptimizerKernels } from './kernels/optimizer.js';
export type { OptimizerKernels, AdamWStepArgs, ClipAccumulateArgs } from './kernels/optimizer.js';
export { createRopeKernel, ropeTables } from './kernels/rope.js';
export type { RopeKernel, RopeTables, RopeKernelOptions } from './kernels/rope.js';
export { createAttentionKernels } from './kernels/attention.js';
export type {
  AttentionKernels, AttentionForwardArgs, AttentionBackwardArgs, AttentionMergeArgs, AttentionMergeBackwardArgs, AttentionKernelOptions,
} from './kernels/attention.js';
export { attentionMatmulScratchSizes, ATTENTION_ROW_BLOCK } from './kernels/attention-matmul.js';
export type { AttentionMatmulScratch, AttentionMatmulShape } from './kernels/attention-matmul.js';
export { createCrossEntropyKernel, IGNORE_INDEX } from './kernels/cross-entropy.js';
export type { CrossEntropyKernel, CrossEntropyKernelOptions } from './kernels/cross-entropy.js';
export { createVectorScaleKernels } from './kernels/vector-scale.js';
export type { VectorScaleKernels, VectorScaleOptions, ScaleColumnsArgs, ColumnDotArgs, ScaleRowsArgs, RowDotArgs } from './kernels/vector-scale.js';
export { scaleColumnsRef, columnDotRef } from './kernels/vector-scale.ref.js';
export type { ScaleColumnsRefInput, ColumnDotRefInput } from './kernels/vector-scale.ref.js';
export { createDoraKernels } from './kernels/dora.js';
export type { DoraKernels, DoraKernelOptions, DoraWeightNormArgs } from './kernels/dora.js';
export { doraWeightNormRef } from './kernels/dora.ref.js';
export type { DoraWeightNormRefInput, DoraWeightNormRefOutput } from './kernels/dora.ref.js';
