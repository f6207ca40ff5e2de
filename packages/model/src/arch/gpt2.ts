/**
 * GPT-2: learned positions, LayerNorm, fused qkv (c_attn), GELU tanh MLP; linear weights stored
 * [in, out] as transformers' Conv1D (PEFT's fan_in_fan_out), every linear with a bias.
 */
import { ModelFormatError, UnsupportedModelError } from '@webtune/errors';
import type { ModelConfig } from '../config.js';
import { num, positiveInt, withTokens, type RawConfig } from './config-fields.js';
import type { ArchitectureDescriptor } from './types.js';

function parseConfig(raw: RawConfig, modelType: string, source: string): ModelConfig {
  const act = raw['activation_function'] ?? 'gelu_new';
  if (act !== 'gelu_new' && act !== 'gelu_pytorch_tanh') {
    throw new UnsupportedModelError(source, `activation_function "${String(act)}" is not supported for gpt2 (gelu_new or gelu_pytorch_tanh)`);
  }
  const hiddenSize = positiveInt(raw, 'n_embd', source);
  const numHeads = positiveInt(raw, 'n_head', source);
  if (hiddenSize % numHeads !== 0) throw new ModelFormatError(source, `n_embd (${hiddenSize}) is not a multiple of n_head (${numHeads})`);
  const nInner = raw['n_inner'];
  if (raw['scale_attn_by_inverse_layer_idx'] === true || raw['reorder_and_upcast_attn'] === true) {
    throw new UnsupportedModelError(source, 'GPT-2 options scale_attn_by_inverse_layer_idx / reorder_and_upcast_attn are not supported');
  }
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
  return withTokens(config, raw);
}

export const gpt2: ArchitectureDescriptor = {
  name: 'gpt2',
  modelTypes: ['gpt2'],
  parseConfig,
  layerPrefix: (layer) => `transformer.h.${layer}`,
  linears: ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'],
  linearShape(c, name) {
    const d = c.hiddenSize;
    const i = c.intermediateSize;
    const shapes: Record<string, [number, number]> = { 'attn.c_attn': [d, 3 * d], 'attn.c_proj': [d, d], 'mlp.c_fc': [d, i], 'mlp.c_proj': [i, d] };
    const s = shapes[name];
    if (!s) throw new RangeError(`gpt2 has no linear "${name}"`);
    return { inFeatures: s[0], outFeatures: s[1] };
  },
  linearHasBias: () => true,
  conv1d: true,
  norm: 'layer',
  positions: 'learned',
  attention: { kind: 'fused', qkv: 'attn.c_attn', o: 'attn.c_proj' },
  mlp: { kind: 'gelu', fc: 'mlp.c_fc', proj: 'mlp.c_proj' },
  names: {
    embed: 'transformer.wte',
    positions: 'transformer.wpe',
    norm1: (l) => `transformer.h.${l}.ln_1`,
    norm2: (l) => `transformer.h.${l}.ln_2`,
    finalNorm: 'transformer.ln_f',
    lmHead: 'lm_head',
  },
  // Older GPT-2 exports drop the `transformer.` prefix.
  alternateName: (name) => (name.startsWith('transformer.') ? name.slice('transformer.'.length) : undefined),
  canonicalName: (name) => (name.startsWith('transformer.') || name.startsWith('lm_head') ? name : `transformer.${name}`),
  // PEFT utils/constants.py: LoRA c_attn; IA3 c_attn, mlp.c_proj with mlp.c_proj feed-forward.
  defaults: () => ({ lora: ['c_attn'], ia3: { targets: ['c_attn', 'mlp.c_proj'], feedforward: ['mlp.c_proj'] } }),
};
