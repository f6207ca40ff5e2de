/** Browser benchmark: webtune, TF.js WebGPU and onnxruntime-web's WebGPU EP in one page on one adapter. */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-webgpu';
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import * as ort from 'onnxruntime-web/webgpu';
import { createGpuContext } from '@webtune/gpu';
import { runBenchSuite, setOrtMatmulModel, type BenchRow } from '../../bench/suite.js';

declare global {
  interface Window {
    benchResult?: { lane: string; adapter: string; rows: BenchRow[] };
    benchError?: string;
  }
}

async function main() {
  const status = document.getElementById('status')!;
  await tf.setBackend('webgpu');
  await tf.ready();
  // Served from this origin, never a CDN.
  ort.env.wasm.wasmPaths = '/node_modules/onnxruntime-web/dist/';
  ort.env.wasm.numThreads = 1;
  setOrtMatmulModel(new Uint8Array(await (await fetch('/bench/models/matmul.onnx')).arrayBuffer()));
  const ctx = await createGpuContext();
  const params = new URLSearchParams(location.search);
  const rows = await runBenchSuite(ctx, tf, ort, {
    matmulSizes: (params.get('sizes') ?? '256,512,1024').split(',').map(Number),
    nf4Shapes: [[128, 512, 512]],
    runs: Number(params.get('runs') ?? 5),
    only: params.get('only')?.split(',').filter(Boolean),
    log: (line) => (status.textContent += `\n${line}`),
  });
  window.benchResult = {
    lane: 'browser (Chromium)',
    adapter: ctx.adapter.name,
    rows,
  };
}

main().catch((error: unknown) => {
  window.benchError = String((error as Error)?.stack ?? error);
});
