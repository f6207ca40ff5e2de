/**
 * webtune's ONNX files in transformers.js (@huggingface/transformers, its browser build and the
 * onnxruntime-web it pins), offline, in Chromium:
 *  1. AutoModelForCausalLM.from_pretrained on the ONNX fixtures (tiny Llama and GPT-2; dtype 'fp32'
 *     -> onnx/model.onnx, 'q4' -> onnx/model_q4.onnx; the external-data copy of the Llama with
 *     use_external_data_format), device 'wasm': logits for the golden ids against PyTorch's
 *     (scripts/make_onnx_fixtures.py), and a two-call forward through transformers.js' own
 *     DynamicCache against PyTorch's logitsWithPast;
 *  2. LoRA trained a few steps on an ONNX-loaded model with webtune (TrainerSession inline, as
 *     e2e/pages/onnx.ts), exported with exportOnnx() or exportMergedOnnx(), and the exported bytes
 *     loaded by transformers.js from memory: env.fetch answers the model folder
 *     `<localModelPath>webtune-export-<model>-<variant>/` (config.json and generation_config.json
 *     copied from the fixture, the exported graph); its logits against webtune's forward with the
 *     adapter, and its generate() (KV cache) against greedy decoding by full forwards.
 * Nothing leaves this origin: env.allowRemoteModels = false, env.localModelPath on the dev server,
 * no Cache API (env.useBrowserCache/useWasmCache = false), and onnxruntime-web's .wasm served from
 * the copy transformers.js imports (ort.env.wasm.wasmPaths through env.backends.onnx). Results go to
 * window.tjsReport for e2e/transformers-js.spec.ts; a case transformers.js cannot run reports its
 * error instead of a diff. `?models=tiny-llama&variants=q4&train=tiny-llama:q4` narrows the run.
 */
import { AutoModelForCausalLM, DynamicCache, env, Tensor, type PreTrainedModel } from '@huggingface/transformers';
import { createGpuContext } from '@webtune/gpu';
import { bytesOf, errorText, f32, golden, maxDiff, ONNX_FIXTURES, ROOT, statusLog, trainAndExport } from './onnx-common.js';

type Variant = 'f32' | 'q4';
type Dtype = 'fp32' | 'q4';
const DTYPE: Record<Variant, Dtype> = { f32: 'fp32', q4: 'q4' };

/** A transformers.js evaluation: the diff, or why it could not run. */
export type TjsResult<T> = ({ ok: true } & T) | { ok: false; error: string };

export interface FixtureCase {
  model: string;
  variant: Variant;
  dtype: Dtype;
  /** The transformers.js model id, resolved under env.localModelPath. */
  modelId: string;
  externalData: boolean;
  result: TjsResult<{
    /** max |transformers.js - PyTorch| over the [batch, seq, vocab] logits. */
    vsTorch: number;
    /** The same for the second call of a two-call forward (empty past, then DynamicCache) vs PyTorch's logitsWithPast. */
    withPastVsTorch: number;
    logitsDims: number[];
    inputNames: string[];
    ms: number;
  }>;
}

export interface ExportCase {
  model: string;
  variant: Variant;
  via: 'exportOnnx' | 'exportMergedOnnx';
  steps: number;
  lastLoss: number | undefined;
  exportedFiles: string[];
  exportedBytes: number;
  modelId: string;
  /** max |webtune with adapter - PyTorch base|: how far the adapter moved the logits. */
  moved: number;
  result: TjsResult<{
    /** max |transformers.js on the exported files - webtune with the adapter|. */
    vsWebtune: number;
    /** max |transformers.js on the ORIGINAL file - webtune with the adapter| (the adapter's effect, seen by transformers.js). */
    originalVsWebtune: number;
    /** model.generate (greedy, KV cache) and greedy by full forwards without a cache: the same tokens expected. */
    generated: number[][];
    greedy: number[][];
    ms: number;
  }>;
}

