/**
 * Frozen base weights on the GPU. Linear weights are kept as PyTorch's Linear stores them,
 * [out, in] (GPT-2's Conv1D [in, out] is transposed once here), either float32 (LoRA), quantized
 * to NF4 with double quantization on the GPU at load (QLoRA, as bitsandbytes'
 * `bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True`), or, for a file that already
 * stores them in 4 bits (ONNX MatMulNBits), uploaded as stored ('q4'). Embeddings, the LM head,
 * norms and biases stay float32, as QLoRA keeps them in the compute dtype.
 */
import { createTensor, nf4BlockScales, quantizeNF4Gpu, uploadNF4, NF4_BLOCK_SIZES, type Codebook4, type NF4Quantized, type GpuContext, type GpuTensor, type ElementType, type FrozenWeight } from '@webtune/gpu';
import { InvalidArgumentError, ModelFileMissingError, ModelFormatError } from '@webtune/errors';
import type { ModelConfig } from './config.js';
import { architectureOf } from './arch/index.js';

/** What the GPU upload reads: a loaded model folder, or tensors a test or exporter holds. */
export interface WeightReader {
  has(name: string): boolean;
  /** float32 copy of the tensor and its shape. */
  read(name: string): { data: Float32Array; shape: readonly number[] };
  /**
   * A linear weight the file stores in 4 bits in a form the GPU kernels decode as it is (an ONNX
   * MatMulNBits weight: codebook 'int4', shape [out, in]), or undefined. `read` decodes on demand.
   */
  fourBit?(name: string): { blockSize: number; read(): NF4Quantized } | undefined;
}

/**
 * 'f32': LoRA on float weights. 'nf4': QLoRA, float weights quantized to NF4 at load. 'q4': the
 * file's own 4-bit weights (ONNX MatMulNBits) kept 4-bit on the GPU, no re-quantization.
 */
export type BaseFormat = 'f32' | 'nf4' | 'q4';

export interface BaseWeightOptions {
  /** 'f32' (LoRA), 'nf4' (QLoRA) or 'q4' (a 4-bit ONNX file's weights as stored). Default 'f32'. */
  format?: BaseFormat;
  /** NF4 block size; bitsandbytes' default 64 ('q4' keeps the file's). */
  blockSize?: number;
  /**
   * Activation and compute storage: 'f32' (default), or 'f16' where the device has shader-f16
   * (arithmetic stays f32 inside every kernel, as autocast does). With 'f16', embeddings, the LM
   * head and dense frozen weights are stored in f16 too; norms and biases stay f32.
   */
  dtype?: ElementType;
  /** Called after each tensor is on the GPU. */
  onProgress?: (done: number, total: number) => void;
}

export interface FrozenLinear {
  /** HF module path, e.g. model.layers.0.self_attn.q_proj */
  module: string;
  /** Suffix within the layer, e.g. self_attn.q_proj */
  name: string;
  inFeatures: number;
  outFeatures: number;
  /** GPT-2 Conv1D: stored [in, out] in the file (matters for merged export and fan_in_fan_out). */
  conv1d: boolean;
  weight: FrozenWeight;
  bias: GpuTensor | undefined;
}

export interface NormWeights {
  weight: GpuTensor;
  bias: GpuTensor | undefined;
}

export interface LayerWeights {
  norm1: NormWeights;
  norm2: NormWeights;
  linears: Map<string, FrozenLinear>;
}

export interface BaseModel {
  config: ModelConfig;
  format: BaseFormat;
  /** Activation storage type (see BaseWeightOptions.dtype). */
  dtype: ElementType;
  /** The 4-bit kernels' variant when the linear weights are 4-bit ('nf4' and 'q4'). */
  nf4: { blockSize: number; doubleQuant: boolean; codebook: Codebook4 } | undefined;
  /** [vocab, hidden] */
  embed: GpuTensor;
  /** GPT-2 learned positions [maxPositions, hidden]. */
  positions: GpuTensor | undefined;
  layers: LayerWeights[];
  finalNorm: NormWeights;
  /** [vocab, hidden]; the embedding itself when tied. */
  lmHead: GpuTensor;
  /** GPU bytes the frozen weights occupy. */
  byteLength: number;
  release(): void;
}

/** A tensor's name in this file: its HF name, or the architecture's alternate spelling (GPT-2 exports without `transformer.`). */
function resolver(config: ModelConfig, reader: WeightReader): (name: string) => string {
  const arch = architectureOf(config);
  return (name) => {
    if (reader.has(name)) return name;
    const alternate = arch.alternateName(name);
    if (alternate !== undefined && reader.has(alternate)) return alternate;
    throw new ModelFileMissingError(name, `the weights have no tensor "${name}", which a ${config.modelType} model with this config needs`);
  };
}

