/**
 * The coordinator infers the adapter clients train (method, config, architecture) from the
 * operator's initial adapter and its description (adapter_config.json, or a webtune spec JSON):
 * every method, layer-selective adapters without a config, prompt-learning adapters that need their
 * spec and architecture, and the refusals (mixed methods, unknown modules, a config that is not one,
 * tensors that disagree with their description); UniPELT from its keys alone or described, and every
 * way its tensors can be incomplete or disagree. The last blocks start the real server on a SQLite
 * file: a prompt_embeddings adapter without its spec does not start it, with its spec it serves
 * protocol 2 rounds, and a restart reads the spec back from the database.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { adapterConfigJson, adapterMethod, PROMPT_EMBEDDINGS, resolveAdapterSpec, type HostTensor } from '@webtune/model';
import { tinyModel } from '../../model/test/tiny-models.js';
import { inferAdapter, layoutOf, trainableTensors } from '../src/adapter.js';
import { ConfigError } from '../src/config.js';
import { startCoordinator, type CoordinatorHandle } from '../src/index.js';
import { download, query, register, roundInfo, SECRET, tmp } from './helpers.js';

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

const EMB = 'prompt_encoder.embedding.weight';
const mlp = (i: number, h: number, inp: number): Array<[string, number[]]> => [[`prompt_encoder.mlp_head.${i}.weight`, [h, inp]], [`prompt_encoder.mlp_head.${i}.bias`, [h]]];
const pTuning = (n: number, d: number, h: number): Array<[string, number[]]> => [[EMB, [n, d]], ...mlp(0, h, d), ...mlp(2, h, h), ...mlp(4, d, h)];
const projected = (n: number, td: number, h: number, layers: number): Array<[string, number[]]> => [
  [EMB, [n, td]], ['prompt_encoder.transform.0.weight', [h, td]], ['prompt_encoder.transform.0.bias', [h]],
  ['prompt_encoder.transform.2.weight', [layers * 2 * td, h]], ['prompt_encoder.transform.2.bias', [layers * 2 * td]],
];
const bottleneck = (prefix: string, r: number, d: number): Array<[string, number[]]> => [
  [`${prefix}.adapter_down.0.weight`, [r, d]], [`${prefix}.adapter_down.0.bias`, [r]], [`${prefix}.adapter_up.weight`, [d, r]], [`${prefix}.adapter_up.bias`, [d]],
];
/** PEFT's adapter_config.json fields for tiny-llama (hidden 64, 2 layers, 2 kv heads x 16). */
const promptConfig = (peftType: string, n: number, tokenDim: number, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ peft_type: peftType, task_type: 'CAUSAL_LM', num_virtual_tokens: n, token_dim: tokenDim, num_transformer_submodules: 1, num_layers: 2, ...extra });

