/**
 * webtune/onnx: a trainer that reads and writes ONNX files (transformers.js / Optimum exports in
 * f32, f16 and 4-bit MatMulNBits), and the decoder feeds onnxruntime-web needs to run them.
 * @packageDocumentation
 */
/// <reference types="@webgpu/types" preserve="true" />
export { createOnnxTrainer } from '@webtune/sdk/onnx';
export { decoderFeeds } from '@webtune/onnx';
export type { ExportOnnxOptions } from '@webtune/onnx';
