/**
 * Prompt tuning, P-tuning, prefix tuning, bottleneck adapters and UniPELT on the GPU against
 * plain-PyTorch transcriptions of PEFT's (and AdapterHub's, and the UniPELT paper's) formulas
 * (scripts/make_prompt_method_fixtures.py):
 * logits of the real tokens, loss and every trainable tensor's gradient in f32 and f16; prompt
 * tuning's TEXT init; greedy generation with the KV cache (virtual tokens and prefixes prefilled
 * once) against greedy decoding by full forwards; adapter files out and back in; merging refused.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { useNodeContext } from '../../gpu/test/node-context.js';
import { InvalidArgumentError, ModelFormatError, UnsupportedModelError } from '@webtune/errors';
import {
  adapterFromTensors, adapterLayout, adapterMethod, createAdapter, mlpRowStride, createAdapterOnBase, resolveAdapterSpec, exportPeftAdapter, generate, mergeAdapterFiles, parseSafetensors, PROMPT_EMBEDDINGS, readPeftAdapter,
  serializeSafetensors, tensorToFloat32, Transformer, uploadBaseModel, type AdapterSpec, type HostTensor, type ModelConfig,
} from '../src/index.js';
import { batchOf, f32, FIXTURES, maxAbsDiff, relativeError, tinyModel, type Golden } from './tiny-models.js';

const gpu = useNodeContext();

interface Encoded { dtype: 'f32'; shape: number[]; b64: string }
interface PromptVariant {
  name: string;
  method: 'prompt-tuning' | 'p-tuning' | 'prefix-tuning' | 'bottleneck' | 'unipelt';
  config: Record<string, unknown>;
  tensors: Record<string, Encoded>;
  grads: Record<string, Encoded>;
  savedTensors: Record<string, Encoded>;
  logits: Encoded;
  loss: number;
  initTokenIds?: number[];
}
interface PromptGolden { model: string; inputIds: number[][]; labels: number[][]; variants: PromptVariant[] }

const MODELS = ['tiny-llama', 'tiny-gpt2'] as const;

const TOL = {
  f32: { logits: 3e-5, loss: 1e-5, grad: 3e-5 },
  f16: { logits: 6e-2, loss: 1e-2, grad: 4e-2 },
} as const;

const decode = (r: Record<string, Encoded>) => new Map<string, HostTensor>(Object.entries(r).map(([k, t]) => [k, { data: f32(t), shape: t.shape }]));

/** The variant's spec from its adapter_config.json fields (P-tuning and projected prefixes keep their encoder settings, which the file does not read back). */
function specOf(config: ModelConfig, v: PromptVariant): AdapterSpec {
  const c = v.config;
  const resolve = (options: Record<string, unknown>): AdapterSpec => ({ method: v.method, config: adapterMethod(v.method).resolve(config, options) as AdapterSpec['config'] });
  switch (v.method) {
    case 'p-tuning': return resolve({ numVirtualTokens: c['num_virtual_tokens'], encoderHiddenSize: c['encoder_hidden_size'] });
    case 'prefix-tuning': return resolve({ numVirtualTokens: c['num_virtual_tokens'], prefixProjection: c['prefix_projection'], encoderHiddenSize: c['encoder_hidden_size'] });
    case 'prompt-tuning': return resolve({ numVirtualTokens: c['num_virtual_tokens'] });
    case 'bottleneck':
    case 'unipelt': return { method: v.method, config: adapterMethod(v.method).fromPeftConfig(config, c) as AdapterSpec['config'] };
  }
}

