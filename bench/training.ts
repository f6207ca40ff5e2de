/**
 * Training benchmark: whole LoRA training steps (forward + backward + AdamW) of real model
 * shapes, LoRA over a float32 base versus QLoRA (NF4 base with double quantization), reporting
 * tokens per second (median step) and the accounted GPU peak next to the planner's estimate.
 * Models: the tiny fixtures (real files) and a SmolLM2-135M-shaped Llama with synthetic weights
 * (the real checkpoint cannot be downloaded here; speed and memory depend on shapes only).
 */
import { createGpuContext, type GpuContext } from '@webtune/gpu';
import { loadModelFiles, weightReader, type BaseFormat, type ModelConfig, type WeightReader } from '@webtune/model';
import { nodeDirectorySource } from '@webtune/model/node';
import { checkMemoryPlan } from '@webtune/trainer';
import { smolLM2Config, syntheticWeights } from './smol-shape.js';
import { benchLoraConfig, setUpLoraStep } from './lora-step.js';

export interface TrainingBenchRow {
  model: string;
  format: BaseFormat;
  /** Activation storage. */
  dtype: 'f32' | 'f16';
  batch: number;
  seq: number;
  rank: number;
  recompute: boolean;
  medianStepMs: number;
  tokensPerSecond: number;
  peakBytes: number;
  estimateBytes: number;
  weightBytes: number;
  steps: number;
}

export interface TrainingBenchSpec {
  model: string;
  config: ModelConfig;
  reader: WeightReader;
  batch: number;
  seq: number;
  rank: number;
  targets?: string[];
  recompute?: boolean;
  steps: number;
}

export async function benchTraining(gpu: GPU, spec: TrainingBenchSpec, format: BaseFormat, dtype: 'f32' | 'f16', log: (line: string) => void): Promise<TrainingBenchRow> {
  // A fresh device per run, so the accounted peak is this run's alone.
  const ctx: GpuContext = await createGpuContext({ gpu });
  try {
    const recompute = spec.recompute ?? false;
    const estimate = checkMemoryPlan(ctx, { config: spec.config, format, dtype, lora: benchLoraConfig(spec), batch: spec.batch, seq: spec.seq, recompute }, { budgetBytes: 16 * 2 ** 30 });
    const { step, base, tokens, release } = await setUpLoraStep(ctx, { ...spec, format, dtype });
    await step(); // warm-up: pipelines compile, workspace is allocated
    const times: number[] = [];
    for (let i = 0; i < spec.steps; i++) {
      const t0 = performance.now();
      await step();
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    const medianStepMs = times[Math.floor(times.length / 2)]!;
    const row: TrainingBenchRow = {
      model: spec.model, format, dtype, batch: spec.batch, seq: spec.seq, rank: spec.rank, recompute, medianStepMs,
      tokensPerSecond: tokens / (medianStepMs / 1000), peakBytes: ctx.memory.peakBytes, estimateBytes: estimate.total,
      weightBytes: base.byteLength, steps: spec.steps,
    };
    log(`training ${spec.model} ${format}/${dtype} b${spec.batch}x${spec.seq} r${spec.rank}${recompute ? ' recompute' : ''}: ${medianStepMs.toFixed(0)} ms/step, ${row.tokensPerSecond.toFixed(0)} tok/s, peak ${(row.peakBytes / 2 ** 20).toFixed(1)} MiB (estimate ${(estimate.total / 2 ** 20).toFixed(1)} MiB)`);
    release();
    return row;
  } finally {
    ctx.destroy();
  }
}


/** The training rows of `npm run bench`: tiny fixtures and the SmolLM2-135M shape, f32 base vs NF4. */
export async function runTrainingBench(gpu: GPU, log: (line: string) => void): Promise<TrainingBenchRow[]> {
  const rows: TrainingBenchRow[] = [];
  const smol = smolLM2Config();
  const specs: TrainingBenchSpec[] = [];
  for (const name of ['tiny-llama', 'tiny-gpt2']) {
    const dir = `packages/model/test/fixtures/models/${name}/`;
    const files = await loadModelFiles(nodeDirectorySource(dir));
    specs.push({ model: name, config: files.config, reader: weightReader(files), batch: 4, seq: 64, rank: 8, steps: 5 });
  }
  for (const recompute of [false, true]) {
    specs.push({ model: 'SmolLM2-135M shape', config: smol, reader: syntheticWeights(smol), batch: 1, seq: 256, rank: 8, steps: 2, recompute });
  }
  // LoRA over f32, QLoRA with f32 activations, and QLoRA with f16 activations where shader-f16 exists.
  const f16 = (await createGpuContext({ gpu }).then((c) => { const has = c.features.shaderF16; c.destroy(); return has; }));
  const variants: Array<[BaseFormat, 'f32' | 'f16']> = [['f32', 'f32'], ['nf4', 'f32'], ...(f16 ? [['nf4', 'f16'] as [BaseFormat, 'f16']] : [])];
  for (const spec of specs) {
    for (const [format, dtype] of variants) rows.push(await benchTraining(gpu, spec, format, dtype, log));
  }
  return rows;
}
