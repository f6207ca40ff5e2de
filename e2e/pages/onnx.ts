/**
 * ONNX in and out in a real browser (Chromium, SwiftShader WebGPU), judged by onnxruntime-web in
 * the same page: the browser twin of packages/onnx/test/ort-parity.gpu.test.ts.
 *  1. every ONNX fixture (tiny Llama and GPT-2; f32, f16 weights, 4-bit MatMulNBits) loaded into
 *     webtune (loadModelFiles + onnxWeightFormat, uploadBaseModel, Transformer.logits) against the
 *     PyTorch goldens (scripts/make_onnx_fixtures.py);
 *  2. onnxruntime-web on the same bytes with the wasm EP and with the WebGPU EP, against webtune;
 *  3. LoRA trained a few steps on the ONNX-loaded tiny Llama (TrainerSession inline), exportOnnx(),
 *     and both EPs on the exported bytes against webtune with the adapter.
 * `?ort=webgpu` (default) imports 'onnxruntime-web/webgpu' (1.30: the native C++ WebGPU EP,
 * ort-wasm-simd-threaded.asyncify.wasm); `?ort=jsep` imports 'onnxruntime-web' (1.30: the JSEP
 * WebGPU EP, ort-wasm-simd-threaded.jsep.wasm). Both carry the wasm (CPU) EP. ORT's wasm files come
 * from this origin (ort.env.wasm.wasmPaths), never a CDN. Results go to window.onnxReport for
 * e2e/onnx.spec.ts; an EP that cannot run a file reports its error instead of a diff. While
 * debugging, `&models=tiny-llama&variants=q4&train=` narrows the run (the spec uses the defaults).
 */
import type * as ORT from 'onnxruntime-web';
import { createGpuContext } from '@webtune/gpu';
import { decoderFeeds } from '@webtune/onnx';
import { bytesOf, errorText, f32, golden, maxDiff, ROOT, statusLog, trainAndExport, webtuneLogits, type OnnxGolden } from './onnx-common.js';

type Ep = 'wasm' | 'webgpu';
type Variant = 'f32' | 'fp16' | 'q4';
export type EpResult =
  /** vsWebtune: max |ORT - webtune|; byPosition: the same per sequence position (max over batch and vocab); ms: session create + run. */
  | { ok: true; vsWebtune: number; byPosition: number[]; ms: number }
  | { ok: false; error: string };

export interface ForwardCase {
  model: string;
  variant: Variant;
  file: string;
  /** max |webtune - PyTorch| over the logits. */
  webtuneVsTorch: number;
  ort: Record<Ep, EpResult>;
}

export interface TrainCase {
  model: string;
  variant: Variant;
  steps: number;
  lastLoss: number | undefined;
  exportedFiles: string[];
  exportedBytes: number;
  /** max |webtune with adapter - PyTorch base|: how far the adapter moved the logits. */
  moved: number;
  /** Each EP on the exported bytes vs webtune with the adapter. */
  exported: Record<Ep, EpResult>;
  /** Each EP on the ORIGINAL bytes vs webtune with the adapter (the bar a re-quantized export must beat). */
  original: Record<Ep, EpResult>;
}

export interface OnnxReport {
  build: 'webgpu' | 'jsep';
  ortVersion: string | undefined;
  adapter: string;
  crossOriginIsolated: boolean;
  forward: ForwardCase[];
  training: TrainCase[];
  /**
   * WGSL sin/cos on this adapter vs Math.sin/Math.cos at the RoPE angles of a 16-wide head
   * (position p = 0..15 times 10000^(-2i/16)): the ORT WebGPU EP evaluates the Llama graphs' Cos and
   * Sin nodes in WGSL, whose accuracy WGSL leaves to the implementation; webtune and ORT's wasm EP
   * take their tables from the CPU.
   */
  wgslTrig: { maxSinError: number; maxCosError: number; worstAngle: number };
  uncapturedErrors: string[];
  seconds: number;
}

declare global {
  interface Window {
    onnxReport?: OnnxReport;
    onnxError?: string;
  }
}

