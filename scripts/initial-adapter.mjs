// A LoRA adapter as PEFT initialises it (A ~ U(-1/sqrt(in), 1/sqrt(in)), B = 0) on q_proj and
// v_proj of a Llama-family config.json, as safetensors bytes plus its adapter_config.json: the
// coordinator's version 0 for `npm start` and the federated e2e spec. Plain JavaScript, so plain
// Node and Playwright specs can use it without bundling the packages' WGSL imports.

/** `uniform` returns values in [0, 1). */
export function initialLoraAdapter(config, { rank = 8, alpha = 2 * rank, uniform }) {
  const hidden = config.hidden_size;
  const heads = config.num_attention_heads;
  const headDim = config.head_dim ?? hidden / heads;
  const kv = (config.num_key_value_heads ?? heads) * headDim;
  const bound = 1 / Math.sqrt(hidden);
  const tensors = [];
  for (let l = 0; l < config.num_hidden_layers; l++) {
    for (const [m, out] of [['q_proj', heads * headDim], ['v_proj', kv]]) {
      const base = `base_model.model.model.layers.${l}.self_attn.${m}`;
      tensors.push([`${base}.lora_A.weight`, [rank, hidden], Float32Array.from({ length: rank * hidden }, () => (uniform() * 2 - 1) * bound)]);
      tensors.push([`${base}.lora_B.weight`, [out, rank], new Float32Array(out * rank)]);
    }
  }
  const header = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, shape, data] of tensors) {
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const weights = new Uint8Array(8 + json.length + offset);
  new DataView(weights.buffer).setBigUint64(0, BigInt(json.length), true);
  weights.set(new TextEncoder().encode(json), 8);
  let at = 8 + json.length;
  for (const [, , data] of tensors) {
    weights.set(new Uint8Array(data.buffer), at);
    at += data.byteLength;
  }
  const adapterConfig = {
    peft_type: 'LORA', task_type: 'CAUSAL_LM', r: rank, lora_alpha: alpha, lora_dropout: 0,
    target_modules: ['q_proj', 'v_proj'], bias: 'none', fan_in_fan_out: false,
  };
  return { weights, adapterConfig };
}
