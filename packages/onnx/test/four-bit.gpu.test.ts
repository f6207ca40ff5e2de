/**
 * 4-bit MatMulNBits weights kept 4-bit on the GPU (format 'q4'): the file's codes and scales are
 * uploaded as they are (nibbles swapped into the NF4 kernels' order, scale s stored as 8s against
 * the codebook (q - 8) / 8) and decoded in the fused kernels.
 *  - The GPU decode of every linear weight equals, bit for bit, the CPU MatMulNBits dequantizer
 *    (mapping.ts' (q - 8) * scale), whose forward pass matches PyTorch (ort-parity.gpu.test.ts).
 *  - The fused forward and input-gradient kernels agree with the dense kernels on those weights.
 *  - The whole model on 4-bit weights gives PyTorch's logits (goldens of the q4 files), in less
 *    GPU memory than the f32 upload; training lowers the loss.
 *  - A model whose weights are not MatMulNBits is refused with format 'q4', saying what to use.
 */
import { describe, expect, it } from 'vitest';
import { CommandRecorder, createMatmulKernel, createNF4MatmulKernel, createTensor, dequantizeNF4Gpu, readTensor, uploadNF4 } from '@webtune/gpu';
import { InvalidArgumentError } from '@webtune/errors';
import { linearShape, loadModelFiles, modulePath, LINEAR_MODULES, Transformer, uploadBaseModel, weightReader, transpose } from '@webtune/model';
import { nodeDirectorySource } from '../../model/src/node.js';
import { f32, FIXTURES, maxAbsDiff } from '../../model/test/tiny-models.js';
import { createNodeGpu } from '@webtune/gpu/node';
import { useNodeContext } from '../../gpu/test/node-context.js';
import { TrainerSession } from '@webtune/sdk';
import { onnxSupport } from '@webtune/sdk/onnx';
import { chapter } from '../../trainer/test/corpus.js';
import { onnxContainer, onnxWeightFormat } from '../src/index.js';
import { logitsGolden, ROOT } from './helpers.js';

const gpu = useNodeContext();
const golden = logitsGolden;
const batchOf = (ids: number[][]) => ({ ids: new Uint32Array(ids.flat()), batch: ids.length, seq: ids[0]!.length });

async function q4Files(model: string) {
  const g = golden(model);
  const files = await loadModelFiles(nodeDirectorySource(`${ROOT}/${g.modelDir}`), { weights: onnxWeightFormat({ file: g.variants.q4.file }), cache: false });
  return { g, files, weights: onnxContainer(files)!.weights };
}

