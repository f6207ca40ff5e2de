/**
 * PEFT interchange on Dawn:
 * - export -> import gives the same adapter bytes and the same logits, with PEFT's key names,
 *   shapes and adapter_config.json fields (fan_in_fan_out for GPT-2's Conv1D);
 * - adapters trained and exported by webtune (scripts/export_webtune_adapters.ts), merged into
 *   the PyTorch model by scripts/merge_peft_adapter.py as PEFT merges (W + s B A): webtune's
 *   logits with the adapter match PyTorch's merged logits;
 * - webtune's own merged export, loaded as a plain base model, gives the same logits;
 * - bad adapters give typed errors.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ModelFormatError, UnsupportedModelError } from '@webtune/errors';
import { useNodeContext } from '../../gpu/test/node-context.js';
import {
  exportPeftAdapter, importPeftAdapter, LoraAdapter, mergeAdapter, parseSafetensors, readPeftAdapter, resolveLoraConfig,
  tensorToFloat32, Transformer, uploadBaseModel,
} from '../src/index.js';
import { batchOf, f32, FIXTURES, golden, host, maxAbsDiff, tinyModel } from './tiny-models.js';

const gpu = useNodeContext();
/** float32 on both sides (PyTorch merges into W; webtune keeps B A separate). */
const LOGITS_ATOL = 2e-5;

describe.each(['tiny-llama', 'tiny-gpt2'] as const)('%s PEFT adapters', (name) => {
  const g = golden(name);
  const batch = batchOf(g);

  it('export -> import: PEFT names, shapes and config; identical tensors and logits', async () => {
    const { config, reader } = tinyModel(name);
    const base = await uploadBaseModel(gpu(), config, reader);
    const model = await Transformer.create(gpu(), base);
    const variant = g.lora[0]!;
    const lora = resolveLoraConfig(config, { rank: variant.config.r, alpha: variant.config.alpha, targets: variant.config.targets });
    const adapter = LoraAdapter.fromTensors(gpu(), config, lora, new Map(Object.entries(variant.adapters).map(([k, v]) => [k, host(v)])));
    try {
      model.setAdapter(adapter);
      const before = await model.logits(batch);
      const files = await exportPeftAdapter(adapter, { baseModel: name });
      const cfg = JSON.parse(files['adapter_config.json']);
      expect(cfg).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, target_modules: variant.config.targets, fan_in_fan_out: name === 'tiny-gpt2', use_rslora: false, bias: 'none' });
      const st = parseSafetensors(files['adapter_model.safetensors']);
      expect(st.metadata).toEqual({ format: 'pt' });
      expect([...st.tensors.keys()].sort()).toEqual(Object.keys(variant.adapters).sort());
      for (const [key, t] of Object.entries(variant.adapters)) {
        expect(st.tensors.get(key)!.shape, key).toEqual(t.shape);
        expect(tensorToFloat32(st.tensors.get(key)!)).toEqual(f32(t));
      }
      const again = importPeftAdapter(gpu(), config, { config: files['adapter_config.json'], weights: files['adapter_model.safetensors'] });
      try {
        model.setAdapter(again);
        expect(await model.logits(batch)).toEqual(before);
      } finally {
        again.release();
      }
    } finally {
      adapter.release();
      model.release();
      base.release();
    }
  });

  it('a webtune-trained adapter reproduces PyTorch-merged logits; so does webtune\'s merged export', async () => {
    const dir = `${FIXTURES}webtune-adapters/${name}/`;
    const torch = JSON.parse(readFileSync(`${dir}pytorch-merged.json`, 'utf8')) as { logits: Parameters<typeof f32>[0]; inputIds: number[][] };
    expect(torch.inputIds).toEqual(g.inputIds);
    const files = { config: readFileSync(`${dir}adapter_config.json`, 'utf8'), weights: new Uint8Array(readFileSync(`${dir}adapter_model.safetensors`)) };
    const { config, reader } = tinyModel(name);
    const base = await uploadBaseModel(gpu(), config, reader);
    const model = await Transformer.create(gpu(), base);
    const adapter = importPeftAdapter(gpu(), config, files);
    try {
      model.setAdapter(adapter);
      const withAdapter = await model.logits(batch);
      expect(maxAbsDiff(withAdapter, f32(torch.logits))).toBeLessThan(LOGITS_ATOL);

      const { lora, tensors } = readPeftAdapter(config, files);
      const merged = parseSafetensors(mergeAdapter(config, reader, lora, tensors));
      expect([...merged.tensors.keys()].sort()).toEqual(reader.names().sort());
      const mergedBase = await uploadBaseModel(gpu(), config, {
        has: (n) => merged.tensors.has(n),
        read: (n) => ({ data: tensorToFloat32(merged.tensors.get(n)!), shape: merged.tensors.get(n)!.shape }),
      });
      const mergedModel = await Transformer.create(gpu(), mergedBase);
      try {
        expect(maxAbsDiff(await mergedModel.logits(batch), f32(torch.logits))).toBeLessThan(LOGITS_ATOL);
      } finally {
        mergedModel.release();
        mergedBase.release();
      }
    } finally {
      adapter.release();
      model.release();
      base.release();
    }
  });
});

