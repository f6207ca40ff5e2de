/**
 * Hugging Face `config.json` -> one normalized ModelConfig that the transformer graph reads.
 * Llama-family (llama, qwen2, mistral-style without sliding window) and GPT-2 are supported;
 * anything else is refused with UnsupportedModelError naming the architecture.
 */
import { InvalidArgumentError, ModelFormatError, UnsupportedModelError } from '@webtune/errors';
import { architectureForModelType, ARCHITECTURES } from './arch/index.js';

export type Architecture = 'llama' | 'gpt2';

export type RopeScaling =
  | { type: 'default' }
  | { type: 'linear'; factor: number }
  | {
      type: 'llama3';
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositionEmbeddings: number;
    };

export interface ModelConfig {
  architecture: Architecture;
  /** config.json's model_type, kept for export (llama, qwen2, gpt2, ...). */
  modelType: string;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  maxPositions: number;
  /** RMSNorm (llama) or LayerNorm (gpt2) epsilon. */
  normEps: number;
  tieWordEmbeddings: boolean;
  /** Qwen2 (and `attention_bias: true` Llama) add biases to q, k, v (and o for attention_bias). */
  qkvBias: boolean;
  oBias: boolean;
  /** Llama `mlp_bias`. */
  mlpBias: boolean;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  /** Activation of the MLP: SwiGLU with SiLU (llama) or GELU tanh (gpt2 "gelu_new"). */
  activation: 'silu' | 'gelu_tanh';
  bosTokenId?: number;
  eosTokenId?: number | number[];
  /** The raw config.json, kept so a merged export can write it back unchanged. */
  raw: Record<string, unknown>;
}

/** Parses config.json (text or object). `source` names the file in errors. */
export function parseModelConfig(json: string | Record<string, unknown>, source = 'config.json'): ModelConfig {
  let raw: Record<string, unknown>;
  if (typeof json === 'string') {
    try {
      raw = JSON.parse(json) as Record<string, unknown>;
    } catch (cause) {
      throw new ModelFormatError(source, `config.json is not valid JSON (${(cause as Error).message})`);
    }
  } else {
    raw = json;
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ModelFormatError(source, 'config.json is not a JSON object');
  const modelType = raw['model_type'];
  if (typeof modelType !== 'string') throw new ModelFormatError(source, 'config.json has no "model_type"');

  const descriptor = architectureForModelType(modelType);
  if (descriptor) return descriptor.parseConfig(raw, modelType, source);

  const archs = Array.isArray(raw['architectures']) ? ` (${(raw['architectures'] as unknown[]).join(', ')})` : '';
  throw new UnsupportedModelError(
    source,
    `model_type "${modelType}"${archs} is not supported; webtune trains ${ARCHITECTURES.flatMap((a) => a.modelTypes).join(', ')} models`,
  );
}

/** Throws InvalidArgumentError unless every dimension the kernels rely on holds. */
export function assertTrainable(config: ModelConfig): void {
  if (config.hiddenSize % 4 !== 0) throw new InvalidArgumentError(`hidden size ${config.hiddenSize} must be a multiple of 4.`);
}
