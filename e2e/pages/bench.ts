/** Browser benchmark: webtune, TF.js WebGPU, onnxruntime-web (WebGPU and wasm EPs) and transformers.js (generate group) in one page on one adapter. */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-webgpu';
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import * as ort from 'onnxruntime-web/webgpu';
import { createGpuContext } from '@webtune/gpu';
import { runBenchSuite, setOrtMatmulModel, type BenchRow } from '../../bench/suite.js';
import { runOnnxForwardBench } from '../../bench/onnx-forward.js';
import { runGenerateBench } from '../../bench/generate.js';
import { runAttentionBench } from '../../bench/attention.js';
import { SMOLLM2_135M, smolLM2Shape } from '../../bench/smol-shape.js';
import { runStepEfficiencyBench, stepEfficiencyMarkdown, type StepEfficiencyResult } from '../../bench/step-efficiency.js';

declare global {
  interface Window {
    benchResult?: { lane: string; adapter: string; rows: BenchRow[]; step?: { result: StepEfficiencyResult; markdown: string } };
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
  // 'attention': the SmolLM2-135M attention forward and backward next to a matmul of its size (bench/attention.ts).
  if (!only?.length || only.includes('attention')) rows.push(...(await runAttentionBench(ctx, { runs, log })));
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
  // 'generate': greedy generation (prompt, then one token at a time with a KV cache) from the same
  // ONNX file by webtune, onnxruntime-web (WebGPU EP, wasm EP) and transformers.js (WebGPU).
  if (!only?.length || only.includes('generate')) {
    const tjs = await loadTransformers();
    const model = async (name: string, path: string, file: string, dtype: 'fp32' | 'q4') => {
      const dir = new URL(path, location.href).href;
      // transformers.js takes a root-relative folder as is (not a hub id, not a remote URL).
      const transformers = { modelId: path.replace(/\/$/, ''), dtype };
      return { name, source: dir, file, bytes: new Uint8Array(await (await fetch(`${dir}${file}`)).arrayBuffer()), transformers };
    };
    rows.push(...(await runGenerateBench(ctx, ort, {
      models: [
        // The demo model exists only as a 4-bit export; the tiny Llama fixture is the f32 file.
        await model('webtune-demo model_q4.onnx', '/models/webtune-demo/', 'onnx/model_q4.onnx', 'q4'),
        await model('tiny-llama model.onnx', '/packages/model/test/fixtures/onnx/tiny-llama/', 'onnx/model.onnx', 'fp32'),
      ],
      // On SwiftShader a WebGPU-EP call of 32 tokens takes ~30 s, and there are three such rows
      // per model: at most 3 timed runs unless asked (BENCH_GENERATE_RUNS).
      runs: Number(params.get('generateRuns') ?? Math.min(runs, 3)),
      promptTokens: Number(params.get('promptTokens') ?? 32),
      newTokens: Number(params.get('newTokens') ?? 32),
      executionProviders: ['webgpu', 'wasm'],
      transformers: tjs,
      log: (line) => {
        log(line);
        console.log(line);
      },
    })));
  }
  // 'step' (only when named: about ten minutes on SwiftShader): the SmolLM2-135M-shape training step
  // against this adapter's matmul peak, per phase and kernel (bench/step-efficiency.ts).
  let step: { result: StepEfficiencyResult; markdown: string } | undefined;
  if (only?.includes('step')) {
    const seq = Number(params.get('stepSeq') ?? 256);
    const layers = Number(params.get('stepLayers') ?? SMOLLM2_135M.num_hidden_layers);
    const result = await runStepEfficiencyBench(navigator.gpu, 'browser (Chromium)', { ...smolLM2Shape(layers), batch: 1, seq }, {
      steps: Number(params.get('stepSteps') ?? 2),
      log: (line) => {
        log(line);
        console.log(line);
      },
    });
    step = { result, markdown: stepEfficiencyMarkdown(result) };
  }
  window.benchResult = {
    lane: 'browser (Chromium)',
    adapter: ctx.adapter.name,
    rows,
    ...(step ? { step } : {}),
  };
}

/**
 * transformers.js, offline: models are root-relative folders of this origin, no hub, no
 * Cache API, and its own onnxruntime-web's .wasm served from node_modules (the copy whose version
 * it reports, as e2e/pages/transformers-js.ts does). Imported only when the 'generate' group runs.
 */
async function loadTransformers() {
  const tjs = await import('@huggingface/transformers');
  const { env } = tjs;
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.useBrowserCache = false;
  env.useWasmCache = false;
  env.useCustomCache = false;
  const tjsOrt = env.backends.onnx;
  const version = tjsOrt.versions?.web;
  for (const dir of ['/node_modules/@huggingface/transformers/node_modules/onnxruntime-web/', '/node_modules/onnxruntime-web/']) {
    const r = await fetch(`${dir}package.json`);
    if (r.ok && ((await r.json()) as { version?: string }).version === version) {
      tjsOrt.wasm!.wasmPaths = new URL(`${dir}dist/`, location.href).href;
      tjsOrt.wasm!.numThreads = 1;
      tjsOrt.wasm!.proxy = false;
      return tjs;
    }
  }
  throw new Error(`no onnxruntime-web ${version} under node_modules to serve transformers.js' .wasm from`);
}

main().catch((error: unknown) => {
  window.benchError = String((error as Error)?.stack ?? error);
});
