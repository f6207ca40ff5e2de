/**
 * ONNX in and out, judged by onnxruntime-web (wasm, in Node):
 *  1. every ONNX fixture (f32, f16 weights, 4-bit MatMulNBits, external data) loaded into webtune
 *     gives PyTorch's logits (goldens from scripts/make_onnx_fixtures.py), and onnxruntime-web gives
 *     the same on the same file;
 *  2. LoRA trained on the ONNX-loaded model and exported as ONNX (exportOnnx): onnxruntime-web on
 *     the exported file reproduces webtune's forward with the adapter.
 */
import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-web';
import { describe, expect, it } from 'vitest';
import { createNodeGpu } from '@webtune/gpu/node';
import { importPeftAdapter, loadModelFiles, Transformer, uploadBaseModel, weightReader } from '@webtune/model';
import { nodeDirectorySource } from '../../model/src/node.js';
import { f32, maxAbsDiff } from '../../model/test/tiny-models.js';
import { useNodeContext } from '../../gpu/test/node-context.js';
import { TrainerSession } from '@webtune/sdk';
import { onnxSupport } from '@webtune/sdk/onnx';
import { chapter } from '../../trainer/test/corpus.js';
import { decoderFeeds, onnxWeightFormat } from '../src/index.js';
import { logitsGolden, type OnnxLogitsGolden } from './helpers.js';

ort.env.wasm.numThreads = 1;
ort.env.logLevel = 'error';

const golden = logitsGolden;
const ROOT = new URL('../../../', import.meta.url).pathname;

const batchOf = (ids: number[][]) => ({ ids: new Uint32Array(ids.flat()), batch: ids.length, seq: ids[0]!.length });

/** onnxruntime-web's logits for `ids` with an empty past (the with-past layout's first call). */
async function ortLogits(g: OnnxLogitsGolden, model: Uint8Array, ids: number[][], externalData?: Map<string, Uint8Array>): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ['wasm'],
    ...(externalData ? { externalData: [...externalData].map(([path, data]) => ({ path, data })) } : {}),
  });
  try {
    const tensor = (type: 'int64' | 'float32', data: BigInt64Array | Float32Array, dims: number[]) => new ort.Tensor(type, data, dims);
    const feeds = decoderFeeds(tensor, { numLayers: g.numLayers, numKvHeads: g.kvHeads, headDim: g.headDim }, ids);
    const out = await session.run(feeds);
    return new Float32Array(out.logits!.data as Float32Array);
  } finally {
    await session.release();
  }
}

const gpu = useNodeContext();

async function webtuneLogits(dir: string, file: string, ids: number[][], peft?: { config: string; weights: Uint8Array }) {
  const files = await loadModelFiles(nodeDirectorySource(dir), { weights: onnxWeightFormat({ file }), cache: false });
  const base = await uploadBaseModel(gpu(), files.config, weightReader(files));
  const model = await Transformer.create(gpu(), base);
  const adapter = peft ? importPeftAdapter(gpu(), files.config, peft) : undefined;
  try {
    if (adapter) model.setAdapter(adapter);
    return await model.logits(batchOf(ids));
  } finally {
    model.release();
    adapter?.release();
    base.release();
  }
}

const CASES = [
  { model: 'tiny-llama', variant: 'f32' }, { model: 'tiny-llama', variant: 'fp16' }, { model: 'tiny-llama', variant: 'q4' },
  { model: 'tiny-gpt2', variant: 'f32' }, { model: 'tiny-gpt2', variant: 'fp16' }, { model: 'tiny-gpt2', variant: 'q4' },
] as const;

