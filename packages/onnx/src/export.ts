/**
 * The fine-tuned model as ONNX: the original file with the LoRA update merged into the weights it
 * touches, `W + s * B @ A`, written back in each weight's own layout and precision. Every node,
 * name, opset and input/output stays as the exporter wrote it (the bytes differ only inside the
 * merged initializers), so onnxruntime-web and transformers.js run it exactly as they ran the
 * original.
 *
 * f32 and f16 weights are merged exactly (f16 rounds the merged value once). A 4-bit MatMulNBits
 * weight is merged into its dequantized values and quantized again with onnxruntime's symmetric
 * round-to-nearest scheme (block size and scale layout kept), so it stays 4-bit; the second
 * quantization costs about as much precision as the first.
 */
import { InvalidArgumentError, UnsupportedModelError } from '@webtune/gpu';
import { adapterPairFor, mergedWeight, transpose, type HostTensor, type LoadedModelFiles, type LoraConfig } from '@webtune/model';
import { dirOf, onnxContainer } from './format.js';
import { encodeFloat32, replaceInitializers } from './patch.js';

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

export interface MergedOnnx {
  /** Fresh files by their path in the model folder: the graph (e.g. onnx/model.onnx) and its external data file, if any. */
  files: Map<string, Uint8Array>;
  /** The HF parameters that were merged. */
  merged: string[];
}

/**
 * `loaded` must come from loadModelFiles(..., { weights: onnxWeightFormat() }); `lora` and
 * `tensors` are the adapter (PEFT keys), as LoraAdapter.read() or readPeftAdapter() give them.
 */
export function exportMergedOnnx(loaded: LoadedModelFiles, lora: LoraConfig, tensors: ReadonlyMap<string, HostTensor>): MergedOnnx {
  const onnx = onnxContainer(loaded);
  if (!onnx) {
    throw new InvalidArgumentError(
      `The model was loaded from ${loaded.format} weights, not ONNX; an ONNX export needs the original graph: load the model with onnxWeightFormat().`,
    );
  }
  const { model, weights, externalData } = onnx;
  const replacements = new Map<string, Uint8Array>();
  const merged: string[] = [];
  for (const name of weights.reader.names()) {
    const src = weights.sources.get(name);
    // Only the weights the adapter touches are decoded (a q4 weight is dequantized to read it).
    if (!src || !adapterPairFor(loaded.config, name, tensors)) continue;
    const { data, shape } = weights.reader.read(name);
    const w = mergedWeight(loaded.config, name, data, lora, tensors)!;
    merged.push(name);
    const [rows, cols] = shape as [number, number];
    // Back to the initializer's layout (for q4, B's rows are output features: [N, K]).
    const stored = src.layout === 'as-hf' ? w : transpose(w, rows, cols);
    if (src.q4) {
      if (src.q4.zeroPoints) {
        throw new UnsupportedModelError(model.source, `"${src.node ?? name}" has explicit zero points; re-quantizing asymmetric MatMulNBits weights is not supported yet`);
      }
      const { packed, scales } = quantizeQ4(stored, src.q4.N, src.q4.K, src.q4.blockSize);
      replacements.set(src.initializer, packed);
      replacements.set(src.q4.scales, encodeFloat32(scales, model.graph.initializers.get(src.q4.scales)!.dataType));
    } else {
      replacements.set(src.initializer, encodeFloat32(stored, src.dataType));
    }
  }
  const out = replaceInitializers(model, replacements, externalData);
  const dir = dirOf(onnx.file);
  const files = new Map<string, Uint8Array>([[onnx.file, out.bytes]]);
  // Every file is a fresh copy (an unchanged external file too), so callers may transfer or keep them.
  for (const [name, bytes] of out.externalData ?? []) files.set(dir + name, externalData.get(name) === bytes ? bytes.slice() : bytes);
  return { files, merged };
}
