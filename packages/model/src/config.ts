/**
 * Hugging Face `config.json` -> one normalized ModelConfig that the transformer graph reads.
 * Llama-family (llama, qwen2, mistral-style without sliding window) and GPT-2 are supported;
 * anything else is refused with UnsupportedModelError naming the architecture.
 */
import { InvalidArgumentError, ModelFormatError, UnsupportedModelError } from '@webtune/errors';

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

const LLAMA_FAMILY = new Set(['llama', 'qwen2', 'mistral']);

function num(raw: Record<string, unknown>, key: string, source: string, fallback?: number): number {
  const v = raw[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new ModelFormatError(source, `config.json has no "${key}"`);
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ModelFormatError(source, `config.json "${key}" is ${JSON.stringify(v)}, not a number`);
  return v;
}

function positiveInt(raw: Record<string, unknown>, key: string, source: string, fallback?: number): number {
  const v = num(raw, key, source, fallback);
  if (!Number.isInteger(v) || v <= 0) throw new ModelFormatError(source, `config.json "${key}" is ${v}, not a positive integer`);
  return v;
}

function ropeScaling(raw: Record<string, unknown>, source: string): RopeScaling {
  const s = raw['rope_scaling'] as Record<string, unknown> | null | undefined;
  if (!s) return { type: 'default' };
  const type = (s['rope_type'] ?? s['type']) as string | undefined;
  switch (type) {
    case undefined:
    case 'default':
      return { type: 'default' };
    case 'linear':
      return { type: 'linear', factor: num(s, 'factor', source) };
    case 'llama3':
      return {
        type: 'llama3',
        factor: num(s, 'factor', source),
        lowFreqFactor: num(s, 'low_freq_factor', source),
        highFreqFactor: num(s, 'high_freq_factor', source),
        originalMaxPositionEmbeddings: positiveInt(s, 'original_max_position_embeddings', source),
      };
    default:
      throw new UnsupportedModelError(
        source,
        `rope_scaling type "${type}" is not supported (supported: default, linear, llama3)`,
      );
  }
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

  if (LLAMA_FAMILY.has(modelType)) {
    if (modelType === 'mistral' && raw['sliding_window'] != null) {
      throw new UnsupportedModelError(source, 'Mistral sliding-window attention is not supported; set "sliding_window": null if the model does not need it');
    }
    const act = raw['hidden_act'] ?? 'silu';
    if (act !== 'silu') throw new UnsupportedModelError(source, `hidden_act "${String(act)}" is not supported for ${modelType} (only silu)`);
    const hiddenSize = positiveInt(raw, 'hidden_size', source);
    const numHeads = positiveInt(raw, 'num_attention_heads', source);
    const numKvHeads = positiveInt(raw, 'num_key_value_heads', source, numHeads);
    const headDim = positiveInt(raw, 'head_dim', source, hiddenSize / numHeads);
    if (numHeads % numKvHeads !== 0) {
      throw new ModelFormatError(source, `num_attention_heads (${numHeads}) is not a multiple of num_key_value_heads (${numKvHeads})`);
    }
    const attentionBias = raw['attention_bias'] === true;
    const config: ModelConfig = {
      architecture: 'llama',
      modelType,
      vocabSize: positiveInt(raw, 'vocab_size', source),
      hiddenSize,
      intermediateSize: positiveInt(raw, 'intermediate_size', source),
      numLayers: positiveInt(raw, 'num_hidden_layers', source),
      numHeads,
      numKvHeads,
      headDim,
      maxPositions: positiveInt(raw, 'max_position_embeddings', source, 2048),
      normEps: num(raw, 'rms_norm_eps', source, 1e-6),
      tieWordEmbeddings: raw['tie_word_embeddings'] === true,
      qkvBias: modelType === 'qwen2' || attentionBias,
      oBias: attentionBias,
      mlpBias: raw['mlp_bias'] === true,
      ropeTheta: num(raw, 'rope_theta', source, 10000),
      ropeScaling: ropeScaling(raw, source),
      activation: 'silu',
      raw,
    };
    if (headDim % 2 !== 0) throw new ModelFormatError(source, `head_dim ${headDim} is odd; RoPE needs an even head dimension`);
    return withTokens(config, raw);
  }

  if (modelType === 'gpt2') {
    const act = raw['activation_function'] ?? 'gelu_new';
    if (act !== 'gelu_new' && act !== 'gelu_pytorch_tanh') {
      throw new UnsupportedModelError(source, `activation_function "${String(act)}" is not supported for gpt2 (gelu_new or gelu_pytorch_tanh)`);
    }
    const hiddenSize = positiveInt(raw, 'n_embd', source);
    const numHeads = positiveInt(raw, 'n_head', source);
    if (hiddenSize % numHeads !== 0) throw new ModelFormatError(source, `n_embd (${hiddenSize}) is not a multiple of n_head (${numHeads})`);
    const nInner = raw['n_inner'];
    const config: ModelConfig = {
      architecture: 'gpt2',
      modelType,
      vocabSize: positiveInt(raw, 'vocab_size', source),
      hiddenSize,
      intermediateSize: typeof nInner === 'number' ? nInner : 4 * hiddenSize,
      numLayers: positiveInt(raw, 'n_layer', source),
      numHeads,
      numKvHeads: numHeads,
      headDim: hiddenSize / numHeads,
      maxPositions: positiveInt(raw, 'n_positions', source, 1024),
      normEps: num(raw, 'layer_norm_epsilon', source, 1e-5),
      // GPT2LMHeadModel always ties lm_head to wte.
      tieWordEmbeddings: true,
      qkvBias: true,
      oBias: true,
      mlpBias: true,
      ropeTheta: 0,
      ropeScaling: { type: 'default' },
      activation: 'gelu_tanh',
      raw,
    };
    if (raw['scale_attn_by_inverse_layer_idx'] === true || raw['reorder_and_upcast_attn'] === true) {
      throw new UnsupportedModelError(source, 'GPT-2 options scale_attn_by_inverse_layer_idx / reorder_and_upcast_attn are not supported');
    }
    return withTokens(config, raw);
  }

  const archs = Array.isArray(raw['architectures']) ? ` (${(raw['architectures'] as unknown[]).join(', ')})` : '';
  throw new UnsupportedModelError(
    source,
    `model_type "${modelType}"${archs} is not supported; webtune trains Llama-family (llama, qwen2, mistral) and gpt2 models`,
  );
}

function withTokens(config: ModelConfig, raw: Record<string, unknown>): ModelConfig {
  const bos = raw['bos_token_id'];
  const eos = raw['eos_token_id'];
  if (typeof bos === 'number') config.bosTokenId = bos;
  if (typeof eos === 'number' || (Array.isArray(eos) && eos.every((e) => typeof e === 'number'))) config.eosTokenId = eos as number | number[];
  return config;
}

/** Throws InvalidArgumentError unless every dimension the kernels rely on holds. */
export function assertTrainable(config: ModelConfig): void {
  if (config.hiddenSize % 4 !== 0) throw new InvalidArgumentError(`hidden size ${config.hiddenSize} must be a multiple of 4.`);
}
