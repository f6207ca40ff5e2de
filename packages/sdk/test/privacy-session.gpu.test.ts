/**
 * DP-SGD through the SDK on the tiny Llama (Dawn): a budget in, the privacy spent out (summary,
 * progress, checkpoints, the exported adapter_config.json), pause and resume with DP on, the stop at
 * the budget, and the refusals (packed documents, a batch larger than the data, a bad preset).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createNodeGpu } from '@webtune/gpu/node';
import { decodeCheckpoint, estimatePrivacy, MemoryCheckpointStore, noiseMultiplierFor } from '@webtune/trainer';
import { nodeDirectorySource } from '../../model/src/node.js';
import { FIXTURES } from '../../model/test/tiny-models.js';
import { chapter } from '../../trainer/test/corpus.js';
import { TrainerSession, type AdapterRequest, type ProgressEvent } from '../src/index.js';

const sessions: TrainerSession[] = [];
afterEach(() => {
  while (sessions.length) sessions.pop()!.dispose();
});

async function ready(store = new MemoryCheckpointStore()): Promise<{ session: TrainerSession; store: MemoryCheckpointStore; n: number }> {
  const session = new TrainerSession({ gpu: await createNodeGpu(), checkpoints: store });
  sessions.push(session);
  await session.loadModel(nodeDirectorySource(`${FIXTURES}models/tiny-llama`));
  // One document: its windows are the privacy unit.
  const info = await session.prepareData({ text: chapter(1) + chapter(2) }, { seqLen: 32, heldOut: 0.1 });
  return { session, store, n: info.trainSequences };
}

const LORA: AdapterRequest = { method: 'lora', config: { rank: 4, targets: ['q_proj', 'v_proj'] } };

describe('train({ privacy })', () => {
  it('a preset sets the budget, sigma comes from noiseMultiplierFor, and the summary, progress and adapter_config.json say what was spent', async () => {
    const { session, n } = await ready();
    const progress: ProgressEvent[] = [];
    const summary = await session.train({ steps: 3, batchSize: 2, adapter: LORA, progressIntervalMs: 0, privacy: { preset: 'low', samplerSeed: 1 } }, (p) => progress.push(p));
    const delta = 1 / (10 * n);
    const sigma = noiseMultiplierFor({ targetEpsilon: 10, delta, sampleRate: 2 / n, steps: 3 });
    expect(summary.stopped).toBe('completed');
    expect(summary.privacy).toMatchObject({ delta, targetEpsilon: 10, noiseMultiplier: sigma, maxGradNorm: 1, steps: 3, dataSize: n, accountant: 'rdp', mechanism: 'dp-sgd', startedFrom: 'fresh' });
    expect(summary.warnings).toEqual([]);
    expect(summary.privacy!.sampleRate).toBeCloseTo(2 / n, 12);
    const expected = estimatePrivacy({ dataSize: n, batchSize: 2, steps: 3, noiseMultiplier: sigma, delta }).epsilon;
    expect(summary.privacy!.epsilon).toBeCloseTo(expected, 9);
    expect(summary.privacy!.epsilon).toBeLessThanOrEqual(10);
    expect(progress.map((p) => p.privacy!.epsilon)).toEqual([...progress.map((p) => p.privacy!.epsilon)].sort((a, b) => a - b));
    const config = JSON.parse((await session.exportAdapter())['adapter_config.json']) as { peft_type: string; webtune_privacy: Record<string, unknown> };
    expect(config.peft_type).toBe('LORA');
    expect(config.webtune_privacy).toEqual({ ...summary.privacy });
    // Continuing from that adapter: epsilon covers the new run only, and the summary says so.
    const more = await session.train({ steps: 1, batchSize: 2, adapter: LORA, startFrom: 'current', privacy: { preset: 'low', samplerSeed: 2 } });
    expect(more.privacy).toMatchObject({ startedFrom: 'current', steps: 1 });
    expect(more.warnings.join(' ')).toMatch(/epsilon covers this run's steps only/);
  });

  it('a run stopped at step 2 resumes after a reload (a new session) with the privacy spent carried in the checkpoint', async () => {
    const store = new MemoryCheckpointStore();
    const request = { steps: 4, batchSize: 2, adapter: LORA, runId: 'private', checkpointEvery: 2, privacy: { noiseMultiplier: 1.2, samplerSeed: 4 } };
    const first = await ready(store);
    await first.session.train({ ...request, steps: 2 });
    const meta = (await store.list('private'))[0]!;
    const decoded = await decodeCheckpoint(await store.get(meta.id));
    expect(decoded.meta.schema).toBe(5);
    expect(decoded.meta.privacy!.accountant).toEqual([expect.objectContaining({ noiseMultiplier: 1.2, steps: 2 })]);

    const second = await ready(store);
    const summary = await second.session.train({ ...request, resume: true });
    expect(summary.resumedFrom).toBe(2);
    expect(summary.step).toBe(4);
    const n = second.n;
    expect(summary.privacy!.steps).toBe(4);
    expect(summary.privacy!.epsilon).toBeCloseTo(estimatePrivacy({ dataSize: n, batchSize: 2, steps: 4, noiseMultiplier: 1.2, delta: 1 / (10 * n) }).epsilon, 9);
    // Without privacy the private checkpoint is refused, not silently continued without DP.
    const third = await ready(store);
    await expect(third.session.train({ ...request, privacy: undefined, resume: true })).rejects.toThrow(/DP-SGD run/);
  });

  it('stops at the budget with a checkpoint and says so', async () => {
    const { session, store } = await ready();
    const summary = await session.train({ steps: 50, batchSize: 2, adapter: LORA, runId: 'budget', privacy: { noiseMultiplier: 0.6, targetEpsilon: 2, samplerSeed: 2 } });
    expect(summary.stopped).toBe('budget-exhausted');
    expect(summary.step).toBeLessThan(50);
    expect(summary.privacy!.epsilon).toBeLessThanOrEqual(2);
    expect(summary.checkpoint!.step).toBe(summary.step);
    expect((await store.list('budget'))[0]!.privacy).toBeDefined();
  });

  it('refuses packed documents, a batch larger than the data and unknown presets, with what to do', async () => {
    const { session } = await ready();
    await expect(session.train({ steps: 1, privacy: { preset: 'extreme' as 'low' } })).rejects.toThrow(/not one of low, medium, high, veryHigh/);
    await expect(session.train({ steps: 1, batchSize: 10_000, privacy: { preset: 'low' } })).rejects.toThrow(/add data or lower the batch size/);
    await expect(session.train({ steps: 1, privacy: {} })).rejects.toThrow(/budget .* or a noiseMultiplier/);
    await session.prepareData({ texts: [chapter(1), chapter(2)] }, { seqLen: 32 });
    await expect(session.train({ steps: 1, privacy: { preset: 'low' } })).rejects.toThrow(/packs 2 documents/);
  });
});
