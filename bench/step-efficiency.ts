/**
 * Step efficiency (issue 22): how close a whole LoRA training step runs to the adapter's own
 * matmul peak. For one model shape and format, in one process on one adapter:
 *   - model FLOPs of the step, counted from the shapes (countStepFlops): per token 2N forward and
 *     2N input gradient for the frozen weights N (every linear of the adapted layers and the LM
 *     head; frozen weights get no weight gradient), causal attention over the visible pairs
 *     (forward QK^T and PV, backward twice that; the backward's recomputed scores are not counted,
 *     as model-FLOPs figures do not count recomputation), and the adapter's own matmuls;
 *   - the best matmul GFLOP/s webtune reaches on this adapter in the same run: its matmul kernel
 *     (the context's default tuning) on every shape the step multiplies (X W^T forward, dY W
 *     backward, the LM head) and on square 1024 and 2048;
 *   - the wall time of each timed step (forward + backward + AdamW, random tokens), with a matmul
 *     pass (every shape once) before the first and after each, so that
 *     efficiency = the median over the steps of (FLOPs / step time) / best matmul GFLOP/s of the
 *     two passes around that step (paired: the same minutes, on a host whose speed drifts);
 *     "pooled" = (FLOPs / median step time) / the best shape's median over all the passes;
 *   - per phase and per kernel, one more step profiled (packages/gpu/src/profiler.ts: each
 *     dispatch replayed alone, GPU timestamps where the adapter has timestamp-query, else CPU
 *     timers);
 *   - the CPU time spent recording and submitting (inside CommandRecorder.dispatch/submit) per
 *     step, and what the dispatch cache saved: the same step with reuse across submits off.
 * No Node imports: bench/step-efficiency-node.ts runs it on Dawn, the browser bench page in Chromium.
 */
import {
  CommandRecorder, createGpuContext, createMatmulKernel, createTensor, profileDispatches, type DispatchProfile, type GpuContext, type GpuTensor,
} from '@webtune/gpu';
import {
  architectureOf, linearShape, logitsRowStride, mlpRowStride,
  type BaseFormat, type LoraConfig, type ModelConfig, type WeightReader,
} from '@webtune/model';
import { fill, medianOf } from './suite.js';
import { setUpLoraStep, type LoraStepSpec } from './lora-step.js';

export interface StepFlops {
  /** 2 x tokens x frozen linear weights (every layer's linears and the LM head). */
  forward: number;
  /** 2 x tokens x the frozen weights backward passes through (the LM head and the linears of the lowest adapted layer and above): each one's input gradient. */
  inputGradient: number;
  /** Causal attention: forward 4 x head_dim per visible (query, key) pair per head, backward 2x that. */
  attention: number;
  /** LoRA: forward 2 x r x (in + out) per token per adapted linear, backward twice that. */
  adapter: number;
  total: number;
}

export function countStepFlops(config: ModelConfig, lora: LoraConfig, batch: number, seq: number): StepFlops {
  const tokens = batch * seq;
  const arch = architectureOf(config);
  const layers = lora.layers ?? Array.from({ length: config.numLayers }, (_, l) => l);
  const lowest = Math.min(...layers);
  let frozen = config.vocabSize * config.hiddenSize; // the LM head
  let adapted = 0;
  // Forward runs through every layer; backward only down to the lowest adapted layer.
  let forwardWeights = frozen;
  for (let l = 0; l < config.numLayers; l++) {
    for (const name of arch.linears) {
      const { inFeatures, outFeatures } = linearShape(config, name);
      forwardWeights += inFeatures * outFeatures;
      if (l >= lowest) frozen += inFeatures * outFeatures;
      if (layers.includes(l) && lora.targets.some((t) => name === t || name.endsWith(`.${t}`))) adapted += lora.rank * (inFeatures + outFeatures);
    }
  }
  const pairs = batch * ((seq * (seq + 1)) / 2);
  const attentionForward = 4 * config.headDim * config.numHeads * pairs;
  const f: Omit<StepFlops, 'total'> = {
    forward: 2 * tokens * forwardWeights,
    inputGradient: 2 * tokens * frozen,
    attention: attentionForward * config.numLayers + 2 * attentionForward * (config.numLayers - lowest),
    adapter: 3 * 2 * tokens * adapted,
  };
  return { ...f, total: f.forward + f.inputGradient + f.attention + f.adapter };
}