describe('inferAdapter: prompt tuning, P-tuning, prefix tuning', () => {
  it('prompt_embeddings alone is refused without a spec, and without an architecture', () => {
    const alone = layout([[PROMPT_EMBEDDINGS, [6, 64]]]);
    expect(() => inferAdapter(alone)).toThrowError(ConfigError);
    expect(() => inferAdapter(alone)).toThrowError(/name no module and no architecture.*prompt tuning and prefix tuning.*--adapter-config/);
    expect(() => inferAdapter(alone, promptConfig('PROMPT_TUNING', 6, 64))).toThrowError(/name no architecture.*--architecture/);
    expect(() => inferAdapter(layout(pTuning(5, 64, 32)))).toThrowError(/give its spec/);
  });

  it('adapter_config.json as exportAdapter() writes it, with the architecture', () => {
    expect(inferAdapter(layout([[PROMPT_EMBEDDINGS, [6, 64]]]), promptConfig('PROMPT_TUNING', 6, 64, { prompt_tuning_init: 'RANDOM' }), 'llama'))
      .toEqual({ spec: { method: 'prompt-tuning', config: { numVirtualTokens: 6, init: 'random' } }, architecture: 'llama' });
    expect(inferAdapter(layout([[PROMPT_EMBEDDINGS, [6, 64]]]), promptConfig('PROMPT_TUNING', 6, 64, { prompt_tuning_init: 'TEXT', prompt_tuning_init_text: 'Call me' }), 'llama').spec.config)
      .toEqual({ numVirtualTokens: 6, init: 'text', initText: 'Call me' });
    expect(inferAdapter(layout(pTuning(5, 64, 32)), promptConfig('P_TUNING', 5, 64, { encoder_reparameterization_type: 'MLP', encoder_hidden_size: 32 }), 'llama').spec)
      .toEqual({ method: 'p-tuning', config: { numVirtualTokens: 5, encoderHiddenSize: 32, encoderReparameterizationType: 'MLP' } });
    expect(inferAdapter(layout(projected(7, 32, 32, 2)), promptConfig('PREFIX_TUNING', 7, 32, { prefix_projection: true, encoder_hidden_size: 32 }), 'llama').spec)
      .toEqual({ method: 'prefix-tuning', config: { numVirtualTokens: 7, prefixProjection: true, encoderHiddenSize: 32 } });
  });

  it('a webtune spec JSON (exportAdapterState\'s spec) names the architecture itself; --architecture must agree', () => {
    const spec = { method: 'p-tuning', config: { numVirtualTokens: 5, encoderHiddenSize: 32, encoderReparameterizationType: 'MLP' } };
    expect(inferAdapter(layout(pTuning(5, 64, 32)), JSON.stringify({ ...spec, architecture: 'llama' }))).toEqual({ spec, architecture: 'llama' });
    expect(inferAdapter(layout(pTuning(5, 64, 32)), JSON.stringify({ spec, architecture: 'gpt2' })).architecture).toBe('gpt2');
    expect(inferAdapter(layout(pTuning(5, 64, 32)), JSON.stringify(spec), 'llama').architecture).toBe('llama');
    // Fields the tensors say may be left out.
    expect(inferAdapter(layout(projected(7, 32, 16, 2)), JSON.stringify({ method: 'prefix-tuning', config: {}, architecture: 'llama' })).spec.config)
      .toEqual({ numVirtualTokens: 7, prefixProjection: true, encoderHiddenSize: 16 });
    expect(() => inferAdapter(layout(pTuning(5, 64, 32)), JSON.stringify({ ...spec, architecture: 'llama' }), 'gpt2')).toThrowError(/architecture is gpt2, but the adapter spec says llama/);
    expect(() => inferAdapter(layout(pTuning(5, 64, 32)), JSON.stringify({ ...spec, architecture: 'mamba' }))).toThrowError(/"mamba" is not one of llama, gpt2/);
  });

  it('a PEFT prefix-tuning file without projection is the prefixes themselves: its prompt_embeddings become the trainable table', () => {
    const config = promptConfig('PREFIX_TUNING', 4, 32, { prefix_projection: false, encoder_hidden_size: 32 });
    const tensors = trainableTensors(new Map([[PROMPT_EMBEDDINGS, t([4, 128])]]), config);
    expect([...tensors.keys()]).toEqual([EMB]);
    expect(inferAdapter(layoutOf(tensors), config, 'llama').spec).toEqual({ method: 'prefix-tuning', config: { numVirtualTokens: 4, prefixProjection: false, encoderHiddenSize: 32 } });
    // Prompt tuning keeps its key; nothing is renamed without a prefix-tuning description.
    expect([...trainableTensors(new Map([[PROMPT_EMBEDDINGS, t([4, 64])]]), promptConfig('PROMPT_TUNING', 4, 64)).keys()]).toEqual([PROMPT_EMBEDDINGS]);
    expect([...trainableTensors(new Map([[PROMPT_EMBEDDINGS, t([4, 64])]])).keys()]).toEqual([PROMPT_EMBEDDINGS]);
  });

  it('files that cannot carry the trainable state, and tensors that disagree with their description, are refused', () => {
    const embeddings = layout([[PROMPT_EMBEDDINGS, [5, 64]]]);
    expect(() => inferAdapter(embeddings, promptConfig('P_TUNING', 5, 64, { encoder_hidden_size: 32 }), 'llama')).toThrowError(/holds only its encoder's output.*exportAdapterState/);
    expect(() => inferAdapter(layoutOf(trainableTensors(new Map([[PROMPT_EMBEDDINGS, t([5, 128])]]), promptConfig('PREFIX_TUNING', 5, 32, { prefix_projection: true }))), promptConfig('PREFIX_TUNING', 5, 32, { prefix_projection: true }), 'llama'))
      .toThrowError(/holds only the projection's output.*exportAdapterState/);
    expect(() => inferAdapter(embeddings, promptConfig('PROMPT_TUNING', 6, 64), 'llama')).toThrowError(/numVirtualTokens 6, but the initial adapter's tensors have 5/);
    expect(() => inferAdapter(embeddings, promptConfig('PROMPT_TUNING', 5, 32), 'llama')).toThrowError(/token_dim 32, but prompt_embeddings is 64 wide/);
    expect(() => inferAdapter(layout(pTuning(5, 64, 32).slice(0, 5)), promptConfig('P_TUNING', 5, 64), 'llama')).toThrowError(/lacks prompt_encoder.mlp_head.4.weight/);
    const bent = pTuning(5, 64, 32).map(([k, s]): [string, number[]] => [k, k.endsWith('mlp_head.2.weight') ? [32, 16] : s]);
    expect(() => inferAdapter(layout(bent), promptConfig('P_TUNING', 5, 64), 'llama')).toThrowError(/"prompt_encoder.mlp_head.2.weight" is \[32, 16\]; its other tensors make it \[32, 32\]/);
    expect(() => inferAdapter(layout(pTuning(5, 64, 32)), JSON.stringify({ method: 'p-tuning', config: { encoderHiddenSize: 16 }, architecture: 'llama' }))).toThrowError(/encoderHiddenSize 16/);
    expect(() => inferAdapter(layout(pTuning(5, 64, 32)), promptConfig('PREFIX_TUNING', 5, 64), 'llama')).toThrowError(/prefix tuning.*lacks|has prompt_encoder.mlp_head/);
    expect(() => inferAdapter(layout(pTuning(5, 64, 32)), JSON.stringify({ peft_type: 'LORA', r: 4 }), 'llama')).toThrowError(/describes LoRA/);
    expect(() => inferAdapter(layout([[PROMPT_EMBEDDINGS, [5, 64]], [`${llama(0, 'self_attn.q_proj')}.ia3_l`, [8, 1]]]), promptConfig('PROMPT_TUNING', 5, 64), 'llama')).toThrowError(/has base_model/);
  });
});

describe('inferAdapter: bottleneck adapters', () => {
  it('variant, width, layers and architecture from the keys; the non-linearity from the description or the variant\'s default', () => {
    const houlsby = layout([0, 1].flatMap((l) => [...bottleneck(`model.layers.${l}.attention_adapter`, 4, 64), ...bottleneck(`model.layers.${l}.output_adapter`, 4, 64)]));
    expect(inferAdapter(houlsby)).toEqual({ spec: { method: 'bottleneck', config: { variant: 'houlsby', bottleneckSize: 4, nonLinearity: 'swish' } }, architecture: 'llama' });
    const config = JSON.stringify({ webtune_method: 'bottleneck', variant: 'houlsby', bottleneck_size: 4, non_linearity: 'relu', layers_to_transform: null });
    expect(inferAdapter(houlsby, config).spec.config).toEqual({ variant: 'houlsby', bottleneckSize: 4, nonLinearity: 'relu' });
    const pfeiffer = inferAdapter(layout(bottleneck('transformer.h.1.output_adapter', 8, 32)));
    expect(pfeiffer).toEqual({ spec: { method: 'bottleneck', config: { variant: 'pfeiffer', bottleneckSize: 8, nonLinearity: 'relu', layers: [1] } }, architecture: 'gpt2' });
  });

  it('refuses half adapters, a description that disagrees, and another architecture', () => {
    expect(() => inferAdapter(layout(bottleneck('model.layers.0.output_adapter', 4, 64).slice(0, 3)))).toThrowError(/not "model.layers.0.output_adapter.adapter_up.bias"/);
    expect(() => inferAdapter(layout(bottleneck('model.layers.0.attention_adapter', 4, 64)))).toThrowError(/layer 0 .* attention adapters only/);
    expect(() => inferAdapter(layout(bottleneck('model.layers.0.output_adapter', 4, 64)), JSON.stringify({ webtune_method: 'bottleneck', variant: 'pfeiffer', bottleneck_size: 8 }))).toThrowError(/bottleneckSize 8/);
    expect(() => inferAdapter(layout(bottleneck('model.layers.0.output_adapter', 4, 64)), undefined, 'gpt2')).toThrowError(/given as gpt2, but .* llama's/);
    expect(() => inferAdapter(layout(bottleneck('encoder.block.0.output_adapter', 4, 64)))).toThrowError(/under no layer of a known architecture/);
  });
});

describe('inferAdapter: a webtune spec JSON for the module methods', () => {
  it('names the settings in webtune\'s terms; the rank must match the tensors', () => {
    const lora = layout([[`${llama(1, 'self_attn.q_proj')}.lora_A.weight`, [4, 8]], [`${llama(1, 'self_attn.q_proj')}.lora_B.weight`, [8, 4]]]);
    expect(inferAdapter(lora, JSON.stringify({ method: 'lora', config: { rank: 4, alpha: 16, targets: ['q_proj'] }, architecture: 'llama' })).spec)
      .toEqual({ method: 'lora', config: { rank: 4, alpha: 16, dropout: 0, targets: ['q_proj'], rslora: false, layers: [1] } });
    expect(() => inferAdapter(lora, JSON.stringify({ method: 'lora', config: { rank: 8 } }))).toThrowError(/rank 8, but .* 4/);
    expect(() => inferAdapter(lora, JSON.stringify({ method: 'ia3', config: {} }))).toThrowError(/describes IA3, but .* LoRA's/);
    expect(() => inferAdapter(lora, JSON.stringify({ method: 'lora', config: {}, architecture: 'gpt2' }))).toThrowError(/given as gpt2/);
  });
});

/** UniPELT's trainable keys and shapes on a tiny model, as the method itself lays them out. */
const unipeltEntries = (name: 'tiny-llama' | 'tiny-gpt2', options: Record<string, unknown>): Array<[string, number[]]> => {
  const { config } = tinyModel(name);
  const spec = resolveAdapterSpec(config, 'unipelt', options);
  return adapterMethod('unipelt').tensorShapes!(config, spec.config).map((t): [string, number[]] => [t.key, t.shape]);
};
const reshape = (entries: Array<[string, number[]]>, key: string, shape: number[]) => entries.map(([k, s]): [string, number[]] => [k, k === key ? shape : s]);
const without = (entries: Array<[string, number[]]>, key: string) => entries.filter(([k]) => k !== key);


describe('a hostile initial adapter', () => {
  it('a layer index far past any model is refused before anything is sized by it', () => {
    const entries: Array<[string, number[]]> = [['prefix.embedding.weight', [4, 128]], ['model.layers.30000000.prefix_gate.weight', [2, 64]]];
    expect(() => inferAdapter(layout(entries))).toThrowError(ConfigError);
    expect(() => inferAdapter(layout(entries))).toThrowError(/layer 30000000; layers go up to 1023/);
    // Before the bound, this index made the server build a 30-million-entry list (seconds, gigabytes) and
    // an index past 2^32 a bare RangeError.
    expect(() => inferAdapter(layout([['prefix.embedding.weight', [4, 128]], ['model.layers.5000000000.prefix_gate.weight', [2, 64]]]))).toThrowError(ConfigError);
  });
});

describe('inferAdapter: UniPELT', () => {
  it('architecture, rank, targets, bottleneck size and prefix tokens from the keys; alpha and the non-linearity from the description, else the defaults', () => {
    for (const name of ['tiny-llama', 'tiny-gpt2'] as const) {
      const { config: model } = tinyModel(name);
      const options = { rank: 2, alpha: 3, numVirtualTokens: 5, bottleneckSize: 8, nonLinearity: 'swish' };
      const spec = resolveAdapterSpec(model, 'unipelt', options);
      const entries = layout(unipeltEntries(name, options));
      // adapter_config.json as exportAdapter() writes it, a spec JSON, and nothing.
      expect(inferAdapter(entries, JSON.stringify(adapterConfigJson(model, spec, 'tiny')))).toEqual({ spec, architecture: model.architecture });
      expect(inferAdapter(entries, JSON.stringify({ ...spec, architecture: model.architecture }))).toEqual({ spec, architecture: model.architecture });
      expect(inferAdapter(entries, JSON.stringify({ method: 'unipelt', config: { alpha: 3, nonLinearity: 'swish' } }))).toEqual({ spec, architecture: model.architecture });
      const bare = inferAdapter(entries);
      expect(bare).toEqual({ spec: { method: 'unipelt', config: { ...spec.config, alpha: 4, nonLinearity: 'relu' } }, architecture: model.architecture });
      // The inferred spec resolves on the model to itself, and its shapes are the tensors'.
      expect(resolveAdapterSpec(model, 'unipelt', bare.spec.config)).toEqual(bare.spec);
    }
    // Targets as the keys name them: suffixes where one selects a single linear (GPT-2's c_proj is the attention's and the MLP's).
    const gpt2 = inferAdapter(layout(unipeltEntries('tiny-gpt2', { targets: ['c_attn', 'attn.c_proj', 'c_fc'] })));
    expect(gpt2.spec.config).toMatchObject({ targets: ['c_attn', 'attn.c_proj', 'c_fc'] });
    const llama = inferAdapter(layout(unipeltEntries('tiny-llama', { targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj'] })));
    expect(llama.spec.config).toMatchObject({ targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj'] });
    expect(inferAdapter(layout(unipeltEntries('tiny-llama', { targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj'] })), JSON.stringify({ method: 'unipelt', config: { targets: ['self_attn.q_proj', 'k_proj', 'v_proj', 'o_proj', 'mlp.gate_proj', 'up_proj'] } })).spec.config)
      .toMatchObject({ targets: ['self_attn.q_proj', 'k_proj', 'v_proj', 'o_proj', 'mlp.gate_proj', 'up_proj'] });
  });

  it('refuses incomplete tensors, shapes that disagree with each other, and descriptions that disagree with the tensors', () => {
    const entries = unipeltEntries('tiny-llama', { rank: 2, numVirtualTokens: 5, bottleneckSize: 8 });
    const q0 = 'model.layers.0.self_attn.q_proj';
    const a1 = 'model.layers.1.output_adapter';
    // Incomplete.
    expect(() => inferAdapter(layout(without(entries, 'prefix.embedding.weight')))).toThrowError(/not its prefix table "prefix.embedding.weight"/);
    expect(() => inferAdapter(layout(without(entries, `${q0}.lora_gate.bias`)))).toThrowError(/lacks model.layers.0.self_attn.q_proj.lora_gate.bias/);
    expect(() => inferAdapter(layout(without(entries, `${a1}.gate.weight`)))).toThrowError(/lacks model.layers.1.output_adapter.gate.weight/);
    expect(() => inferAdapter(layout(entries.filter(([k]) => !k.startsWith('model.layers.0.'))))).toThrowError(/no prefix gate or adapter in layer 0; UniPELT adapts every layer/);
    expect(() => inferAdapter(layout(entries.filter(([k]) => !k.includes('.lora_'))))).toThrowError(/no LoRA tensors/);
    expect(() => inferAdapter(layout(entries.filter(([k]) => !k.startsWith('model.layers.1.self_attn.v_proj.'))))).toThrowError(/lacks model.layers.1.self_attn.v_proj.lora_A.weight.*every layer/);
    expect(() => inferAdapter(layout([...entries, ['model.layers.2.self_attn.q_proj.lora_gate.bias', [1]]]))).toThrowError(/has model.layers.2.self_attn.q_proj.lora_gate.bias, outside its 2 layers' prefix gates, adapters and LoRA targets/);
    // Shapes that disagree.
    expect(() => inferAdapter(layout(reshape(entries, `${q0}.lora_A.weight`, [3, 64])))).toThrowError(/"model.layers.0.self_attn.q_proj.lora_A.weight" is \[3, 64\]; its other tensors make it \[2, 64\]|lora_B.weight" is \[64, 2\]; its other tensors make it \[64, 3\]/);
    expect(() => inferAdapter(layout(reshape(entries, `${q0}.lora_gate.weight`, [1, 32])))).toThrowError(/lora_gate.weight" is \[1, 32\]; its other tensors make it \[1, 64\]/);
    expect(() => inferAdapter(layout(reshape(entries, 'model.layers.0.self_attn.v_proj.lora_B.weight', [64, 2])))).toThrowError(/v_proj.lora_B.weight" is \[64, 2\]; its other tensors make it \[32, 2\]/);
    expect(() => inferAdapter(layout(reshape(entries, `${a1}.adapter_up.weight`, [64, 4])))).toThrowError(/adapter_up.weight" is \[64, 4\]; its other tensors make it \[64, 8\]/);
    expect(() => inferAdapter(layout(reshape(entries, 'model.layers.1.prefix_gate.weight', [1, 64])))).toThrowError(/prefix_gate.weight" is \[1, 64\]; its other tensors make it \[2, 64\]/);
    expect(() => inferAdapter(layout(reshape(entries, 'prefix.embedding.weight', [5, 100])))).toThrowError(/is 100 wide, not keys and values of 2 layers/);
    // LoRA on the adapter's linear.
    const down = 'model.layers.0.mlp.down_proj';
    expect(() => inferAdapter(layout([...entries, [`${down}.lora_A.weight`, [2, 128]], [`${down}.lora_B.weight`, [64, 2]], [`${down}.lora_gate.weight`, [1, 128]], [`${down}.lora_gate.bias`, [1]]])))
      .toThrowError(/LoRA on mlp.down_proj, where UniPELT's adapter sits/);
    // Another architecture's paths.
    expect(() => inferAdapter(layout([...entries, ['transformer.h.0.prefix_gate.bias', [2]]]))).toThrowError(/several architectures/);
    expect(() => inferAdapter(layout(entries), undefined, 'gpt2')).toThrowError(/given as gpt2, but .* llama's/);
    // Descriptions that disagree with the tensors, or are not UniPELT's.
    const config = (extra: Record<string, unknown>) => JSON.stringify({ webtune_method: 'unipelt', peft_type: null, r: 2, lora_alpha: 4, target_modules: ['q_proj', 'v_proj'], num_virtual_tokens: 5, bottleneck_size: 8, non_linearity: 'relu', ...extra });
    expect(inferAdapter(layout(entries), config({})).spec.config).toEqual({ rank: 2, alpha: 4, targets: ['q_proj', 'v_proj'], numVirtualTokens: 5, bottleneckSize: 8, nonLinearity: 'relu' });
    expect(() => inferAdapter(layout(entries), config({ r: 4 }))).toThrowError(/adapter_config.json says rank 4, but the initial adapter's tensors have 2/);
    expect(() => inferAdapter(layout(entries), config({ num_virtual_tokens: 10 }))).toThrowError(/numVirtualTokens 10, but .* 5/);
    expect(() => inferAdapter(layout(entries), config({ bottleneck_size: 4 }))).toThrowError(/bottleneckSize 4, but .* 8/);
    expect(() => inferAdapter(layout(entries), config({ target_modules: ['q_proj'] }))).toThrowError(/targets \["q_proj"\], which select self_attn.q_proj in layer 0; the initial adapter's LoRA tensors are on self_attn.q_proj, self_attn.v_proj/);
    expect(() => inferAdapter(layout(entries), config({ target_modules: ['v_proj', 'layers.0.self_attn.q_proj'] }))).toThrowError(/which select self_attn.v_proj in layer 1/);
    expect(() => inferAdapter(layout(entries), config({ non_linearity: 'tanh' }))).toThrowError(/UniPELT config's "nonLinearity" is "tanh"/);
    expect(() => inferAdapter(layout(entries), config({ layers_to_transform: [1] }))).toThrowError(/"layers", which UniPELT has not/);
    expect(() => inferAdapter(layout(entries), config({ webtune_method: 'unipelt2' }))).toThrowError(/"webtune_method" is "unipelt2"; expected "bitfit", "bottleneck" or "unipelt"/);
    expect(() => inferAdapter(layout(entries), JSON.stringify({ method: 'unipelt', config: { rank: 2, dropout: 0.1 } }))).toThrowError(/"dropout", which UniPELT has not/);
    expect(() => inferAdapter(layout(entries), JSON.stringify({ webtune_method: 'bottleneck', variant: 'pfeiffer' }))).toThrowError(/describes Bottleneck adapter, but .* UniPELT's/);
    expect(() => inferAdapter(layout(entries), JSON.stringify({ method: 'unipelt', config: {}, architecture: 'gpt2' }))).toThrowError(/given as gpt2/);
  });

  it('a UniPELT coordinator speaks protocol 2 and serves the round its spec (HTTP, SQLite)', async () => {
    const { config: model } = tinyModel('tiny-llama');
    const spec = resolveAdapterSpec(model, 'unipelt', { rank: 2, numVirtualTokens: 3, bottleneckSize: 4 });
    const initialAdapter = new Map(unipeltEntries('tiny-llama', spec.config as unknown as Record<string, unknown>).map(([k, shape]) => [k, t(shape)]));
    const dir = tmp();
    const c = await startCoordinator({ db: join(dir, 'c.sqlite'), enrolmentSecret: SECRET, log: () => {}, initialAdapter, adapterConfig: JSON.stringify(adapterConfigJson(model, spec)) });
    try {
      const me = await register(c.url, 'a');
      expect(me.protocol).toBe(2);
      const info = await roundInfo(c.url, me.token);
      expect(info.protocol).toBe(2);
      expect(info.config).toMatchObject({ adapter: spec, architecture: 'llama' });
      expect(info.config.lora).toBeUndefined();
      expect([...(await download(c.url, me.token, 0)).keys()].sort()).toEqual([...initialAdapter.keys()].sort());
    } finally {
      await c.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the coordinator started from a prompt-learning adapter (HTTP, SQLite)', () => {
  const open: CoordinatorHandle[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    while (open.length) await open.pop()!.close();
    while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
  });
  const dbPath = () => {
    const dir = tmp();
    dirs.push(dir);
    return join(dir, 'c.sqlite');
  };
  const start = async (db: string, options: Partial<Parameters<typeof startCoordinator>[0]> = {}) => {
    const h = await startCoordinator({ db, enrolmentSecret: SECRET, log: () => {}, ...options });
    open.push(h);
    return h;
  };
  const embeddings = () => new Map([[PROMPT_EMBEDDINGS, { data: Float32Array.from({ length: 6 * 64 }, (_, i) => Math.sin(i)), shape: [6, 64] }]]);

  it('refuses to start on prompt_embeddings without a spec (ConfigError), and stores nothing that a retry would trip on', async () => {
    const db = dbPath();
    const error = await start(db, { initialAdapter: embeddings() }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(/name no module and no architecture/);
    await expect(start(db, { initialAdapter: embeddings(), adapterConfig: promptConfig('PROMPT_TUNING', 6, 64) })).rejects.toThrowError(/--architecture/);
    expect(query(db, 'SELECT key FROM meta WHERE key IN (\'adapter_config\', \'architecture\')')).toEqual([]);
    expect(query(db, 'SELECT version FROM global_versions')).toEqual([]);
  });

  it('with its spec and architecture: protocol 2, the round names prompt tuning on llama; a restart reads both back', async () => {
    const db = dbPath();
    let c = await start(db, { initialAdapter: embeddings(), adapterConfig: promptConfig('PROMPT_TUNING', 6, 64), architecture: 'llama' });
    const me = await register(c.url, 'a');
    expect(me.protocol).toBe(2);
    const info = await roundInfo(c.url, me.token);
    expect(info.protocol).toBe(2);
    expect(info.config).toMatchObject({ adapter: { method: 'prompt-tuning', config: { numVirtualTokens: 6, init: 'random' } }, architecture: 'llama' });
    expect(info.config.lora).toBeUndefined();
    expect([...(await download(c.url, me.token, 0)).keys()]).toEqual([PROMPT_EMBEDDINGS]);
    await open.pop()!.close();
    c = await start(db);
    const again = await register(c.url, 'b');
    expect((await roundInfo(c.url, again.token)).config).toMatchObject({ adapter: { method: 'prompt-tuning' }, architecture: 'llama' });
  });

  it('a PEFT prefix-tuning file is served as prefix tuning\'s trainable table', async () => {
    const c = await start(dbPath(), {
      initialAdapter: new Map([[PROMPT_EMBEDDINGS, { data: new Float32Array(4 * 128), shape: [4, 128] }]]),
      adapterConfig: promptConfig('PREFIX_TUNING', 4, 32, { prefix_projection: false, encoder_hidden_size: 32 }), architecture: 'llama',
    });
    const me = await register(c.url);
    expect((await roundInfo(c.url, me.token)).config.adapter).toEqual({ method: 'prefix-tuning', config: { numVirtualTokens: 4, prefixProjection: false, encoderHiddenSize: 32 } });
    expect([...(await download(c.url, me.token, 0)).keys()]).toEqual([EMB]);
  });
});
