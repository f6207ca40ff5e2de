/**
 * DP-SGD against non-private training (issue 19), through the real Trainer:
 * - on the SmolLM2-135M shape (synthetic weights; time and memory depend on shapes only), LoRA r8,
 *   f32, at expected batch 4 and 16 x a short sequence: the non-private step (one batched forward +
 *   backward + AdamW with clipping) against the DP-SGD step at the same expected batch (Poisson
 *   sampling at q = batch / rows, every example run on its own, its gradient clipped to C and summed
 *   on the GPU, Gaussian noise, AdamW): median step, ms per example, the GPU peak webtune accounted
 *   and the planner's estimate, each configuration on a fresh device;
 * - on the tiny Llama fixture, Moby-Dick chapters 1-8 train and 40-41 held out (as bench/methods.ts):
 *   the held-out loss after the same steps, seed and learning rate, non-private and at epsilon = 8, 3
 *   and 1 (sigma from noiseMultiplierFor for those steps, q and delta = 1 / (10 N)), with the epsilon
 *   the accountant says was spent.
 * Written to bench/results/dp-sgd.{md,json} by scripts/bench.mjs (`BENCH_ONLY=dp-sgd npm run bench`).
 */
import { resolveAdapterSpec, Rng, weightReader, type AdapterSpec, type ModelConfig, type WeightReader } from '@webtune/model';
import { noiseMultiplierFor, type DpSgdConfig, type StepProgress, type TrainConfig, type TrainingRow } from '@webtune/trainer';
import { mobyDickRun } from './moby-dick.js';
import { openTrainingRun } from './training-run.js';
import { smolLM2Config, syntheticWeights } from './smol-shape.js';

/** One configuration on the SmolLM2-135M shape. */
export interface DpSgdSpeedRow {
  /** 'non-private' or 'DP-SGD'. */
  mode: 'non-private' | 'DP-SGD';
  /** batchSize (DP-SGD: the expected batch, q x rows). */
  batch: number;
  seq: number;
  /** DP-SGD only: sigma, C, q, the sampler's seed. */
  privacy?: { noiseMultiplier: number; maxGradNorm: number; sampleRate: number; samplerSeed: number; rows: number };
  /** Examples per timed step (DP-SGD: what Poisson sampling drew; non-private: always batch). */
  examples: number[];
  meanExamples: number;
  /** Every timed step, ms (wall). */
  stepMs: number[];
  medianStepMs: number;
  /** Timed wall time over timed examples. */
  msPerExample: number;
  /** CPU time of this process per timed step (user + system, all threads; lavapipe runs in-process), ms. */
  cpuMs: number[];
  medianCpuMs: number;
  /** Peak GPU bytes webtune accounted over the run (weights included). */
  peakBytes: number;
  /** estimateTrainingMemory's total and activations (Trainer.create's plan; DP-SGD plans a batch of one). */
  plannerBytes: number;
  plannerActivationBytes: number;
  trainableParams: number;
  warmupSteps: number;
}

/** One held-out run on the tiny Llama. */
export interface DpSgdLossRow {
  /** 'non-private' or 'epsilon = 8' etc. */
  label: string;
  targetEpsilon?: number;
  /** Spent, as the trainer's RDP accountant reports at the end. */
  epsilon?: number;
  noiseMultiplier?: number;
  heldOutBefore: number;
  heldOutAfter: number;
  firstLoss: number;
  lastLoss: number;
  steps: number;
  meanExamples: number;
  medianStepMs: number;
}