export interface MatmulRate {
  shape: string;
  gflops: number;
}

/** Wall times of one matmul shape, in ms. */
interface MatmulSamples {
  shape: string;
  flops: number;
  ms: number[];
}

/** One timed run of every shape, between two steps: shape -> ms. */
type MatmulPass = Map<string, number>;

interface MatmulSampler {
  /** FLOPs of each shape, in the order they are reported. */
  readonly flops: ReadonlyMap<string, number>;
  /** Times each shape once (one submit and wait each). */
  pass(): Promise<MatmulPass>;
  release(): void;
}

/**
 * webtune's matmul on the step's own shapes (the LM head's logits rows and the MLP's intermediates
 * padded as the step pads them) and two squares, on the step's own context, each run once after
 * creation (compilation, first touch). Passes are taken between the timed steps, so that the
 * denominator describes the same minutes as the steps it divides (a software adapter's speed
 * drifts by tens of percent over minutes with the host).
 */
async function createMatmulSampler(ctx: GpuContext, config: ModelConfig, tokens: number): Promise<MatmulSampler> {
  const arch = architectureOf(config);
  type Shape = { m: number; n: number; k: number; transB: boolean; lda?: number; ldc?: number };
  const shapes = new Map<string, Shape>();
  const add = (m: number, n: number, k: number, transB: boolean, extra: Partial<Shape> = {}, note = '') =>
    shapes.set(`${m}x${n}x${k}${transB ? ' (X W^T' : ' (dY W'}${note})`, { m, n, k, transB, ...extra });
  // The MLP's intermediates are padded as the step pads them (LoRA on q and v leaves the MLP to
  // the transformer): the MLP's outputs (forward) and input gradients (backward) written rows
  // apart, the down projection's input and output gradient read so.
  const ld = mlpRowStride(config, 'f32', true);
  const mlp = architectureOf(config).mlp;
  const [widens, narrows] = mlp.kind === 'swiglu' ? [[mlp.gate, mlp.up], [mlp.down]] : [[mlp.fc], [mlp.proj]];
  const rows = `, MLP rows ${ld} apart`;
  for (const name of arch.linears) {
    const { inFeatures, outFeatures } = linearShape(config, name);
    if (widens.includes(name)) {
      add(tokens, outFeatures, inFeatures, true, { ldc: ld }, rows);
      add(tokens, inFeatures, outFeatures, false, { lda: ld }, rows);
    } else if (narrows.includes(name)) {
      add(tokens, outFeatures, inFeatures, true, { lda: ld }, rows);
      add(tokens, inFeatures, outFeatures, false, { ldc: ld }, rows);
    } else {
      add(tokens, outFeatures, inFeatures, true);
      add(tokens, inFeatures, outFeatures, false);
    }
  }
  const logitsStride = logitsRowStride(config, 'f32');
  add(tokens, config.vocabSize, config.hiddenSize, true, { ldc: logitsStride }, `, logits rows ${logitsStride} apart`);
  add(tokens, config.hiddenSize, config.vocabSize, false, { lda: logitsStride }, `, logits rows ${logitsStride} apart`);
  for (const n of [1024, 2048]) add(n, n, n, false);
  const runs = new Map<string, () => Promise<void>>();
  const tensors: GpuTensor[] = [];
  for (const [shape, s] of shapes) {
    const kernel = await createMatmulKernel(ctx, { transB: s.transB });
    const aSize = (s.m - 1) * (s.lda ?? s.k) + s.k;
    const cSize = (s.m - 1) * (s.ldc ?? s.n) + s.n;
    const a = createTensor(ctx, { shape: [aSize], data: fill(aSize, 1), label: 'bench A' });
    const b = createTensor(ctx, { shape: s.transB ? [s.n, s.k] : [s.k, s.n], data: fill(s.k * s.n, 2), label: 'bench B' });
    const c = createTensor(ctx, { shape: [cSize], label: 'bench C' });
    tensors.push(a, b, c);
    const run = async () => {
      const r = new CommandRecorder(ctx, 'bench matmul');
      kernel.encode(r, { a, b, c, m: s.m, n: s.n, k: s.k, lda: s.lda, ldc: s.ldc });
      r.submit();
      await ctx.device.queue.onSubmittedWorkDone();
    };
    await run();
    runs.set(shape, run);
  }
  return {
    flops: new Map([...shapes].map(([shape, s]) => [shape, 2 * s.m * s.n * s.k])),
    async pass() {
      const pass: MatmulPass = new Map();
      for (const [shape, run] of runs) {
        const t0 = performance.now();
        await run();
        pass.set(shape, performance.now() - t0);
      }
      return pass;
    },
    release() {
      for (const t of tensors) t.release();
    },
  };
}