export interface TjsReport {
  transformersVersion: string;
  ortVersion: string | undefined;
  /** Where onnxruntime-web's .wasm was served from (this origin). */
  wasmPaths: string;
  localModelPath: string;
  adapter: string;
  fixtures: FixtureCase[];
  exports: ExportCase[];
  /** Files transformers.js read through env.fetch from memory (the exported folders). */
  servedFromMemory: string[];
  uncapturedErrors: string[];
  seconds: number;
}

declare global {
  interface Window {
    tjsReport?: TjsReport;
    tjsError?: string;
  }
}

const params = new URLSearchParams(location.search);
const log = statusLog();

const MODELS = ONNX_FIXTURES;
const EXPORT_PREFIX = 'webtune-export-';

// ---------------------------------------------------------------- transformers.js, offline
/** In-memory model folders, by URL under env.localModelPath. */
const memoryFiles = new Map<string, Uint8Array>();
const servedFromMemory: string[] = [];
const networkFetch = globalThis.fetch.bind(globalThis);

async function configureTransformers(): Promise<string> {
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = MODELS;
  env.useBrowserCache = false;
  env.useWasmCache = false;
  env.useCustomCache = false;
  env.fetch = async (input: string | URL, init?: RequestInit) => {
    const url = String(input);
    if (url.startsWith(`${MODELS}${EXPORT_PREFIX}`)) {
      const bytes = memoryFiles.get(url);
      if (!bytes) return new Response(null, { status: 404, statusText: 'Not Found' });
      servedFromMemory.push(url.slice(MODELS.length));
      return new Response(bytes.slice(), { status: 200, headers: { 'content-length': String(bytes.byteLength) } });
    }
    return networkFetch(input, init);
  };
  // onnxruntime-web as transformers.js imports it ('onnxruntime-web/webgpu'): its .wasm from this
  // origin, from the package copy whose version the runtime reports (npm nests it under
  // @huggingface/transformers when the root onnxruntime-web is another version).
  const ort = env.backends.onnx;
  const version = ort.versions?.web;
  let wasmPaths: string | undefined;
  for (const dir of ['node_modules/@huggingface/transformers/node_modules/onnxruntime-web/', 'node_modules/onnxruntime-web/']) {
    const r = await fetch(`${ROOT}${dir}package.json`);
    if (r.ok && ((await r.json()) as { version?: string }).version === version) {
      wasmPaths = `${ROOT}${dir}dist/`;
      break;
    }
  }
  if (!wasmPaths) throw new Error(`no onnxruntime-web ${version} under node_modules to serve its .wasm from`);
  ort.wasm!.wasmPaths = wasmPaths;
  // One thread: the dev server is not cross-origin isolated.
  ort.wasm!.numThreads = 1;
  ort.wasm!.proxy = false;
  return wasmPaths;
}

const idsTensor = (ids: number[][]) => new Tensor('int64', BigInt64Array.from(ids.flat(), (v) => BigInt(v)), [ids.length, ids[0]!.length]);
const onesTensor = (batch: number, seq: number) => new Tensor('int64', new BigInt64Array(batch * seq).fill(1n), [batch, seq]);

async function load(modelId: string, dtype: Dtype, externalData = false): Promise<PreTrainedModel> {
  return AutoModelForCausalLM.from_pretrained(modelId, {
    dtype, device: 'wasm', ...(externalData ? { use_external_data_format: true } : {}),
    // Errors only: no warnings about shape ops placed on the CPU.
    session_options: { logSeverityLevel: 3 },
  });
}

type Out = Record<string, Tensor>;
const logitsOf = (out: Out) => new Float32Array(out.logits!.data as Float32Array);

/** The whole sequence with an empty past (transformers.js fills position_ids and the empty past_key_values.*). */
async function forward(model: PreTrainedModel, ids: number[][]): Promise<Out> {
  return (await model.forward({ input_ids: idsTensor(ids), attention_mask: onesTensor(ids.length, ids[0]!.length) })) as Out;
}