export function linearShape(config: ModelConfig, name: string): { inFeatures: number; outFeatures: number; conv1d: boolean } {
  const arch = architectureOf(config);
  if (!arch.linears.includes(name)) throw new InvalidArgumentError(`Unknown linear module "${name}" for a ${config.modelType} model.`);
  return { ...arch.linearShape(config, name), conv1d: arch.conv1d };
}

/** Whether a linear layer of this config has a bias (GPT-2 always; Llama per attention_bias / mlp_bias; Qwen2's q/k/v). */
export function linearHasBias(config: ModelConfig, name: string): boolean {
  return architectureOf(config).linearHasBias(config, name);
}

/** A row-major [rows, cols] matrix as [cols, rows] (Conv1D <-> Linear layout, MatMul's [in, out] <-> [out, in]). */
export function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  return out;
}

/**
 * Whether format 'q4' applies: every linear weight stored in 4 bits the kernels decode as they are
 * (ONNX MatMulNBits), with one block size the kernels take; otherwise the reason it does not.
 */
export function storedFourBit(config: ModelConfig, reader: WeightReader): { blockSize: number } | { reason: string } {
  const name = resolver(config, reader);
  let blockSize: number | undefined;
  const arch = architectureOf(config);
  for (let l = 0; l < config.numLayers; l++) {
    for (const linear of arch.linears) {
      const param = name(`${arch.layerPrefix(l)}.${linear}.weight`);
      const stored = reader.fourBit?.(param);
      if (!stored) {
        return { reason: `${param} is not stored as 4-bit MatMulNBits the kernels can decode (symmetric with zero point 8, K a multiple of the block size)` };
      }
      if (!(NF4_BLOCK_SIZES as readonly number[]).includes(stored.blockSize)) {
        return { reason: `${param} has 4-bit blocks of ${stored.blockSize}; the kernels take ${NF4_BLOCK_SIZES.join(', ')}` };
      }
      if (blockSize !== undefined && stored.blockSize !== blockSize) {
        return { reason: `${param} has 4-bit blocks of ${stored.blockSize} and other weights ${blockSize}; the kernels take one block size per model` };
      }
      blockSize = stored.blockSize;
    }
  }
  return { blockSize: blockSize! };
}