describe('bad adapters', () => {
  const { config } = tinyModel('tiny-llama');
  const dir = `${FIXTURES}webtune-adapters/tiny-llama/`;
  const good = { config: readFileSync(`${dir}adapter_config.json`, 'utf8'), weights: new Uint8Array(readFileSync(`${dir}adapter_model.safetensors`)) };
  const withConfig = (patch: Record<string, unknown>) => ({ ...good, config: JSON.stringify({ ...JSON.parse(good.config), ...patch }) });

  it('refuse unsupported PEFT options and mismatched models with typed errors', () => {
    // DoRA is read now; LoRA tensors under a use_dora config lack the magnitudes, named when imported.
    expect(readPeftAdapter(config, withConfig({ use_dora: true })).spec.method).toBe('dora');
    expect(() => importPeftAdapter(gpu(), config, withConfig({ use_dora: true }))).toThrowError(/lora_magnitude_vector/);
    expect(() => readPeftAdapter(config, withConfig({ use_dora: true, lora_dropout: 0.1 }))).toThrowError(/DoRA with lora_dropout/);
    expect(() => readPeftAdapter(config, withConfig({ peft_type: 'ADALORA' }))).toThrowError(UnsupportedModelError);
    // A prefix-tuning config over LoRA tensors names what is wrong with it.
    expect(() => readPeftAdapter(config, withConfig({ peft_type: 'PREFIX_TUNING' }))).toThrowError(/num_virtual_tokens/);
    // An IA3 config over LoRA tensors: the keys are another method's.
    expect(() => readPeftAdapter(config, withConfig({ peft_type: 'IA3' }))).toThrowError(/lora_A.*IA3/);
    expect(() => readPeftAdapter(config, withConfig({ target_modules: '.*proj' }))).toThrowError(UnsupportedModelError);
    expect(() => readPeftAdapter(config, withConfig({ fan_in_fan_out: true }))).toThrowError(ModelFormatError);
    expect(() => readPeftAdapter(config, { ...good, config: '{not json' })).toThrowError(ModelFormatError);
    expect(() => readPeftAdapter(config, { ...good, weights: good.weights.slice(0, 100) })).toThrowError(ModelFormatError);
  });

  it('refuse an adapter for another rank or another model', () => {
    expect(() => importPeftAdapter(gpu(), config, withConfig({ r: 8 }))).toThrowError(/rank 8/);
    const gpt2 = tinyModel('tiny-gpt2').config;
    expect(() => importPeftAdapter(gpu(), gpt2, withConfig({ fan_in_fan_out: true, target_modules: ['c_attn'] }))).toThrowError(ModelFormatError);
  });
});