/** ids[:, :split] with an empty past, then ids[:, split:] with its present.* as a DynamicCache: the second call's logits. */
async function forwardWithPast(model: PreTrainedModel, ids: number[][], split: number): Promise<Float32Array> {
  const first = await forward(model, ids.map((r) => r.slice(0, split)));
  const past = new DynamicCache(Object.fromEntries(
    Object.entries(first).filter(([k]) => k.startsWith('present')).map(([k, v]) => [k.replace('present', 'past_key_values'), v]),
  ));
  const second = (await model.forward({
    input_ids: idsTensor(ids.map((r) => r.slice(split))),
    attention_mask: onesTensor(ids.length, ids[0]!.length),
    past_key_values: past,
  })) as Out;
  return logitsOf(second);
}

const inputNamesOf = (model: PreTrainedModel) => [...((model as unknown as { sessions: Record<string, { inputNames: string[] }> }).sessions.model?.inputNames ?? [])];

/** Greedy continuation by full forwards (no cache), never picking `eos` (as min_new_tokens does). */
async function greedyByForwards(model: PreTrainedModel, ids: number[][], steps: number, eos: number): Promise<number[][]> {
  const seqs = ids.map((r) => [...r]);
  for (let s = 0; s < steps; s++) {
    const out = await forward(model, seqs);
    const logits = logitsOf(out);
    const [batch, seq, vocab] = out.logits!.dims as [number, number, number];
    for (let b = 0; b < batch; b++) {
      const o = (b * seq + seq - 1) * vocab;
      let best = -1;
      for (let v = 0; v < vocab; v++) if (v !== eos && (best < 0 || logits[o + v]! > logits[o + best]!)) best = v;
      seqs[b]!.push(best);
    }
  }
  return seqs.map((r) => r.slice(ids[0]!.length));
}

async function generated(model: PreTrainedModel, ids: number[][], steps: number): Promise<number[][]> {
  const out = (await model.generate({
    inputs: idsTensor(ids), attention_mask: onesTensor(ids.length, ids[0]!.length),
    max_new_tokens: steps, min_new_tokens: steps, do_sample: false,
  })) as Tensor;
  const [batch, seq] = out.dims as [number, number];
  const data = out.data as BigInt64Array;
  return Array.from({ length: batch }, (_, b) => Array.from(data.subarray(b * seq + ids[0]!.length, (b + 1) * seq), Number));
}

// ---------------------------------------------------------------- webtune
function show<T>(r: TjsResult<T>, pick: (ok: T) => number): string {
  return r.ok ? pick(r).toExponential(2) : `error: ${r.error.slice(0, 200)}`;
}

