/**
 * `onnxWeightFormat()`: lets webtune's model loader read an ONNX decoder export (transformers.js /
 * Optimum layout: config.json and tokenizer.json at the top, the graph under onnx/) instead of
 * safetensors. The loader fetches the files with progress and caching; this parses the graph,
 * finds every Hugging Face parameter in it (mapping.ts) and hands the weights over by HF name.
 *
 * @example
 * const files = await loadModelFiles(url, { weights: onnxWeightFormat({ file: 'onnx/model_q4.onnx' }) });
 * const base = await uploadBaseModel(ctx, files.config, weightReader(files));
 */
import { ModelFileMissingError, ModelFormatError } from '@webtune/errors';
import type { LoadedModelFiles, ModelConfig, SafetensorsTensor, WeightFormat, WeightTensorInfo } from '@webtune/model';
import { onnxWeights, type OnnxWeightMap } from './mapping.js';
import { dataTypeName, parseOnnx, type OnnxModel } from './proto.js';

export const DEFAULT_ONNX_FILE = 'onnx/model.onnx';

/** What the ONNX format keeps of a load (LoadedModelFiles.container), for the exporter. */
export interface OnnxContainer {
  /** The graph file's path in the folder, e.g. onnx/model.onnx. */
  file: string;
  model: OnnxModel;
  /** External data files by the name the graph gives them (e.g. model.onnx_data). */
  externalData: Map<string, Uint8Array>;
  weights: OnnxWeightMap;
}

/** The folder part of a path in the model folder, with its slash ('' at the top). */
export const dirOf = (file: string) => (file.includes('/') ? file.slice(0, file.lastIndexOf('/') + 1) : '');

/**
 * Reads `file` (default onnx/model.onnx) and, when it exists, its external data file
 * (`<file>_data`, Optimum's name; any other name the graph references is read too when the cache
 * manifest knows it, and otherwise reported as missing).
 */
export function onnxWeightFormat(options: { file?: string } = {}): WeightFormat {
  const file = options.file ?? DEFAULT_ONNX_FILE;
  return {
    id: `onnx:${file}`,
    async plan({ config, exists, cached, source }) {
      const files = cached ?? [file, ...((await exists(`${file}_data`)) ? [`${file}_data`] : [])];
      if (!cached && !(await exists(file))) {
        throw new ModelFileMissingError(file, `${source} has no ${file}; pass the ONNX file's path in the folder (e.g. onnx/model_q4.onnx)`);
      }
      let model: OnnxModel | undefined;
      const externalData = new Map<string, Uint8Array>();
      return {
        files,
        accept(name, bytes) {
          if (name === file) model = parseOnnx(bytes, name);
          else externalData.set(name.slice(dirOf(file).length), bytes);
        },
        finish() {
          if (!model) throw new ModelFormatError(file, 'the ONNX file was not read');
          return onnxTensors(file, model, config, externalData);
        },
      };
    },
  };
}

function onnxTensors(file: string, model: OnnxModel, config: ModelConfig, externalData: Map<string, Uint8Array>) {
  const weights = onnxWeights(model, config, externalData);
  const tensors = new Map<string, WeightTensorInfo>();
  let weightBytes = 0;
  const counted = new Set<string>();
  for (const name of weights.reader.names()) {
    const src = weights.sources.get(name);
    const init = src ? model.graph.initializers.get(src.initializer) : undefined;
    // The HF shape from the initializer (no decoding here: the upload decodes each tensor once).
    const shape = !src || !init ? [...weights.reader.read(name).shape]
      : src.q4 ? (src.layout === 'as-hf' ? [src.q4.N, src.q4.K] : [src.q4.K, src.q4.N])
        : src.layout === 'as-hf' ? [...init.dims] : [...init.dims].reverse();
    tensors.set(name, { name, dtype: src?.q4 ? 'Q4' : init ? dataTypeName(init.dataType) : 'F32', shape, file });
    for (const used of [src?.initializer, src?.q4?.scales, src?.q4?.zeroPoints]) {
      const t = used ? model.graph.initializers.get(used) : undefined;
      if (t && !counted.has(t.name)) {
        counted.add(t.name);
        weightBytes += t.location.kind === 'values' ? 0 : t.location.length;
      }
    }
  }
  const float32 = (name: string) => weights.reader.read(name).data;
  const raw = (name: string): SafetensorsTensor => {
    const data = float32(name);
    return { name, dtype: 'F32', shape: [...tensors.get(name)!.shape], bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  };
  const container: OnnxContainer = { file, model, externalData, weights };
  return { tensors, float32, raw, fourBit: weights.reader.fourBit, weightBytes, container };
}

/** The ONNX graph behind a load made with onnxWeightFormat, or undefined for other formats. */
export function onnxContainer(files: LoadedModelFiles): OnnxContainer | undefined {
  return files.format.startsWith('onnx:') ? (files.container as OnnxContainer) : undefined;
}