describe("4-bit MatMulNBits weights on the GPU (format 'q4')", () => {
  for (const model of ['tiny-llama', 'tiny-gpt2']) {
    it(`${model}: every linear weight decodes on the GPU exactly as the CPU MatMulNBits dequantizer`, async () => {
      const { files, weights } = await q4Files(model);
      const c = files.config;
      let checked = 0;
      for (let l = 0; l < c.numLayers; l++) {
        for (const linear of LINEAR_MODULES[c.architecture]) {
          const name = `${modulePath(c.architecture, l, linear)}.weight`;
          const stored = weights.reader.fourBit?.(name);
          expect(stored, name).toBeDefined();
          const q = stored!.read();
          const { inFeatures, outFeatures, conv1d } = linearShape(c, linear);
          expect(q.shape).toEqual([outFeatures, inFeatures]);
          expect(q.codebook).toBe('int4');
          const w = uploadNF4(gpu(), q, name);
          const decoded = await dequantizeNF4Gpu(gpu(), w);
          try {
            const cpu = weights.reader.read(name).data; // HF layout; GPT-2's Conv1D is [in, out]
            const want = conv1d ? transpose(cpu, inFeatures, outFeatures) : cpu;
            expect(await readTensor(gpu(), decoded)).toEqual(want);
            checked++;
          } finally {
            decoded.release();
            w.release();
          }
        }
      }
      expect(checked).toBe(c.numLayers * LINEAR_MODULES[c.architecture].length);
    });
  }

  it('the fused forward and input-gradient kernels match the dense kernels on a 4-bit weight', async () => {
    const { weights } = await q4Files('tiny-llama');
    const q = weights.reader.fourBit!('model.layers.0.mlp.down_proj.weight')!.read();
    const [n, k] = q.shape as [number, number];
    const m = 5;
    const ctx = gpu();
    const w = uploadNF4(ctx, q);
    const dense = await dequantizeNF4Gpu(ctx, w);
    const x = createTensor(ctx, { shape: [m, k], label: 'x', data: Float32Array.from({ length: m * k }, (_, i) => Math.sin(i * 0.37)) });
    const dy = createTensor(ctx, { shape: [m, n], label: 'dy', data: Float32Array.from({ length: m * n }, (_, i) => Math.cos(i * 0.11)) });
    const outs = [[m, n], [m, n], [m, k], [m, k]].map((shape, i) => createTensor(ctx, { shape, label: `out ${i}` }));
    const variant = { blockSize: q.blockSize, doubleQuant: false, codebook: 'int4' as const };
    const [fwd, grad, mmT, mm] = await Promise.all([
      createNF4MatmulKernel(ctx, { mode: 'forward', ...variant }),
      createNF4MatmulKernel(ctx, { mode: 'grad-input', ...variant }),
      createMatmulKernel(ctx, { transB: true }),
      createMatmulKernel(ctx, {}),
    ]);
    const r = new CommandRecorder(ctx, 'int4 vs dense');
    fwd.encode(r, { weight: w, input: x, output: outs[0]!, m });
    mmT.encode(r, { a: x, b: dense, c: outs[1]!, m, n, k });
    grad.encode(r, { weight: w, input: dy, output: outs[2]!, m });
    mm.encode(r, { a: dy, b: dense, c: outs[3]!, m, n: k, k: n });
    r.submit();
    const [y4, y, dx4, dx] = (await Promise.all(outs.map((t) => readTensor(ctx, t)))) as Float32Array[] as [Float32Array, Float32Array, Float32Array, Float32Array];
    expect(maxAbsDiff(y4, y)).toBeLessThan(1e-5 * Math.max(1, ...y.map(Math.abs)));
    expect(maxAbsDiff(dx4, dx)).toBeLessThan(1e-5 * Math.max(1, ...dx.map(Math.abs)));
    for (const t of [w, dense, x, dy, ...outs]) t.release();
  });

  for (const model of ['tiny-llama', 'tiny-gpt2']) {
    it(`${model}: the forward on 4-bit weights gives PyTorch's logits, in less memory than f32`, async () => {
      const { g, files } = await q4Files(model);
      const base = await uploadBaseModel(gpu(), files.config, weightReader(files), { format: 'q4' });
      const dense = await uploadBaseModel(gpu(), files.config, weightReader(files), { format: 'f32' });
      const t = await Transformer.create(gpu(), base);
      try {
        expect(base.nf4).toEqual({ blockSize: 32, doubleQuant: false, codebook: 'int4' });
        const linear = base.layers[0]!.linears.values().next().value!;
        expect(linear.weight.format).toBe('nf4');
        const logits = await t.logits(batchOf(g.inputIds));
        expect(maxAbsDiff(logits, f32(g.variants.q4.logits))).toBeLessThan(2e-5);
        console.log(`${model}: GPU weights ${base.byteLength} bytes as q4, ${dense.byteLength} as f32`);
        expect(base.byteLength).toBeLessThan(dense.byteLength);
      } finally {
        t.release();
        base.release();
        dense.release();
      }
    });
  }

  it('an ONNX q4 model loads as q4 by default in the SDK and trains on it', async () => {
    const g = golden('tiny-llama');
    const session = new TrainerSession({ gpu: await createNodeGpu(), onnx: onnxSupport });
    try {
      const info = await session.loadModel(nodeDirectorySource(`${ROOT}/${g.modelDir}`), { onnx: g.variants.q4.file });
      expect(info.format).toBe('q4');
      await session.prepareData({ texts: [chapter(3), chapter(4)] }, { seqLen: 16 });
      const losses: number[] = [];
      const summary = await session.train({ steps: 12, batchSize: 4, learningRate: 2e-2, seed: 3, checkpointEvery: 0, lora: { rank: 4, alpha: 8 } }, (p) => losses.push(p.loss));
      expect(summary.stopped).toBe('completed');
      expect(summary.step).toBe(12);
      expect(losses.every(Number.isFinite)).toBe(true);
      expect(summary.lastLoss!).toBeLessThan(losses[0]!);
      // The planner's estimate covers what was really allocated (the margin training.gpu.test.ts allows).
      expect(summary.peakBytes).toBeLessThanOrEqual(summary.estimateBytes * 1.05 + 1024 * 1024);
    } finally {
      session.dispose();
    }
  });

  it("format 'q4' on weights that are not MatMulNBits is refused, naming the weight and the formats that work", async () => {
    const f32Onnx = await loadModelFiles(nodeDirectorySource(`${ROOT}/${golden('tiny-llama').modelDir}`), { weights: onnxWeightFormat(), cache: false });
    const safetensors = await loadModelFiles(nodeDirectorySource(`${FIXTURES}models/tiny-llama`), { cache: false });
    for (const files of [f32Onnx, safetensors]) {
      const attempt = uploadBaseModel(gpu(), files.config, weightReader(files), { format: 'q4' });
      await expect(attempt).rejects.toThrowError(InvalidArgumentError);
      await expect(uploadBaseModel(gpu(), files.config, weightReader(files), { format: 'q4' })).rejects.toThrowError(/model\.layers\.0\.self_attn\.q_proj\.weight.*'f32' or 'nf4'/s);
    }
  });
});
