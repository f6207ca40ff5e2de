/** @webtune/onnx as the session's OnnxSupport: the loader's ONNX WeightFormat and the export. */
import { exportMergedOnnx, onnxWeightFormat } from '@webtune/onnx';
import type { OnnxSupport } from './session.js';

/** ONNX in (a WeightFormat for the loader) and out (exportMergedOnnx), for a TrainerSession. */
export const onnxSupport: OnnxSupport = {
  weightFormat: (file) => onnxWeightFormat({ file }),
  exportModel: (files, config, tensors, options) => exportMergedOnnx(files, config, tensors, options).files,
};
