/**
 * The whole model on Dawn against PyTorch (scripts/make_tiny_models.py, scripts/tiny_models.py):
 * logits and loss of the base model, and with a LoRA adapter on every linear the logits, loss,
 * gradients of every lora_A / lora_B after one backward pass, and greedy tokens through the KV
 * cache. float32 on both sides; differences come from summation order only.
 */
import { describe, expect, it } from 'vitest';
import { useNodeContext } from '../../gpu/test/node-context.js';
import { ModelFileMissingError, ModelFormatError } from '@webtune/errors';
import { generate, loadModelFiles, LoraAdapter, resolveLoraConfig, Transformer, uploadBaseModel, weightReader } from '../src/index.js';
import { nodeDirectorySource } from '../src/node.js';
import { batchOf, f32, FIXTURES, golden, host, maxAbsDiff, MODELS, relativeError, tinyModel } from './tiny-models.js';

const gpu = useNodeContext();

/** Logits: absolute, in a range of about +-10. */
const LOGITS_ATOL = 2e-5;
const LOSS_ATOL = 1e-5;
/** Gradients: max error relative to the largest gradient of the tensor. */
const GRAD_RTOL = 2e-5;

describe.each(MODELS)('%s against PyTorch', (name) => {
  const g = golden(name);
  const batch = batchOf(g);

  it('base model: logits, loss and greedy tokens', async () => {
    const { config, reader } = tinyModel(name);
    const base = await uploadBaseModel(gpu(), config, reader);
    const model = await Transformer.create(gpu(), base);
    try {
      const logits = await model.logits(batch);
      expect(maxAbsDiff(logits, f32(g.logits))).toBeLessThan(LOGITS_ATOL);
      const { loss } = await model.evaluate(batch);
      expect(Math.abs(loss - g.loss)).toBeLessThan(LOSS_ATOL);
      expect(await generate(model, g.greedyPrompt, { maxNewTokens: g.greedyBase.length, stopTokens: [] })).toEqual(g.greedyBase);
    } finally {
      model.release();
      base.release();
    }
  });

  for (const variant of g.lora) {
    it(`LoRA ${variant.name}: logits, loss, every A/B gradient, greedy tokens`, async () => {
      const { config, reader } = tinyModel(name);
      const base = await uploadBaseModel(gpu(), config, reader);
      const model = await Transformer.create(gpu(), base);
      const lora = resolveLoraConfig(config, { rank: variant.config.r, alpha: variant.config.alpha, targets: variant.config.targets, rslora: variant.config.useRslora });
      const adapter = LoraAdapter.fromTensors(gpu(), config, lora, new Map(Object.entries(variant.adapters).map(([k, v]) => [k, host(v)])));
      try {
        expect([...adapter.params.keys()]).toEqual(variant.config.modules);
        model.setAdapter(adapter);
        expect(maxAbsDiff(await model.logits(batch), f32(variant.logits))).toBeLessThan(LOGITS_ATOL);
        const { loss } = await model.trainStep(batch);
        expect(Math.abs(loss - variant.loss)).toBeLessThan(LOSS_ATOL);
        const grads = await adapter.readGradients();
        expect([...grads.keys()].sort()).toEqual(Object.keys(variant.grads).sort());
        for (const [key, expected] of Object.entries(variant.grads)) {
          const err = relativeError(grads.get(key)!.data, f32(expected));
          expect(err, key).toBeLessThan(GRAD_RTOL);
        }
        expect(await generate(model, g.greedyPrompt, { maxNewTokens: variant.greedy.length, stopTokens: [] })).toEqual(variant.greedy);
      } finally {
        adapter.release();
        model.release();
        base.release();
      }
    });
  }
});

