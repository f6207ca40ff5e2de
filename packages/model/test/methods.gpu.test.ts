/**
 * IA3, DoRA, BitFit and layer-selective LoRA/DoRA on the GPU against plain-PyTorch transcriptions of PEFT's
 * formulas (scripts/make_method_fixtures.py, scripts/peft_methods.py): logits, loss and the
 * gradient of every trainable tensor after one backward pass, in f32 and (where the device has
 * shader-f16) f16 compute; merged weights against PyTorch's merge; PEFT files out and back in
 * bit for bit; a checkpoint of one method offered to another refused.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { useNodeContext } from '../../gpu/test/node-context.js';
import { InvalidArgumentError } from '@webtune/errors';
import { dequantizeNF4, quantizeNF4 } from '@webtune/gpu';
import {
  adapterFromTensors, adapterLayout, adapterMethod, bitfitKey, mlpRowStride, createAdapter, createAdapterOnBase, importPeftAdapter, resolveAdapterSpec, exportPeftAdapter, mergeAdapterFiles, parseSafetensors, readPeftAdapter, tensorToFloat32,
  Transformer, uploadBaseModel, type AdapterSpec, type HostTensor, type ModelConfig,
} from '../src/index.js';
import { batchOf, f32, FIXTURES, maxAbsDiff, MODELS, relativeError, tinyModel, type Golden, type TinyModel } from './tiny-models.js';

const gpu = useNodeContext();

interface Encoded { dtype: 'f32'; shape: number[]; b64: string }
interface MethodVariant {
  name: string;
  method: 'ia3' | 'dora' | 'bitfit' | 'lora';
  config: Record<string, unknown>;
  tensors: Record<string, Encoded>;
  grads: Record<string, Encoded>;
  logits: Encoded;
  loss: number;
  merged?: Record<string, Encoded>;
  mergedLogits?: Encoded;
}
interface MethodGolden { model: string; inputIds: number[][]; labels: number[][]; variants: MethodVariant[] }

function methodGolden(name: TinyModel): MethodGolden {
  return JSON.parse(readFileSync(`${FIXTURES}goldens/methods-${name}.json`, 'utf8')) as MethodGolden;
}

/** Tolerances per compute dtype: f32 differs from PyTorch by summation order; f16 stores activations in half. */
const TOL = {
  f32: { logits: 2e-5, loss: 1e-5, grad: 2e-5 },
  f16: { logits: 6e-2, loss: 1e-2, grad: 3e-2 },
} as const;

/** The variant as a webtune spec and tensors. BitFit's golden holds whole biases; webtune trains offsets from the base bias. */
function asWebtune(config: ModelConfig, reader: ReturnType<typeof tinyModel>['reader'], v: MethodVariant): { spec: AdapterSpec; tensors: Map<string, HostTensor>; grads: Map<string, Float32Array> } {
  const decode = (r: Record<string, Encoded>) => new Map(Object.entries(r).map(([k, t]) => [k, { data: f32(t), shape: t.shape }]));
  if (v.method === 'bitfit') {
    const tensors = new Map<string, HostTensor>();
    const grads = new Map<string, Float32Array>();
    for (const [key, t] of decode(v.tensors)) {
      const module = key.slice('base_model.model.'.length, -'.bias'.length);
      const baseName = reader.has(`${module}.bias`) ? `${module}.bias` : reader.has(`${module.replace(/^transformer\./, '')}.bias`) ? `${module.replace(/^transformer\./, '')}.bias` : undefined;
      const base = baseName ? reader.read(baseName).data : new Float32Array(t.data.length);
      tensors.set(bitfitKey(module), { data: t.data.map((x, i) => x - base[i]!), shape: [t.data.length] });
      grads.set(bitfitKey(module), f32(v.grads[key]!));
    }
    const spec: AdapterSpec = { method: 'bitfit', config: adapterMethod('bitfit').resolve(config, { targets: v.config['target_modules'] }) as AdapterSpec['config'] };
    return { spec, tensors, grads };
  }
  // The golden's config is PEFT's adapter_config.json fields: read as an imported file would be.
  const method = adapterMethod(v.method);
  const spec: AdapterSpec = { method: method.method, config: method.fromPeftConfig(config, v.config) as AdapterSpec['config'] };
  return { spec, tensors: decode(v.tensors), grads: new Map(Object.entries(v.grads).map(([k, t]) => [k, f32(t)])) };
}

