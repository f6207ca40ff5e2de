/**
 * The method registry without a GPU: methodOfKeys names the method of every method's trainable keys
 * (on tiny Llama and tiny GPT-2, the keys each method's own shapes give), including the key forms
 * methods share (LoRA's in DoRA's and UniPELT's, a bottleneck's in UniPELT's, prefix tuning's
 * encoder table in P-tuning's); `prompt_embeddings` alone stays undecided. adapterMethodInfo gives
 * each method's title and whether it merges.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@webtune/errors';
import {
  ADAPTER_METHODS, adapterMethod, adapterMethodInfo, bitfitKey, ia3Key, magnitudeKey, methodOfKeys, parseModelConfig, peftKey, PROMPT_EMBEDDINGS, resolveAdapterSpec,
  type AdapterMethod, type AdapterSpec, type ModelConfig,
} from '../src/index.js';
import { FIXTURES } from './tiny-models.js';

const model = (name: string): ModelConfig => parseModelConfig(readFileSync(`${FIXTURES}models/${name}/config.json`, 'utf8'), `${name}/config.json`);

/** The trainable keys of a spec: the method's shapes, or per module the PEFT keys of its tensors. */
function trainableKeys(config: ModelConfig, spec: AdapterSpec): string[] {
  const method = adapterMethod(spec.method);
  if (method.tensorShapes) return method.tensorShapes(config, spec.config).map((t) => t.key);
  return method.modules(config, spec.config).flatMap((m) => {
    switch (spec.method) {
      case 'lora': return [peftKey(m.module, 'A'), peftKey(m.module, 'B')];
      case 'dora': return [peftKey(m.module, 'A'), peftKey(m.module, 'B'), magnitudeKey(m.module)];
      case 'ia3': return [ia3Key(m.module)];
      case 'bitfit': return [bitfitKey(m.module)];
      default: throw new Error(`no key rule for ${spec.method}`);
    }
  });
}

const CASES: Array<{ method: AdapterMethod; config: Record<string, unknown> }> = [
  { method: 'lora', config: { rank: 4 } },
  { method: 'dora', config: { rank: 4 } },
  { method: 'ia3', config: {} },
  { method: 'bitfit', config: {} },
  { method: 'p-tuning', config: { numVirtualTokens: 4 } },
  { method: 'prefix-tuning', config: { numVirtualTokens: 4 } },
  { method: 'prefix-tuning', config: { numVirtualTokens: 4, prefixProjection: true } },
  { method: 'bottleneck', config: { variant: 'pfeiffer' } },
  { method: 'bottleneck', config: { variant: 'houlsby' } },
  { method: 'unipelt', config: { rank: 2 } },
];

describe('methodOfKeys', () => {
  it.each(['tiny-llama', 'tiny-gpt2'])('names the method of each method\'s trainable keys (%s)', (name) => {
    const config = model(name);
    for (const { method, config: options } of CASES) {
      const keys = trainableKeys(config, resolveAdapterSpec(config, method, options));
      expect(keys.length, `${method} ${JSON.stringify(options)}`).toBeGreaterThan(0);
      expect(methodOfKeys(keys), `${method} ${JSON.stringify(options)}`).toBe(method);
      // Order does not matter.
      expect(methodOfKeys([...keys].reverse()), method).toBe(method);
    }
    // Prompt tuning's table is also a PEFT prefix-tuning file's prefixes: the keys cannot tell.
    expect(trainableKeys(config, resolveAdapterSpec(config, 'prompt-tuning', { numVirtualTokens: 4 }))).toEqual([PROMPT_EMBEDDINGS]);
    expect(methodOfKeys([PROMPT_EMBEDDINGS])).toBeUndefined();
  });

  it('tells shared key forms apart by the keys only one of the methods has', () => {
    const q = 'model.layers.0.self_attn.q_proj';
    const lora = [peftKey(q, 'A'), peftKey(q, 'B')];
    expect(methodOfKeys(lora)).toBe('lora');
    expect(methodOfKeys([...lora, magnitudeKey(q)])).toBe('dora');
    expect(methodOfKeys(['prompt_encoder.embedding.weight'])).toBe('prefix-tuning');
    expect(methodOfKeys(['prompt_encoder.embedding.weight', 'prompt_encoder.mlp_head.0.weight'])).toBe('p-tuning');
    expect(methodOfKeys(['prompt_encoder.embedding.weight', 'prompt_encoder.transform.0.weight'])).toBe('prefix-tuning');
    const adapter = ['model.layers.0.output_adapter.adapter_down.0.weight', 'model.layers.0.output_adapter.adapter_up.weight'];
    expect(methodOfKeys(adapter)).toBe('bottleneck');
    expect(methodOfKeys(['prefix.embedding.weight', ...adapter])).toBe('unipelt');
    // UniPELT's own key forms (gates, LoRA without base_model.model.) are UniPELT's even without the prefix table.
    expect(methodOfKeys([...adapter, 'model.layers.0.output_adapter.gate.weight'])).toBe('unipelt');
    expect(methodOfKeys([`${q}.lora_A.weight`])).toBe('unipelt');
  });

  it('is undefined for no keys, unknown keys and mixed methods', () => {
    const q = 'model.layers.0.self_attn.q_proj';
    expect(methodOfKeys([])).toBeUndefined();
    expect(methodOfKeys(['model.embed_tokens.weight'])).toBeUndefined();
    expect(methodOfKeys([ia3Key(q), bitfitKey(q)])).toBeUndefined();
    expect(methodOfKeys([peftKey(q, 'A'), 'prompt_encoder.embedding.weight'])).toBeUndefined();
    expect(methodOfKeys([PROMPT_EMBEDDINGS, 'prompt_encoder.mlp_head.0.weight'])).toBeUndefined();
    // A bottleneck's attention adapter has no place in UniPELT.
    expect(methodOfKeys(['prefix.embedding.weight', 'model.layers.0.attention_adapter.adapter_up.weight'])).toBeUndefined();
  });
});

describe('adapterMethodInfo', () => {
  it('gives every method\'s title and whether it merges, with the reason when it does not', () => {
    const mergeable = Object.keys(ADAPTER_METHODS).filter((m) => adapterMethodInfo(m).mergeable).sort();
    expect(mergeable).toEqual(['bitfit', 'dora', 'ia3', 'lora']);
    expect(adapterMethodInfo('lora')).toEqual({ method: 'lora', title: 'LoRA', mergeable: true });
    const unipelt = adapterMethodInfo('unipelt');
    expect(unipelt).toMatchObject({ method: 'unipelt', title: 'UniPELT', mergeable: false });
    expect(unipelt.reason).toMatch(/merged model has no place/);
    for (const m of Object.keys(ADAPTER_METHODS)) {
      const info = adapterMethodInfo(m);
      expect(info.title, m).toBe(adapterMethod(m).title);
      expect(info.reason === undefined, m).toBe(info.mergeable);
    }
  });

  it('refuses a name that is not a method', () => {
    expect(() => adapterMethodInfo('qlora')).toThrowError(InvalidArgumentError);
    expect(() => adapterMethodInfo('constructor')).toThrowError(/not one webtune trains/);
  });
});
