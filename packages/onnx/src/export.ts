/**
 * The fine-tuned model as ONNX: the original file with the LoRA update applied to the weights it
 * touches, written back in each weight's own layout and precision. Every other node, name, opset
 * and input/output stays as the exporter wrote it, so onnxruntime-web and transformers.js run it
 * exactly as they ran the original.
 *
 *  - f32 and f16 weights are merged, `W + s * B @ A`, exactly (f16 rounds the merged value once);
 *    the file differs from the original only inside those initializers.
 *  - A 4-bit MatMulNBits weight stays as it is, and the adapter is added next to it as an exact
 *    low-rank side branch, `Y = MatMulNBits(X) + (X @ Aᵀ) @ (s·Bᵀ)` (two small MatMuls and an Add,
 *    in the node's activation type). Merging into 4-bit weights would re-quantize them, which costs
 *    about as much as the first quantization and blurs a short fine-tune; `fourBit: 'requantize'`
 *    does that anyway (onnxruntime's RTN scheme), for a graph with no extra nodes.
 */
import { InvalidArgumentError, UnsupportedModelError } from '@webtune/errors';
import { adapterPairFor, loraScale, mergedWeight, transpose, type HostTensor, type LoadedModelFiles, type LoraConfig } from '@webtune/model';
import { dirOf, onnxContainer } from './format.js';
import type { OnnxWeightSource } from './mapping.js';
import { addToGraph, encodeFloat32, replaceInitializers, type NewInitializer, type NodeSplice } from './patch.js';
import type { OnnxModel } from './proto.js';

/**
 * onnxruntime's symmetric RTN 4-bit quantization (MatMul4BitsQuantizer, MLAS BlockwiseQuantizer):
 * per block the element of largest magnitude m, with its sign, gives scale = m / -8; q = clamp(
 * round(w / scale + 8), 0, 15), round half away from zero. `w` is [N, K] (rows are output
 * features); B is [N, ceil(K/block), block/2], element 2j in the low nibble; scales [N * blocks].
 */
export function quantizeQ4(w: Float32Array, n: number, k: number, blockSize: number): { packed: Uint8Array; scales: Float32Array } {
  const blocks = Math.ceil(k / blockSize);
  const packed = new Uint8Array(n * blocks * (blockSize / 2));
  const scales = new Float32Array(n * blocks);
  for (let row = 0; row < n; row++) {
    for (let b = 0; b < blocks; b++) {
      const start = b * blockSize;
      const end = Math.min(k, start + blockSize);
      let m = 0;
      for (let i = start; i < end; i++) {
        const v = w[row * k + i]!;
        if (Math.abs(v) > Math.abs(m)) m = v;
      }
      const scale = Math.fround(m / -8);
      scales[row * blocks + b] = scale;
      const inv = scale === 0 ? 0 : Math.fround(1 / scale);
      const base = (row * blocks + b) * (blockSize / 2);
      for (let i = start; i < start + blockSize; i++) {
        const x = i < end ? Math.fround(Math.fround(w[row * k + i]! * inv) + 8) : 8;
        const q = Math.min(15, Math.max(0, Math.sign(x) * Math.round(Math.abs(x))));
        const j = i - start;
        packed[base + (j >> 1)]! |= (j & 1 ? q << 4 : q);
      }
    }
  }
  return { packed, scales };
}

/** Options of exportOnnx() (a trainer from createOnnxTrainer() with a model loaded with `onnx`). */
export interface ExportOnnxOptions {
  /**
   * 4-bit MatMulNBits weights: 'lora-branch' (default) keeps them and adds the adapter as an exact
   * low-rank side branch; 'requantize' merges and quantizes again (no new nodes, lossy).
   */
  fourBit?: 'lora-branch' | 'requantize';
}

export interface MergedOnnx {
  /** Fresh files by their path in the model folder: the graph (e.g. onnx/model.onnx) and its external data file, if any. */
  files: Map<string, Uint8Array>;
  /** The HF parameters whose weights were merged (f32/f16, or 4-bit with 'requantize'). */
  merged: string[];
  /** The HF parameters kept 4-bit with the adapter as a side branch next to their MatMulNBits node. */
  branched: string[];
}

/**
 * `loaded` must come from loadModelFiles(..., { weights: onnxWeightFormat() }); `lora` and
 * `tensors` are the adapter (PEFT keys), as LoraAdapter.read() or readPeftAdapter() give them.
 */