describe.each(MODELS)('%s: adaptation methods against PyTorch', (name) => {
  const g = methodGolden(name);
  const batch = batchOf(g as unknown as Golden);
  // Qwen2's config cannot switch on o_proj / MLP biases, so BitFit there trains q/k/v only and the
  // every-linear golden is refused (checked in "method settings are checked"); norms are not trained.
  const variants = g.variants.filter((v) => v.name !== 'bitfit-norms' && !(name === 'tiny-qwen2' && v.method === 'bitfit'));

  for (const dtype of ['f32', 'f16'] as const) {
    for (const v of variants) {
      it(`${v.name} (${dtype}): logits, loss, the gradient of every trainable tensor`, async () => {
        if (dtype === 'f16' && !gpu().features.shaderF16) return expect(gpu().features.shaderF16).toBe(false);
        const tol = TOL[dtype];
        const { config, reader } = tinyModel(name);
        const base = await uploadBaseModel(gpu(), config, reader, { dtype });
        const model = await Transformer.create(gpu(), base);
        const { spec, tensors, grads } = asWebtune(config, reader, v);
        const adapter = adapterFromTensors(gpu(), config, spec, tensors);
        try {
          model.setAdapter(adapter);
          // A method that changes an MLP linear gets dense MLP rows; otherwise training pads them,
          // and the planner sees the same layout.
          const touchesMlp = (v.config['target_modules'] as string[]).some((t) => /(gate_proj|up_proj|down_proj|c_fc|c_proj)$/.test(t));
          expect(adapterLayout(config, spec).touchesMlp).toBe(touchesMlp);
          expect(model.workspaceShape(batch.batch, batch.seq, true).mlpRowStride).toBe(mlpRowStride(config, dtype, !touchesMlp));
          expect(maxAbsDiff(await model.logits(batch), f32(v.logits))).toBeLessThan(tol.logits);
          const { loss } = await model.trainStep(batch);
          expect(Math.abs(loss - v.loss)).toBeLessThan(tol.loss);
          const got = await adapter.readGradients();
          expect([...got.keys()].sort()).toEqual([...grads.keys()].sort());
          for (const [key, expected] of grads) expect(relativeError(got.get(key)!.data, expected), key).toBeLessThan(tol.grad);
        } finally {
          adapter.release();
          model.release();
          base.release();
        }
      });
    }
  }

  for (const v of variants.filter((x) => x.merged)) {
    it(`${v.name}: the merged weights are PyTorch's, and the merged model gives the adapted logits`, async () => {
      const { config, reader } = tinyModel(name);
      const { spec, tensors } = asWebtune(config, reader, v);
      const names = (reader as { names(): string[] }).names();
      const { weights, config: flags } = mergeAdapterFiles(config, { ...reader, names: () => names }, spec, tensors);
      const merged = parseSafetensors(weights, 'merged');
      for (const [key, expected] of Object.entries(v.merged!)) {
        const stored = merged.tensors.get(key) ?? merged.tensors.get(key.replace(/^transformer\./, ''));
        expect(stored, key).toBeDefined();
        expect(maxAbsDiff(tensorToFloat32(stored!), f32(expected)), key).toBeLessThan(1e-5);
      }
      // The merged model, loaded as a base, runs the adapted forward (new biases switched on by config flags).
      const mergedConfig: ModelConfig = { ...config, raw: { ...config.raw, ...flags } };
      if (flags['attention_bias'] === true) Object.assign(mergedConfig, { qkvBias: true, oBias: true });
      if (flags['mlp_bias'] === true) Object.assign(mergedConfig, { mlpBias: true });
      const mergedReader = { has: (n: string) => merged.tensors.has(n), read: (n: string) => ({ data: tensorToFloat32(merged.tensors.get(n)!), shape: merged.tensors.get(n)!.shape }) };
      const base = await uploadBaseModel(gpu(), mergedConfig, mergedReader);
      const model = await Transformer.create(gpu(), base);
      try {
        expect(maxAbsDiff(await model.logits(batch), f32(v.mergedLogits ?? v.logits))).toBeLessThan(TOL.f32.logits);
      } finally {
        model.release();
        base.release();
      }
    });
  }

  for (const v of variants) {
    it(`${v.name}: exported files carry the method's fields and keys, and import back bit for bit`, async () => {
      const { config, reader } = tinyModel(name);
      const base = await uploadBaseModel(gpu(), config, reader);
      const model = await Transformer.create(gpu(), base);
      const { spec, tensors } = asWebtune(config, reader, v);
      const adapter = adapterFromTensors(gpu(), config, spec, tensors);
      let back: ReturnType<typeof adapterFromTensors> | undefined;
      try {
        model.setAdapter(adapter);
        const before = await model.logits(batch);
        const files = await exportPeftAdapter(adapter, { baseModel: name });
        const cfg = JSON.parse(files['adapter_config.json']) as Record<string, unknown>;
        if (v.method === 'bitfit') {
          expect(cfg).toMatchObject({ webtune_method: 'bitfit', target_modules: v.config['target_modules'] });
        } else {
          for (const field of ['peft_type', 'target_modules', 'feedforward_modules', 'fan_in_fan_out', 'layers_to_transform', 'use_dora', 'r', 'lora_alpha']) {
            if (field in v.config) expect(cfg[field], field).toEqual(v.config[field]);
          }
        }
        const saved = parseSafetensors(files['adapter_model.safetensors']);
        expect([...saved.tensors.keys()].sort()).toEqual([...tensors.keys()].sort());
        for (const [key, t] of saved.tensors) expect(t.shape, key).toEqual(tensors.get(key)!.shape);
        const read = readPeftAdapter(config, { config: files['adapter_config.json'], weights: files['adapter_model.safetensors'] });
        expect(read.spec).toEqual(spec);
        back = adapterFromTensors(gpu(), config, read.spec, read.tensors);
        model.setAdapter(back);
        expect(await model.logits(batch)).toEqual(before);
      } finally {
        back?.release();
        adapter.release();
        model.release();
        base.release();
      }
    });
  }
});