/** Each shape's rate from the median of all its samples (passes of every configuration merged). */
export function matmulRatesOf(samples: MatmulSamples[]): MatmulRate[] {
  return samples.map(({ shape, flops, ms }) => ({ shape, gflops: flops / medianOf(ms) / 1e6 }));
}

/** The best rate of one pass, or of two passes averaged per shape (the passes either side of a step). */
function bestOf(flops: ReadonlyMap<string, number>, ...passes: MatmulPass[]): number {
  return Math.max(...[...flops].map(([shape, f]) => f / (passes.reduce((sum, p) => sum + p.get(shape)!, 0) / passes.length) / 1e6));
}

export interface StepEfficiencySpec extends LoraStepSpec {
  model: string;
  /** Timed steps after one warm-up step. */
  steps: number;
}

export interface StepEfficiencyRow {
  model: string;
  format: BaseFormat;
  dtype: 'f32' | 'f16';
  batch: number;
  seq: number;
  rank: number;
  flops: StepFlops;
  stepMs: number[];
  medianStepMs: number;
  tokensPerSecond: number;
  /** FLOPs / median step time. */
  achievedGflops: number;
  /** Best matmul GFLOP/s: the best shape's median over the passes between this configuration's steps (pooledEfficiency's denominator). */
  bestMatmulGflops: number;
  /**
   * The headline: the median of pairedEfficiency. Each step is divided by the matmul rate of its
   * own minutes, so drift in the host's speed within a run lands on the step and its denominator
   * alike instead of on whichever configuration ran in the slower minutes.
   */
  efficiency: number;
  /**
   * Each timed step's rate over the best matmul rate of the passes taken just before and just
   * after it (each shape's mean time over the two passes).
   */
  pairedEfficiency: number[];
  /** The median step's rate over bestMatmulGflops: every pass of the configuration pooled. */
  pooledEfficiency: number;
  /** Per step after the warm-up: time inside CommandRecorder.dispatch/submit, and what was created. */
  record: { ms: number; dispatches: number; submits: number; bindGroupsCreated: number; uniformsCreated: number };
  /** The same with the dispatch cache's reuse across submits off (webtune before issue 22). */
  recordWithoutReuse: { ms: number; stepMs: number; bindGroupsCreated: number; uniformsCreated: number };
  profile: DispatchProfile;
}

/** What one configuration's run gives before the denominator over every configuration is known. */
type StepRun = Omit<StepEfficiencyRow, 'bestMatmulGflops' | 'efficiency' | 'pooledEfficiency'> & { matmulPasses: MatmulPass[]; matmulFlops: ReadonlyMap<string, number> };

/**
 * One configuration on a fresh device: warm-up, timed steps with a matmul pass before the first
 * and after each, then a profiled step.
 */
