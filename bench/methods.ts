/**
 * Adaptation methods side by side (issues 17 and 18): LoRA r8, DoRA r8, IA3, BitFit, LoRA r8 on the top
 * layers only (PEFT's layers_to_transform), prompt tuning (20 virtual tokens), prefix tuning (20, with
 * projection), Houlsby bottleneck adapters (64 wide) and UniPELT, each through the real Trainer (forward + backward + AdamW
 * with clipping). Per method:
 * - trainable parameters, and their share of the model's parameters;
 * - on the SmolLM2-135M shape (synthetic weights; time and memory depend on shapes only), batch 1
 *   x seq 256, f32: the planner's estimate (estimateTrainingMemory's total for this device), the
 *   GPU peak webtune accounted during the steps (a fresh device per method), and the median step;
 * - on the tiny Llama fixture: the held-out loss (Moby-Dick chapters 40-41) after the same number
 *   of steps over chapters 1-8, same seed, data order and learning rate (BitFit's biases take
 *   their learningRateScale on top), next to the base model's held-out loss.
 * Written as a table to bench/results/methods.md by scripts/bench.mjs.
 */
import type { GpuContext } from '@webtune/gpu';
import {
  architectureOf, linearHasBias, linearShape, resolveAdapterSpec, Rng, weightReader, type AdapterSpec, type ModelConfig, type WeightReader,
} from '@webtune/model';
import type { DataCursor, Trainer, TrainingRow } from '@webtune/trainer';
import { mobyDickRun } from './moby-dick.js';
import { openTrainingRun } from './training-run.js';
import { smolLM2Config, syntheticWeights } from './smol-shape.js';

export interface MethodsBenchRow {
  /** Row label, e.g. 'LoRA r8'. */
  method: string;
  /** The adapter spec on the SmolLM2-135M shape (resolved: every default written out). */
  spec: AdapterSpec;
  trainableParams: number;
  modelParams: number;
  /** trainableParams / modelParams, in percent. */
  trainablePercent: number;
  /** estimateTrainingMemory's total (Trainer.create's plan on this device). */
  plannerBytes: number;
  plannerActivationBytes: number;
  /** Peak GPU bytes webtune accounted while training (weights included). */
  peakBytes: number;
  medianStepMs: number;
  /** Every timed step, ms. */
  stepMs: number[];
  /**
   * This method's step time over the first row's (LoRA r8), as the median over the timed rounds of
   * the two steps' ratio within a round: paired, so a slower stretch of a shared machine cancels.
   */
  timeRatio: number;
  /** Median CPU time of this process per step (user + system, all threads), ms. */
  medianCpuMs: number;
  cpuMs: number[];
  /** Steps run before timing (pipeline compilation, workspace allocation). */
  warmupSteps: number;
  /** The tiny-llama held-out run. */
  tiny: { spec: AdapterSpec; trainableParams: number; heldOutBefore: number; heldOutAfter: number; firstLoss: number; lastLoss: number; medianStepMs: number; steps: number };
}

export interface MethodsBench {
  rows: MethodsBenchRow[];
  smol: { model: string; batch: number; seq: number; dtype: 'f32'; warmupSteps: number; timedSteps: number; interleaved: true };
  tiny: { model: string; steps: number; batch: number; seq: number; learningRate: number; schedule: string; warmupSteps: number; seed: number; adapterSeed: number; trainChapters: number[]; heldOutChapters: number[]; trainRows: number; heldOutRows: number };
}

/** The methods: SmolLM2-135M has 30 layers (top 4 = 26..29), the tiny Llama 2 (top 1 = layer 1). */
const METHODS: Array<{ label: string; method: string; config: (model: ModelConfig) => Record<string, unknown> }> = [
  { label: 'LoRA r8', method: 'lora', config: () => ({ rank: 8, alpha: 16 }) },
  { label: 'DoRA r8', method: 'dora', config: () => ({ rank: 8, alpha: 16 }) },
  { label: 'IA3', method: 'ia3', config: () => ({}) },
  { label: 'BitFit (lr x10)', method: 'bitfit', config: () => ({ learningRateScale: 10 }) },
  { label: 'LoRA r8, top layers only', method: 'lora', config: (m) => ({ rank: 8, alpha: 16, layers: topLayers(m) }) },
  { label: 'Prompt tuning (20 tokens)', method: 'prompt-tuning', config: () => ({ numVirtualTokens: 20 }) },
  { label: 'Prefix tuning (20, projection)', method: 'prefix-tuning', config: () => ({ numVirtualTokens: 20, prefixProjection: true }) },
  // 64 wide on SmolLM2 (hidden 576); the tiny Llama's hidden size is 64, so its adapters are a quarter of it (16).
  { label: 'Houlsby adapters (64)', method: 'bottleneck', config: (m) => ({ variant: 'houlsby', bottleneckSize: Math.min(64, m.hiddenSize / 4) }) },
  // AdapterHub's UniPELTConfig sizes: prefix 10, adapter reduction 16 (36 wide on SmolLM2, 4 on the tiny Llama); LoRA r8.
  { label: 'UniPELT (LoRA r8, prefix 10, adapter /16)', method: 'unipelt', config: () => ({ rank: 8, alpha: 16, numVirtualTokens: 10 }) },
];

