/**
 * "generate": greedy token generation with a KV cache from one ONNX decoder export (transformers.js
 * / Optimum with-past layout), by webtune, onnxruntime-web and transformers.js on the same file in
 * the same page: the same prompt ids, greedy (argmax, first index on ties), exactly `newTokens` new
 * tokens (eos stops no one), batch 1. Each library: one untimed warm-up, then `runs` timed
 * runs; the row reports the medians of
 *   prefillMs        time to the first new token (the prompt's forward and its argmax),
 *   decodeMs         the remaining newTokens - 1 tokens (one forward of one token each),
 *   medianMs         the call's start to its last new token (prefill + decode),
 * with decodeTokensPerSecond = (newTokens - 1) / decodeMs and tokensPerSecond = newTokens / medianMs.
 *   webtune:          @webtune/model's generate() on a Transformer (loadModelFiles + onnxWeightFormat,
 *                     uploadBaseModel): the layer the SDK's session calls inside its worker, without
 *                     the worker hop; stopTokens [] so eos does not stop it. A 4-bit file runs kept
 *                     4-bit ('webtune-q4', the SDK's default for it) and dequantized to f32 ('webtune').
 *                     One extra untimed run wraps the device queue's submit() (and counts compute
 *                     dispatches) to split each decode step into CPU time before its first submit
 *                     (argmax of the previous logits, recording the commands) and the wait after it
 *                     (GPU work + logits readback); an empty submit + 4-byte readback gives the sync floor.
 *   onnxruntime-web:  a hand-written greedy loop over InferenceSession.run with decoderFeeds
 *                     (@webtune/onnx): prompt with an empty past, then one token with the previous
 *                     present.*; on the 'webgpu' EP present.* stay on the GPU (preferredOutputLocation
 *                     'gpu-buffer', as transformers.js does), logits come to the CPU for the argmax.
 *   transformers.js:  AutoModelForCausalLM.from_pretrained(device 'webgpu') and model.generate with
 *                     do_sample false, max_new_tokens, eos_token_id [] (no eos stop);
 *                     a stopping criterion that never stops timestamps each token.
 * Session creation, upload and model loading are not timed. Every row carries its generated ids and
 * how many leading ids agree with the reference row's (the first webtune row of the same file).
 */
import type * as ORT from 'onnxruntime-web';
import type * as TJS from '@huggingface/transformers';
import { createTensor, readF32, type GpuContext } from '@webtune/gpu';
import {
  generate, loadModelFiles, storedFourBit, Transformer, uploadBaseModel, weightReader, type BaseFormat, type ModelFileSource,
} from '@webtune/model';
import { decoderFeeds, onnxWeightFormat } from '@webtune/onnx';
import type { BenchRow } from './suite.js';

export interface GenerateBenchModel {
  /** Row label, e.g. 'webtune-demo model_q4.onnx'. */
  name: string;
  /** The model folder (URL, or a ModelFileSource in Node): config.json, tokenizer.json, onnx/... */
  source: string | ModelFileSource;
  /** The graph's path in the folder, e.g. 'onnx/model_q4.onnx'. */
  file: string;
  /** The same file's bytes, for onnxruntime-web. */
  bytes: Uint8Array;
  /** How transformers.js finds the same file: a model id (or a root-relative folder in a page), and the dtype that names the file. */
  transformers?: { modelId: string; dtype: 'fp32' | 'q4' | 'fp16' };
}

export interface GenerateBenchOptions {
  models: GenerateBenchModel[];
  runs: number;
  /** Prompt tokens (default 32): the start of `promptText` through the model's tokenizer, else fixed ids. */
  promptTokens?: number;
  promptText?: string;
  /** New tokens per call (default 32). */
  newTokens?: number;
  /** onnxruntime-web execution providers (default ['webgpu', 'wasm']). */
  executionProviders?: Array<'webgpu' | 'wasm'>;
  /** transformers.js (its env already pointed at the local model folders); left out, no transformers.js rows. */
  transformers?: typeof TJS;
  log?: (line: string) => void;
}

