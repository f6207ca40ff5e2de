/**
 * The coordinator infers the adapter clients train (method, config, architecture) from the
 * operator's initial adapter and its adapter_config.json: every method, layer-selective adapters
 * without a config, and the refusals (mixed methods, unknown modules, a config that is not one).
 */
import { describe, expect, it } from 'vitest';
import type { HostTensor } from '@webtune/model';
import { inferAdapter, layoutOf } from '../src/adapter.js';
import { ConfigError } from '../src/config.js';

const t = (shape: number[]): HostTensor => ({ data: new Float32Array(shape.reduce((a, b) => a * b, 1)), shape });
const layout = (entries: Array<[string, number[]]>) => layoutOf(new Map(entries.map(([k, s]) => [k, t(s)])));
const llama = (layer: number, module: string) => `base_model.model.model.layers.${layer}.${module}`;

describe('inferAdapter', () => {
  it('reads each method and the architecture from the keys', () => {
    const lora = inferAdapter(layout([[`${llama(0, 'self_attn.q_proj')}.lora_A.weight`, [4, 8]], [`${llama(0, 'self_attn.q_proj')}.lora_B.weight`, [8, 4]]]));
    expect(lora).toMatchObject({ architecture: 'llama', spec: { method: 'lora', config: { rank: 4, targets: ['q_proj'] } } });
    const dora = inferAdapter(layout([
      [`${llama(0, 'self_attn.q_proj')}.lora_A.weight`, [4, 8]], [`${llama(0, 'self_attn.q_proj')}.lora_B.weight`, [8, 4]], [`${llama(0, 'self_attn.q_proj')}.lora_magnitude_vector`, [8]],
    ]));
    expect(dora.spec.method).toBe('dora');
    const ia3 = inferAdapter(layout([['base_model.model.transformer.h.0.attn.c_attn.ia3_l', [24, 1]], ['base_model.model.transformer.h.0.mlp.c_proj.ia3_l', [1, 32]]]));
    expect(ia3).toMatchObject({ architecture: 'gpt2', spec: { method: 'ia3', config: { targets: ['attn.c_attn', 'mlp.c_proj'], feedforward: ['mlp.c_proj'] } } });
    const bitfit = inferAdapter(layout([[`${llama(1, 'mlp.down_proj')}.bitfit_bias`, [8]]]), JSON.stringify({ webtune_method: 'bitfit', target_modules: ['down_proj'], learning_rate_scale: 10 }));
    expect(bitfit.spec).toEqual({ method: 'bitfit', config: { targets: ['down_proj'], learningRateScale: 10, layers: [1] } });
  });

  it('an adapter on the top layers only is layer-selective even without adapter_config.json', () => {
    const top = inferAdapter(layout([[`${llama(3, 'self_attn.v_proj')}.ia3_l`, [8, 1]], [`${llama(2, 'self_attn.v_proj')}.ia3_l`, [8, 1]]]));
    expect(top.spec.config).toMatchObject({ layers: [2, 3] });
    const all = inferAdapter(layout([[`${llama(0, 'self_attn.v_proj')}.ia3_l`, [8, 1]], [`${llama(1, 'self_attn.v_proj')}.ia3_l`, [8, 1]]]));
    expect(all.spec.config['layers']).toBeUndefined();
  });

  it('refuses mixed methods, unknown modules and configs that are not one', () => {
    expect(() => inferAdapter(layout([[`${llama(0, 'self_attn.q_proj')}.ia3_l`, [8, 1]], [`${llama(0, 'mlp.down_proj')}.bitfit_bias`, [8]]]))).toThrowError(ConfigError);
    expect(() => inferAdapter(layout([['base_model.model.encoder.block.0.q.ia3_l', [8, 1]]]))).toThrowError(/names no linear module/);
    expect(() => inferAdapter(layout([[`${llama(0, 'self_attn.q_proj')}.ia3_l`, [8, 1]]]), JSON.stringify({ peft_type: 'IA3', target_modules: 'q_proj' }))).toThrowError(ConfigError);
    expect(() => inferAdapter(layout([[`${llama(0, 'self_attn.q_proj')}.ia3_l`, [8, 1]]]), '{not json')).toThrowError(/not valid JSON/);
  });
});
