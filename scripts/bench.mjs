#!/usr/bin/env node
// `npm run bench`: the Node benchmark (Dawn) and the browser benchmark (Chromium, Playwright),
// each comparing webtune with TF.js WebGPU (and onnxruntime-web WebGPU in the browser) in one
// run on one adapter. Writes bench/results/{node,browser}.json and bench/results/README.md, and
// bench/results/methods.{json,md} whenever the adaptation-methods benchmark ran (BENCH_ONLY=methods included),
// bench/results/dp-sgd.{json,md} whenever the DP-SGD benchmark ran (BENCH_ONLY=dp-sgd included),
// bench/results/secagg.{json,md} whenever the secure-aggregation benchmark ran (BENCH_ONLY=secagg included; no GPU),
// bench/results/device.{json,md} whenever the device-adaptation benchmark ran (BENCH_ONLY=device included; Dawn, its own process),
// bench/results/step-efficiency.{json,md} when BENCH_ONLY names step (Dawn, its own process; the full shape only; a full
// `npm run bench` leaves it out, it takes minutes), and with `-- browser` step-efficiency-browser.{json,md} (e2e/browser.bench.ts).
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { workspaceEsbuildPlugin } from './workspace.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cache = join(root, 'node_modules/.cache/webtune-bench');
// A partial run (BENCH_ONLY) must not replace the committed full results: it writes to the cache.
const results = process.env.BENCH_ONLY ? join(cache, 'partial-results') : join(root, 'bench/results');
process.env.BENCH_RESULTS_DIR = results; // read by e2e/browser.bench.ts
if (process.env.BENCH_ONLY) rmSync(results, { recursive: true, force: true });
mkdirSync(results, { recursive: true });
mkdirSync(cache, { recursive: true });
const only = process.argv[2]; // 'node' | 'browser' | undefined
// Benchmarks in their own process, outside the Dawn and browser lanes: BENCH_ONLY naming only these skips both lanes.
const standalone = ['secagg', 'device', 'step'];
const onlyNames = process.env.BENCH_ONLY?.split(',').filter(Boolean) ?? [];
const gpuLanes = !onlyNames.length || onlyNames.some((name) => !standalone.includes(name));

/** Bundles a bench entry for plain Node (the workspace packages from their sources; webgpu and better-sqlite3 stay external). */
async function bundleForNode(entry, name) {
  const out = join(cache, name);
  await build({
    entryPoints: [join(root, entry)], bundle: true, platform: 'node', format: 'esm', outfile: out,
    external: ['webgpu', 'better-sqlite3'], plugins: [workspaceEsbuildPlugin()], logLevel: 'warning',
    banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
  });
  return out;
}

if (only !== 'browser' && (!onlyNames.length || onlyNames.includes('secagg'))) {
  // Secure aggregation vs plain rounds (bench/secagg.ts): its own files in bench/results, partial run or not.
  const out = await bundleForNode('bench/secagg.ts', 'secagg-bench.mjs');
  console.log('bench: secure aggregation (Node, loopback)…');
  const r = spawnSync(process.execPath, [out], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, BENCH_SECAGG_DIR: join(root, 'bench/results') } });
  if (r.status !== 0) process.exit(1);
}

if (only !== 'browser' && (!onlyNames.length || onlyNames.includes('device'))) {
  // Device adaptation (bench/device.ts): autoConfigure at each level against the defaults, and recovery, on Dawn.
  const out = await bundleForNode('bench/device.ts', 'device-bench.mjs');
  console.log('bench: device adaptation (Node, Dawn)…');
  const r = spawnSync(process.execPath, [out], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, BENCH_DEVICE_DIR: join(root, 'bench/results') } });
  if (r.status !== 0) process.exit(1);
}

if (only !== 'browser' && onlyNames.includes('step')) {
  // Step efficiency (bench/step-efficiency.ts): the 135M step against the adapter's matmul peak, per phase and kernel, on Dawn.
  const out = await bundleForNode('bench/step-efficiency-node.ts', 'step-bench.mjs');
  console.log('bench: step efficiency (Node, Dawn)…');
  // A shrunk shape (BENCH_STEP_SEQ / BENCH_STEP_LAYERS) is a quick look, not the committed figures.
  const shrunk = process.env.BENCH_STEP_SEQ || process.env.BENCH_STEP_LAYERS;
  const r = spawnSync(process.execPath, [out], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, BENCH_STEP_DIR: shrunk ? results : join(root, 'bench/results') } });
  if (r.status !== 0) process.exit(1);
}