export interface GenerateRow extends BenchRow {
  benchmark: 'generate';
  promptTokens: number;
  newTokens: number;
  /** Median time to the first new token, ms. */
  prefillMs: number;
  /** Median time of the other newTokens - 1 tokens, ms. */
  decodeMs: number;
  decodeTokensPerSecond: number;
  /** newTokens / medianMs (end to end). */
  tokensPerSecond: number;
  /** The new ids of the last timed run. */
  ids: number[];
  /** Leading ids equal to the reference row's (newTokens = full agreement), and which row that is. */
  agreeingTokens: number;
  reference: string;
  /** webtune only: a decode step split at its first queue submit (medians over the instrumented run's steps). */
  breakdown?: { cpuMsPerToken: number; waitMsPerToken: number; submitsPerToken: number; dispatchesPerToken: number; emptyRoundTripMs: number };
}

const DEFAULT_PROMPT = 'Call me Ishmael. Some years ago—never mind how long precisely—having little or no money in my purse, and nothing particular to interest me on shore, I thought I would sail about a little and see the watery part of the world.';

function med(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function argmax(data: Float32Array, offset: number, length: number): number {
  let best = 0;
  for (let i = 1; i < length; i++) if (data[offset + i]! > data[offset + best]!) best = i;
  return best;
}

/** One call: when it started, when each new token was picked, and the new ids. */
interface Timed {
  start: number;
  tokens: number[];
  ids: number[];
}

/** One untimed warm-up, then `runs` timed calls; medians of prefill, decode and total. */
async function measure(runs: number, newTokens: number, call: () => Promise<Timed>) {
  await call();
  const prefill: number[] = [];
  const decode: number[] = [];
  const total: number[] = [];
  let ids: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = await call();
    if (t.tokens.length !== newTokens) throw new Error(`expected ${newTokens} new tokens, got ${t.tokens.length}`);
    prefill.push(t.tokens[0]! - t.start);
    decode.push(t.tokens.at(-1)! - t.tokens[0]!);
    total.push(t.tokens.at(-1)! - t.start);
    ids = t.ids;
  }
  const prefillMs = med(prefill);
  const decodeMs = med(decode);
  const medianMs = med(total);
  return { prefillMs, decodeMs, medianMs, ids, decodeTokensPerSecond: ((newTokens - 1) * 1000) / decodeMs, tokensPerSecond: (newTokens * 1000) / medianMs };
}

const agreeing = (a: number[], b: number[]) => {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
};

