/**
 * The SDK without a worker (createTrainer({ inline: true }), as Node scripts use it) on Dawn:
 * load -> data -> train with checkpoints -> pause/resume -> generate -> export; exact resume;
 * and a lost GPU device recovered from the last checkpoint on a new device.
 */
import { describe, expect, it } from 'vitest';
import { CheckpointCorruptError, DeviceLostError, InvalidArgumentError } from '@webtune/errors';
import { createNodeGpu } from '@webtune/gpu/node';
import { nodeDirectorySource } from '../../model/src/node.js';
import { FIXTURES } from '../../model/test/tiny-models.js';
import { parseSafetensors } from '../../model/src/index.js';
import { MemoryCheckpointStore } from '@webtune/trainer';
import { createTrainer, TrainerSession, type TrainRequest } from '../src/index.js';
import { chapter } from '../../trainer/test/corpus.js';

const RUN: TrainRequest = {
  steps: 12, batchSize: 4, learningRate: 5e-3, checkpointEvery: 6, seed: 3,
  lora: { rank: 4, alpha: 8, dropout: 0.1, targets: ['q_proj', 'v_proj', 'down_proj'] },
};

async function sha(bytes: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest('SHA-256', bytes as unknown as ArrayBuffer);
  return Buffer.from(d).toString('hex');
}

async function ready(store = new MemoryCheckpointStore()) {
  const gpu = await createNodeGpu();
  const session = new TrainerSession({ gpu, checkpoints: store });
  await session.loadModel(nodeDirectorySource(`${FIXTURES}models/tiny-llama`));
  await session.prepareData({ texts: [chapter(1), chapter(2)] }, { seqLen: 32 });
  return { session, store, gpu };
}

