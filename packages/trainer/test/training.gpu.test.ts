/**
 * Training end to end on Dawn: LoRA on every linear of the tiny Llama, 200 AdamW steps over
 * Moby-Dick chapters 1-8, evaluated on chapters 40-41 (never trained on). Then the same run
 * with the frozen weights quantized to NF4 (QLoRA), same seed and data order.
 */
import { describe, expect, it } from 'vitest';
import { useNodeContext } from '../../gpu/test/node-context.js';
import { LoraAdapter, resolveLoraConfig, Transformer, uploadBaseModel } from '../../model/src/index.js';
import { tinyModel } from '../../model/test/tiny-models.js';
import { packTokens, tokenizeDocuments, Trainer, type StepProgress } from '../src/index.js';
import { chapter, tinyTokenizer } from './corpus.js';

const gpu = useNodeContext();
const SEQ = 64;

/**
 * Held-out loss must fall by at least this much (nats per token; it starts near ln 512 = 6.24).
 * The tiny model's frozen weights are random, so LoRA can only learn so much: 200 steps give
 * about 0.43 here, against run-to-run differences of a few thousandths.
 */
const MIN_IMPROVEMENT = 0.3;
/** QLoRA's final training loss (mean of the last 20 steps) within this of LoRA-f32's, in nats (1% of 6). */
const QLORA_TOLERANCE = 0.06;

const tokenizer = tinyTokenizer();
const eos = tokenizer.eosTokenId;
const train = packTokens(tokenizeDocuments((t) => tokenizer.encode(t), [1, 2, 3, 4, 5, 6, 7, 8].map(chapter), eos), SEQ);
const heldOut = packTokens(tokenizeDocuments((t) => tokenizer.encode(t), [40, 41].map(chapter), eos), SEQ);

async function run(format: 'f32' | 'nf4', dtype: 'f32' | 'f16' = 'f32') {
  const { config, reader } = tinyModel('tiny-llama');
  const base = await uploadBaseModel(gpu(), config, reader, { format, dtype });
  const model = await Transformer.create(gpu(), base);
  const lora = resolveLoraConfig(config, { rank: 8, alpha: 16, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] });
  const adapter = LoraAdapter.create(gpu(), config, lora, 1234);
  const trainer = await Trainer.create(gpu(), model, adapter, {
    steps: 200, batchSize: 8, seqLen: SEQ, learningRate: 1e-2, schedule: 'cosine', warmupSteps: 10, seed: 7,
  });
  try {
    const before = await trainer.evaluate(heldOut);
    const progress: StepProgress[] = [];
    const result = await trainer.train(train, { onStep: (p) => progress.push(p) });
    const after = await trainer.evaluate(heldOut);
    return { before, after, result, progress, finalLoss: mean(result.losses.slice(-20)) };
  } finally {
    trainer.release();
    adapter.release();
    model.release();
    base.release();
  }
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

describe('training on Moby-Dick', () => {
  let f32Run: Awaited<ReturnType<typeof run>>;

  it('LoRA-f32: 200 steps lower the held-out loss', async () => {
    expect(train.length).toBeGreaterThan(100);
    f32Run = await run('f32');
    const { before, after, result, progress } = f32Run;
    console.log(`LoRA-f32 held-out ${before.toFixed(3)} -> ${after.toFixed(3)}; train ${result.losses[0]!.toFixed(3)} -> ${f32Run.finalLoss.toFixed(3)}; ${result.tokensPerSecond.toFixed(0)} tok/s; peak ${result.peakBytes} B (estimate ${result.estimate.total} B)`);
    expect(before - after).toBeGreaterThan(MIN_IMPROVEMENT);
    expect(progress).toHaveLength(200);
    expect(progress[199]!.step).toBe(200);
    expect(progress[0]!.learningRate).toBe(0);
    expect(progress.every((p) => Number.isFinite(p.gradNorm) && p.gradNorm > 0)).toBe(true);
    // The planner's estimate covers what was really allocated.
    expect(result.peakBytes).toBeLessThanOrEqual(result.estimate.total * 1.05 + 1024 * 1024);
  }, 300_000);

  it('QLoRA (NF4 base) ends within tolerance of LoRA-f32 on the same seed', async () => {
    const q = await run('nf4');
    console.log(`QLoRA held-out ${q.before.toFixed(3)} -> ${q.after.toFixed(3)}; train final ${q.finalLoss.toFixed(3)} vs f32 ${f32Run.finalLoss.toFixed(3)}; peak ${q.result.peakBytes} B`);
    expect(q.before - q.after).toBeGreaterThan(MIN_IMPROVEMENT);
    expect(Math.abs(q.finalLoss - f32Run.finalLoss)).toBeLessThan(QLORA_TOLERANCE);
  }, 300_000);

  it('QLoRA with f16 activations (shader-f16) also ends within tolerance of LoRA-f32', async () => {
    const h = await run('nf4', 'f16');
    console.log(`QLoRA f16 held-out ${h.before.toFixed(3)} -> ${h.after.toFixed(3)}; train final ${h.finalLoss.toFixed(3)} vs f32 ${f32Run.finalLoss.toFixed(3)}; peak ${h.result.peakBytes} B`);
    expect(h.before - h.after).toBeGreaterThan(MIN_IMPROVEMENT);
    expect(Math.abs(h.finalLoss - f32Run.finalLoss)).toBeLessThan(QLORA_TOLERANCE);
  }, 300_000);
});