export async function runGenerateBench(ctx: GpuContext, ort: typeof ORT, o: GenerateBenchOptions): Promise<GenerateRow[]> {
  const rows: GenerateRow[] = [];
  const newTokens = o.newTokens ?? 32;
  const eps = o.executionProviders ?? ['webgpu', 'wasm'];
  const log = o.log ?? (() => {});

  for (const m of o.models) {
    const files = await loadModelFiles(m.source, { weights: onnxWeightFormat({ file: m.file }), cache: false });
    const { config } = files;
    const want = o.promptTokens ?? 32;
    const fromText = files.tokenizer?.encode(o.promptText ?? DEFAULT_PROMPT, { addSpecialTokens: false }) ?? [];
    const prompt = fromText.length >= want ? fromText.slice(0, want) : Array.from({ length: want }, (_, i) => (i * 37 + 11) % config.vocabSize);
    const shape = `${m.name} ${prompt.length}+${newTokens}`;
    let reference: { library: string; ids: number[] } | undefined;
    const push = (library: string, r: Awaited<ReturnType<typeof measure>>, weightBytes: number, breakdown?: GenerateRow['breakdown']) => {
      reference ??= { library, ids: r.ids };
      const row: GenerateRow = {
        benchmark: 'generate', shape, library, runs: o.runs, weightBytes, promptTokens: prompt.length, newTokens,
        ...r, agreeingTokens: agreeing(r.ids, reference.ids), reference: reference.library, ...(breakdown ? { breakdown } : {}),
      };
      rows.push(row);
      const split = breakdown
        ? `; per decode step ${breakdown.cpuMsPerToken.toFixed(2)} ms CPU before submit + ${breakdown.waitMsPerToken.toFixed(2)} ms wait, ${breakdown.submitsPerToken} submits, ${breakdown.dispatchesPerToken} dispatches (an empty submit + readback: ${breakdown.emptyRoundTripMs.toFixed(2)} ms)`
        : '';
      log(`generate ${shape} ${library}: prefill ${r.prefillMs.toFixed(1)} ms, decode ${r.decodeTokensPerSecond.toFixed(1)} tok/s, total ${r.medianMs.toFixed(1)} ms; ${row.agreeingTokens}/${newTokens} ids agree with ${reference.library}${split}`);
    };

    // webtune.
    const formats: BaseFormat[] = 'blockSize' in storedFourBit(config, weightReader(files)) ? ['q4', 'f32'] : ['f32'];
    for (const format of formats) {
      const base = await uploadBaseModel(ctx, config, weightReader(files), { format });
      const model = await Transformer.create(ctx, base);
      try {
        const call = async (): Promise<Timed> => {
          const tokens: number[] = [];
          const start = performance.now();
          const ids = await generate(model, prompt, { maxNewTokens: newTokens, stopTokens: [], onToken: () => tokens.push(performance.now()) });
          return { start, tokens, ids };
        };
        const r = await measure(o.runs, newTokens, call);
        push(format === 'q4' ? 'webtune-q4' : 'webtune', r, base.byteLength, await webtuneBreakdown(ctx, call));
      } finally {
        model.release();
        base.release();
      }
    }

    // onnxruntime-web, hand-written greedy loop.
    const tensor = (type: 'int64' | 'float32', data: BigInt64Array | Float32Array, dims: number[]) => new ort.Tensor(type, data, dims);
    // On the WebGPU EP, also with present.* coming back to the CPU each step (ORT's default).
    const variants = eps.flatMap((ep): { ep: 'webgpu' | 'wasm'; kvOnGpu: boolean }[] => (ep === 'webgpu' ? [{ ep, kvOnGpu: true }, { ep, kvOnGpu: false }] : [{ ep, kvOnGpu: false }]));
    for (const { ep, kvOnGpu } of variants) {
      const presentNames = Array.from({ length: config.numLayers }, (_, l) => [`present.${l}.key`, `present.${l}.value`]).flat();
      const session = await ort.InferenceSession.create(m.bytes, {
        executionProviders: [ep], logSeverityLevel: 3,
        ...(kvOnGpu ? { preferredOutputLocation: Object.fromEntries(presentNames.map((n) => [n, 'gpu-buffer' as const])) } : {}),
      });
      try {
        const call = async (): Promise<Timed> => {
          const tokens: number[] = [];
          const ids: number[] = [];
          const start = performance.now();
          let out = await session.run(decoderFeeds(tensor, config, [prompt]));
          let length = prompt.length;
          for (;;) {
            const logits = out.logits!;
            const vocab = logits.dims.at(-1)!;
            const data = (await logits.getData()) as Float32Array;
            const next = argmax(data, data.length - vocab, vocab);
            ids.push(next);
            tokens.push(performance.now());
            if (ids.length === newTokens) break;
            const previous = out;
            out = await session.run(decoderFeeds(tensor, config, [[next]], { length, tensors: out }));
            length += 1;
            for (const t of Object.values(previous)) t.dispose();
          }
          for (const t of Object.values(out)) t.dispose();
          return { start, tokens, ids };
        };
        push(`onnxruntime-web-${ep}${ep === 'webgpu' && !kvOnGpu ? ' (KV via CPU)' : ''}`, await measure(o.runs, newTokens, call), m.bytes.byteLength);
      } finally {
        await session.release();
      }
    }

    // transformers.js.
    if (o.transformers && m.transformers) {
      const tjs = o.transformers;
      const model = await tjs.AutoModelForCausalLM.from_pretrained(m.transformers.modelId, {
        dtype: m.transformers.dtype, device: 'webgpu', session_options: { logSeverityLevel: 3 },
      });
      try {
        const call = async (): Promise<Timed> => {
          const stamps: number[] = [];
          // Called after each new token is appended (never stops): its time stamps the token.
          const stamp = new (class extends tjs.StoppingCriteria {
            override _call(ids: number[][]): boolean[] {
              stamps.push(performance.now());
              return ids.map(() => false);
            }
          })();
          const inputs = new tjs.Tensor('int64', BigInt64Array.from(prompt, (v) => BigInt(v)), [1, prompt.length]);
          const mask = new tjs.Tensor('int64', new BigInt64Array(prompt.length).fill(1n), [1, prompt.length]);
          const start = performance.now();
          const out = (await model.generate({
            inputs, attention_mask: mask, max_new_tokens: newTokens, do_sample: false, eos_token_id: [], stopping_criteria: [stamp],
          })) as TJS.Tensor;
          const data = out.data as BigInt64Array;
          return { start, tokens: stamps, ids: Array.from(data.subarray(prompt.length), Number) };
        };
        push('transformers.js-webgpu', await measure(o.runs, newTokens, call), m.bytes.byteLength);
      } finally {
        await model.dispose();
      }
    }
  }
  return rows;
}