describe.each(MODELS)('%s: prompt methods and bottleneck adapters against PyTorch', (name) => {
  const g = JSON.parse(readFileSync(`${FIXTURES}goldens/prompt-methods-${name}.json`, 'utf8')) as PromptGolden;
  // UniPELT's goldens (scripts/make_unipelt_fixtures.py) share the inputs.
  const unipelt = JSON.parse(readFileSync(`${FIXTURES}goldens/unipelt-${name}.json`, 'utf8')) as PromptGolden;
  expect(unipelt.inputIds).toEqual(g.inputIds);
  g.variants.push(...unipelt.variants);
  const batch = batchOf(g as unknown as Golden);

  for (const dtype of ['f32', 'f16'] as const) {
    for (const v of g.variants) {
      it(`${v.name} (${dtype}): logits of the real tokens, loss, the gradient of every trainable tensor`, async () => {
        if (dtype === 'f16' && !gpu().features.shaderF16) return expect(gpu().features.shaderF16).toBe(false);
        const tol = TOL[dtype];
        const { config, reader } = tinyModel(name);
        const base = await uploadBaseModel(gpu(), config, reader, { dtype });
        const model = await Transformer.create(gpu(), base);
        const spec = specOf(config, v);
        const adapter = adapterFromTensors(gpu(), config, spec, decode(v.tensors));
        try {
          model.setAdapter(adapter);
          // Bottleneck adapters and UniPELT hook the MLP's output linear, so its rows stay dense; the
          // prompt methods leave the MLP to the transformer, whose rows are padded in training. The
          // planner sees the same layout.
          const touchesMlp = v.method === 'bottleneck' || v.method === 'unipelt';
          expect(adapterLayout(config, spec).touchesMlp).toBe(touchesMlp);
          expect(model.workspaceShape(batch.batch, batch.seq, true).mlpRowStride).toBe(mlpRowStride(config, dtype, !touchesMlp));
          expect(maxAbsDiff(await model.logits(batch), f32(v.logits))).toBeLessThan(tol.logits);
          const { loss } = await model.trainStep(batch);
          expect(Math.abs(loss - v.loss)).toBeLessThan(tol.loss);
          const got = await adapter.readGradients();
          expect([...got.keys()].sort()).toEqual(Object.keys(v.grads).sort());
          for (const [key, expected] of Object.entries(v.grads)) expect(relativeError(got.get(key)!.data, f32(expected)), key).toBeLessThan(tol.grad);
          // A second micro-batch adds the same gradients again (accumulation, and the f16 scratch cleared in between).
          await model.trainStep(batch);
          const twice = await adapter.readGradients();
          for (const [key, expected] of Object.entries(v.grads)) expect(relativeError(twice.get(key)!.data.map((x) => x / 2), f32(expected)), key).toBeLessThan(tol.grad);
        } finally {
          adapter.release();
          model.release();
          base.release();
        }
      });
    }
  }

  for (const v of g.variants) {
    it(`${v.name}: greedy generation with the KV cache equals greedy decoding by full forwards`, async () => {
      const { config, reader } = tinyModel(name);
      const base = await uploadBaseModel(gpu(), config, reader);
      const model = await Transformer.create(gpu(), base);
      const adapter = adapterFromTensors(gpu(), config, specOf(config, v), decode(v.tensors));
      try {
        model.setAdapter(adapter);
        const prompt = g.inputIds[0]!.slice(0, 5);
        const cached = await generate(model, prompt, { maxNewTokens: 6, stopTokens: [] });
        const ids = [...prompt];
        for (let i = 0; i < 6; i++) {
          const logits = await model.logits({ ids: Uint32Array.from(ids), batch: 1, seq: ids.length });
          const last = logits.subarray((ids.length - 1) * config.vocabSize, ids.length * config.vocabSize);
          ids.push(last.indexOf(Math.max(...last)));
        }
        expect(cached).toEqual(ids.slice(prompt.length));
      } finally {
        adapter.release();
        model.release();
        base.release();
      }
    });

    it(`${v.name}: the adapter files hold what PEFT (or webtune's bottleneck format) saves, and read back to the same logits`, async () => {
      const { config, reader } = tinyModel(name);
      const base = await uploadBaseModel(gpu(), config, reader);
      const model = await Transformer.create(gpu(), base);
      const spec = specOf(config, v);
      const adapter = adapterFromTensors(gpu(), config, spec, decode(v.tensors));
      let back: ReturnType<typeof adapterFromTensors> | undefined;
      try {
        model.setAdapter(adapter);
        const before = await model.logits(batch);
        const files = await exportPeftAdapter(adapter, { baseModel: name });
        const cfg = JSON.parse(files['adapter_config.json']) as Record<string, unknown>;
        for (const field of ['peft_type', 'webtune_method', 'num_virtual_tokens', 'token_dim', 'num_attention_heads', 'num_layers', 'prefix_projection', 'encoder_hidden_size', 'variant', 'bottleneck_size', 'non_linearity', 'mh_adapter', 'layers_to_transform', 'r', 'lora_alpha', 'target_modules']) {
          if (field in v.config) expect(cfg[field], field).toEqual(v.config[field]);
        }
        const saved = parseSafetensors(files['adapter_model.safetensors']);
        expect([...saved.tensors.keys()].sort()).toEqual(Object.keys(v.savedTensors).sort());
        for (const [key, expected] of Object.entries(v.savedTensors)) {
          // The encoders' outputs are computed on the host in float64 sums; everything else is the trained bytes.
          expect(relativeError(tensorToFloat32(saved.tensors.get(key)!), f32(expected)), key).toBeLessThan(1e-5);
        }
        const read = readPeftAdapter(config, { config: files['adapter_config.json'], weights: files['adapter_model.safetensors'] });
        // P-tuning reads back as prompt tuning, a projected prefix as plain prefix tuning: the saved rows, without the encoder.
        const expectedMethod = v.method === 'p-tuning' ? 'prompt-tuning' : v.method;
        expect(read.spec.method).toBe(expectedMethod);
        back = adapterFromTensors(gpu(), config, read.spec, read.tensors);
        if (v.method === 'prompt-tuning' || v.method === 'bottleneck' || v.method === 'unipelt' || (v.method === 'prefix-tuning' && v.config['prefix_projection'] !== true)) {
          const again = await back.read();
          for (const [key, t] of await adapter.read()) expect(again.get(key)!.data, key).toEqual(t.data);
        }
        model.setAdapter(back);
        expect(maxAbsDiff(await model.logits(batch), before)).toBeLessThan(1e-5);
      } finally {
        back?.release();
        adapter.release();
        model.release();
        base.release();
      }
    });
  }

  it('recomputing activations in backward gives the same gradients (virtual tokens, prefixes, bottleneck state)', async () => {
    const { config, reader } = tinyModel(name);
    const base = await uploadBaseModel(gpu(), config, reader);
    const model = await Transformer.create(gpu(), base);
    try {
      for (const v of g.variants.filter((x) => ['prompt-random', 'prefix-projection', 'bottleneck-houlsby', 'unipelt'].includes(x.name))) {
        const adapter = adapterFromTensors(gpu(), config, specOf(config, v), decode(v.tensors));
        try {
          model.setAdapter(adapter);
          await model.trainStep(batch);
          const kept = await adapter.readGradients();
          adapter.zeroGradients();
          await model.trainStep(batch, { recompute: true });
          for (const [key, t] of await adapter.readGradients()) expect(t.data, `${v.name} ${key}`).toEqual(kept.get(key)!.data);
        } finally {
          model.setAdapter(undefined);
          adapter.release();
        }
      }
    } finally {
      model.release();
      base.release();
    }
  });

  it('prompt tuning TEXT init: the embedding rows of the init text\'s tokens, repeated as PEFT does', async () => {
    const v = g.variants.find((x) => x.name === 'prompt-text')!;
    const { config, reader } = tinyModel(name);
    const base = await uploadBaseModel(gpu(), config, reader);
    const spec: AdapterSpec = { method: 'prompt-tuning', config: adapterMethod('prompt-tuning').resolve(config, { numVirtualTokens: v.config['num_virtual_tokens'], init: 'text', initTokenIds: v.initTokenIds }) as AdapterSpec['config'] };
    const adapter = await createAdapterOnBase(gpu(), base, spec);
    try {
      expect((await adapter.read()).get(PROMPT_EMBEDDINGS)!.data).toEqual(f32(v.tensors[PROMPT_EMBEDDINGS]!));
      expect(() => createAdapter(gpu(), config, spec)).toThrowError(InvalidArgumentError);
    } finally {
      adapter.release();
      base.release();
    }
  });
});

