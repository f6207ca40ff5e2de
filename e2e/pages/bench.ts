/** Browser benchmark: webtune, TF.js WebGPU and onnxruntime-web's WebGPU EP in one page on one adapter. */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-webgpu';
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import * as ort from 'onnxruntime-web/webgpu';
import { createGpuContext } from '@webtune/gpu';
import { runBenchSuite, setOrtMatmulModel, type BenchRow } from '../../bench/suite.js';
import { runOnnxForwardBench } from '../../bench/onnx-forward.js';

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
  const only = params.get('only')?.split(',').filter(Boolean);
  const runs = Number(params.get('runs') ?? 5);
  const log = (line: string) => (status.textContent += `\n${line}`);
  const rows = await runBenchSuite(ctx, tf, ort, {
    matmulSizes: (params.get('sizes') ?? '256,512,1024').split(',').map(Number),
    nf4Shapes: [[128, 512, 512]],
    runs,
    only,
    log,
  });
  // 'onnx': one 64-token prompt through the same ONNX file in webtune and onnxruntime-web (WebGPU EP, wasm EP).
  if (!only?.length || only.includes('onnx')) {
    const model = async (name: string, path: string, file: string) => {
      const dir = new URL(path, location.href).href;
      return { name, source: dir, file, bytes: new Uint8Array(await (await fetch(`${dir}${file}`)).arrayBuffer()) };
    };
    rows.push(...(await runOnnxForwardBench(ctx, ort, {
      models: [
        // demo-app/public/models/webtune-demo/ (Vite serves its public dir at the root).
        await model('webtune-demo model_q4.onnx', '/models/webtune-demo/', 'onnx/model_q4.onnx'),
        await model('tiny-llama model.onnx', '/packages/model/test/fixtures/onnx/tiny-llama/', 'onnx/model.onnx'),
      ],
      runs,
      seq: 64,
      executionProviders: ['webgpu', 'wasm'],
      log: (line) => {
        log(line);
        console.log(line);
      },
    })));
  }
  window.benchResult = {
    lane: 'browser (Chromium)',
    adapter: ctx.adapter.name,
    rows,
  };
}

main().catch((error: unknown) => {
  window.benchError = String((error as Error)?.stack ?? error);
});
