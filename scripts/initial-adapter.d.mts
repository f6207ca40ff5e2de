export function initialLoraAdapter(
  config: { hidden_size: number; num_attention_heads: number; num_hidden_layers: number; head_dim?: number; num_key_value_heads?: number },
  options: { rank?: number; alpha?: number; uniform: () => number },
): { weights: Uint8Array; adapterConfig: Record<string, unknown> };