describe('prompt methods: settings and combinations that do not make sense are refused', () => {
  const { config, reader } = tinyModel('tiny-llama');
  it('P-tuning\'s LSTM encoder, too many virtual tokens, an unknown bottleneck variant', () => {
    expect(() => adapterMethod('p-tuning').resolve(config, { encoderReparameterizationType: 'LSTM' })).toThrowError(/LSTM.*MLP/s);
    expect(() => adapterMethod('prompt-tuning').resolve(config, { numVirtualTokens: config.maxPositions })).toThrowError(InvalidArgumentError);
    expect(() => adapterMethod('prompt-tuning').resolve(config, { numVirtualTokens: 0 })).toThrowError(InvalidArgumentError);
    expect(() => adapterMethod('bottleneck').resolve(config, { variant: 'parallel' })).toThrowError(InvalidArgumentError);
    expect(() => adapterMethod('bottleneck').resolve(config, { bottleneckSize: config.hiddenSize + 1 })).toThrowError(InvalidArgumentError);
    expect(adapterMethod('prefix-tuning').invalid({ numVirtualTokens: -1, prefixProjection: false, encoderHiddenSize: 32 })).toMatch(/numVirtualTokens/);
    // `layers` belongs to the methods that adapt modules layer by layer; the prompt methods and UniPELT span every layer.
    for (const method of ['prompt-tuning', 'p-tuning', 'prefix-tuning', 'unipelt']) {
      expect(() => resolveAdapterSpec(config, method, { layers: [1] }), method).toThrowError(/has no setting "layers"/);
    }
    expect(resolveAdapterSpec(config, 'bottleneck', { layers: [1] }).config['layers']).toEqual([1]);
  });

  it('malformed adapter files are refused with what is wrong: shapes, another model\'s widths, missing and extra tensors', async () => {
    const files = (method: 'prompt-tuning' | 'prefix-tuning' | 'bottleneck', cfg: Record<string, unknown>, tensors: Record<string, { shape: number[] }>) => ({
      config: JSON.stringify({ ...adapterMethod(method).peftConfig(config, adapterMethod(method).resolve(config, {}), 'tiny-llama'), ...cfg }),
      weights: serializeSafetensors(Object.entries(tensors).map(([name, t]) => ({ name, dtype: 'F32' as const, shape: t.shape, data: new Float32Array(t.shape.reduce((a, b) => a * b, 1)) }))),
    });
    const d = config.hiddenSize;
    // Prompt tuning: 20 virtual tokens in the config, 19 rows in the file.
    const shortPrompt = readPeftAdapter(config, files('prompt-tuning', {}, { [PROMPT_EMBEDDINGS]: { shape: [19, d] } }));
    expect(() => adapterFromTensors(gpu(), config, shortPrompt.spec, shortPrompt.tensors)).toThrowError(ModelFormatError);
    expect(() => adapterFromTensors(gpu(), config, shortPrompt.spec, shortPrompt.tensors)).toThrowError(/\[19, 64\].*\[20, 64\]/);
    // Prefix tuning written for a model whose keys are as wide as its hidden size (no grouped-query attention).
    expect(() => readPeftAdapter(config, files('prefix-tuning', { token_dim: d }, { [PROMPT_EMBEDDINGS]: { shape: [20, 2 * 2 * d] } }))).toThrowError(/token_dim is 64 but this model needs 32/);
    expect(() => readPeftAdapter(config, files('prefix-tuning', {}, { [PROMPT_EMBEDDINGS]: { shape: [20, 7] } }))).toThrowError(ModelFormatError);
    // Bottleneck adapters: one tensor missing; one the model does not have.
    const spec = { method: 'bottleneck' as const, config: adapterMethod('bottleneck').resolve(config, { variant: 'pfeiffer', bottleneckSize: 4 }) as AdapterSpec['config'] };
    const all = new Map((adapterMethod('bottleneck').tensorShapes!(config, spec.config)).map((t) => [t.key, { data: new Float32Array(t.shape.reduce((a, b) => a * b, 1)), shape: t.shape }]));
    const missing = new Map(all);
    missing.delete('model.layers.1.output_adapter.adapter_up.bias');
    expect(() => adapterFromTensors(gpu(), config, spec, missing)).toThrowError(/has no "model.layers.1.output_adapter.adapter_up.bias"/);
    const extra = new Map(all).set('model.layers.7.output_adapter.adapter_up.bias', { data: new Float32Array(d), shape: [d] });
    expect(() => adapterFromTensors(gpu(), config, spec, extra)).toThrowError(/does not have: model.layers.7/);
  });

  it('merging is refused with a typed error that points at the adapter files', () => {
    for (const method of ['prompt-tuning', 'p-tuning', 'prefix-tuning', 'bottleneck', 'unipelt'] as const) {
      const spec: AdapterSpec = { method, config: adapterMethod(method).resolve(config, {}) as AdapterSpec['config'] };
      expect(() => mergeAdapterFiles(config, reader, spec, new Map())).toThrowError(UnsupportedModelError);
      expect(() => mergeAdapterFiles(config, reader, spec, new Map())).toThrowError(/exportAdapter/);
    }
  });

  it('a sequence that with the virtual tokens exceeds the context is refused before anything runs', async () => {
    const base = await uploadBaseModel(gpu(), config, reader);
    const model = await Transformer.create(gpu(), base);
    const adapter = createAdapter(gpu(), config, { method: 'prefix-tuning', config: adapterMethod('prefix-tuning').resolve(config, { numVirtualTokens: 10 }) as AdapterSpec['config'] });
    try {
      model.setAdapter(adapter);
      const seq = config.maxPositions - 5;
      await expect(model.logits({ ids: new Uint32Array(seq), batch: 1, seq })).rejects.toThrowError(/10 virtual or prefix tokens/);
      await expect(generate(model, new Array<number>(config.maxPositions - 5).fill(1))).rejects.toThrowError(InvalidArgumentError);
    } finally {
      adapter.release();
      model.release();
      base.release();
    }
  });
});
