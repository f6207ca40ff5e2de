/**
 * Every adaptation method (DoRA, IA3, BitFit, layer-selective LoRA) through the SDK on Dawn (tiny Llama): train with checkpoints, pause and
 * resume to the same adapter bytes, export and import the adapter files, the merged model, the
 * planner's estimate for layer-selective training, and a checkpoint of one method offered to a
 * run of another (skipped as a typed CheckpointMismatchError, never loaded into the wrong adapter).
 */
import { describe, expect, it } from 'vitest';
import { CheckpointMismatchError, InvalidArgumentError, UnsupportedModelError } from '@webtune/errors';
import { createNodeGpu } from '@webtune/gpu/node';
import { MemoryCheckpointStore } from '@webtune/trainer';
import { nodeDirectorySource } from '../../model/src/node.js';
import { parseModelConfig, parseSafetensors } from '../../model/src/index.js';
import { chapter } from '../../trainer/test/corpus.js';
import { TrainerSession, type AdapterRequest, type TrainRequest } from '../src/index.js';
import { ready, sha } from './method-sessions.js';

const METHODS: Array<{ name: string; adapter: AdapterRequest; tensors: number; peftType: unknown }> = [
  { name: 'DoRA', adapter: { method: 'dora', config: { rank: 4, alpha: 8 } }, tensors: 3 * 2 * 2, peftType: 'LORA' },
  { name: 'IA3', adapter: { method: 'ia3' }, tensors: 6, peftType: 'IA3' },
  { name: 'BitFit (x10 learning rate)', adapter: { method: 'bitfit', config: { learningRateScale: 10 } }, tensors: 14, peftType: null },
  { name: 'LoRA on the top layer', adapter: { method: 'lora', config: { rank: 4, alpha: 8, layers: [1] } }, tensors: 4, peftType: 'LORA' },
];

describe.each(METHODS)('$name through the SDK', ({ adapter, tensors, peftType }) => {
  const run: TrainRequest = { steps: 8, batchSize: 4, learningRate: 2e-2, checkpointEvery: 4, seed: 3, schedule: 'constant', adapter };
  let straight = '';

  it('trains, lowers the held-out loss, exports files that import back to the same generations', async () => {
    const { session } = await ready();
    try {
      const before = await session.evaluate();
      const summary = await session.train({ ...run, runId: 'straight', progressIntervalMs: 0 });
      expect(summary).toMatchObject({ stopped: 'completed', step: 8 });
      const after = await session.evaluate();
      expect(after.loss).toBeLessThan(before.loss);
      const files = await session.exportAdapter();
      straight = await sha(files['adapter_model.safetensors']);
      const config = JSON.parse(files['adapter_config.json']) as Record<string, unknown>;
      expect(config['peft_type']).toBe(peftType);
      expect(config['use_dora'] ?? false).toBe(adapter.method === 'dora');
      expect(parseSafetensors(files['adapter_model.safetensors']).tensors.size).toBe(tensors);
      const text = await session.generate('Call me Ishmael.', { maxNewTokens: 6 });
      await session.importAdapter({ config: files['adapter_config.json'], weights: files['adapter_model.safetensors'] });
      expect(await session.generate('Call me Ishmael.', { maxNewTokens: 6 })).toEqual(text);
      // The merged model carries the adapter: its weights differ from the base where the method trains.
      const merged = await session.exportMerged();
      const weights = parseSafetensors(merged['model.safetensors']);
      const mergedConfig = parseModelConfig(merged['config.json']);
      if (adapter.method === 'bitfit') {
        expect(mergedConfig).toMatchObject({ qkvBias: true, oBias: true, mlpBias: true });
        expect(weights.tensors.has('model.layers.0.mlp.down_proj.bias')).toBe(true);
      } else {
        expect(mergedConfig.qkvBias).toBe(false);
      }
      expect(weights.tensors.size).toBeGreaterThan(0);
      // ONNX export merges LoRA into an ONNX graph; other methods are refused with where to go instead.
      if (adapter.method !== 'lora') await expect(session.exportOnnx()).rejects.toThrow(UnsupportedModelError);
    } finally {
      session.dispose();
    }
  });

  it('pause and resume continue to the same adapter bytes; another method does not pick the checkpoint up', async () => {
    const { session, store } = await ready();
    try {
      const paused = await session.train({ ...run, runId: 'paused', progressIntervalMs: 0 }, (p) => p.step === 3 && session.pause());
      expect(paused).toMatchObject({ stopped: 'paused', step: 3 });
      const other: AdapterRequest = adapter.method === 'ia3' ? { method: 'bitfit' } : { method: 'ia3' };
      // Resuming 'paused' as another method is refused with what differs; the checkpoint stays for the right method.
      const wrong = session.train({ ...run, adapter: other, runId: 'paused', resume: true, steps: 1 });
      await expect(wrong).rejects.toThrow(CheckpointMismatchError);
      await expect(wrong).rejects.toThrow(/the checkpoint trained .* but this run uses/);
      expect((await store.list('paused')).map((c) => c.step)).toEqual([3]);
    } finally {
      session.dispose();
    }
    const again = await ready(store);
    try {
      const resumed = await again.session.train({ ...run, runId: 'paused', resume: true });
      expect(resumed).toMatchObject({ stopped: 'completed', step: 8, resumedFrom: 3 });
      expect(await sha((await again.session.exportAdapter())['adapter_model.safetensors'])).toBe(straight);
    } finally {
      again.session.dispose();
    }
  });
});

