#!/usr/bin/env node
// `npm run bench`: the Node benchmark (Dawn) and the browser benchmark (Chromium, Playwright),
// each comparing webtune with TF.js WebGPU (and onnxruntime-web WebGPU in the browser) in one
// run on one adapter. Writes bench/results/{node,browser}.json and bench/results/README.md.
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


if (only !== 'browser') {
  const out = join(cache, 'node-bench.mjs');
  await build({
    entryPoints: [join(root, 'bench/node.ts')], bundle: true, platform: 'node', format: 'esm', outfile: out,
    external: ['webgpu', 'better-sqlite3'], plugins: [workspaceEsbuildPlugin()], logLevel: 'warning',
    banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
  });
  console.log('bench: Node (Dawn)…');
  const r = spawnSync(process.execPath, [out], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20 });
  const line = (r.stdout ?? '').split('\n').find((l) => l.startsWith('BENCH_JSON='));
  if (r.status !== 0 || !line) {
    console.error(r.stdout);
    process.exit(1);
  }
  writeFileSync(join(results, 'node.json'), JSON.stringify(JSON.parse(line.slice('BENCH_JSON='.length)), null, 2) + '\n');
}

if (only !== 'node') {
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

/** Training steps: f32 base vs NF4 (QLoRA) per model, with the ratios the targets name. */
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

/** Instruction tuning: data preparation rate and the cost of padded SFT rows against packed text. */
function sftMarkdown(lane, rows) {
  const lines = [`### Instruction tuning, ${lane}`, '', 'Data preparation on the tiny chat fixture (ChatML template); training steps on the bundled demo model, SFT rows vs text windows at the same shape.', '',
    '| benchmark | variant | median ms | rate | note |', '|---|---|---:|---:|---|'];
  for (const r of rows) lines.push(`| ${r.benchmark} | ${r.variant} | ${r.medianMs.toFixed(1)} | ${r.perSecond.toFixed(0)} ${r.unit} | ${r.note ?? ''} |`);
  return lines.join('\n');
}

const sections = ['node', 'browser']
  .filter((lane) => existsSync(join(results, `${lane}.json`)))
  .flatMap((lane) => {
    const r = JSON.parse(readFileSync(join(results, `${lane}.json`), 'utf8'));
    const parts = r.rows.length ? [toMarkdown(r.lane, r.adapter, r.rows)] : [];
    if (r.training?.length) parts.push(trainingMarkdown(r.lane, r.training));
    if (r.federated?.length) parts.push(federatedMarkdown(r.lane, r.federated));
    if (r.sft?.length) parts.push(sftMarkdown(r.lane, r.sft));
    return parts;
  });
writeFileSync(join(results, 'README.md'), `# Benchmark results\n\nWritten by \`npm run bench\` (scripts/bench.mjs). Medians; speed-up = library's median time / webtune's.\n\n${sections.join('\n\n')}\n`);
console.log(readFileSync(join(results, 'README.md'), 'utf8'));