/** One more (untimed) call with the device queue's submit() wrapped: each decode step split at its first submit. */
async function webtuneBreakdown(ctx: GpuContext, call: () => Promise<Timed>): Promise<GenerateRow['breakdown']> {
  const queue = ctx.device.queue;
  const submit = queue.submit;
  const submits: number[] = [];
  queue.submit = (buffers) => {
    submits.push(performance.now());
    submit.call(queue, buffers);
  };
  // Compute dispatches, by when they were recorded (nothing else runs meanwhile); where the
  // environment has the interface object (browsers; not every Node binding).
  const pass = (globalThis as { GPUComputePassEncoder?: typeof GPUComputePassEncoder }).GPUComputePassEncoder?.prototype;
  const dispatch = pass?.dispatchWorkgroups;
  const dispatches: number[] = [];
  if (pass && dispatch) {
    pass.dispatchWorkgroups = function (this: GPUComputePassEncoder, x: number, y?: number, z?: number) {
      dispatches.push(performance.now());
      dispatch.call(this, x, y, z);
    };
  }
  let t: Timed;
  try {
    t = await call();
  } finally {
    queue.submit = submit;
    if (pass && dispatch) pass.dispatchWorkgroups = dispatch;
  }
  const cpu: number[] = [];
  const wait: number[] = [];
  const counts: number[] = [];
  const dispatchCounts: number[] = [];
  for (let i = 1; i < t.tokens.length; i++) {
    const inStep = (stamps: number[]) => stamps.filter((s) => s > t.tokens[i - 1]! && s <= t.tokens[i]!);
    const stepSubmits = inStep(submits);
    if (!stepSubmits.length) continue;
    cpu.push(stepSubmits[0]! - t.tokens[i - 1]!);
    wait.push(t.tokens[i]! - stepSubmits[0]!);
    counts.push(stepSubmits.length);
    dispatchCounts.push(inStep(dispatches).length);
  }
  // The floor of any step: an empty submit and a 4-byte readback (the fixed cost of one sync).
  const tiny = createTensor(ctx, { shape: [1], label: 'bench round trip' });
  const trips: number[] = [];
  try {
    for (let i = 0; i < 9; i++) {
      const s = performance.now();
      ctx.device.queue.submit([]);
      await readF32(ctx, tiny);
      trips.push(performance.now() - s);
    }
  } finally {
    tiny.release();
  }
  return { cpuMsPerToken: med(cpu), waitMsPerToken: med(wait), submitsPerToken: med(counts), dispatchesPerToken: dispatch ? med(dispatchCounts) : NaN, emptyRoundTripMs: med(trips.slice(1)) };
}