describe('choosing a method', () => {
  it('layer-selective training plans less memory, and the request is checked', async () => {
    const { session } = await ready();
    try {
      const all = await session.planTraining({ batchSize: 4, adapter: { method: 'lora', config: { rank: 4 } } });
      const top = await session.planTraining({ batchSize: 4, adapter: { method: 'lora', config: { rank: 4, layers: [1] } } });
      // Two layers: the top one keeps its state and the frozen one a scratch copy (the saving grows with depth; planner.unit.test.ts).
      expect(top.estimate.activations).toBeLessThanOrEqual(all.estimate.activations);
      expect(top.estimate.adapter).toBeLessThan(all.estimate.adapter);
      const ia3 = await session.planTraining({ batchSize: 4, adapter: { method: 'ia3' } });
      expect(ia3.estimate.adapter).toBeLessThan(all.estimate.adapter);
      await expect(session.train({ steps: 1, adapter: { method: 'lora' }, lora: { rank: 4 } })).rejects.toThrow(InvalidArgumentError);
      await expect(session.train({ steps: 1, adapter: { method: 'prefix' } as unknown as AdapterRequest })).rejects.toThrow(/choose from lora, dora, ia3, bitfit, prompt-tuning, p-tuning, prefix-tuning, bottleneck/);
    } finally {
      session.dispose();
    }
  });
});


describe('layer-selective training on the 4-layer demo model', () => {
  it('training the top layer allocates what the planner predicts: state for 1 layer plus one shared copy instead of 4', async () => {
    // A fresh session (and device) per run: a device's buffer pool keeps what an earlier run freed.
    const run = async (layers?: number[]) => {
      const session = new TrainerSession({ gpu: await createNodeGpu(), checkpoints: new MemoryCheckpointStore() });
      try {
        await session.loadModel(nodeDirectorySource(new URL('../../../demo-app/public/models/webtune-demo/', import.meta.url).pathname));
        await session.prepareData({ texts: [chapter(1)] }, { seqLen: 64, heldOut: 0 });
        const adapter: AdapterRequest = { method: 'lora', config: { rank: 8, alpha: 16, ...(layers ? { layers } : {}) } };
        const { estimate } = await session.planTraining({ batchSize: 4, adapter });
        const summary = await session.train({ steps: 2, batchSize: 4, seed: 1, checkpointEvery: 0, adapter });
        return { estimate, summary };
      } finally {
        session.dispose();
      }
    };
    const all = await run();
    const top = await run([3]);
    // Three of the four layers' saved activations (and their adapters) are gone from the plan...
    expect(top.estimate.activations).toBeLessThan(all.estimate.activations * 0.75);
    // ...and from what the run allocates, which the plan covers.
    expect(all.summary.peakBytes - top.summary.peakBytes).toBeGreaterThan(0.8 * (all.estimate.total - top.estimate.total));
    for (const r of [all, top]) expect(r.summary.peakBytes).toBeLessThanOrEqual(r.estimate.total * 1.05 + 2 ** 20);
  });
});