export async function runStepEfficiency(gpu: GPU, spec: StepEfficiencySpec, log: (line: string) => void): Promise<StepRun> {
  const ctx = await createGpuContext({ gpu });
  try {
    const { step, lora, tokens, release } = await setUpLoraStep(ctx, spec);
    const stats = ctx.dispatches.stats;
    const counters = () => ({ ms: stats.recordMs, dispatches: stats.dispatches, submits: stats.submits, bindGroupsCreated: stats.bindGroupsCreated, uniformsCreated: stats.uniformsCreated });
    const perStep = (a: ReturnType<typeof counters>, b: ReturnType<typeof counters>, n: number) => ({
      ms: (b.ms - a.ms) / n, dispatches: (b.dispatches - a.dispatches) / n, submits: (b.submits - a.submits) / n,
      bindGroupsCreated: (b.bindGroupsCreated - a.bindGroupsCreated) / n, uniformsCreated: (b.uniformsCreated - a.uniformsCreated) / n,
    });
    const flops = countStepFlops(spec.config, lora, spec.batch, spec.seq);

    await step(); // warm-up: pipelines compile, the workspace and the caches fill
    const sampler = await createMatmulSampler(ctx, spec.config, tokens);
    const passes = [await sampler.pass()];
    const stepMs: number[] = [];
    // Per step, averaged: the counters cover the steps only, not the matmul passes between them.
    const recorded = { ms: 0, dispatches: 0, submits: 0, bindGroupsCreated: 0, uniformsCreated: 0 };
    for (let i = 0; i < spec.steps; i++) {
      const before = counters();
      const t0 = performance.now();
      await step();
      stepMs.push(performance.now() - t0);
      const d = perStep(before, counters(), spec.steps);
      for (const key of Object.keys(recorded) as (keyof typeof recorded)[]) recorded[key] += d[key];
      passes.push(await sampler.pass());
      log(`step ${i + 1}/${spec.steps} ${spec.format}/${spec.dtype}: ${stepMs[i]!.toFixed(0)} ms; best matmul around it ${bestOf(sampler.flops, passes[i]!, passes[i + 1]!).toFixed(2)} GFLOP/s`);
    }
    sampler.release();

    ctx.dispatches.reuseAcrossSubmits = false;
    const off = counters();
    const t0 = performance.now();
    await step();
    const offStepMs = performance.now() - t0;
    const offCounters = perStep(off, counters(), 1);
    ctx.dispatches.reuseAcrossSubmits = true;

    const profile = await profileDispatches(ctx, step);
    const medianStepMs = medianOf(stepMs);
    const achievedGflops = flops.total / medianStepMs / 1e6;
    const pairedEfficiency = stepMs.map((ms, i) => flops.total / ms / 1e6 / bestOf(sampler.flops, passes[i]!, passes[i + 1]!));
    const row: StepRun = {
      model: spec.model, format: spec.format, dtype: spec.dtype, batch: spec.batch, seq: spec.seq, rank: spec.rank, flops, stepMs,
      medianStepMs, tokensPerSecond: tokens / (medianStepMs / 1000), achievedGflops, pairedEfficiency,
      record: recorded, recordWithoutReuse: { ms: offCounters.ms, stepMs: offStepMs, bindGroupsCreated: offCounters.bindGroupsCreated, uniformsCreated: offCounters.uniformsCreated },
      profile, matmulPasses: passes, matmulFlops: sampler.flops,
    };
    log(`step ${spec.model} ${spec.format}/${spec.dtype}: ${medianStepMs.toFixed(0)} ms, ${achievedGflops.toFixed(2)} GFLOP/s; recording ${recorded.ms.toFixed(1)} ms/step (${offCounters.ms.toFixed(1)} without reuse)`);
    release();
    return row;
  } finally {
    ctx.destroy();
  }
}

export interface StepEfficiencyResult {
  lane: string;
  adapter: string;
  clock: DispatchProfile['clock'];
  /** Every shape's median over all the passes of both configurations. */
  matmul: MatmulRate[];
  /** The best of `matmul`. */
  bestMatmulGflops: number;
  rows: StepEfficiencyRow[];
}

/**
 * The 135M shape at f32/f32 and NF4/f16 (where shader-f16 exists). Each step is divided by the
 * best rate of the passes either side of it (the headline is their median); the pooled figure by
 * the best shape's median over the configuration's own passes.
 */