/** The top 4 layers, or the top half of a model with fewer than 8. */
function topLayers(model: ModelConfig): number[] {
  const n = model.numLayers >= 8 ? 4 : Math.max(1, Math.floor(model.numLayers / 2));
  return Array.from({ length: n }, (_, i) => model.numLayers - n + i);
}

/** Every parameter of the model: embeddings (and untied head), positions, linears with their biases, norms. */
export function modelParameterCount(config: ModelConfig): number {
  const arch = architectureOf(config);
  const d = config.hiddenSize;
  let n = config.vocabSize * d * (config.tieWordEmbeddings ? 1 : 2);
  if (arch.positions === 'learned') n += config.maxPositions * d;
  n += (2 * config.numLayers + 1) * d * (arch.norm === 'layer' ? 2 : 1);
  for (const name of arch.linears) {
    const { inFeatures, outFeatures } = linearShape(config, name);
    n += config.numLayers * (inFeatures * outFeatures + (linearHasBias(config, name) ? outFeatures : 0));
  }
  return n;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

interface SmolRun {
  ctx: GpuContext;
  release: () => void;
  trainer: Trainer;
  parameterCount: number;
  cursor: DataCursor | undefined;
  peakBytes: number;
  stepMs: number[];
  cpuMs: number[];
}

/**
 * One method on the SmolLM2 shape: its own device (so the accounted peak is this method's alone),
 * the synthetic base, the adapter and a Trainer. Steps are taken one train() call at a time
 * (paused after each), so the methods' steps can be interleaved.
 */
async function smolRun(gpu: GPU, config: ModelConfig, reader: WeightReader, spec: AdapterSpec, o: { batch: number; seq: number; steps: number }): Promise<SmolRun> {
  const { ctx, adapter, trainer, release } = await openTrainingRun(gpu, config, reader, spec, 1, { steps: o.steps, batchSize: o.batch, seqLen: o.seq, learningRate: 1e-4, seed: 3 }, { budgetBytes: 16 * 2 ** 30 });
  return { ctx, release, trainer, parameterCount: adapter.parameterCount, cursor: undefined, peakBytes: 0, stepMs: [], cpuMs: [] };
}

/**
 * One optimizer step of a run (train() paused after it): its wall time and the CPU time the
 * process spent on it (lavapipe runs in this process, so CPU time is the work done, and unlike wall
 * time it barely moves when other programs share the machine's cores); and the run's peak so far.
 */
async function smolStep(run: SmolRun, rows: readonly TrainingRow[]): Promise<{ ms: number; cpuMs: number }> {
  const pause = new AbortController();
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const result = await run.trainer.train(rows, { cursor: run.cursor, signal: pause.signal, onStep: () => pause.abort('pause') });
  const cpu = process.cpuUsage(cpu0);
  const ms = performance.now() - t0;
  run.cursor = result.cursor;
  // train() resets the peak to the live bytes when it starts; the run's peak is the largest over its calls.
  run.peakBytes = Math.max(run.peakBytes, result.peakBytes);
  return { ms, cpuMs: (cpu.user + cpu.system) / 1000 };
}


export async function runMethodsBench(gpu: GPU, log: (line: string) => void): Promise<MethodsBench> {
  const warmup = Number(process.env.BENCH_METHODS_WARMUP ?? 1);
  const timed = Number(process.env.BENCH_METHODS_STEPS ?? 3);
  const tinySteps = Number(process.env.BENCH_METHODS_TINY_STEPS ?? 150);
  const smol = smolLM2Config();
  const smolReader = syntheticWeights(smol);
  const smolParams = modelParameterCount(smol);

  // --- the held-out run's data: Moby-Dick through the tiny Llama's byte-level BPE
  const { files, trainChapters, heldOutChapters, seq, train, heldOut, tinyRun, adapterSeed } = await mobyDickRun(tinySteps);
  const tiny = files.config;

  // --- time and memory on the SmolLM2-135M shape: all methods set up at once, their steps
  // interleaved (round r starts at method r), so a slower moment of the machine is shared.
  const smolSeq = 256;
  const rng = new Rng(5);
  const smolRows: TrainingRow[] = Array.from({ length: 16 }, () => Uint32Array.from({ length: smolSeq + 1 }, () => rng.int(smol.vocabSize)));
  const specs = METHODS.map((m) => resolveAdapterSpec(smol, m.method, m.config(smol)));
  const runs: SmolRun[] = [];
  const measured: Array<Omit<MethodsBenchRow, 'tiny'>> = [];
  try {
    for (const spec of specs) runs.push(await smolRun(gpu, smol, smolReader, spec, { batch: 1, seq: smolSeq, steps: warmup + timed }));
    for (let round = 0; round < warmup + timed; round++) {
      for (let k = 0; k < runs.length; k++) {
        const i = (round + k) % runs.length;
        const { ms, cpuMs } = await smolStep(runs[i]!, smolRows);
        if (round >= warmup) {
          runs[i]!.stepMs.push(ms);
          runs[i]!.cpuMs.push(cpuMs);
        }
        log(`methods: ${METHODS[i]!.label} SmolLM2-135M shape, step ${round + 1}/${warmup + timed}${round < warmup ? ' (warm-up)' : ''}: ${ms.toFixed(0)} ms, CPU ${cpuMs.toFixed(0)} ms`);
      }
    }
    for (const [i, m] of METHODS.entries()) {
      const run = runs[i]!;
      const estimate = run.trainer.estimate;
      measured.push({
        method: m.label, spec: specs[i]!, trainableParams: run.parameterCount, modelParams: smolParams, trainablePercent: (100 * run.parameterCount) / smolParams,
        plannerBytes: estimate.total, plannerActivationBytes: estimate.activations, peakBytes: run.peakBytes, medianStepMs: median(run.stepMs), stepMs: run.stepMs, timeRatio: median(run.stepMs.map((ms, r) => ms / runs[0]!.stepMs[r]!)), medianCpuMs: median(run.cpuMs), cpuMs: run.cpuMs,
        warmupSteps: warmup,
      });
    }
  } finally {
    for (const run of runs) run.release();
  }
  for (const row of measured) {
    log(`methods: ${row.method} SmolLM2-135M shape: ${row.trainableParams} trainable (${row.trainablePercent.toFixed(3)}%), planner ${(row.plannerBytes / 2 ** 20).toFixed(1)} MiB, peak ${(row.peakBytes / 2 ** 20).toFixed(1)} MiB, median ${row.medianStepMs.toFixed(0)} ms/step (${row.stepMs.map((x) => x.toFixed(0)).join(', ')}), ${row.timeRatio.toFixed(2)}x LoRA r8's, CPU ${row.medianCpuMs.toFixed(0)} ms/step`);
  }

  // --- held-out loss on the tiny model (real weights, real text), one method after the other
  const rows: MethodsBenchRow[] = [];
  for (const [i, m] of METHODS.entries()) {
    const tinySpec = resolveAdapterSpec(tiny, m.method, m.config(tiny));
    const { adapter, trainer, release } = await openTrainingRun(gpu, tiny, weightReader(files), tinySpec, adapterSeed, tinyRun);
    try {
      const heldOutBefore = await trainer.evaluate(heldOut);
      const times: number[] = [];
      let last = performance.now();
      const result = await trainer.train(train, { onStep: () => { const now = performance.now(); times.push(now - last); last = now; } });
      const heldOutAfter = await trainer.evaluate(heldOut);
      rows.push({ ...measured[i]!, tiny: {
        spec: tinySpec, trainableParams: adapter.parameterCount, heldOutBefore, heldOutAfter, firstLoss: result.losses[0]!, lastLoss: result.losses.at(-1)!,
        medianStepMs: median(times.slice(1)), steps: result.step,
      } });
    } finally {
      release();
    }
    const t = rows[i]!.tiny;
    log(`methods: ${m.label} tiny-llama: held-out ${t.heldOutBefore.toFixed(4)} -> ${t.heldOutAfter.toFixed(4)} after ${t.steps} steps (train ${t.firstLoss.toFixed(3)} -> ${t.lastLoss.toFixed(3)}), ${t.medianStepMs.toFixed(0)} ms/step`);
  }
  return {
    rows,
    smol: { model: 'SmolLM2-135M shape (synthetic weights)', batch: 1, seq: smolSeq, dtype: 'f32', warmupSteps: warmup, timedSteps: timed, interleaved: true },
    tiny: {
      model: 'tiny-llama', steps: tinySteps, batch: tinyRun.batchSize, seq, learningRate: tinyRun.learningRate, schedule: tinyRun.schedule, warmupSteps: tinyRun.warmupSteps,
      seed: tinyRun.seed, adapterSeed, trainChapters, heldOutChapters, trainRows: train.length, heldOutRows: heldOut.length,
    },
  };
}
