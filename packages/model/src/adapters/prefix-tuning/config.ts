/**
 * Prefix tuning (Li & Liang, 2021) and P-tuning v2 (PEFT PREFIX_TUNING, peft/tuners/prefix_tuning):
 * trainable key and value rows in front of every layer's attention, which every position attends
 * to. Optionally reparameterised through an MLP (prefix_projection), which trains more stably.
 */
import { InvalidArgumentError } from '@webtune/errors';
import type { ModelConfig } from '../../config.js';
import type { TensorShape } from '../module-adapter.js';
import { checkSize, checkVirtualTokens, type EncoderLayer } from '../prompt-learning.js';

/** Prefix tuning's settings: the prefix rows per layer, and whether an MLP reparameterises them. */
export interface PrefixTuningConfig {
  /** Prefix rows per layer (PEFT num_virtual_tokens). Default 20. */
  numVirtualTokens: number;
  /** Train the prefixes through an MLP (PEFT prefix_projection). Default false. */
  prefixProjection: boolean;
  /** The MLP's width with prefixProjection (PEFT encoder_hidden_size). Default: the token width. */
  encoderHiddenSize: number;
}

export const PREFIX_EMBEDDING = 'prompt_encoder.embedding.weight';

export const PREFIX_PROJECTION: readonly EncoderLayer[] = [
  { weight: 'prompt_encoder.transform.0.weight', bias: 'prompt_encoder.transform.0.bias', activation: 'tanh' },
  { weight: 'prompt_encoder.transform.2.weight', bias: 'prompt_encoder.transform.2.bias', activation: 'none' },
];

/**
 * PEFT's token_dim for prefix tuning: the width of one layer's keys. For grouped-query attention
 * (a config with num_key_value_heads) PEFT narrows it to kvHeads * headDim (peft/utils/other.py,
 * `_prepare_prompt_learning_config`); for the others it is the hidden size, which equals it.
 */
export function prefixTokenDim(model: ModelConfig): number {
  return model.numKvHeads * model.headDim;
}

export function resolvePrefixTuningConfig(model: ModelConfig, options: Partial<PrefixTuningConfig> = {}): PrefixTuningConfig {
  const numVirtualTokens = checkVirtualTokens(model, options.numVirtualTokens ?? 20, 'Prefix tuning');
  const prefixProjection = options.prefixProjection ?? false;
  if (typeof prefixProjection !== 'boolean') throw new InvalidArgumentError(`Prefix tuning prefixProjection must be true or false, got ${JSON.stringify(prefixProjection)}.`);
  if (model.hiddenSize !== model.numHeads * model.headDim) {
    throw new InvalidArgumentError(`Prefix tuning needs hidden size = heads x head dim as PEFT assumes; this ${model.modelType} model has ${model.hiddenSize} vs ${model.numHeads} x ${model.headDim}.`);
  }
  return { numVirtualTokens, prefixProjection, encoderHiddenSize: checkSize(options.encoderHiddenSize, prefixTokenDim(model), 'Prefix tuning encoderHiddenSize') };
}

export function prefixTuningShapes(model: ModelConfig, config: PrefixTuningConfig): TensorShape[] {
  const td = prefixTokenDim(model);
  const all = model.numLayers * 2 * td;
  const p = config.numVirtualTokens;
  if (!config.prefixProjection) return [{ key: PREFIX_EMBEDDING, shape: [p, all] }];
  const h = config.encoderHiddenSize;
  const [t0, t2] = PREFIX_PROJECTION as [EncoderLayer, EncoderLayer];
  return [
    { key: PREFIX_EMBEDDING, shape: [p, td] },
    { key: t0.weight, shape: [h, td] }, { key: t0.bias, shape: [h] },
    { key: t2.weight, shape: [all, h] }, { key: t2.bias, shape: [all] },
  ];
}
