/**
 * The SmolLM2-135M shape with synthetic weights: the real checkpoint cannot be downloaded here,
 * and speed and memory depend on the shapes only. No Node imports, so the browser page can use it.
 */
import { linearShape, parseModelConfig, Rng, type ModelConfig, type WeightReader } from '@webtune/model';

/** SmolLM2-135M's config.json values (HuggingFaceTB/SmolLM2-135M). */
export const SMOLLM2_135M = {
  model_type: 'llama', architectures: ['LlamaForCausalLM'], hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30,
  num_attention_heads: 9, num_key_value_heads: 3, head_dim: 64, vocab_size: 49152, max_position_embeddings: 8192,
  rms_norm_eps: 1e-5, rope_theta: 100000, tie_word_embeddings: true, hidden_act: 'silu', bos_token_id: 0, eos_token_id: 0,
};

/** Deterministic random weights of the right shapes, made when the upload asks for them. */
export function syntheticWeights(config: ModelConfig, seed = 1): WeightReader {
  const shapes = new Map<string, number[]>();
  const d = config.hiddenSize;
  shapes.set('model.embed_tokens.weight', [config.vocabSize, d]);
  shapes.set('model.norm.weight', [d]);
  for (let l = 0; l < config.numLayers; l++) {
    shapes.set(`model.layers.${l}.input_layernorm.weight`, [d]);
    shapes.set(`model.layers.${l}.post_attention_layernorm.weight`, [d]);
    for (const name of ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']) {
      const { inFeatures, outFeatures } = linearShape(config, name);
      shapes.set(`model.layers.${l}.${name}.weight`, [outFeatures, inFeatures]);
    }
  }
  return {
    has: (name) => shapes.has(name),
    read: (name) => {
      const shape = shapes.get(name)!;
      const rng = new Rng(seed + name.length * 7919 + (name.charCodeAt(name.length - 8) ?? 0));
      const n = shape.reduce((a, b) => a * b, 1);
      const data = new Float32Array(n);
      const norm = name.endsWith('norm.weight');
      for (let i = 0; i < n; i++) data[i] = norm ? 1 : (rng.next() - 0.5) * 0.04;
      return { data, shape };
    },
  };
}


/** SmolLM2-135M's config, or the same with fewer layers (a quick look at a benchmark). */
export function smolLM2Config(layers = SMOLLM2_135M.num_hidden_layers): ModelConfig {
  return parseModelConfig({ ...SMOLLM2_135M, num_hidden_layers: layers } as unknown as Record<string, unknown>, 'SmolLM2-135M (shape)');
}

/** The shape with its row label and synthetic weights, as the step-efficiency benchmark takes it. */
export function smolLM2Shape(layers = SMOLLM2_135M.num_hidden_layers): { model: string; config: ModelConfig; reader: WeightReader } {
  const config = smolLM2Config(layers);
  const model = layers === SMOLLM2_135M.num_hidden_layers ? 'SmolLM2-135M shape' : `SmolLM2-135M shape, ${layers} layers`;
  return { model, config, reader: syntheticWeights(config) };
}