async function main() {
  const start = performance.now();
  const wasmPaths = await configureTransformers();
  const ctx = await createGpuContext();
  log(`transformers.js ${env.version}, onnxruntime-web ${env.backends.onnx.versions?.web} (.wasm from ${wasmPaths}), WebGPU adapter ${ctx.adapter.name}`);

  // (1) the fixtures as transformers.js loads a model folder.
  const fixtures: FixtureCase[] = [];
  const models = (params.get('models') ?? 'tiny-llama,tiny-gpt2').split(',').filter(Boolean);
  const variants = (params.get('variants') ?? 'f32,q4').split(',').filter(Boolean) as Variant[];
  const cases: { model: string; variant: Variant; modelId: string; externalData: boolean }[] = [];
  for (const model of models) {
    for (const variant of variants) cases.push({ model, variant, modelId: model, externalData: false });
    if (model === 'tiny-llama' && variants.includes('f32') && params.get('external') !== '0') {
      cases.push({ model, variant: 'f32', modelId: 'tiny-llama-external', externalData: true });
    }
  }
  for (const { model, variant, modelId, externalData } of cases) {
    const g = await golden(model);
    const c: FixtureCase = { model, variant, dtype: DTYPE[variant], modelId, externalData, result: { ok: false, error: 'not run' } };
    try {
      const t0 = performance.now();
      const m = await load(modelId, DTYPE[variant], externalData);
      try {
        const out = await forward(m, g.inputIds);
        const withPast = await forwardWithPast(m, g.inputIds, g.pastSplit);
        c.result = {
          ok: true,
          vsTorch: maxDiff(logitsOf(out), f32(g.variants[variant].logits)),
          withPastVsTorch: maxDiff(withPast, f32(g.variants[variant].logitsWithPast)),
          logitsDims: [...out.logits!.dims],
          inputNames: inputNamesOf(m),
          ms: performance.now() - t0,
        };
      } finally {
        await m.dispose();
      }
    } catch (error) {
      c.result = { ok: false, error: errorText(error) };
    }
    fixtures.push(c);
    log(`${modelId} ${variant} (dtype ${c.dtype}): transformers.js vs PyTorch ${show(c.result, (x) => x.vsTorch)}, with past ${show(c.result, (x) => x.withPastVsTorch)}`);
  }

  // (2) LoRA trained with webtune, exported, run by transformers.js from memory.
  const exports: ExportCase[] = [];
  const trainCases = (params.get('train') ?? 'tiny-llama:f32:exportOnnx,tiny-llama:q4:exportOnnx,tiny-gpt2:q4:exportMergedOnnx')
    .split(',').filter(Boolean).map((s) => {
      const [model, variant, via] = s.split(':') as [string, Variant, ExportCase['via'] | undefined];
      return { model, variant, via: via ?? 'exportOnnx' };
    });
  for (const { model, variant, via } of trainCases) {
    const { g, dir, steps, lastLoss, exported, withAdapter } = await trainAndExport(ctx, model, variant, via);

    // The exported folder, in memory: the fixture's configs and the exported graph (+ external data).
    const modelId = `${EXPORT_PREFIX}${model}-${variant}-${via}`;
    const folder = `${MODELS}${modelId}/`;
    for (const name of ['config.json', 'generation_config.json']) memoryFiles.set(`${folder}${name}`, await bytesOf(`${dir}${name}`));
    for (const [name, bytes] of Object.entries(exported)) memoryFiles.set(`${folder}${name}`, bytes);
    const t: ExportCase = {
      model, variant, via, steps, lastLoss, modelId,
      exportedFiles: Object.keys(exported),
      exportedBytes: Object.values(exported).reduce((n, b) => n + b.byteLength, 0),
      moved: maxDiff(withAdapter, f32(g.variants[variant].logits)),
      result: { ok: false, error: 'not run' },
    };
    try {
      const t0 = performance.now();
      const m = await load(modelId, DTYPE[variant], Object.keys(exported).some((f) => f.endsWith('_data')));
      const config = JSON.parse(new TextDecoder().decode(memoryFiles.get(`${folder}config.json`))) as { eos_token_id: number };
      let vsWebtune: number;
      let gen: number[][];
      let greedy: number[][];
      try {
        vsWebtune = maxDiff(logitsOf(await forward(m, g.inputIds)), withAdapter);
        gen = await generated(m, g.inputIds, 4);
        greedy = await greedyByForwards(m, g.inputIds, 4, config.eos_token_id);
      } finally {
        await m.dispose();
      }
      const original = await load(model, DTYPE[variant]);
      let originalVsWebtune: number;
      try {
        originalVsWebtune = maxDiff(logitsOf(await forward(original, g.inputIds)), withAdapter);
      } finally {
        await original.dispose();
      }
      t.result = { ok: true, vsWebtune, originalVsWebtune, generated: gen, greedy, ms: performance.now() - t0 };
    } catch (error) {
      t.result = { ok: false, error: errorText(error) };
    }
    exports.push(t);
    log(`${model} ${variant} trained ${steps} steps (loss ${lastLoss?.toFixed(3)}), ${via}: adapter moved logits ${t.moved.toExponential(2)}; transformers.js on the export vs webtune with the adapter ${show(t.result, (x) => x.vsWebtune)}, on the original ${show(t.result, (x) => x.originalVsWebtune)}`);
  }

  window.tjsReport = {
    transformersVersion: env.version,
    ortVersion: env.backends.onnx.versions?.web,
    wasmPaths,
    localModelPath: env.localModelPath,
    adapter: ctx.adapter.name,
    fixtures,
    exports,
    servedFromMemory,
    uncapturedErrors: ctx.uncapturedErrors.map((e) => e.message),
    seconds: (performance.now() - start) / 1000,
  };
  log('done');
}

main().catch((error: unknown) => {
  window.tjsError = String((error as Error)?.stack ?? error);
  log(`error: ${window.tjsError}`);
});