describe('method settings are checked', () => {
  const { config } = tinyModel('tiny-llama');
  it('IA3 feed-forward modules must be targets; layers must exist; BitFit where no bias can be kept is refused', () => {
    expect(() => adapterMethod('ia3').resolve(config, { targets: ['q_proj'], feedforward: ['down_proj'] })).toThrowError(InvalidArgumentError);
    // Given targets, feed-forward modules default to PEFT's table as far as the targets reach them.
    expect(adapterMethod('ia3').resolve(config, { targets: ['k_proj', 'down_proj'] })).toMatchObject({ feedforward: ['down_proj'] });
    expect(adapterMethod('ia3').resolve(config, { targets: ['k_proj'] })).toMatchObject({ feedforward: [] });
    // A target or feed-forward module must name a linear (a per-layer path such as layers.0.mlp.down_proj is refused).
    expect(() => adapterMethod('ia3').resolve(config, { targets: ['down_proj'], feedforward: ['layers.0.mlp.down_proj'] })).toThrowError(/subset of target_modules/);
    expect(() => adapterMethod('dora').resolve(config, { rank: 65 })).toThrowError(/above 64/);
    expect(() => adapterMethod('constructor')).toThrowError(InvalidArgumentError);
    // Settings a method does not have are refused, composing LoRA with trained biases among them.
    expect(() => resolveAdapterSpec(config, 'lora', { rank: 4, bias: 'all' })).toThrowError(/methods do not compose yet/);
    expect(() => resolveAdapterSpec(config, 'ia3', { feedforwardModules: ['down_proj'] })).toThrowError(/IA3 has no setting "feedforwardModules"/);
    expect(() => adapterMethod('lora').resolve(config, { layers: [2] })).toThrowError(/layer 2 is not a layer of this model \(0 to 1\)/);
    expect(() => adapterMethod('bitfit').resolve(config, { learningRateScale: 0 })).toThrowError(InvalidArgumentError);
    const qwen = tinyModel('tiny-qwen2').config;
    expect(() => adapterMethod('bitfit').resolve(qwen, { targets: ['o_proj'] })).toThrowError(/cannot carry a bias there/);
    expect(adapterMethod('bitfit').resolve(qwen, {})).toMatchObject({ targets: ['q_proj', 'k_proj', 'v_proj'] });
    expect(adapterMethod('ia3').resolve(qwen, {})).toMatchObject({ targets: ['q_proj', 'v_proj', 'down_proj'], feedforward: ['down_proj'] });
    expect(() => adapterMethod('prefix')).toThrowError(/choose from lora, dora, ia3, bitfit/);
  });
});