export interface DpSgdBench {
  /** The command line that produced it (BENCH_DP_* settings included). */
  command: string;
  speed: DpSgdSpeedRow[];
  smol: { model: string; rank: number; targets: string[]; dtype: 'f32'; seq: number; warmupSteps: number; timedSteps: number; rows: number; noiseMultiplier: number; maxGradNorm: number; samplerSeed: number; learningRate: number; loadAverage: number[] };
  loss: DpSgdLossRow[];
  tiny: {
    model: string; steps: number; batch: number; seq: number; learningRate: number; schedule: string; warmupSteps: number; seed: number; adapterSeed: number; samplerSeed: number;
    maxGradNorm: number; delta: number; sampleRate: number; trainChapters: number[]; heldOutChapters: number[]; trainRows: number; heldOutRows: number;
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(xs.length, 1);


/**
 * One configuration on its own device: the whole run is one train() call, each step timed from
 * the previous onStep.
 */
async function speedRun(
  gpu: GPU, config: ModelConfig, reader: WeightReader, spec: AdapterSpec, rows: readonly TrainingRow[],
  o: { batch: number; seq: number; warmup: number; timed: number; privacy?: DpSgdConfig; mode: DpSgdSpeedRow['mode'] },
  log: (line: string) => void,
): Promise<DpSgdSpeedRow> {
  const steps = o.warmup + o.timed;
  const trainConfig: Partial<TrainConfig> & Pick<TrainConfig, 'steps'> = {
    steps, batchSize: o.batch, seqLen: o.seq, learningRate: 1e-4, seed: 3, ...(o.privacy ? { privacy: o.privacy } : {}),
  };
  const { adapter, trainer, release } = await openTrainingRun(gpu, config, reader, spec, 1, trainConfig, { budgetBytes: 16 * 2 ** 30 });
  try {
    const stepMs: number[] = [];
    const cpuMs: number[] = [];
    const examples: number[] = [];
    let t = performance.now();
    let cpu = process.cpuUsage();
    const result = await trainer.train(rows, {
      onStep: (p: StepProgress) => {
        const now = performance.now();
        const c = process.cpuUsage(cpu);
        const ms = now - t;
        const n = p.privacy ? p.privacy.batchSize : o.batch;
        if (p.step > o.warmup) {
          stepMs.push(ms);
          cpuMs.push((c.user + c.system) / 1000);
          examples.push(n);
        }
        log(`dp-sgd: ${o.mode} SmolLM2-135M shape, batch ${o.batch} x ${o.seq}, step ${p.step}/${steps}${p.step <= o.warmup ? ' (warm-up)' : ''}: ${n} examples, ${ms.toFixed(0)} ms, CPU ${((c.user + c.system) / 1000).toFixed(0)} ms`);
        t = performance.now();
        cpu = process.cpuUsage();
      },
    });
    const totalExamples = examples.reduce((a, b) => a + b, 0);
    return {
      mode: o.mode, batch: o.batch, seq: o.seq,
      ...(o.privacy ? { privacy: { noiseMultiplier: o.privacy.noiseMultiplier, maxGradNorm: o.privacy.maxGradNorm, sampleRate: o.batch / rows.length, samplerSeed: o.privacy.samplerSeed!, rows: rows.length } } : {}),
      examples, meanExamples: mean(examples), stepMs, medianStepMs: median(stepMs), msPerExample: stepMs.reduce((a, b) => a + b, 0) / Math.max(totalExamples, 1),
      cpuMs, medianCpuMs: median(cpuMs), peakBytes: result.peakBytes, plannerBytes: trainer.estimate.total, plannerActivationBytes: trainer.estimate.activations,
      trainableParams: adapter.parameterCount, warmupSteps: o.warmup,
    };
  } finally {
    release();
  }
}

export async function runDpSgdBench(gpu: GPU, log: (line: string) => void): Promise<DpSgdBench> {
  const env = process.env;
  const warmup = Number(env.BENCH_DP_WARMUP ?? 1);
  const timed = Number(env.BENCH_DP_STEPS ?? 2);
  const smolSeq = Number(env.BENCH_DP_SEQ ?? 64);
  const batches = (env.BENCH_DP_BATCHES ?? '4,16').split(',').filter(Boolean).map(Number);
  const tinySteps = Number(env.BENCH_DP_TINY_STEPS ?? 150);
  const epsilons = (env.BENCH_DP_EPSILONS ?? '8,3,1').split(',').map(Number);
  const sigma = 1.0;
  const clip = 1.0;
  const samplerSeed = 11;
  const loadAverage = (await import('node:os')).loadavg();

  // --- step time and memory on the SmolLM2-135M shape
  const smol = smolLM2Config();
  const smolReader = syntheticWeights(smol);
  const spec = resolveAdapterSpec(smol, 'lora', { rank: 8, alpha: 16 });
  const smolRowCount = 64;
  const rng = new Rng(5);
  const smolRows: TrainingRow[] = Array.from({ length: smolRowCount }, () => Uint32Array.from({ length: smolSeq + 1 }, () => rng.int(smol.vocabSize)));
  const speed: DpSgdSpeedRow[] = [];
  for (const batch of batches) {
    speed.push(await speedRun(gpu, smol, smolReader, spec, smolRows, { batch, seq: smolSeq, warmup, timed, mode: 'non-private' }, log));
    const privacy: DpSgdConfig = { noiseMultiplier: sigma, maxGradNorm: clip, delta: 1 / (10 * smolRowCount), samplerSeed };
    speed.push(await speedRun(gpu, smol, smolReader, spec, smolRows, { batch, seq: smolSeq, warmup, timed, privacy, mode: 'DP-SGD' }, log));
    for (const r of speed.slice(-2)) {
      log(`dp-sgd: ${r.mode} batch ${r.batch} x ${r.seq}: median ${r.medianStepMs.toFixed(0)} ms/step (${r.stepMs.map((x) => x.toFixed(0)).join(', ')}), ${r.meanExamples.toFixed(2)} examples/step, ${r.msPerExample.toFixed(0)} ms/example, peak ${(r.peakBytes / 2 ** 20).toFixed(1)} MiB, planner ${(r.plannerBytes / 2 ** 20).toFixed(1)} MiB`);
    }
  }

  // --- held-out loss on the tiny Llama: Moby-Dick through its byte-level BPE
  const { files, trainChapters, heldOutChapters, seq, train, heldOut, tinyRun, adapterSeed } = await mobyDickRun(tinySteps);
  const tiny = files.config;
  const delta = 1 / (10 * train.length);
  const sampleRate = tinyRun.batchSize / train.length;
  const tinySpec = resolveAdapterSpec(tiny, 'lora', { rank: 8, alpha: 16 });
  const runs: Array<{ label: string; targetEpsilon?: number; privacy?: DpSgdConfig }> = [{ label: 'non-private' }];
  for (const eps of epsilons) {
    const noiseMultiplier = noiseMultiplierFor({ targetEpsilon: eps, delta, sampleRate, steps: tinySteps });
    runs.push({ label: `epsilon = ${eps}`, targetEpsilon: eps, privacy: { noiseMultiplier, maxGradNorm: clip, delta, samplerSeed } });
  }
  const loss: DpSgdLossRow[] = [];
  for (const run of runs) {
    const { trainer, release } = await openTrainingRun(gpu, tiny, weightReader(files), tinySpec, adapterSeed, { ...tinyRun, ...(run.privacy ? { privacy: run.privacy } : {}) });
    try {
      const heldOutBefore = await trainer.evaluate(heldOut);
      const times: number[] = [];
      const examples: number[] = [];
      let last = performance.now();
      const result = await trainer.train(train, {
        onStep: (p) => {
          const now = performance.now();
          times.push(now - last);
          last = now;
          examples.push(p.privacy ? p.privacy.batchSize : tinyRun.batchSize);
        },
      });
      const heldOutAfter = await trainer.evaluate(heldOut);
      const finite = result.losses.filter((x) => Number.isFinite(x));
      loss.push({
        label: run.label, ...(run.targetEpsilon !== undefined ? { targetEpsilon: run.targetEpsilon } : {}),
        ...(result.privacy ? { epsilon: result.privacy.epsilon, noiseMultiplier: run.privacy!.noiseMultiplier } : {}),
        heldOutBefore, heldOutAfter, firstLoss: finite[0]!, lastLoss: finite.at(-1)!, steps: result.step, meanExamples: mean(examples), medianStepMs: median(times.slice(1)),
      });
    } finally {
      release();
    }
    const r = loss.at(-1)!;
    log(`dp-sgd: tiny-llama ${r.label}${r.noiseMultiplier !== undefined ? ` (sigma ${r.noiseMultiplier.toFixed(3)}, spent epsilon ${r.epsilon!.toFixed(3)})` : ''}: held-out ${r.heldOutBefore.toFixed(4)} -> ${r.heldOutAfter.toFixed(4)} after ${r.steps} steps (train ${r.firstLoss.toFixed(3)} -> ${r.lastLoss.toFixed(3)}), ${r.medianStepMs.toFixed(0)} ms/step`);
  }

  const settings = Object.entries(env).filter(([k]) => k.startsWith('BENCH_DP_')).map(([k, v]) => `${k}=${v} `).sort().join('');
  return {
    command: `BENCH_ONLY=dp-sgd ${settings}npm run bench -- node`,
    speed,
    smol: {
      model: 'SmolLM2-135M shape (synthetic weights)', rank: 8, targets: (spec.config as { targets: string[] }).targets, dtype: 'f32', seq: smolSeq, warmupSteps: warmup, timedSteps: timed, rows: smolRowCount,
      noiseMultiplier: sigma, maxGradNorm: clip, samplerSeed, learningRate: 1e-4, loadAverage,
    },
    loss,
    tiny: {
      model: 'tiny-llama', steps: tinySteps, batch: tinyRun.batchSize, seq, learningRate: tinyRun.learningRate, schedule: tinyRun.schedule, warmupSteps: tinyRun.warmupSteps, seed: tinyRun.seed,
      adapterSeed, samplerSeed, maxGradNorm: clip, delta, sampleRate, trainChapters, heldOutChapters, trainRows: train.length, heldOutRows: heldOut.length,
    },
  };
}