describe('loading through loadModelFiles', () => {
  it('the sharded tiny Llama (two shards + index) gives the golden logits', async () => {
    const files = await loadModelFiles(nodeDirectorySource(`${FIXTURES}models/tiny-llama-sharded`));
    expect(files.files).toContain('model-00002-of-00002.safetensors');
    const base = await uploadBaseModel(gpu(), files.config, weightReader(files));
    const model = await Transformer.create(gpu(), base);
    try {
      const g = golden('tiny-llama');
      expect(maxAbsDiff(await model.logits(batchOf(g)), f32(g.logits))).toBeLessThan(LOGITS_ATOL);
    } finally {
      model.release();
      base.release();
    }
  });

  it('refuses weights that do not fit the config, contain NaN, or miss a tensor, and frees what it uploaded', async () => {
    const { config, reader } = tinyModel('tiny-llama');
    const live = gpu().memory.liveBytes;
    const patched = (name: string, f: (t: { data: Float32Array; shape: readonly number[] }) => { data: Float32Array; shape: readonly number[] } | undefined) => ({
      has: (n: string) => (n === name ? f(reader.read(n)) !== undefined : reader.has(n)),
      read: (n: string) => (n === name ? f(reader.read(n))! : reader.read(n)),
    });
    const q = 'model.layers.1.self_attn.q_proj.weight';
    await expect(uploadBaseModel(gpu(), config, patched(q, (t) => ({ data: t.data.subarray(0, 64 * 32), shape: [32, 64] })))).rejects.toThrowError(
      /q_proj.weight: shape \[32, 64\] does not match the config, which implies \[64, 64\]/,
    );
    await expect(uploadBaseModel(gpu(), config, patched(q, (t) => ({ data: t.data.map((v, i) => (i === 5 ? NaN : v)), shape: t.shape })))).rejects.toThrowError(ModelFormatError);
    await expect(uploadBaseModel(gpu(), config, patched(q, () => undefined))).rejects.toThrowError(ModelFileMissingError);
    await expect(uploadBaseModel(gpu(), config, patched(q, () => undefined), { format: 'nf4' })).rejects.toThrowError(/the weights have no tensor "model.layers.1.self_attn.q_proj.weight"/);
    // Everything uploaded before the failure went back to the pool.
    expect(gpu().memory.snapshot().byLabel['embed_tokens']?.liveBytes ?? 0).toBe(0);
    expect(gpu().memory.liveBytes).toBeGreaterThanOrEqual(live);
  });

  it('refuses token ids outside the vocabulary and batches longer than the context', async () => {
    const { config, reader } = tinyModel('tiny-llama');
    const base = await uploadBaseModel(gpu(), config, reader);
    const model = await Transformer.create(gpu(), base);
    try {
      await expect(model.logits({ ids: Uint32Array.of(1, 2, 512), batch: 1, seq: 3 })).rejects.toThrowError(/Token id 512 at position 2 is outside the vocabulary \(size 512\)/);
      await expect(model.logits({ ids: new Uint32Array(257), batch: 1, seq: 257 })).rejects.toThrowError(/exceeds the model's max_position_embeddings \(256\)/);
      await expect(model.trainStep({ ids: Uint32Array.of(1, 2), targets: Uint32Array.of(3, 4), batch: 1, seq: 2 })).rejects.toThrowError(/needs a LoRA adapter/);
    } finally {
      model.release();
      base.release();
    }
  });
});

/**
 * Half-precision activations (shader-f16, which lavapipe has): every kernel stores f16 and
 * computes in f32, LoRA keeps f32 master weights and gradients. Against the same float32
 * PyTorch goldens, so the tolerances are f16's: about 3 decimal digits per stored value,
 * compounded over the layers. Measured: logits within 3.4e-3, loss 2.2e-4, gradients 2e-3 relative.
 */
describe.each(MODELS)('%s with f16 activations', (name) => {
  const g = golden(name);
  const batch = batchOf(g);
  const F16_LOGITS_ATOL = 1e-2;
  const F16_LOSS_ATOL = 1e-3;
  const F16_GRAD_RTOL = 1e-2;

  it('logits, loss, LoRA gradients and greedy tokens stay within f16 tolerance of PyTorch f32', async () => {
    expect(gpu().features.shaderF16).toBe(true);
    const { config, reader } = tinyModel(name);
    const base = await uploadBaseModel(gpu(), config, reader, { dtype: 'f16' });
    const model = await Transformer.create(gpu(), base);
    const variant = g.lora[0]!;
    const lora = resolveLoraConfig(config, { rank: variant.config.r, alpha: variant.config.alpha, targets: variant.config.targets });
    const adapter = LoraAdapter.fromTensors(gpu(), config, lora, new Map(Object.entries(variant.adapters).map(([k, v]) => [k, host(v)])));
    try {
      expect(base.embed.dtype).toBe('f16');
      expect(maxAbsDiff(await model.logits(batch), f32(g.logits))).toBeLessThan(F16_LOGITS_ATOL);
      model.setAdapter(adapter);
      expect(maxAbsDiff(await model.logits(batch), f32(variant.logits))).toBeLessThan(F16_LOGITS_ATOL);
      const { loss } = await model.trainStep(batch);
      expect(Math.abs(loss - variant.loss)).toBeLessThan(F16_LOSS_ATOL);
      const grads = await adapter.readGradients();
      for (const [key, expected] of Object.entries(variant.grads)) {
        expect(relativeError(grads.get(key)!.data, f32(expected)), key).toBeLessThan(F16_GRAD_RTOL);
      }
      expect(await generate(model, g.greedyPrompt, { maxNewTokens: variant.greedy.length, stopTokens: [] })).toEqual(variant.greedy);
    } finally {
      adapter.release();
      model.release();
      base.release();
    }
  });
});