export function exportMergedOnnx(
  loaded: LoadedModelFiles,
  lora: LoraConfig,
  tensors: ReadonlyMap<string, HostTensor>,
  options: ExportOnnxOptions = {},
): MergedOnnx {
  const fourBit = options.fourBit ?? 'lora-branch';
  if (fourBit !== 'lora-branch' && fourBit !== 'requantize') {
    throw new InvalidArgumentError(`exportOnnx: fourBit must be 'lora-branch' or 'requantize', got ${JSON.stringify(fourBit)}.`);
  }
  const onnx = onnxContainer(loaded);
  if (!onnx) {
    throw new InvalidArgumentError(
      `The model was loaded from ${loaded.format} weights, not ONNX; an ONNX export needs the original graph: load the model with onnxWeightFormat().`,
    );
  }
  const { model, weights, externalData } = onnx;
  const replacements = new Map<string, Uint8Array>();
  const merged: string[] = [];
  const branched: string[] = [];
  const splices: NodeSplice[] = [];
  const initializers: NewInitializer[] = [];
  for (const name of weights.reader.names()) {
    const src = weights.sources.get(name);
    const pair = src ? adapterPairFor(loaded.config, name, tensors) : undefined;
    if (!src || !pair) continue;
    if (src.q4 && fourBit === 'lora-branch') {
      const branch = loraBranch(model, name, src, pair, loraScale(lora));
      splices.push(branch.splice);
      initializers.push(...branch.initializers);
      branched.push(name);
      continue;
    }
    // Only the weights the adapter touches are decoded (a q4 weight is dequantized to read it).
    const { data, shape } = weights.reader.read(name);
    const w = mergedWeight(loaded.config, name, data, lora, tensors)!;
    merged.push(name);
    const [rows, cols] = shape as [number, number];
    // Back to the initializer's layout (for q4, B's rows are output features: [N, K]).
    const stored = src.layout === 'as-hf' ? w : transpose(w, rows, cols);
    if (src.q4) {
      if (src.q4.zeroPoints) {
        throw new UnsupportedModelError(model.source, `"${src.node ?? name}" has explicit zero points; re-quantizing asymmetric MatMulNBits weights is not supported (export with fourBit: 'lora-branch')`);
      }
      const { packed, scales } = quantizeQ4(stored, src.q4.N, src.q4.K, src.q4.blockSize);
      replacements.set(src.initializer, packed);
      replacements.set(src.q4.scales, encodeFloat32(scales, model.graph.initializers.get(src.q4.scales)!.dataType));
    } else {
      replacements.set(src.initializer, encodeFloat32(stored, src.dataType));
    }
  }
  const out = replaceInitializers(model, replacements, externalData);
  const bytes = splices.length > 0 ? addToGraph(model, out.bytes, { splices, initializers }) : out.bytes;
  const dir = dirOf(onnx.file);
  const files = new Map<string, Uint8Array>([[onnx.file, bytes]]);
  // Every file is a fresh copy (an unchanged external file too), so callers may transfer or keep them.
  for (const [name, data] of out.externalData ?? []) files.set(dir + name, externalData.get(name) === data ? data.slice() : data);
  return { files, merged, branched };
}

/**
 * The side branch for one MatMulNBits node computing Y = X Wᵀ: the node now writes `Y/base`, and
 * MatMul(X, Aᵀ) -> MatMul(., s·Bᵀ) -> Add(Y/base, .) writes Y. Aᵀ [K, r] and s·Bᵀ [r, N] are stored
 * in the node's activation type (that of its scales: float or float16).
 */
function loraBranch(
  model: OnnxModel,
  param: string,
  src: OnnxWeightSource,
  pair: { a: HostTensor; b: HostTensor },
  scale: number,
): { splice: NodeSplice; initializers: NewInitializer[] } {
  const index = model.graph.nodes.findIndex((n) => n.name === src.node);
  const node = model.graph.nodes[index];
  if (!node || node.opType !== 'MatMulNBits') {
    throw new UnsupportedModelError(model.source, `the MatMulNBits node "${src.node}" of ${param} is not in the graph, or not unique by name`);
  }
  const { K, N } = src.q4!;
  const [r, inF] = pair.a.shape as [number, number];
  if (inF !== K || pair.b.shape[0] !== N || pair.b.shape[1] !== r) {
    throw new InvalidArgumentError(
      `The adapter for ${param} has A [${pair.a.shape.join(', ')}] and B [${pair.b.shape.join(', ')}], but node "${node.name}" is ${N} x ${K}; the adapter was trained for another model.`,
    );
  }
  const dataType = model.graph.initializers.get(src.q4!.scales)!.dataType;
  const aT = transpose(pair.a.data, r, K);
  const sbT = transpose(pair.b.data, N, r).map((v) => Math.fround(v * scale));
  const module = param.replace(/\.weight$/, '');
  const y = node.outputs[0]!;
  const names = {
    base: `${y}/base`,
    a: `${module}.lora_A.T`,
    b: `${module}.lora_B.T.scaled`,
    down: `${node.name}/lora_A/output_0`,
    up: `${node.name}/lora_B/output_0`,
  };
  return {
    splice: {
      index,
      renameOutput: names.base,
      nodes: [
        { name: `${node.name}/lora_A`, opType: 'MatMul', inputs: [node.inputs[0]!, names.a], outputs: [names.down] },
        { name: `${node.name}/lora_B`, opType: 'MatMul', inputs: [names.down, names.b], outputs: [names.up] },
        { name: `${node.name}/lora_Add`, opType: 'Add', inputs: [names.base, names.up], outputs: [y] },
      ],
    },
    initializers: [
      { name: names.a, dataType, dims: [K, r], bytes: encodeFloat32(aT, dataType) },
      { name: names.b, dataType, dims: [r, N], bytes: encodeFloat32(sbT, dataType) },
    ],
  };
}