/** max |a - b| per sequence position of [batch, seq, vocab] logits. */
function diffByPosition(a: Float32Array, b: Float32Array, batch: number, seq: number): number[] {
  const vocab = a.length / (batch * seq);
  return Array.from({ length: seq }, (_, s) => {
    let m = 0;
    for (let r = 0; r < batch; r++) {
      const o = (r * seq + s) * vocab;
      m = Math.max(m, maxDiff(a.subarray(o, o + vocab), b.subarray(o, o + vocab)));
    }
    return m;
  });
}

const params = new URLSearchParams(location.search);
const log = statusLog();
const build = params.get('ort') === 'jsep' ? 'jsep' : 'webgpu';


/** onnxruntime-web's logits for `ids` with an empty past (the with-past layout's first call). */
async function ortLogits(ort: typeof ORT, ep: Ep, g: OnnxGolden, model: Uint8Array, ids: number[][]): Promise<{ logits: Float32Array; ms: number }> {
  const t0 = performance.now();
  // logSeverityLevel 3: no warnings about shape ops placed on the CPU.
  const session = await ort.InferenceSession.create(model, { executionProviders: [ep], logSeverityLevel: 3 });
  try {
    const tensor = (type: 'int64' | 'float32', data: BigInt64Array | Float32Array, dims: number[]) => new ort.Tensor(type, data, dims);
    const feeds = decoderFeeds(tensor, { numLayers: g.numLayers, numKvHeads: g.kvHeads, headDim: g.headDim }, ids);
    const out = await session.run(feeds);
    const logits = new Float32Array((await out.logits!.getData()) as Float32Array);
    return { logits, ms: performance.now() - t0 };
  } finally {
    await session.release();
  }
}

async function compare(ort: typeof ORT, ep: Ep, g: OnnxGolden, model: Uint8Array, ours: Float32Array): Promise<EpResult> {
  try {
    const { logits, ms } = await ortLogits(ort, ep, g, model, g.inputIds);
    return { ok: true, vsWebtune: maxDiff(logits, ours), byPosition: diffByPosition(logits, ours, g.inputIds.length, g.inputIds[0]!.length), ms };
  } catch (error) {
    return { ok: false, error: errorText(error) };
  }
}

