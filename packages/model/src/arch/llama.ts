/**
 * Llama family (llama, qwen2, mistral without sliding window): RMSNorm, RoPE, grouped-query
 * attention with separate q/k/v, SwiGLU MLP; weights as transformers' LlamaForCausalLM names them.
 */
import { ModelFormatError, UnsupportedModelError } from '@webtune/errors';
import type { ModelConfig } from '../config.js';
import { num, positiveInt, ropeScaling, withTokens, type RawConfig } from './config-fields.js';
import type { ArchitectureDescriptor } from './types.js';

const LINEARS = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'] as const;

function parseConfig(raw: RawConfig, modelType: string, source: string): ModelConfig {
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

export const llama: ArchitectureDescriptor = {
  name: 'llama',
  modelTypes: ['llama', 'qwen2', 'mistral'],
  parseConfig,
  layerPrefix: (layer) => `model.layers.${layer}`,
  linears: LINEARS,
  linearShape(c, name) {
    const d = c.hiddenSize;
    const q = c.numHeads * c.headDim;
    const kv = c.numKvHeads * c.headDim;
    const i = c.intermediateSize;
    const shapes: Record<string, [number, number]> = {
      'self_attn.q_proj': [d, q], 'self_attn.k_proj': [d, kv], 'self_attn.v_proj': [d, kv], 'self_attn.o_proj': [q, d],
      'mlp.gate_proj': [d, i], 'mlp.up_proj': [d, i], 'mlp.down_proj': [i, d],
    };
    const s = shapes[name];
    if (!s) throw new RangeError(`llama has no linear "${name}"`);
    return { inFeatures: s[0], outFeatures: s[1] };
  },
  linearHasBias: (c, name) => (name.endsWith('o_proj') ? c.oBias : name.startsWith('mlp.') ? c.mlpBias : c.qkvBias),
  conv1d: false,
  norm: 'rms',
  positions: 'rope',
  attention: { kind: 'separate', q: 'self_attn.q_proj', k: 'self_attn.k_proj', v: 'self_attn.v_proj', o: 'self_attn.o_proj' },
  mlp: { kind: 'swiglu', gate: 'mlp.gate_proj', up: 'mlp.up_proj', down: 'mlp.down_proj' },
  names: {
    embed: 'model.embed_tokens',
    norm1: (l) => `model.layers.${l}.input_layernorm`,
    norm2: (l) => `model.layers.${l}.post_attention_layernorm`,
    finalNorm: 'model.norm',
    lmHead: 'lm_head',
  },
  alternateName: () => undefined,
  canonicalName: (name) => name,
  // PEFT utils/constants.py: LoRA q_proj, v_proj; IA3 k_proj (qwen2: q_proj), v_proj, down_proj with down_proj feed-forward.
  defaults: (modelType) => ({
    lora: ['q_proj', 'v_proj'],
    ia3: { targets: [modelType === 'qwen2' ? 'q_proj' : 'k_proj', 'v_proj', 'down_proj'], feedforward: ['down_proj'] },
  }),
  // transformers' LlamaConfig: attention_bias switches on q/k/v/o biases, mlp_bias gate/up/down.
  // Qwen2 and Mistral configs have no such switches.
  biasFlags(modelType, linears) {
    if (modelType !== 'llama') return undefined;
    const config: RawConfig = {};
    const groups: string[] = [];
    if ([...linears].some((n) => n.startsWith('self_attn.'))) {
      config['attention_bias'] = true;
      groups.push(...LINEARS.filter((n) => n.startsWith('self_attn.')));
    }
    if ([...linears].some((n) => n.startsWith('mlp.'))) {
      config['mlp_bias'] = true;
      groups.push(...LINEARS.filter((n) => n.startsWith('mlp.')));
    }
    return { config, linears: groups };
  },
};
