/**
 * Node benchmark on Dawn: webtune and TF.js' WebGPU backend on the same adapter. Bundled by
 * scripts/bench.mjs (esbuild) and run with node; prints one JSON line prefixed BENCH_JSON=.
 */
import { createGpuContext } from '@webtune/gpu';
import { createNodeGpu } from '@webtune/gpu/node';
import { runBenchSuite } from './suite.js';
import { runAttentionBench } from './attention.js';
import { runTrainingBench } from './training.js';
import { runFederatedBench } from './federated.js';
import { runSftBench } from './sft.js';
import { runMethodsBench } from './methods.js';
import { runDpSgdBench } from './dp-sgd.js';

const gpu = await createNodeGpu();
// TF.js' WebGPU backend registers itself at import time only when navigator.gpu exists.
Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true });
const tf = await import('@tensorflow/tfjs-core');
await import('@tensorflow/tfjs-backend-webgpu');
await import('@tensorflow/tfjs-core/dist/register_all_gradients');
await tf.setBackend('webgpu');
await tf.ready();

const ctx = await createGpuContext({ gpu });
const runs = Number(process.env.BENCH_RUNS ?? 9);
const rows = await runBenchSuite(ctx, tf, undefined, {
  matmulSizes: [256, 512, 1024, 2048],
  nf4Shapes: [[256, 1024, 1024], [512, 512, 512]],
  runs,
  only: process.env.BENCH_ONLY?.split(',').filter(Boolean),
  log: (line) => console.error(line),
});
const only = process.env.BENCH_ONLY?.split(',').filter(Boolean);
if (!only?.length || only.includes('attention')) rows.push(...(await runAttentionBench(ctx, { runs, log: (line) => console.error(line) })));
const training = !only?.length || only.includes('training') ? await runTrainingBench(gpu, (line) => console.error(line)) : [];
const federated = !only?.length || only.includes('federated') ? await runFederatedBench(gpu, (line) => console.error(line)) : [];
const sft = !only?.length || only.includes('sft') ? await runSftBench(gpu, (line) => console.error(line)) : [];
const methods = !only?.length || only.includes('methods') ? await runMethodsBench(gpu, (line) => console.error(line)) : undefined;
const dpSgd = !only?.length || only.includes('dp-sgd') ? await runDpSgdBench(gpu, (line) => console.error(line)) : undefined;
const adapter = ctx.adapter.name;
console.log(`BENCH_JSON=${JSON.stringify({ lane: 'node (Dawn)', adapter, rows, training, federated, sft, methods, dpSgd })}`);
ctx.destroy();
process.exit(0);
