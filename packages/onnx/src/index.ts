/** @webtune/onnx: ONNX model files (Optimum / transformers.js decoder exports) read as HF-named weights, and patched in place for export. */
/// <reference types="@webgpu/types" preserve="true" />
export {
  parseOnnx, tensorBytes, tensorToFloat32, elementCount, expectedByteLength, dataTypeName, dataTypeBits, OnnxDataType,
} from './proto.js';
export type {
  OnnxModel, OnnxGraph, OnnxNode, OnnxTensor, OnnxAttribute, OnnxValueInfo, OnnxTensorLocation, OnnxTensorValues,
} from './proto.js';
export { MAX_ONNX_MESSAGES, onnxMessageBudget } from './proto.js';
export { replaceInitializers, encodeFloat32, addToGraph } from './patch.js';
export type { ReplacedOnnx, NewNode, NewInitializer, NodeSplice } from './patch.js';
export { onnxWeights } from './mapping.js';
export type { OnnxWeightMap, OnnxWeightSource, OnnxQ4Source } from './mapping.js';
export { onnxWeightFormat, onnxContainer, DEFAULT_ONNX_FILE } from './format.js';
export type { OnnxContainer } from './format.js';
export { exportMergedOnnx, quantizeQ4 } from './export.js';
export type { MergedOnnx, ExportOnnxOptions } from './export.js';
export { decoderFeeds } from './feeds.js';
export type { DecoderShape, TensorFactory } from './feeds.js';
