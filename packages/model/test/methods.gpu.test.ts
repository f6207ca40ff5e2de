/**
 * IA3, BitFit and layer-selective LoRA on the GPU against plain-PyTorch transcriptions of PEFT's
 * formulas (scripts/make_method_fixtures.py, scripts/peft_methods.py): logits, loss and the
 * gradient of every trainable tensor after one backward pass, in f32 and (where the device has
 * shader-f16) f16 compute; merged weights against PyTorch's merge; PEFT files out and back in
 * bit for bit; a checkpoint of one method offered to another refused.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { useNodeContext } from '../../gpu/test/node-context.js';
import { InvalidArgumentError } from '@webtune/errors';
import {
  adapterFromTensors, adapterMethod, bitfitKey, exportPeftAdapter, mergeAdapterFiles, parseSafetensors, readPeftAdapter, tensorToFloat32,
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
  const variants = g.variants.filter((v) => v.method !== 'dora' && v.name !== 'bitfit-norms' && !(name === 'tiny-qwen2' && v.method === 'bitfit'));

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
    expect(() => adapterMethod('lora').resolve(config, { layers: [2] })).toThrowError(/layer 2 is not a layer of this model \(0 to 1\)/);
    expect(() => adapterMethod('bitfit').resolve(config, { learningRateScale: 0 })).toThrowError(InvalidArgumentError);
    const qwen = tinyModel('tiny-qwen2').config;
    expect(() => adapterMethod('bitfit').resolve(qwen, { targets: ['o_proj'] })).toThrowError(/cannot carry a bias there/);
    expect(adapterMethod('bitfit').resolve(qwen, {})).toMatchObject({ targets: ['q_proj', 'k_proj', 'v_proj'] });
    expect(adapterMethod('ia3').resolve(qwen, {})).toMatchObject({ targets: ['q_proj', 'v_proj', 'down_proj'], feedforward: ['down_proj'] });
    expect(() => adapterMethod('prefix')).toThrowError(/choose from lora, ia3, bitfit/);
  });
});