describe('ONNX import: webtune, PyTorch and onnxruntime-web agree', () => {
  for (const { model, variant } of CASES) {
    it(`${model} ${variant}`, async () => {
      const g = golden(model);
      const file = g.variants[variant].file;
      const want = f32(g.variants[variant].logits);
      const dir = `${ROOT}${g.modelDir}`;
      const ours = await webtuneLogits(dir, file, g.inputIds);
      expect(maxAbsDiff(ours, want)).toBeLessThan(2e-5);
      const theirs = await ortLogits(g, new Uint8Array(readFileSync(`${dir}/${file}`)), g.inputIds);
      expect(maxAbsDiff(theirs, ours)).toBeLessThan(2e-5);
    });
  }

  it('tiny-llama with external data (model.onnx + model.onnx_data)', async () => {
    const g = golden('tiny-llama');
    const ours = await webtuneLogits(`${ROOT}${g.externalDataDir}`, 'onnx/model.onnx', g.inputIds);
    expect(maxAbsDiff(ours, f32(g.variants.f32.logits))).toBeLessThan(2e-5);
  });
});

describe('ONNX out: the exported fine-tuned model runs in onnxruntime-web as webtune runs it', () => {
  // f32 and f16 weights are merged exactly (f16 rounds the merged weight once: about 1e-3 here).
  // 4-bit weights stay as they are and the adapter is an exact side branch: as close as f32.
  // With fourBit: 'requantize' they are merged and quantized again, which costs about as much as the
  // first quantization (0.2 to 0.5 here, against 1 to 2.6 that the adapter moves the logits); that
  // export must at least keep the model closer to the fine-tuned one than to where it started.
  const TOLERANCE = { f32: 2e-5, fp16: 5e-3, q4: 2e-5 } as const;
  for (const { model, variant } of CASES) {
    it(`${model} ${variant}: train 8 steps, export, compare`, async () => {
      const g = golden(model);
      const dir = `${ROOT}${g.modelDir}`;
      const file = g.variants[variant].file;
      const session = new TrainerSession({ gpu: await createNodeGpu(), onnx: onnxSupport });
      let peft: { config: string; weights: Uint8Array };
      let exported: Record<string, Uint8Array>;
      let requantized: Record<string, Uint8Array> | undefined;
      try {
        await session.loadModel(nodeDirectorySource(dir), { onnx: file });
        await session.prepareData({ texts: [chapter(3), chapter(4)] }, { seqLen: 16 });
        await session.train({
          steps: 8, batchSize: 4, learningRate: 2e-2, seed: 7, checkpointEvery: 0,
          lora: { rank: 4, alpha: 8, targets: model === 'tiny-gpt2' ? ['c_attn', 'c_proj'] : ['q_proj', 'v_proj', 'down_proj'] },
        });
        const files = await session.exportAdapter();
        peft = { config: files['adapter_config.json'], weights: files['adapter_model.safetensors'] };
        exported = await session.exportOnnx();
        if (variant === 'q4') requantized = await session.exportOnnx({ fourBit: 'requantize' });
      } finally {
        session.dispose();
      }
      expect(Object.keys(exported)).toEqual([file]);
      const withAdapter = await webtuneLogits(dir, file, g.inputIds, peft);
      const base = f32(g.variants[variant].logits);
      const theirs = await ortLogits(g, exported[file]!, g.inputIds);
      const diff = maxAbsDiff(theirs, withAdapter);
      const moved = maxAbsDiff(withAdapter, base);
      console.log(`${model} ${variant}: exported vs webtune ${diff.toExponential(2)}, adapter moved logits by ${moved.toExponential(2)}`);
      expect(moved).toBeGreaterThan(10 * TOLERANCE.f32);
      expect(diff).toBeLessThan(TOLERANCE[variant]);
      if (requantized) {
        const original = maxAbsDiff(await ortLogits(g, new Uint8Array(readFileSync(`${dir}/${file}`)), g.inputIds), withAdapter);
        const requant = maxAbsDiff(await ortLogits(g, requantized[file]!, g.inputIds), withAdapter);
        console.log(`${model} q4 re-quantized: exported vs webtune ${requant.toExponential(2)}, original vs webtune ${original.toExponential(2)}`);
        expect(requant).toBeLessThan(original);
      }
    });
  }
});