export async function runStepEfficiencyBench(
  gpu: GPU, lane: string, shape: { model: string; config: ModelConfig; reader: WeightReader; batch: number; seq: number },
  options: { steps: number; log: (line: string) => void },
): Promise<StepEfficiencyResult> {
  const ctx = await createGpuContext({ gpu });
  const adapter = `${ctx.adapter.name}${ctx.adapter.description ? ` (${ctx.adapter.description})` : ''}`;
  const f16 = ctx.features.shaderF16;
  const clock = ctx.features.timestampQuery ? 'gpu-timestamps' : 'cpu';
  ctx.destroy();
  const runs: { spec: StepEfficiencySpec; run: StepRun }[] = [];
  const variants: Array<[BaseFormat, 'f32' | 'f16']> = [['f32', 'f32'], ...(f16 ? [['nf4', 'f16'] as [BaseFormat, 'f16']] : [['nf4', 'f32'] as [BaseFormat, 'f32']])];
  for (const [format, dtype] of variants) {
    const spec = { ...shape, rank: 8, format, dtype, steps: options.steps };
    runs.push({ spec, run: await runStepEfficiency(gpu, spec, options.log) });
  }
  // The pooled figure divides by the best shape's median over the configuration's own passes (the
  // minutes of its own steps); the table below the rows merges every pass.
  const ratesOver = (passes: MatmulPass[]) => matmulRatesOf([...runs[0]!.run.matmulFlops].map(([shape, flops]) => ({
    shape, flops, ms: passes.map((p) => p.get(shape)!),
  })));
  const matmul = ratesOver(runs.flatMap(({ run }) => run.matmulPasses));
  for (const m of matmul) options.log(`matmul ${m.shape}: ${m.gflops.toFixed(2)} GFLOP/s`);
  const best = Math.max(...matmul.map((r) => r.gflops));
  const rows = runs.map(({ spec, run }) => {
    const { matmulPasses, matmulFlops: _flops, ...partial } = run;
    const own = Math.max(...ratesOver(matmulPasses).map((r) => r.gflops));
    const row: StepEfficiencyRow = { ...partial, bestMatmulGflops: own, efficiency: medianOf(partial.pairedEfficiency), pooledEfficiency: partial.achievedGflops / own };
    options.log(`step ${spec.model} ${spec.format}/${spec.dtype}: ${row.medianStepMs.toFixed(0)} ms, efficiency ${(100 * row.efficiency).toFixed(0)}% (paired ${row.pairedEfficiency.map((e) => (100 * e).toFixed(0)).join(', ')}%; pooled ${row.achievedGflops.toFixed(2)} GFLOP/s of ${own.toFixed(2)} = ${(100 * row.pooledEfficiency).toFixed(0)}%)`);
    return row;
  });
  return { lane, adapter, clock, matmul, bestMatmulGflops: best, rows };
}

const PHASES = ['forward', 'head and loss', 'backward', 'adamw'];

