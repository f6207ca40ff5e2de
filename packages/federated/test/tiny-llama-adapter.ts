/** The LoRA adapter the federated GPU suites start their coordinator from, on the tiny Llama. */
import type { HostTensor, LoraConfig } from '@webtune/model';

export const LORA: LoraConfig = { rank: 4, alpha: 8, dropout: 0, targets: ['q_proj', 'v_proj'], rslora: false };

/** PEFT's initialisation for tiny-llama (hidden 64; q_proj out 64, v_proj out 2 kv heads * 16 = 32): A small random, B zero. */
export function initialAdapter(): Map<string, HostTensor> {
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648 - 0.5) * 0.2;
  const out = new Map<string, HostTensor>();
  for (let layer = 0; layer < 2; layer++) {
    for (const [m, outF] of [['q_proj', 64], ['v_proj', 32]] as const) {
      const base = `base_model.model.model.layers.${layer}.self_attn.${m}`;
      out.set(`${base}.lora_A.weight`, { shape: [4, 64], data: Float32Array.from({ length: 256 }, rand) });
      out.set(`${base}.lora_B.weight`, { shape: [outF, 4], data: new Float32Array(outF * 4) });
    }
  }
  return out;
}
