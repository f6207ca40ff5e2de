/**
 * DP-SGD in the training loop on Dawn (tiny Llama, Moby-Dick windows): what the per-example
 * reference test (dp-sgd.gpu.test.ts) cannot show.
 *  - sigma = 0 and a huge C: a DP step is plain SGD on the same examples, bit for bit (the clipped
 *    sum with factor 1 and no noise is the plain accumulation, divided by the same batch size);
 *  - exact resume with DP on: the sampler's state and the accountant come back from the state, so
 *    a resumed run draws the same Poisson batches; with sigma = 0 the adapter is bit-identical to
 *    the uninterrupted run's, with sigma > 0 the noise is fresh CSPRNG output (never replayed), so
 *    two runs from the same state differ;
 *  - the noise comes from crypto.getRandomValues (Math.random is never called);
 *  - the budget: the run stops before the step that would exceed it, and says so.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { useNodeContext } from '../../gpu/test/node-context.js';
import { createAdapter, Transformer, uploadBaseModel, type Adapter, type AdapterSpec, type HostTensor } from '../../model/src/index.js';
import { tinyModel } from '../../model/test/tiny-models.js';
import { AdamW, batchFromWindows, checkpointBudgetSpent, estimatePrivacy, packTokens, PerExampleClipper, tokenizeDocuments, Trainer, type DpSgdConfig, type JsonObject, type StepProgress, type TrainerState } from '../src/index.js';
import { chapter, tinyTokenizer } from './corpus.js';

const gpu = useNodeContext();
const SEQ = 16;
const tokenizer = tinyTokenizer();
const rows = packTokens(tokenizeDocuments((t) => tokenizer.encode(t), [1].map(chapter), tokenizer.eosTokenId), SEQ).slice(0, 40);

const SPECS: AdapterSpec[] = [
  { method: 'lora', config: { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj', 'down_proj'] } } as AdapterSpec,
  { method: 'ia3' } as AdapterSpec,
  { method: 'prefix-tuning', config: { numVirtualTokens: 4 } } as AdapterSpec,
];

const cleanup: Array<() => void> = [];
afterEach(() => {
  while (cleanup.length) cleanup.pop()!();
  vi.restoreAllMocks();
});

async function setup(spec: AdapterSpec, seed = 11): Promise<{ model: Transformer; adapter: Adapter }> {
  const { config, reader } = tinyModel('tiny-llama');
  const base = await uploadBaseModel(gpu(), config, reader, { format: 'f32' });
  const model = await Transformer.create(gpu(), base);
  const adapter = createAdapter(gpu(), config, spec, seed);
  cleanup.push(() => {
    adapter.release();
    model.release();
    base.release();
  });
  return { model, adapter };
}

function expectSameTensors(a: Map<string, HostTensor>, b: Map<string, HostTensor>): void {
  expect([...a.keys()]).toEqual([...b.keys()]);
  for (const [k, t] of a) expect(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).equals(Buffer.from(b.get(k)!.data.buffer, b.get(k)!.data.byteOffset, b.get(k)!.data.byteLength)), k).toBe(true);
}

function differs(a: Map<string, HostTensor>, b: Map<string, HostTensor>): boolean {
  return [...a].some(([k, t]) => t.data.some((v, i) => v !== b.get(k)!.data[i]));
}

describe('DP-SGD with sigma = 0 and C huge is plain SGD on the same examples', () => {
  for (const spec of SPECS) {
    it(`${spec.method}: one AdamW update, bit for bit`, async () => {
      const picked = [rows[3]!, rows[17]!, rows[29]!];
      const plain = await setup(spec);
      const opt = await AdamW.create(gpu(), plain.adapter, { maxGradNorm: Infinity });
      cleanup.push(() => opt.release());
      plain.model.setAdapter(plain.adapter);
      for (const r of picked) await plain.model.trainStep(batchFromWindows([r]));
      await opt.update(1e-2, picked.length);

      const priv = await setup(spec);
      const opt2 = await AdamW.create(gpu(), priv.adapter, { maxGradNorm: Infinity });
      const clipper = await PerExampleClipper.create(gpu(), priv.adapter, { maxGradNorm: 1e30 });
      cleanup.push(() => {
        opt2.release();
        clipper.release();
      });
      priv.model.setAdapter(priv.adapter);
      for (const r of picked) await clipper.add(priv.model, r);
      clipper.commit();
      await opt2.update(1e-2, picked.length);

      expectSameTensors(await priv.adapter.read(), await plain.adapter.read());
    });
  }
});

describe('DP-SGD in Trainer.train', () => {
  const privacy: DpSgdConfig = { noiseMultiplier: 0, maxGradNorm: 1e30, delta: 1e-3, samplerSeed: 5 };
  const config = { steps: 4, batchSize: 4, seqLen: SEQ, learningRate: 1e-2, seed: 3 };

  async function trainFrom(spec: AdapterSpec, dp: DpSgdConfig, state?: TrainerState, steps = config.steps) {
    const { model, adapter } = await setup(spec);
    const trainer = await Trainer.create(gpu(), model, adapter, { ...config, steps, privacy: dp });
    cleanup.push(() => trainer.release());
    if (state) trainer.restore(state);
    const progress: StepProgress[] = [];
    let saved: TrainerState | undefined;
    const result = await trainer.train(rows, { onStep: (p) => progress.push(p), checkpointEvery: 2, onCheckpoint: async (s) => { saved ??= s; } });
    return { trainer, adapter, result, progress, saved, final: await adapter.read(), state: await trainer.state(result.cursor) };
  }

  it('reports the Poisson batch, the clipped share and epsilon every step, as the accountant counts them', async () => {
    const dp = { ...privacy, noiseMultiplier: 1.1, maxGradNorm: 0.5 };
    const { progress, result } = await trainFrom(SPECS[0]!, dp);
    expect(progress).toHaveLength(4);
    const q = config.batchSize / rows.length;
    progress.forEach((p, i) => {
      expect(p.privacy!.sampleRate).toBeCloseTo(q, 12);
      expect(p.privacy!.epsilon).toBeCloseTo(estimatePrivacy({ dataSize: rows.length, batchSize: config.batchSize, steps: i + 1, noiseMultiplier: 1.1, delta: dp.delta }).epsilon, 9);
      expect(p.privacy!.clippedFraction).toBeGreaterThanOrEqual(0);
      expect(p.privacy!.clippedFraction).toBeLessThanOrEqual(1);
    });
    // Some example was sampled and at C = 0.5 the tiny model's per-example norms are clipped.
    expect(progress.some((p) => p.privacy!.batchSize > 0 && p.privacy!.clippedFraction > 0)).toBe(true);
    expect(result.privacy!.epsilon).toBe(progress.at(-1)!.privacy!.epsilon);
  });

  it('sigma = 0: a run resumed from its step-2 state ends bit-identical to the uninterrupted run', async () => {
    const whole = await trainFrom(SPECS[0]!, privacy);
    expect(whole.saved!.step).toBe(2);
    expect(whole.saved!.privacy!.accountant).toEqual([{ noiseMultiplier: 0, sampleRate: config.batchSize / rows.length, steps: 2 }]);
    const resumed = await trainFrom(SPECS[0]!, privacy, whole.saved);
    expect(resumed.progress.map((p) => p.step)).toEqual([3, 4]);
    expect(resumed.progress.map((p) => p.privacy!.batchSize)).toEqual(whole.progress.slice(2).map((p) => p.privacy!.batchSize));
    expectSameTensors(resumed.final, whole.final);
    expect(resumed.state.privacy).toEqual(whole.state.privacy);
  });

  it('sigma > 0: resumed runs draw the same batches but fresh noise, and never call Math.random', async () => {
    const dp = { ...privacy, noiseMultiplier: 0.8, maxGradNorm: 1 };
    const random = vi.spyOn(Math, 'random');
    const whole = await trainFrom(SPECS[0]!, dp);
    const a = await trainFrom(SPECS[0]!, dp, whole.saved);
    const b = await trainFrom(SPECS[0]!, dp, whole.saved);
    expect(random).not.toHaveBeenCalled();
    expect(a.progress.map((p) => p.privacy!.batchSize)).toEqual(whole.progress.slice(2).map((p) => p.privacy!.batchSize));
    expect(a.state.privacy!.sampler).toEqual(whole.state.privacy!.sampler);
    expect(differs(a.final, b.final)).toBe(true);
    expect(differs(a.final, whole.final)).toBe(true);
  });

  it('a pause and a second train() call on the same trainer continue the sampler: the same batches as one call', async () => {
    const whole = await trainFrom(SPECS[0]!, privacy, undefined, 6);
    const { model, adapter } = await setup(SPECS[0]!);
    const trainer = await Trainer.create(gpu(), model, adapter, { ...config, steps: 6, privacy });
    cleanup.push(() => trainer.release());
    const progress: StepProgress[] = [];
    const controller = new AbortController();
    const first = await trainer.train(rows, { signal: controller.signal, onStep: (p) => { progress.push(p); if (p.step === 3) controller.abort('pause'); } });
    expect(first.stopped).toBe('paused');
    await trainer.train(rows, { onStep: (p) => progress.push(p) });
    expect(progress.map((p) => p.privacy!.batchSize)).toEqual(whole.progress.map((p) => p.privacy!.batchSize));
    expectSameTensors(await adapter.read(), whole.final);
    expect((await trainer.state(first.cursor)).privacy).toEqual(whole.state.privacy);
  });

  it('a step that fails part-way leaves nothing behind for the next one', async () => {
    const good = rows.slice(0, 3);
    const bad = Uint32Array.from(rows[3]!, (t, i) => (i === 5 ? 1_000_000 : t)); // a token id outside the vocabulary
    // q = 1: every row in every step, in index order, so two examples are summed before the bad one throws.
    const { model, adapter } = await setup(SPECS[0]!);
    const trainer = await Trainer.create(gpu(), model, adapter, { ...config, batchSize: 3, steps: 1, privacy });
    cleanup.push(() => trainer.release());
    await expect(trainer.train([good[0]!, good[1]!, bad])).rejects.toThrow(/outside the vocabulary/);
    for (const [key, g] of await adapter.readGradients()) expect(g.data.every((v) => v === 0), key).toBe(true);
    await trainer.train(good);
    const fresh = await setup(SPECS[0]!);
    const clean = await Trainer.create(gpu(), fresh.model, fresh.adapter, { ...config, batchSize: 3, steps: 1, privacy });
    cleanup.push(() => clean.release());
    await clean.train(good);
    expectSameTensors(await adapter.read(), await fresh.adapter.read());
  });

  it('gradient accumulation: batchSize 2 x 2 micro-batches is the same private run as batchSize 4', async () => {
    const { model, adapter } = await setup(SPECS[0]!);
    const accumulated = await Trainer.create(gpu(), model, adapter, { ...config, batchSize: 2, gradientAccumulation: 2, privacy });
    cleanup.push(() => accumulated.release());
    const progress: StepProgress[] = [];
    await accumulated.train(rows, { onStep: (p) => progress.push(p) });
    const whole = await trainFrom(SPECS[0]!, privacy);
    expect(progress.map((p) => p.privacy!.sampleRate)).toEqual(whole.progress.map((p) => p.privacy!.sampleRate));
    expect(progress.map((p) => p.privacy!.batchSize)).toEqual(whole.progress.map((p) => p.privacy!.batchSize));
    expectSameTensors(await adapter.read(), whole.final);
  });

  it('stops cleanly, with its state, before the step that would exceed the budget', async () => {
    const sigma = 1.0;
    const q = config.batchSize / rows.length;
    // The budget that 2 steps fit and 3 do not.
    const two = estimatePrivacy({ dataSize: rows.length, batchSize: config.batchSize, steps: 2, noiseMultiplier: sigma, delta: 1e-3 }).epsilon;
    const three = estimatePrivacy({ dataSize: rows.length, batchSize: config.batchSize, steps: 3, noiseMultiplier: sigma, delta: 1e-3 }).epsilon;
    const budget = (two + three) / 2;
    const run = await trainFrom(SPECS[0]!, { ...privacy, noiseMultiplier: sigma, maxGradNorm: 1, epsilonBudget: budget }, undefined, 10);
    expect(run.result.stopped).toBe('budget-exhausted');
    expect(run.result.step).toBe(2);
    expect(run.result.privacy!.epsilon).toBeLessThanOrEqual(budget);
    expect(run.state.privacy!.accountant).toEqual([{ noiseMultiplier: sigma, sampleRate: q, steps: 2 }]);
    // What an app reads from the checkpoint to not offer "resume": spent here, not one step earlier, not without a budget.
    const dpConfig = { ...privacy, noiseMultiplier: sigma, maxGradNorm: 1, epsilonBudget: budget };
    const train = JSON.parse(JSON.stringify({ ...config, privacy: dpConfig })) as JsonObject;
    expect(checkpointBudgetSpent({ train, privacy: run.state.privacy })).toBe(true);
    expect(checkpointBudgetSpent({ train, privacy: { ...run.state.privacy!, accountant: [{ noiseMultiplier: sigma, sampleRate: q, steps: 1 }] } })).toBe(false);
    expect(checkpointBudgetSpent({ train: { ...train, privacy: { ...dpConfig, epsilonBudget: undefined } } as unknown as JsonObject, privacy: run.state.privacy })).toBe(false);
    expect(checkpointBudgetSpent({ train: JSON.parse(JSON.stringify(config)) as JsonObject })).toBe(false);
    // Resuming from the stopped state takes no further step.
    const again = await trainFrom(SPECS[0]!, { ...privacy, noiseMultiplier: sigma, maxGradNorm: 1, epsilonBudget: budget }, run.state, 10);
    expect(again.result.stopped).toBe('budget-exhausted');
    expect(again.progress).toHaveLength(0);
  });

  it('refuses a plain checkpoint as the start of a private run, and a batch larger than the data', async () => {
    const { model, adapter } = await setup(SPECS[0]!);
    const trainer = await Trainer.create(gpu(), model, adapter, { ...config, privacy });
    cleanup.push(() => trainer.release());
    expect(() => trainer.restore({ step: 3, adapter: new Map(), optimizer: new Map() })).toThrow(/without DP-SGD/);
    // A history that counts fewer steps than were taken would undercount epsilon.
    expect(() => trainer.restore({ step: 3, adapter: new Map(), optimizer: new Map(), privacy: { sampler: [1, 2, 3, 4], accountant: [{ noiseMultiplier: 1, sampleRate: 0.1, steps: 1 }] } })).toThrow(/counts 1 steps/);
    await expect(trainer.train(rows.slice(0, 3))).rejects.toThrow(/probability .* > 1/);
    await expect(Trainer.create(gpu(), model, adapter, { ...config, privacy: { ...privacy, delta: 0 } })).rejects.toThrow(/delta/);
  });
});
