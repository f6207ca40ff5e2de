/**
 * P-tuning (Liu et al., 2021; PEFT P_TUNING, peft/tuners/p_tuning/model.py PromptEncoder): the
 * virtual tokens come from a trainable encoder, an MLP over trainable input embeddings:
 *   prompts = Linear(h, d)(ReLU(Linear(h, h)(ReLU(Linear(d, h)(E)))))
 * PEFT's other encoder, a bidirectional LSTM, is not offered: its sequential recurrence over a
 * handful of rows would need kernels of its own for no benefit the MLP lacks (PEFT's default is the MLP).
 */
import { InvalidArgumentError } from '@webtune/errors';
import type { ModelConfig } from '../../config.js';
import type { TensorShape } from '../module-adapter.js';
import { checkSize, checkVirtualTokens, type EncoderLayer } from '../prompt-learning.js';

/** P-tuning's settings: the virtual tokens and the MLP encoder that makes them. */
export interface PTuningConfig {
  /** Virtual tokens in front of every sequence (PEFT num_virtual_tokens). Default 20. */
  numVirtualTokens: number;
  /** Width of the encoder MLP (PEFT encoder_hidden_size). Default: the model's hidden size. */
  encoderHiddenSize: number;
  /** PEFT encoder_reparameterization_type: only 'MLP'. */
  encoderReparameterizationType: 'MLP';
}

export const PTUNING_EMBEDDING = 'prompt_encoder.embedding.weight';

/** The MLP's layers under PEFT's module names (mlp_head.0, .2, .4; the ReLUs are .1 and .3). */
export const PTUNING_LAYERS: readonly EncoderLayer[] = [
  { weight: 'prompt_encoder.mlp_head.0.weight', bias: 'prompt_encoder.mlp_head.0.bias', activation: 'relu' },
  { weight: 'prompt_encoder.mlp_head.2.weight', bias: 'prompt_encoder.mlp_head.2.bias', activation: 'relu' },
  { weight: 'prompt_encoder.mlp_head.4.weight', bias: 'prompt_encoder.mlp_head.4.bias', activation: 'none' },
];

export function resolvePTuningConfig(model: ModelConfig, options: Partial<PTuningConfig> = {}): PTuningConfig {
  const numVirtualTokens = checkVirtualTokens(model, options.numVirtualTokens ?? 20, 'P-tuning');
  const type = options.encoderReparameterizationType ?? 'MLP';
  if (type !== 'MLP') {
    throw new InvalidArgumentError(`P-tuning encoder ${JSON.stringify(type)} is not available: webtune trains PEFT's MLP encoder (the default) and not its LSTM, whose step-by-step recurrence over the virtual tokens would need kernels of its own; use 'MLP'.`);
  }
  return { numVirtualTokens, encoderHiddenSize: checkSize(options.encoderHiddenSize, model.hiddenSize, 'P-tuning encoderHiddenSize'), encoderReparameterizationType: 'MLP' };
}

export function pTuningShapes(model: ModelConfig, config: PTuningConfig): TensorShape[] {
  const d = model.hiddenSize;
  const h = config.encoderHiddenSize;
  const [l0, l2, l4] = PTUNING_LAYERS as [EncoderLayer, EncoderLayer, EncoderLayer];
  return [
    { key: PTUNING_EMBEDDING, shape: [config.numVirtualTokens, d] },
    { key: l0.weight, shape: [h, d] }, { key: l0.bias, shape: [h] },
    { key: l2.weight, shape: [h, h] }, { key: l2.bias, shape: [h] },
    { key: l4.weight, shape: [d, h] }, { key: l4.bias, shape: [d] },
  ];
}
