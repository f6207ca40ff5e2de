/**
 * Step efficiency on Dawn (bench/step-efficiency.ts) for the SmolLM2-135M shape, 1 x 256 tokens.
 * Run by `BENCH_ONLY=step npm run bench` (scripts/bench.mjs), which writes
 * bench/results/step-efficiency.{json,md}. BENCH_STEP_SEQ and BENCH_STEP_LAYERS shrink the shape
 * for a quick look (the committed figures use the full shape).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createNodeGpu } from '@webtune/gpu/node';
import { SMOLLM2_135M, smolLM2Shape } from './smol-shape.js';
import { runStepEfficiencyBench, stepEfficiencyMarkdown } from './step-efficiency.js';

const layers = Number(process.env.BENCH_STEP_LAYERS ?? SMOLLM2_135M.num_hidden_layers);
const seq = Number(process.env.BENCH_STEP_SEQ ?? 256);
const gpu = await createNodeGpu();
const result = await runStepEfficiencyBench(gpu, 'node (Dawn)', { ...smolLM2Shape(layers), batch: 1, seq }, {
  steps: Number(process.env.BENCH_STEP_STEPS ?? 5),
  log: (line) => console.error(line),
});
const outDir = process.env.BENCH_STEP_DIR;
if (outDir) {
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'step-efficiency.json'), JSON.stringify(result, null, 2) + '\n');
  writeFileSync(join(outDir, 'step-efficiency.md'), `# Step efficiency\n\nWritten by \`BENCH_ONLY=step npm run bench\` (scripts/bench.mjs, bench/step-efficiency.ts).\n\n${stepEfficiencyMarkdown(result)}`);
}
console.log(stepEfficiencyMarkdown(result));
process.exit(0);