describe('training mechanics', () => {
  async function oneRun(options: { dropout?: number; seed?: number; batchSize: number; accumulation: number; steps: number; recompute?: boolean }) {
    const { config, reader } = tinyModel('tiny-llama');
    const base = await uploadBaseModel(gpu(), config, reader);
    const model = await Transformer.create(gpu(), base);
    const lora = resolveLoraConfig(config, { rank: 4, alpha: 8, dropout: options.dropout ?? 0, targets: ['q_proj', 'v_proj', 'down_proj'] });
    const adapter = LoraAdapter.create(gpu(), config, lora, 99);
    const trainer = await Trainer.create(gpu(), model, adapter, {
      steps: options.steps, batchSize: options.batchSize, gradientAccumulation: options.accumulation, seqLen: SEQ,
      learningRate: 1e-2, seed: options.seed ?? 1, recompute: options.recompute ?? false,
    });
    try {
      const result = await trainer.train(train);
      return { losses: result.losses, weights: await adapter.read() };
    } finally {
      trainer.release();
      adapter.release();
      model.release();
      base.release();
    }
  }
  const flat = (w: Map<string, { data: Float32Array }>) => Float32Array.from([...w.values()].flatMap((t) => [...t.data]));
  const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

  it('gradient accumulation: 2 micro-batches of 4 make the same update as one batch of 8', async () => {
    const whole = await oneRun({ batchSize: 8, accumulation: 1, steps: 3 });
    const split = await oneRun({ batchSize: 4, accumulation: 2, steps: 3 });
    expect(split.losses.map((l, i) => Math.abs(l - whole.losses[i]!))).toSatisfy((d: number[]) => d.every((x) => x < 1e-5));
    expect(maxDiff(flat(split.weights), flat(whole.weights))).toBeLessThan(1e-5);
  }, 120_000);

  it('recomputation gives the same adapter as keeping activations', async () => {
    const kept = await oneRun({ batchSize: 4, accumulation: 1, steps: 3 });
    const recomputed = await oneRun({ batchSize: 4, accumulation: 1, steps: 3, recompute: true });
    expect(flat(recomputed.weights)).toEqual(flat(kept.weights));
  }, 120_000);

  it('LoRA dropout is seeded: the same seed repeats exactly, another seed differs, and training still learns', async () => {
    const a = await oneRun({ batchSize: 4, accumulation: 1, steps: 12, dropout: 0.2, seed: 5 });
    const b = await oneRun({ batchSize: 4, accumulation: 1, steps: 12, dropout: 0.2, seed: 5 });
    const c = await oneRun({ batchSize: 4, accumulation: 1, steps: 12, dropout: 0.2, seed: 6 });
    const none = await oneRun({ batchSize: 4, accumulation: 1, steps: 12, dropout: 0, seed: 5 });
    expect(flat(b.weights)).toEqual(flat(a.weights));
    expect(maxDiff(flat(c.weights), flat(a.weights))).toBeGreaterThan(1e-4);
    expect(maxDiff(flat(none.weights), flat(a.weights))).toBeGreaterThan(1e-4);
    expect(mean(a.losses.slice(-4))).toBeLessThan(a.losses[0]! - 0.05);
  }, 180_000);
});
