/**
 * Prompt tuning (TEXT init), P-tuning, prefix tuning with projection, Houlsby bottleneck
 * adapters and UniPELT through the SDK on Dawn (tiny Llama): train with checkpoints, generate with the KV cache,
 * export the adapter files (PEFT's for the prompt methods) and import them back to the same
 * generations, pause and resume to the same adapter bytes, the planner's estimate covering what the
 * run allocates, and the merged exports refused with where to go instead.
 */
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, UnsupportedModelError } from '@webtune/errors';
import { parseSafetensors } from '../../model/src/index.js';
import type { AdapterRequest, TrainRequest } from '../src/index.js';
import { ready, sha } from './method-sessions.js';

const METHODS: Array<{ name: string; adapter: AdapterRequest; saved: string[] | RegExp; type: Record<string, unknown>; importedAs: string }> = [
  { name: 'prompt tuning (TEXT init)', adapter: { method: 'prompt-tuning', config: { numVirtualTokens: 6, initText: 'Call me Ishmael' } }, saved: ['prompt_embeddings'], type: { peft_type: 'PROMPT_TUNING', prompt_tuning_init: 'TEXT', prompt_tuning_init_text: 'Call me Ishmael' }, importedAs: 'PROMPT_TUNING' },
  { name: 'P-tuning', adapter: { method: 'p-tuning', config: { numVirtualTokens: 5, encoderHiddenSize: 32 } }, saved: ['prompt_embeddings'], type: { peft_type: 'P_TUNING', encoder_reparameterization_type: 'MLP' }, importedAs: 'PROMPT_TUNING' },
  { name: 'prefix tuning with projection', adapter: { method: 'prefix-tuning', config: { numVirtualTokens: 7, prefixProjection: true } }, saved: ['prompt_embeddings'], type: { peft_type: 'PREFIX_TUNING', prefix_projection: true, token_dim: 32 }, importedAs: 'PREFIX_TUNING' },
  { name: 'Houlsby bottleneck adapters', adapter: { method: 'bottleneck', config: { bottleneckSize: 8 } }, saved: /^model\.layers\.\d\.(attention|output)_adapter\.adapter_(down\.0|up)\.(weight|bias)$/, type: { webtune_method: 'bottleneck', variant: 'houlsby' }, importedAs: 'bottleneck' },
  { name: 'UniPELT', adapter: { method: 'unipelt', config: { rank: 4, alpha: 8, numVirtualTokens: 4, bottleneckSize: 8 } }, saved: /^(prefix\.embedding\.weight|model\.layers\.\d\.(self_attn\.[qv]_proj\.lora_(A|B|gate)|prefix_gate|output_adapter\.(adapter_down\.0|adapter_up|gate))\.(weight|bias))$/, type: { webtune_method: 'unipelt', r: 4 }, importedAs: 'unipelt' },
];

describe.each(METHODS)('$name through the SDK', ({ adapter, saved, type, importedAs }) => {
  const run: TrainRequest = { steps: 8, batchSize: 4, learningRate: 2e-2, checkpointEvery: 4, seed: 3, schedule: 'constant', adapter };
  let straight = '';

  it('trains, lowers the held-out loss, exports files that import back to the same generations; merged exports are refused', async () => {
    const { session } = await ready();
    try {
      const plan = await session.planTraining({ batchSize: 4, adapter });
      // Training first: the device's buffer pool keeps what an earlier call freed, and the base model's evaluation has other shapes.
      const summary = await session.train({ ...run, runId: 'straight', progressIntervalMs: 0 });
      expect(summary).toMatchObject({ stopped: 'completed', step: 8 });
      expect(summary.peakBytes).toBeLessThanOrEqual(plan.estimate.total * 1.05 + 2 ** 20);
      const before = await session.evaluate({ useAdapter: false });
      const after = await session.evaluate();
      expect(after.loss).toBeLessThan(before.loss);
      const files = await session.exportAdapter();
      straight = await sha(files['adapter_model.safetensors']);
      expect(JSON.parse(files['adapter_config.json'])).toMatchObject(type);
      const keys = [...parseSafetensors(files['adapter_model.safetensors']).tensors.keys()];
      if (Array.isArray(saved)) expect(keys).toEqual(saved);
      else expect(keys.filter((k) => !saved.test(k))).toEqual([]);
      const text = await session.generate('Call me Ishmael.', { maxNewTokens: 6 });
      await session.importAdapter({ config: files['adapter_config.json'], weights: files['adapter_model.safetensors'] });
      const reexported = JSON.parse((await session.exportAdapter())['adapter_config.json']) as Record<string, unknown>;
      expect(reexported['peft_type'] ?? reexported['webtune_method']).toBe(importedAs);
      expect(await session.generate('Call me Ishmael.', { maxNewTokens: 6 })).toEqual(text);
      await expect(session.exportMerged()).rejects.toThrow(UnsupportedModelError);
      await expect(session.exportOnnx()).rejects.toThrow(/exportAdapter/);
    } finally {
      session.dispose();
    }
  });

  it('pause and resume continue to the same adapter bytes', async () => {
    const { session, store } = await ready();
    try {
      const paused = await session.train({ ...run, runId: 'paused', progressIntervalMs: 0 }, (p) => p.step === 3 && session.pause());
      expect(paused).toMatchObject({ stopped: 'paused', step: 3 });
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

describe('the context is checked before the first step', () => {
  it('sequences that with the virtual tokens would not fit the context are refused when the run starts, with the length that would', async () => {
    const { session, store } = await ready();
    try {
      // seqLen 32 + 240 virtual tokens > the tiny Llama's 256 positions.
      const run = session.train({ steps: 2, batchSize: 2, runId: 'too-long', adapter: { method: 'prompt-tuning', config: { numVirtualTokens: 240 } } });
      await expect(run).rejects.toThrow(InvalidArgumentError);
      await expect(run).rejects.toThrow(/seqLen <= 16/);
      expect(await store.list('too-long')).toEqual([]);
    } finally {
      session.dispose();
    }
  });
});