describe('DoRA over a 4-bit (NF4) base', () => {
  it('runs forward and backward with the weight dequantized for the norm: a fresh adapter is the NF4 base exactly; gradients are those of the dequantized weights', async () => {
    const name = 'tiny-llama';
    const g = methodGolden(name);
    const batch = batchOf(g as unknown as Golden);
    const v = g.variants.find((x) => x.name === 'dora-r4')!;
    const { config, reader } = tinyModel(name);
    const f32Base = await uploadBaseModel(gpu(), config, reader);
    const f32Model = await Transformer.create(gpu(), f32Base);
    const base = await uploadBaseModel(gpu(), config, reader, { format: 'nf4' });
    const model = await Transformer.create(gpu(), base);
    const { spec, tensors, grads } = asWebtune(config, reader, v);
    const adapter = adapterFromTensors(gpu(), config, spec, tensors);
    const fresh = await createAdapterOnBase(gpu(), base, spec, 3);
    try {
      // How far NF4 moves this model's logits on its own.
      const nf4Plain = await model.logits(batch);
      const nf4Error = maxAbsDiff(nf4Plain, await f32Model.logits(batch));
      // m = ||dequantized W||: the fresh adapter leaves the NF4 model as it is.
      model.setAdapter(fresh);
      expect(maxAbsDiff(await model.logits(batch), nf4Plain)).toBeLessThan(2e-5);
      model.setAdapter(adapter);
      expect(maxAbsDiff(await model.logits(batch), f32(v.logits))).toBeLessThan(1.5 * nf4Error + 0.05);
      const { loss } = await model.trainStep(batch);
      expect(Math.abs(loss - v.loss)).toBeLessThan(0.1);
      const got = await adapter.readGradients();
      expect([...got.keys()].sort()).toEqual([...grads.keys()].sort());
      // The same step on a dense base holding the NF4 weights' dequantized values (bitsandbytes'
      // layout, CPU reference): the 4-bit path must give the dense path's gradients.
      const linear = /\.(q|k|v|o|gate|up|down)_proj\.weight$/;
      const dequantized = {
        has: (n: string) => reader.has(n),
        read: (n: string) => {
          const t = reader.read(n);
          if (!linear.test(n)) return t;
          return { data: dequantizeNF4(quantizeNF4(t.data, { blockSize: 64, doubleQuant: true, shape: [...t.shape] })), shape: t.shape };
        },
      };
      const denseBase = await uploadBaseModel(gpu(), config, dequantized);
      const dense = await Transformer.create(gpu(), denseBase);
      const twin = adapterFromTensors(gpu(), config, spec, tensors);
      try {
        dense.setAdapter(twin);
        const denseLoss = (await dense.trainStep(batch)).loss;
        expect(Math.abs(loss - denseLoss)).toBeLessThan(1e-4);
        const want = await twin.readGradients();
        for (const [key, t] of want) expect(relativeError(got.get(key)!.data, t.data), key).toBeLessThan(1e-3);
      } finally {
        twin.release();
        dense.release();
        denseBase.release();
      }
    } finally {
      fresh.release();
      adapter.release();
      model.release();
      base.release();
      f32Model.release();
      f32Base.release();
    }
  });

  it('a fresh DoRA adapter starts from the base: m is the base weights\' row norms, so the logits are the base model\'s', async () => {
    const { config, reader } = tinyModel('tiny-gpt2');
    const base = await uploadBaseModel(gpu(), config, reader);
    const model = await Transformer.create(gpu(), base);
    const batch = batchOf(methodGolden('tiny-gpt2') as unknown as Golden);
    const plain = await model.logits(batch);
    const adapter = await createAdapterOnBase(gpu(), base, resolveAdapterSpec(config, 'dora', { rank: 4, alpha: 8 }), 1);
    try {
      model.setAdapter(adapter);
      expect(maxAbsDiff(await model.logits(batch), plain)).toBeLessThan(2e-5);
      expect(() => createAdapter(gpu(), config, adapter.spec())).toThrow(/createAdapterOnBase/);
    } finally {
      adapter.release();
      model.release();
      base.release();
    }
  });
});

describe('adapters webtune trained, loaded by PyTorch (scripts/export_method_adapters.ts, scripts/check_method_adapter.py)', () => {
  for (const name of ['tiny-llama', 'tiny-gpt2'] as const) {
    for (const method of ['dora', 'ia3', 'bitfit', 'lora', 'prompt-tuning', 'p-tuning', 'prefix-tuning', 'bottleneck', 'unipelt'] as const) {
      it(`${name} ${method}: PEFT's formulas in torch give webtune's logits for the exported files`, async () => {
        const dir = `${FIXTURES}webtune-adapters/${name}-${method}/`;
        const torch = JSON.parse(readFileSync(`${dir}pytorch.json`, 'utf8')) as { method: string; loss: number; logits: Encoded };
        expect(torch.method).toBe(method);
        const { config, reader } = tinyModel(name);
        const base = await uploadBaseModel(gpu(), config, reader);
        const model = await Transformer.create(gpu(), base);
        const adapter = importPeftAdapter(gpu(), config, { config: readFileSync(`${dir}adapter_config.json`, 'utf8'), weights: new Uint8Array(readFileSync(`${dir}adapter_model.safetensors`)) });
        try {
          // A P-tuning file holds the encoder's output: it reads back as prompt tuning (the prefix projection's as plain prefix tuning).
          expect(adapter.method).toBe(method === 'p-tuning' ? 'prompt-tuning' : method);
          model.setAdapter(adapter);
          const batch = batchOf(methodGolden(name) as unknown as Golden);
          expect(maxAbsDiff(await model.logits(batch), f32(torch.logits))).toBeLessThan(TOL.f32.logits);
          expect(Math.abs((await model.evaluate(batch)).loss - torch.loss)).toBeLessThan(TOL.f32.loss);
        } finally {
          adapter.release();
          model.release();
          base.release();
        }
      });
    }
  }
});