if (only !== 'browser' && gpuLanes) {
  const out = await bundleForNode('bench/node.ts', 'node-bench.mjs');
  console.log('bench: Node (Dawn)…');
  const r = spawnSync(process.execPath, [out], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20 });
  const line = (r.stdout ?? '').split('\n').find((l) => l.startsWith('BENCH_JSON='));
  if (r.status !== 0 || !line) {
    console.error(r.stdout);
    process.exit(1);
  }
  writeFileSync(join(results, 'node.json'), JSON.stringify(JSON.parse(line.slice('BENCH_JSON='.length)), null, 2) + '\n');
}

// `-- browser` runs the browser lane even for names that are standalone in Node (BENCH_ONLY=step: the page's step group).
if (only !== 'node' && (gpuLanes || only === 'browser')) {
  console.log('bench: browser (Chromium)…');
  const r = spawnSync('npx', ['playwright', 'test', '-c', 'e2e/bench.config.ts'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(1);
}

/** A markdown table with each library's median time divided by webtune's on the same row group. */
function toMarkdown(title, adapter, rows) {
  const lines = [`### ${title}`, '', `Adapter: ${adapter}`, '', '| benchmark | shape | library | median ms | GFLOP/s | weight bytes | time / webtune |', '|---|---|---|---:|---:|---:|---:|'];
  for (const row of rows) {
    const ours = rows.find((r) => r.benchmark === row.benchmark && r.shape === row.shape && r.library.startsWith('webtune'));
    const ratio = ours && ours !== row ? `${(row.medianMs / ours.medianMs).toFixed(2)}x` : '';
    lines.push(`| ${row.benchmark} | ${row.shape} | ${row.library} | ${row.medianMs.toFixed(2)} | ${row.gflops?.toFixed(2) ?? ''} | ${row.weightBytes ?? ''} | ${ratio} |`);
  }
  return lines.join('\n');
}

/** Training steps: f32 base vs NF4 (QLoRA) per model, with the ratios the issue's targets name. */
function trainingMarkdown(lane, rows) {
  const mib = (b) => (b / 2 ** 20).toFixed(1);
  const lines = [`### Training steps, ${lane}`, '', 'LoRA over a float32 base vs QLoRA (NF4 + double quantization), with f32 activations and, where the adapter has shader-f16, f16 activations; forward + backward + AdamW per step; random tokens. Ratios are against the f32/f32 row.', '',
    '| model | batch x seq | rank | recompute | base / activations | median ms/step | tokens/s | accounted peak MiB | planner estimate MiB | weights MiB | QLoRA peak / f32 | QLoRA time / f32 |',
    '|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|'];
  for (const r of rows) {
    const f32 = rows.find((o) => o.model === r.model && o.recompute === r.recompute && o.format === 'f32' && (o.dtype ?? 'f32') === 'f32');
    const ratios = r.format === 'nf4' && f32 ? [`${((100 * r.peakBytes) / f32.peakBytes).toFixed(0)}%`, `${(r.medianStepMs / f32.medianStepMs).toFixed(2)}x`] : ['', ''];
    lines.push(`| ${r.model} | ${r.batch} x ${r.seq} | ${r.rank} | ${r.recompute ? 'yes' : 'no'} | ${r.format} / ${r.dtype ?? 'f32'} | ${r.medianStepMs.toFixed(0)} | ${r.tokensPerSecond.toFixed(0)} | ${mib(r.peakBytes)} | ${mib(r.estimateBytes)} | ${mib(r.weightBytes)} | ${ratios.join(' | ')} |`);
  }
  return lines.join('\n');
}

/** Federated rows: per-client round time and upload size, and coordinator throughput. */
function federatedMarkdown(lane, rows) {
  const lines = [`### Federated, ${lane}`, '', 'Loopback; round = pull global, train, delta, clip, encode, upload. Throughput: concurrent uploads accepted (each committed to SQLite before the answer).', '',
    '| benchmark | encoding | median ms | upload bytes | per second |', '|---|---|---:|---:|---:|'];
  for (const r of rows) lines.push(`| ${r.benchmark} | ${r.variant} | ${r.medianMs.toFixed(1)} | ${r.uploadBytes ?? ''} | ${r.perSecond?.toFixed(1) ?? ''} |`);
  return lines.join('\n');
}

/** Token generation (bench/generate.ts): time to first token and decode tokens/s per library on the same ONNX file, and agreement of the generated ids. */
function generateMarkdown(lane, adapter, rows) {
  const lines = [`### Token generation, ${lane}`, '', `Adapter: ${adapter}`, '',
    'Greedy, batch 1, KV cache; the same prompt ids and the same ONNX file for every library, exactly the given number of new tokens (eos ignored). Prefill = time to the first new token; decode = the other tokens. Medians of the timed runs after one warm-up. "ids agree" = leading generated ids equal to the first webtune row\'s for that file. Command: `BENCH_ONLY=generate npm run bench -- browser` (bench/generate.ts).', '',
    '| file | prompt + new | library | runs | prefill ms | decode tok/s | total ms | decode speed / webtune | ids agree |',
    '|---|---|---|---:|---:|---:|---:|---:|---|'];
  for (const r of rows) {
    const ours = rows.find((w) => w.shape === r.shape && w.library.startsWith('webtune'));
    const ratio = ours && ours !== r ? `${(r.decodeTokensPerSecond / ours.decodeTokensPerSecond).toFixed(2)}x` : '';
    const file = r.shape.slice(0, r.shape.lastIndexOf(' '));
    lines.push(`| ${file} | ${r.promptTokens} + ${r.newTokens} | ${r.library} | ${r.runs} | ${r.prefillMs.toFixed(1)} | ${r.decodeTokensPerSecond.toFixed(1)} | ${r.medianMs.toFixed(1)} | ${ratio} | ${r.agreeingTokens}/${r.newTokens} |`);
  }
  return lines.join('\n');
}

/** Instruction tuning: data preparation rate and the cost of padded SFT rows against packed text. */
function sftMarkdown(lane, rows) {
  const lines = [`### Instruction tuning, ${lane}`, '', 'Data preparation on the tiny chat fixture (ChatML template); training steps on the bundled demo model, SFT rows vs text windows at the same shape.', '',
    '| benchmark | variant | median ms | rate | note |', '|---|---|---:|---:|---|'];
  for (const r of rows) lines.push(`| ${r.benchmark} | ${r.variant} | ${r.medianMs.toFixed(1)} | ${r.perSecond.toFixed(0)} ${r.unit} | ${r.note ?? ''} |`);
  return lines.join('\n');
}

/**
 * Adaptation methods side by side (bench/methods.ts): trainable share, planned and accounted peak
 * memory and step time on the SmolLM2-135M shape, held-out loss on the tiny Llama; ratios vs the first row (LoRA r8).
 */
function methodsMarkdown(lane, adapter, m) {
  const mib = (b) => (b / 2 ** 20).toFixed(1);
  const ref = m.rows[0];
  const ratio = (a, b) => `${(a / b).toFixed(2)}x`;
  const fmtInt = (n) => n.toLocaleString('en-US');
  const base = m.rows[0].tiny.heldOutBefore;
  const lines = [`### Adaptation methods, ${lane}`, '',
    `Adapter: ${adapter}`, '',
    `Command: \`BENCH_ONLY=methods npm run bench\` (bench/methods.ts). Ratios are against the first row (LoRA r8).`, '',
    `- Trainable parameters, memory and step time: ${m.smol.model}, ${(ref.modelParams / 1e6).toFixed(1)}M parameters, batch ${m.smol.batch} x seq ${m.smol.seq}, ${m.smol.dtype} base and activations, no recompute; one Trainer step = forward + backward + AdamW with clipping. Planner = estimateTrainingMemory's total (Trainer.create's plan on this device); measured = the peak of webtune's own GPU accounting (ctx.memory) over the steps, weights included, a fresh device per method. Median of only ${m.smol.timedSteps} timed steps after ${m.smol.warmupSteps} warm-up step${m.smol.warmupSteps === 1 ? '' : 's'} per method, the methods' steps interleaved round by round (a SmolLM2-shape step takes many seconds on lavapipe, so few are taken). Wall time swings with whatever else shares the machine, so time / LoRA r8 is paired: the median over the timed rounds of this method's step over LoRA r8's step in the same round (not the ratio of the medians). methods.json also has every step's wall and CPU time.`,
    `- Held-out loss: ${m.tiny.model} (real fixture weights), ${m.tiny.steps} steps on Moby-Dick chapters ${m.tiny.trainChapters[0]}-${m.tiny.trainChapters.at(-1)} (${m.tiny.trainRows} windows), batch ${m.tiny.batch} x seq ${m.tiny.seq}, learning rate ${m.tiny.learningRate} (${m.tiny.schedule}, ${m.tiny.warmupSteps} warm-up steps), data seed ${m.tiny.seed}, adapter seed ${m.tiny.adapterSeed}, the same for every method except BitFit's learningRateScale 10 on its biases; evaluated on chapters ${m.tiny.heldOutChapters.join('-')} (${m.tiny.heldOutRows} windows, never trained on). The base model's held-out loss (every method starts there): ${base.toFixed(4)}.`,
    '- Top layers only: LoRA r8 on layers 26-29 of SmolLM2\'s 30 (PEFT layers_to_transform); the tiny Llama has 2 layers, so its held-out run adapts layer 1 only.',
    '- Absolute times on lavapipe (Mesa\'s CPU Vulkan) mean little; the ratios are what carries over.',
    ...(m.rows.some((r) => r.spec.method === 'prompt-tuning' || r.spec.method === 'prefix-tuning' || r.spec.method === 'bottleneck' || r.spec.method === 'unipelt')
      ? ['- Prompt tuning runs its 20 virtual tokens as rows of every sequence (276 rows on the SmolLM2 shape); prefix tuning adds 20 keys and values to every layer\'s attention; both train through layer 0. Houlsby adapters are 64 wide on SmolLM2 and 16 on the tiny Llama (hidden size 64). UniPELT gates LoRA r8 on LoRA\'s targets, a 10-row prefix and a Pfeiffer adapter (hidden / 16 wide) per layer, each per token; its prefix is attended to apart and merged. Every method gets the same learning rate; prompt and prefix tuning are known to want a larger one (PEFT\'s examples use 3e-2 and up), so their held-out drop here is a lower bound.']
      : []),
    ...m.rows.filter((r) => r !== ref && r.spec.config.layers).map((r) => `- ${r.method}: measured peak ${mib(ref.peakBytes - r.peakBytes)} MiB below ${ref.method}'s (${(100 * (1 - r.peakBytes / ref.peakBytes)).toFixed(0)}% less; planned activations ${mib(ref.plannerActivationBytes)} -> ${mib(r.plannerActivationBytes)} MiB), because backward stops at layer ${Math.min(...r.spec.config.layers)} and the frozen layers below keep no saved activations.`),
    '- Resolved adapter configs (SmolLM2 shape): ' + m.rows.map((r) => `${r.method} = \`${r.spec.method} ${JSON.stringify(r.spec.config)}\``).join('; ') + '.', '',
    '| method | trainable params | % of model | planner peak MiB (activations) | measured peak MiB | peak / LoRA r8 | median ms/step | time / LoRA r8 | held-out loss (base ' + base.toFixed(3) + ') | held-out drop | drop / LoRA r8 |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|'];
  for (const r of m.rows) {
    const drop = r.tiny.heldOutBefore - r.tiny.heldOutAfter;
    const refDrop = ref.tiny.heldOutBefore - ref.tiny.heldOutAfter;
    lines.push(`| ${r.method} | ${fmtInt(r.trainableParams)} | ${r.trainablePercent.toFixed(3)}% | ${mib(r.plannerBytes)} (${mib(r.plannerActivationBytes)}) | ${mib(r.peakBytes)} | ${ratio(r.peakBytes, ref.peakBytes)} | ${r.medianStepMs.toFixed(0)} | ${r.timeRatio.toFixed(2)}x | ${r.tiny.heldOutAfter.toFixed(4)} | ${drop.toFixed(4)} | ${ratio(drop, refDrop)} |`);
  }
  return lines.join('\n');
}

/**
 * DP-SGD against non-private training (bench/dp-sgd.ts): step time and peak memory on the SmolLM2-135M
 * shape at each expected batch, held-out loss at each epsilon on the tiny Llama.
 */
function dpSgdMarkdown(lane, adapter, d) {
  const mib = (b) => (b / 2 ** 20).toFixed(1);
  const x = (a, b) => `${(a / b).toFixed(2)}x`;
  const s = d.smol;
  const t = d.tiny;
  const cpuPerExample = (r) => r.cpuMs.reduce((u, v) => u + v, 0) / Math.max(r.examples.reduce((u, v) => u + v, 0), 1);
  const lines = [`### DP-SGD vs non-private training, ${lane}`, '',
    `Adapter: ${adapter}`, '',
    `Command: \`${d.command ?? 'BENCH_ONLY=dp-sgd npm run bench -- node'}\` (bench/dp-sgd.ts).`, '',
    `- Step time and memory: ${s.model}, LoRA r${s.rank} on ${s.targets.join(', ')}, ${s.dtype} base and activations, no recompute, seq ${s.seq}, ${s.rows} random-token rows; each configuration on a fresh device, ${s.warmupSteps} warm-up step${s.warmupSteps === 1 ? '' : 's'} then ${s.timedSteps} timed step${s.timedSteps === 1 ? '' : 's'} in one train() call. Non-private: one batched forward + backward per step, AdamW with global clipping. DP-SGD: Poisson sampling at q = batch / ${s.rows} (sampler seed ${s.samplerSeed}, so the same draws every run; the sampled batch varies, the table gives its mean over the timed steps), every example forward + backward on its own, its gradient clipped to C = ${s.maxGradNorm} and added to a sum on the GPU, Gaussian noise sigma = ${s.noiseMultiplier} (CSPRNG), AdamW over sum / expected batch. ms/example = timed wall time / examples in the timed steps. Peak = the largest of webtune's own GPU accounting (ctx.memory) over the run, weights (513 MiB here) included; planner = estimateTrainingMemory's total (Trainer.create's plan; under DP-SGD it plans a batch of one).`,
    `- Load: the machine has 2 cores and other work (tests, other benches) was running beside this one (load average ${s.loadAverage.map((v) => v.toFixed(2)).join(', ')} at the start), so wall times are noisy; the CPU time this process spent per step (lavapipe runs in it; user + system, all threads) moves less, and is the fairer comparison here. dp-sgd.json has every step's wall and CPU time. Only ${s.timedSteps} timed step${s.timedSteps === 1 ? '' : 's'} per row: a SmolLM2-shape step takes tens of seconds on lavapipe. With so few steps on shared cores, time ratios within about 30% of 1x are noise (repeat runs of this bench moved the DP / non-private CPU ratio by that much, either way).`,
    ...(s.seq !== 64 || s.timedSteps !== 2 || t.steps !== 150 ? [`- Smaller than the bench's defaults (seq 64, 1 warm-up + 2 timed steps, 150 tiny-Llama steps): this run used seq ${s.seq}, ${s.warmupSteps} warm-up + ${s.timedSteps} timed step${s.timedSteps === 1 ? '' : 's'} and ${t.steps} tiny-Llama steps (BENCH_DP_SEQ, BENCH_DP_WARMUP, BENCH_DP_STEPS, BENCH_DP_TINY_STEPS), because the machine was heavily loaded and the defaults would not have finished in the time available${s.timedSteps === 1 ? '; with one timed step the "median" is that step' : ''}.`] : []),
    '- Memory of this approach: webtune computes per-example gradients one example at a time (a physical batch of one), so a DP-SGD step holds the activations of batch 1 plus one extra copy of the adapter\'s gradients (the clipped sum), whatever the expected batch. Ghost clipping (Opacus\' ghost-norm trick, per-example norms without per-example gradients over a batched pass) was not implemented, so the papers\' "ghost clipping costs little memory" claim is not measured here; the table measures what this approach costs instead: its peak against the non-private batch\'s, and its time, since the examples of a step no longer share one batched pass.',
    '- Reading the time columns: lavapipe is a CPU, where the same arithmetic on 2 cores takes about as long batched as one example at a time, so here DP-SGD costs about what its examples cost in a batch; on a real GPU a batch of one leaves most of the device idle and the per-example loop would cost far more than the batched step. That gap is not measured here.', '',
    '| mode | expected batch x seq | mean sampled batch | median ms/step | ms/example | DP time / non-private (per step, per example) | median CPU ms/step | CPU ms/example | DP CPU / non-private (per step, per example) | measured peak MiB | planner MiB | DP peak / non-private |',
    '|---|---|---:|---:|---:|---|---:|---:|---|---:|---:|---:|'];
  for (const r of d.speed) {
    const ref = d.speed.find((o) => o.mode === 'non-private' && o.batch === r.batch);
    const dp = r.mode === 'DP-SGD' && ref;
    lines.push(`| ${r.mode}${r.privacy ? ` (sigma ${r.privacy.noiseMultiplier}, C ${r.privacy.maxGradNorm}, q ${r.privacy.sampleRate.toFixed(4)})` : ''} | ${r.batch} x ${r.seq} | ${r.meanExamples.toFixed(2)} | ${r.medianStepMs.toFixed(0)} | ${r.msPerExample.toFixed(0)} | ${dp ? `${x(r.medianStepMs, ref.medianStepMs)}, ${x(r.msPerExample, ref.msPerExample)}` : ''} | ${r.medianCpuMs.toFixed(0)} | ${cpuPerExample(r).toFixed(0)} | ${dp ? `${x(r.medianCpuMs, ref.medianCpuMs)}, ${x(cpuPerExample(r), cpuPerExample(ref))}` : ''} | ${mib(r.peakBytes)} | ${mib(r.plannerBytes)} | ${dp ? x(r.peakBytes, ref.peakBytes) : ''} |`);
  }
  const base = d.loss[0].heldOutBefore;
  const np = d.loss.find((r) => r.targetEpsilon === undefined);
  lines.push('',
    `- Held-out loss: ${t.model} (real fixture weights), LoRA r8, ${t.steps} steps on Moby-Dick chapters ${t.trainChapters[0]}-${t.trainChapters.at(-1)} (N = ${t.trainRows} windows), batch ${t.batch} x seq ${t.seq} (DP-SGD: expected batch ${t.batch}, q = ${t.sampleRate.toFixed(5)}, sampler seed ${t.samplerSeed}), learning rate ${t.learningRate} (${t.schedule}, ${t.warmupSteps} warm-up steps), data seed ${t.seed}, adapter seed ${t.adapterSeed}, the same for every row; C = ${t.maxGradNorm}, delta = 1 / (10 N) = ${t.delta.toExponential(3)}, sigma = noiseMultiplierFor({ targetEpsilon, delta, sampleRate: q, steps: ${t.steps} }); epsilon spent = the trainer's RDP accountant after the run. Evaluated on chapters ${t.heldOutChapters.join('-')} (${t.heldOutRows} windows, never trained on). The base model's held-out loss: ${base.toFixed(4)}.`, '',
    '| run | sigma | epsilon spent | held-out loss | held-out drop | drop / non-private | train loss first -> last | mean batch | median ms/step |',
    '|---|---:|---:|---:|---:|---:|---|---:|---:|');
  for (const r of d.loss) {
    const drop = r.heldOutBefore - r.heldOutAfter;
    lines.push(`| ${r.label} | ${r.noiseMultiplier?.toFixed(3) ?? ''} | ${r.epsilon?.toFixed(3) ?? ''} | ${r.heldOutAfter.toFixed(4)} | ${drop.toFixed(4)} | ${x(drop, np.heldOutBefore - np.heldOutAfter)} | ${r.firstLoss.toFixed(3)} -> ${r.lastLoss.toFixed(3)} | ${r.meanExamples.toFixed(2)} | ${r.medianStepMs.toFixed(0)} |`);
  }
  return lines.join('\n');
}

// The methods table has its own files, which only the methods benchmark writes: a BENCH_ONLY=methods run is their full run.
const nodeResults = join(results, 'node.json');
if (existsSync(nodeResults)) {
  const r = JSON.parse(readFileSync(nodeResults, 'utf8'));
  if (r.methods?.rows?.length) {
    const dir = join(root, 'bench/results');
    writeFileSync(join(dir, 'methods.json'), JSON.stringify({ lane: r.lane, adapter: r.adapter, command: 'BENCH_ONLY=methods npm run bench', ...r.methods }, null, 2) + '\n');
    writeFileSync(join(dir, 'methods.md'), `# Adaptation methods\n\nWritten by \`BENCH_ONLY=methods npm run bench\` (scripts/bench.mjs, bench/methods.ts); the same table is in README.md after a full run.\n\n${methodsMarkdown(r.lane, r.adapter, r.methods)}\n`);
  }
  if (r.dpSgd?.speed?.length) {
    const dir = join(root, 'bench/results');
    writeFileSync(join(dir, 'dp-sgd.json'), JSON.stringify({ lane: r.lane, adapter: r.adapter, command: 'BENCH_ONLY=dp-sgd npm run bench -- node', ...r.dpSgd }, null, 2) + '\n');
    writeFileSync(join(dir, 'dp-sgd.md'), `# DP-SGD vs non-private training\n\nWritten by \`BENCH_ONLY=dp-sgd npm run bench -- node\` (scripts/bench.mjs, bench/dp-sgd.ts); the same tables are in README.md after a full run.\n\n${dpSgdMarkdown(r.lane, r.adapter, r.dpSgd)}\n`);
  }
}

const sections = ['node', 'browser']
  .filter((lane) => existsSync(join(results, `${lane}.json`)))
  .flatMap((lane) => {
    const r = JSON.parse(readFileSync(join(results, `${lane}.json`), 'utf8'));
    const plain = r.rows.filter((row) => row.benchmark !== 'generate');
    const generate = r.rows.filter((row) => row.benchmark === 'generate');
    const parts = plain.length ? [toMarkdown(r.lane, r.adapter, plain)] : [];
    if (generate.length) parts.push(generateMarkdown(r.lane, r.adapter, generate));
    if (r.training?.length) parts.push(trainingMarkdown(r.lane, r.training));
    if (r.federated?.length) parts.push(federatedMarkdown(r.lane, r.federated));
    if (r.sft?.length) parts.push(sftMarkdown(r.lane, r.sft));
    if (r.methods?.rows?.length) parts.push(methodsMarkdown(r.lane, r.adapter, r.methods));
    if (r.dpSgd?.speed?.length) parts.push(dpSgdMarkdown(r.lane, r.adapter, r.dpSgd));
    return parts;
  });
// Tables with files of their own (written by partial runs too) are linked from the README.
const ownFiles = (existsSync(join(root, 'bench/results/dp-sgd.md')) ? '- DP-SGD vs non-private training (step time, peak memory, held-out loss at epsilon 8, 3, 1): [dp-sgd.md](dp-sgd.md), `BENCH_ONLY=dp-sgd npm run bench -- node`.\n' : '')
  + (existsSync(join(root, 'bench/results/secagg.md')) ? '- Secure aggregation (SecAgg+) vs a plain round (bytes and time per client and stage, n = 10, 50, 100): [secagg.md](secagg.md), `BENCH_ONLY=secagg npm run bench`.\n' : '')
  + (existsSync(join(root, 'bench/results/device.md')) ? '- Device adaptation (autoConfigure at each memory level against the defaults, calibration cost, recovery from a lost device): [device.md](device.md), `BENCH_ONLY=device npm run bench`.\n' : '')
  + (existsSync(join(root, 'bench/results/step-efficiency.md')) ? '- Step efficiency (the SmolLM2-135M-shape training step against the adapter\'s matmul peak, per phase and kernel, CPU recording time): [step-efficiency.md](step-efficiency.md), `BENCH_ONLY=step npm run bench`; Chromium: [step-efficiency-browser.md](step-efficiency-browser.md), `BENCH_ONLY=step npm run bench -- browser`.\n' : '');
const ownFilesBlock = ownFiles ? `${ownFiles}\n` : '';
writeFileSync(join(results, 'README.md'), `# Benchmark results\n\nWritten by \`npm run bench\` (scripts/bench.mjs). Medians; speed-up = library's median time / webtune's.\n\n${ownFilesBlock}${sections.join('\n\n')}\n`);
console.log(readFileSync(join(results, 'README.md'), 'utf8'));