export function stepEfficiencyMarkdown(r: StepEfficiencyResult): string {
  const g = (flops: number) => (flops / 1e9).toFixed(1);
  const lines = [
    `### Step efficiency, ${r.lane}`, '',
    `Adapter: ${r.adapter}. Command: \`BENCH_ONLY=step npm run bench${r.lane.startsWith('browser') ? ' -- browser' : ''}\` (bench/step-efficiency.ts).`, '',
    `- Efficiency = the median over the timed steps of each step's model FLOPs / its time / the best matmul GFLOP/s webtune reached on this adapter, on the step's own device, in the two matmul passes just before and just after that step (every shape below; each shape's mean over the two passes): the same run and the same minutes. Column "paired, per step" lists the steps' ratios. "Pooled" divides the median step's rate by the best shape's median over all of the configuration's passes (column "best matmul"; achieved / best matmul = pooled). Model FLOPs: 2N forward + 2N input gradient per token for the frozen weights (the LM head included), causal attention over visible pairs (backward 2x forward; recomputation not counted), LoRA's own matmuls.`,
    `- Phases and kernels: one more step, every dispatch replayed alone and timed with ${r.clock === 'gpu-timestamps' ? 'GPU timestamps (timestamp-query)' : 'CPU timers (one submit each)'}; their sum can differ from the step's wall time, which also holds recording, submits, readbacks and any overlap.`,
    '- Recording = time inside CommandRecorder.dispatch/submit per step (creating bind groups and uniform buffers, encoding, submitting); "without reuse" is the same step with the dispatch cache bypassed (`reuseAcrossSubmits = false`: every dispatch creates its bind group and takes a pooled uniform buffer, as webtune recorded before issue 22).',
    '- The matmul rates are wall-clock medians of one product each, submit and wait included, over passes (every shape once) taken before the first timed step and after each, so that the denominator covers the same minutes as the steps on an adapter whose speed drifts with the host (the table below merges both configurations\' passes). The rows are the step\'s: logits and the MLP\'s intermediates padded (paddedRowStride, mlpRowStride). Inside a step the same kernels run back to back, which on a slow adapter can make the step\'s own rate come close to or above them.', '',
    '| model | base / activations | tokens | GFLOP per step | median ms/step | tokens/s | achieved GFLOP/s | best matmul | efficiency | paired, per step | pooled | forward ms | head + loss ms | backward ms | AdamW ms | kernels sum ms | recording ms/step | without reuse | dispatches/step | bind groups created/step |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const row of r.rows) {
    const p = row.profile.phases;
    lines.push(`| ${row.model} | ${row.format} / ${row.dtype} | ${row.batch} x ${row.seq} | ${g(row.flops.total)} | ${row.medianStepMs.toFixed(0)} | ${row.tokensPerSecond.toFixed(1)} | ${row.achievedGflops.toFixed(2)} | ${row.bestMatmulGflops.toFixed(2)} | ${(100 * row.efficiency).toFixed(0)}% | ${row.pairedEfficiency.map((e) => `${(100 * e).toFixed(0)}%`).join(', ')} | ${(100 * row.pooledEfficiency).toFixed(0)}% | ${PHASES.map((ph) => (p[ph] ?? 0).toFixed(0)).join(' | ')} | ${row.profile.totalMs.toFixed(0)} | ${row.record.ms.toFixed(1)} | ${row.recordWithoutReuse.ms.toFixed(1)} | ${row.record.dispatches} | ${row.record.bindGroupsCreated} (${row.recordWithoutReuse.bindGroupsCreated} without reuse) |`);
  }
  const first = r.rows[0];
  if (first) {
    const f = first.flops;
    lines.push('', `FLOPs of the ${first.model} step (${first.batch} x ${first.seq}): forward ${g(f.forward)} G, input gradient ${g(f.inputGradient)} G, attention ${g(f.attention)} G, LoRA ${g(f.adapter)} G.`);
  }
  lines.push('', 'Matmul on this adapter, same run (the context\'s default kernel choice; medians over both configurations\' passes):', '', '| shape (M x N x K) | GFLOP/s |', '|---|---:|');
  for (const m of r.matmul) lines.push(`| ${m.shape} | ${m.gflops.toFixed(2)} |`);
  for (const row of r.rows) {
    lines.push('', `Kernels of one ${row.format} / ${row.dtype} step, slowest first (${row.profile.dispatches} dispatches${row.profile.skipped ? `, ${row.profile.skipped} not replayed` : ''}):`, '',
      '| phase | kernel | calls | ms | share | GFLOP/s |', '|---|---|---:|---:|---:|---:|');
    for (const k of row.profile.kernels.slice(0, 16)) {
      lines.push(`| ${k.phase} | ${k.kernel} | ${k.calls} | ${k.ms.toFixed(1)} | ${((100 * k.ms) / row.profile.totalMs).toFixed(1)}% | ${k.flops ? (k.flops / k.ms / 1e6).toFixed(2) : ''} |`);
    }
  }
  return lines.join('\n') + '\n';
}