async function wgslTrig(device: GPUDevice): Promise<OnnxReport['wgslTrig']> {
  const angles = new Float32Array(16 * 8);
  for (let p = 0; p < 16; p++) for (let i = 0; i < 8; i++) angles[p * 8 + i] = p * Math.fround(1 / 10000 ** ((2 * i) / 16));
  const module = device.createShaderModule({
    code: `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3u) {
  let i = id.x;
  if (i < arrayLength(&x)) { y[2u * i] = sin(x[i]); y[2u * i + 1u] = cos(x[i]); }
}`,
  });
  const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  const input = device.createBuffer({ size: angles.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  const output = device.createBuffer({ size: angles.byteLength * 2, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  const read = device.createBuffer({ size: angles.byteLength * 2, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(input, 0, angles);
  const bind = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: input } }, { binding: 1, resource: { buffer: output } }] });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bind);
  pass.dispatchWorkgroups(Math.ceil(angles.length / 64));
  pass.end();
  enc.copyBufferToBuffer(output, 0, read, 0, read.size);
  device.queue.submit([enc.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const y = new Float32Array(read.getMappedRange().slice(0));
  read.unmap();
  for (const b of [input, output, read]) b.destroy();
  let maxSinError = 0;
  let maxCosError = 0;
  let worstAngle = 0;
  angles.forEach((a, i) => {
    const es = Math.abs(y[2 * i]! - Math.sin(a));
    const ec = Math.abs(y[2 * i + 1]! - Math.cos(a));
    if (Math.max(es, ec) > Math.max(maxSinError, maxCosError)) worstAngle = a;
    maxSinError = Math.max(maxSinError, es);
    maxCosError = Math.max(maxCosError, ec);
  });
  return { maxSinError, maxCosError, worstAngle };
}

const show = (r: EpResult) => (r.ok ? r.vsWebtune.toExponential(2) : `error: ${r.error.slice(0, 200)}`);

async function main() {
  const start = performance.now();
  const ort: typeof ORT = build === 'jsep' ? await import('onnxruntime-web') : await import('onnxruntime-web/webgpu');
  // Served from this origin, never a CDN; one thread (the dev server is not cross-origin isolated).
  ort.env.wasm.wasmPaths = '/node_modules/onnxruntime-web/dist/';
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = 'error';
  const ctx = await createGpuContext();
  log(`onnxruntime-web ${ort.env.versions?.web} (${build}), adapter ${ctx.adapter.name}`);

  const models = (params.get('models') ?? 'tiny-llama,tiny-gpt2').split(',').filter(Boolean);
  const variants = (params.get('variants') ?? 'f32,fp16,q4').split(',').filter(Boolean) as Variant[];
  const forward: ForwardCase[] = [];
  for (const name of models) {
    const g = await golden(name);
    const dir = `${ROOT}${g.modelDir}/`;
    for (const variant of variants) {
      const file = g.variants[variant].file;
      const bytes = await bytesOf(`${dir}${file}`);
      const ours = await webtuneLogits(ctx, dir, file, g.inputIds);
      const c: ForwardCase = {
        model: name, variant, file,
        webtuneVsTorch: maxDiff(ours, f32(g.variants[variant].logits)),
        ort: { wasm: await compare(ort, 'wasm', g, bytes, ours), webgpu: await compare(ort, 'webgpu', g, bytes, ours) },
      };
      forward.push(c);
      log(`${name} ${variant}: webtune vs torch ${c.webtuneVsTorch.toExponential(2)}, ort wasm ${show(c.ort.wasm)}, ort webgpu ${show(c.ort.webgpu)}`);
    }
  }

  const training: TrainCase[] = [];
  const trainVariants = (params.get('train') ?? 'f32,q4').split(',').filter(Boolean) as Variant[];
  for (const variant of trainVariants) {
    const name = 'tiny-llama';
    const { g, dir, file, steps, lastLoss, exported, withAdapter } = await trainAndExport(ctx, name, variant);
    const out = exported[file];
    const original = await bytesOf(`${dir}${file}`);
    const t: TrainCase = {
      model: name, variant, steps, lastLoss,
      exportedFiles: Object.keys(exported),
      exportedBytes: out?.byteLength ?? 0,
      moved: maxDiff(withAdapter, f32(g.variants[variant].logits)),
      exported: out
        ? { wasm: await compare(ort, 'wasm', g, out, withAdapter), webgpu: await compare(ort, 'webgpu', g, out, withAdapter) }
        : { wasm: { ok: false, error: `no ${file} in the export` }, webgpu: { ok: false, error: `no ${file} in the export` } },
      original: { wasm: await compare(ort, 'wasm', g, original, withAdapter), webgpu: await compare(ort, 'webgpu', g, original, withAdapter) },
    };
    training.push(t);
    log(`${name} ${variant} trained ${steps} steps (loss ${lastLoss?.toFixed(3)}): adapter moved logits ${t.moved.toExponential(2)}; exported in ort wasm ${show(t.exported.wasm)}, webgpu ${show(t.exported.webgpu)}; original in ort wasm ${show(t.original.wasm)}, webgpu ${show(t.original.webgpu)}`);
  }

  window.onnxReport = {
    build,
    ortVersion: ort.env.versions?.web,
    adapter: ctx.adapter.name,
    crossOriginIsolated: globalThis.crossOriginIsolated === true,
    forward,
    training,
    wgslTrig: await wgslTrig(ctx.device),
    uncapturedErrors: ctx.uncapturedErrors.map((e) => e.message),
    seconds: (performance.now() - start) / 1000,
  };
  log('done');
}

main().catch((error: unknown) => {
  window.onnxError = String((error as Error)?.stack ?? error);
  log(`error: ${window.onnxError}`);
});