describe('TrainerSession in Node', () => {
  let straightSha = '';

  it('trains with periodic checkpoints, evaluates, generates and exports PEFT files', async () => {
    const { session, store } = await ready();
    try {
      const before = await session.generate('Call me Ishmael.', { maxNewTokens: 8 });
      const events: number[] = [];
      const summary = await session.train({ ...RUN, runId: 'a', progressIntervalMs: 0 }, (p) => events.push(p.step));
      expect(summary).toMatchObject({ runId: 'a', stopped: 'completed', step: 12, totalSteps: 12, resumedFrom: undefined });
      expect(events).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
      expect(summary.heldOutLoss).toBeGreaterThan(0);
      expect((await store.list('a')).map((c) => c.step)).toEqual([12, 6]);
      const out = await session.generate('Call me Ishmael.', { maxNewTokens: 5 });
      expect(out.tokens).toHaveLength(5);
      // The base model alone answers as it did before training; the adapter is still there after.
      const after = await session.generate('Call me Ishmael.', { maxNewTokens: 8 });
      expect(after.tokens).not.toEqual(before.tokens);
      expect((await session.generate('Call me Ishmael.', { maxNewTokens: 8, useAdapter: false })).tokens).toEqual(before.tokens);
      expect((await session.generate('Call me Ishmael.', { maxNewTokens: 8 })).tokens).toEqual(after.tokens);
      const files = await session.exportAdapter();
      expect(JSON.parse(files['adapter_config.json']).target_modules).toEqual(['q_proj', 'v_proj', 'down_proj']);
      expect(parseSafetensors(files['adapter_model.safetensors']).tensors.size).toBe(2 * 2 * 3);
      straightSha = await sha(files['adapter_model.safetensors']);
    } finally {
      session.dispose();
    }
  });

  it('pause writes a checkpoint; resume continues to the same adapter bytes', async () => {
    const { session, store } = await ready();
    try {
      const paused = await session.train({ ...RUN, runId: 'b', progressIntervalMs: 0 }, (p) => p.step === 4 && session.pause());
      expect(paused).toMatchObject({ stopped: 'paused', step: 4 });
      expect(paused.checkpoint?.step).toBe(4);
      await expect(session.train({ ...RUN, runId: 'c' })).resolves.toBeDefined(); // a new run replaces the paused one
      expect((await store.list('b')).map((c) => c.step)).toEqual([4]);
      const resumed = await session.train({ ...RUN, runId: 'b', resume: true });
      expect(resumed).toMatchObject({ stopped: 'completed', step: 12, resumedFrom: 4 });
      expect(await sha((await session.exportAdapter())['adapter_model.safetensors'])).toBe(straightSha);
      await expect(session.resume()).rejects.toThrowError(/has finished all 12 steps/);
    } finally {
      session.dispose();
    }
  });

  it('a lost device is reported; training resumes from the last checkpoint on a new device, exactly', async () => {
    const { session } = await ready();
    try {
      await session.train({ ...RUN, runId: 'd', progressIntervalMs: 0 }, (p) => p.step === 7 && session.pause());
      // The device goes away (a driver reset or a browser reclaiming the GPU does the same).
      (session as unknown as { ctx: { device: GPUDevice } }).ctx.device.destroy();
      await new Promise((r) => setTimeout(r, 50));
      expect(session.status().deviceLost).toMatch(/lost/i);
      await expect(session.generate('x', { maxNewTokens: 1 })).rejects.toThrowError(DeviceLostError);
      await session.recoverDevice();
      const resumed = await session.train({ ...RUN, runId: 'd', resume: true });
      expect(resumed).toMatchObject({ stopped: 'completed', step: 12, resumedFrom: 7 });
      expect(await sha((await session.exportAdapter())['adapter_model.safetensors'])).toBe(straightSha);
    } finally {
      session.dispose();
    }
  });

  it('a checkpoint exported to a file imports into another store and restores the same adapter', async () => {
    const { session, store } = await ready();
    const other = await ready();
    try {
      await session.train({ ...RUN, runId: 'e', steps: 6, checkpointEvery: 0 });
      const [meta] = await store.list('e');
      const file = await session.exportCheckpoint(meta!.id);
      const adapterBefore = await sha((await session.exportAdapter())['adapter_model.safetensors']);
      const imported = await other.session.importCheckpoint(file);
      expect(imported).toMatchObject({ id: meta!.id, step: 6, sha256: meta!.sha256 });
      await other.session.restoreCheckpoint(meta!.id);
      expect(await sha((await other.session.exportAdapter())['adapter_model.safetensors'])).toBe(adapterBefore);
      const damaged = file.slice();
      damaged[damaged.length - 5]! ^= 1;
      await expect(other.session.importCheckpoint(damaged)).rejects.toThrowError(CheckpointCorruptError);
    } finally {
      session.dispose();
      other.session.dispose();
    }
  });

  it('createTrainer({ inline: true }) is the same API; misuse gets clear errors', async () => {
    const t = await createTrainer({ inline: true, gpu: await createNodeGpu() });
    try {
      await expect(t.train({ steps: 1 })).rejects.toThrowError(/No model is loaded: call loadModel\(\) first/);
      await t.loadModel(nodeDirectorySource(`${FIXTURES}models/tiny-gpt2`));
      await expect(t.train({ steps: 1 })).rejects.toThrowError(/No training data: call prepareData\(\) first/);
      await expect(t.prepareData({ text: '   ' })).rejects.toThrowError(InvalidArgumentError);
      await expect(t.prepareData({ text: 'too short' }, { seqLen: 64 })).rejects.toThrowError(/fewer than one sequence of 65/);
      await t.prepareData({ text: chapter(3) }, { seqLen: 32 });
      const plan = await t.planTraining({ batchSize: 2 });
      expect(plan.fits).toBe(true);
      expect(plan.estimate.total).toBe(plan.estimate.weights + plan.estimate.adapter + plan.estimate.optimizer + plan.estimate.activations);
      const tooBig = await t.planTraining({ batchSize: 2, memoryBudgetBytes: 100_000 });
      expect(tooBig.fits).toBe(false);
      expect(tooBig.advice).toMatch(/Lower: .*sequence length/);
      const s = await t.train({ steps: 2, batchSize: 2, checkpointEvery: 0 });
      expect(s.stopped).toBe('completed');
      await expect(t.restoreCheckpoint('nope@000000001')).rejects.toThrowError(/nope@000000001/);
    } finally {
      await t.dispose();
    }
  });
});

describe('federated hooks', () => {
  it("startFrom 'current' trains from an imported adapter; FedProx pulls the result towards it", async () => {
    const { session } = await ready();
    try {
      await session.train({ ...RUN, runId: 'g0', steps: 4, checkpointEvery: 0 });
      const start = await session.exportAdapter();
      const tensors = (files: { 'adapter_model.safetensors': Uint8Array }) =>
        [...parseSafetensors(files['adapter_model.safetensors']).tensors.values()].map((t) => new Float32Array(t.bytes.slice().buffer));
      const distance = (a: Float32Array[], b: Float32Array[]) => Math.sqrt(a.reduce((s, t, i) => s + t.reduce((u, v, j) => u + (v - b[i]![j]!) ** 2, 0), 0));
      const from = tensors(start);
      const runFrom = async (mu: number) => {
        await session.importAdapter({ config: start['adapter_config.json'], weights: start['adapter_model.safetensors'].slice() });
        await session.train({ ...RUN, runId: `prox${mu}`, steps: 6, checkpointEvery: 0, startFrom: 'current', proximalMu: mu, learningRate: 2e-2 });
        return tensors(await session.exportAdapter());
      };
      const plain = await runFrom(0);
      const prox = await runFrom(50);
      // Starting from the imported adapter, not a fresh one: B is non-zero from the start.
      expect(distance(plain, from)).toBeGreaterThan(0);
      expect(distance(prox, from)).toBeLessThan(distance(plain, from));
      await expect(new TrainerSession({}).train({ steps: 1, startFrom: 'current' })).rejects.toThrowError(/No model is loaded/);
    } finally {
      session.dispose();
    }
  });
});
