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

async function run(format: 'f32' | 'nf4') {
  const { config, reader } = tinyModel('tiny-llama');
  const base = await uploadBaseModel(gpu(), config, reader, { format });
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
});