export async function uploadBaseModel(ctx: GpuContext, config: ModelConfig, reader: WeightReader, options: BaseWeightOptions = {}): Promise<BaseModel> {
  const format = options.format ?? 'f32';
  if (format !== 'f32' && format !== 'nf4' && format !== 'q4') {
    throw new InvalidArgumentError(`format must be 'f32', 'nf4' or 'q4', got ${JSON.stringify(format)}.`);
  }
  let blockSize = options.blockSize ?? 64;
  if (format === 'q4') {
    const stored = storedFourBit(config, reader);
    if ('reason' in stored) {
      throw new InvalidArgumentError(`format 'q4' keeps a file's own 4-bit weights (an ONNX model_q4 file) on the GPU, but ${stored.reason}. Load this model with format 'f32' or 'nf4'.`);
    }
    blockSize = stored.blockSize;
  }
  const dtype = options.dtype ?? 'f32';
  if (dtype === 'f16' && !ctx.features.shaderF16) {
    throw new InvalidArgumentError("dtype 'f16' needs the device's 'shader-f16' feature, which this adapter does not have; use dtype 'f32'.");
  }
  const name = resolver(config, reader);
  const owned: Array<{ release(): void }> = [];
  let byteLength = 0;
  const arch = architectureOf(config);
  const linearNames = arch.linears;
  const total = 3 + config.numLayers * (linearNames.length + 2);
  let done = 0;
  const progress = () => options.onProgress?.(++done, total);
  /** Owns a GPU allocation until release() (or a failed upload), and counts its bytes. */
  const keep = <T extends { byteLength: number; release(): void }>(t: T): T => {
    owned.push(t);
    byteLength += t.byteLength;
    return t;
  };

  const load = (file: string, shape: readonly number[], label = file, tensorDtype: ElementType = 'f32'): GpuTensor => {
    const { data, shape: actual } = reader.read(name(file));
    if (actual.length !== shape.length || actual.some((d, i) => d !== shape[i])) {
      throw new ModelFormatError(file, `shape [${actual.join(', ')}] does not match the config, which implies [${shape.join(', ')}]`);
    }
    checkFinite(file, data);
    return keep(createTensor(ctx, { shape, label, data, dtype: tensorDtype }));
  };
  const norm = (prefix: string, withBias: boolean): NormWeights => ({
    weight: load(`${prefix}.weight`, [config.hiddenSize]),
    bias: withBias ? load(`${prefix}.bias`, [config.hiddenSize]) : undefined,
  });
  /** A linear weight as [out, in] on the GPU in the base format. */
  const linearWeight = async (module: string, inFeatures: number, outFeatures: number, conv1d: boolean): Promise<FrozenWeight> => {
    if (format === 'q4') {
      const q = reader.fourBit!(name(`${module}.weight`))!.read();
      if (q.shape[0] !== outFeatures || q.shape[1] !== inFeatures) {
        throw new ModelFormatError(`${module}.weight`, `4-bit shape [${q.shape.join(', ')}] does not match the config, which implies [${outFeatures}, ${inFeatures}]`);
      }
      checkFinite(`${module}.weight scales`, nf4BlockScales(q.scales));
      return { format: 'nf4', weight: keep(uploadNF4(ctx, q, module)) };
    }
    const { data, shape } = reader.read(name(`${module}.weight`));
    const fileShape = conv1d ? [inFeatures, outFeatures] : [outFeatures, inFeatures];
    if (shape.length !== 2 || shape[0] !== fileShape[0] || shape[1] !== fileShape[1]) {
      throw new ModelFormatError(`${module}.weight`, `shape [${shape.join(', ')}] does not match the config, which implies [${fileShape.join(', ')}]`);
    }
    checkFinite(`${module}.weight`, data);
    // NF4 quantizes from a float32 copy; a dense base is kept in the compute dtype.
    const dense = createTensor(ctx, {
      shape: [outFeatures, inFeatures], label: module, data: conv1d ? transpose(data, inFeatures, outFeatures) : data,
      dtype: format === 'nf4' ? 'f32' : dtype,
    });
    if (format !== 'nf4') return { format: 'dense', weight: keep(dense) };
    try {
      return { format: 'nf4', weight: keep(await quantizeNF4Gpu(ctx, dense, { shape: [outFeatures, inFeatures], blockSize, doubleQuant: true, label: module })) };
    } finally {
      dense.release();
    }
  };

  try {
    const d = config.hiddenSize;
    const names = arch.names;
    const normBias = arch.norm === 'layer';
    const embed = load(`${names.embed}.weight`, [config.vocabSize, d], 'embed_tokens', dtype);
    progress();
    const positions = names.positions ? load(`${names.positions}.weight`, [config.maxPositions, d], 'positions', dtype) : undefined;
    const layers: LayerWeights[] = [];
    for (let l = 0; l < config.numLayers; l++) {
      const norm1 = norm(names.norm1(l), normBias);
      const norm2 = norm(names.norm2(l), normBias);
      progress();
      progress();
      const linears = new Map<string, FrozenLinear>();
      for (const linear of linearNames) {
        const module = `${arch.layerPrefix(l)}.${linear}`;
        const { inFeatures, outFeatures, conv1d } = linearShape(config, linear);
        const weight = await linearWeight(module, inFeatures, outFeatures, conv1d);
        const bias = linearHasBias(config, linear) ? load(`${module}.bias`, [outFeatures]) : undefined;
        linears.set(linear, { module, name: linear, inFeatures, outFeatures, conv1d, weight, bias });
        progress();
      }
      layers.push({ norm1, norm2, linears });
    }
    const finalNorm = norm(names.finalNorm, normBias);
    progress();
    let lmHead = embed;
    if (!config.tieWordEmbeddings) lmHead = load(`${names.lmHead}.weight`, [config.vocabSize, d], 'lm_head', dtype);
    progress();
    return {
      config,
      format,
      dtype,
      nf4: format === 'nf4' ? { blockSize, doubleQuant: true, codebook: 'nf4' } : format === 'q4' ? { blockSize, doubleQuant: false, codebook: 'int4' } : undefined,
      embed,
      positions,
      layers,
      finalNorm,
      lmHead,
      byteLength,
      release() {
        for (const t of owned) t.release();
        owned.length = 0;
      },
    };
  } catch (error) {
    for (const t of owned) t.release();
    throw error;
  }
}

function checkFinite(name: string, data: Float32Array): void {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]!)) {
      throw new ModelFormatError(name, `element ${i} is ${data[i]}; the weights contain NaN or infinity (a corrupt or diverged checkpoint)`);
    }
  }
}
