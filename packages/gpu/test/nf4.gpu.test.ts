import { describe, expect, it } from 'vitest';
import { CommandRecorder, createNF4DequantizeKernel, createTensor, quantizeNF4, quantizeNF4Gpu, uploadNF4 } from '../src/index.js';
import { InvalidArgumentError } from '@webtune/errors';
import { useNodeContext } from './node-context.js';
import { checkDequantizeCases, checkQuantizeCases, NF4_MATMUL_CASES, runNF4MatmulCase } from './cases/nf4-cases.js';

const gpu = useNodeContext();

describe('NF4 quantization on Dawn matches bitsandbytes', () => {
  it('every fixture case', async () => {
    const checks = await checkQuantizeCases(gpu());
    expect(checks.length).toBeGreaterThan(5);
    expect(checks.filter((c) => !c.ok)).toEqual([]);
  });

  it('dequantize, dense and into padded rows, by both entry points', async () => {
    const checks = await checkDequantizeCases(gpu());
    expect(checks.filter((c) => !c.ok)).toEqual([]);
    // Whole words landing on 16 bytes take the 16-byte stores; a short last word or rows that
    // start off 16 bytes take one word per invocation. Each form must run dense, in f16 and padded.
    for (const form of ['dequantize (', 'dequantize to f16 (', 'dequantize into padded rows (f32', 'dequantize into padded rows (f16']) {
      const names = checks.filter((c) => c.name.startsWith(form)).map((c) => c.name);
      expect(names.filter((n) => /nf4-dequantize-quads\)/.test(n)).length, form).toBeGreaterThanOrEqual(1);
      expect(names.filter((n) => /nf4-dequantize\)/.test(n)).length, form).toBeGreaterThanOrEqual(1);
    }
    // The layouts beyond the fixtures: 32-value blocks (a scale shared by one invocation's words),
    // words across rows, int4, padded rows on and off 16 bytes.
    for (const name of ['block 32, words across rows', 'block 32, double quant, words across rows', 'block 32, int4 codebook', 'block 128, double quant']) {
      expect(checks.filter((c) => c.name.includes('nf4-dequantize-quads') && c.name.endsWith(`: ${name}`)).length, name).toBe(2);
    }
    expect(checks.filter((c) => c.name.endsWith(': block 32, padded rows') && c.name.includes('padded rows (')).map((c) => c.name.replace(/: block 32, padded rows$/, '')).sort()).toEqual([
      'dequantize into padded rows (f16, 8 -> 10, nf4-dequantize)', 'dequantize into padded rows (f16, 8 -> 16, nf4-dequantize-quads)',
      'dequantize into padded rows (f32, 8 -> 10, nf4-dequantize)', 'dequantize into padded rows (f32, 8 -> 12, nf4-dequantize-quads)',
      'dequantize into padded rows (f32, 8 -> 9, nf4-dequantize)',
    ]);
  });

  it('refuses padded rows it cannot write: a stride below the columns, columns not a multiple of 8, too small an output', async () => {
    const kernel = await createNF4DequantizeKernel(gpu(), { blockSize: 64, doubleQuant: false });
    const w = uploadNF4(gpu(), quantizeNF4(new Float32Array(4 * 68).fill(0.5), { blockSize: 64, shape: [4, 68] }));
    const w64 = uploadNF4(gpu(), quantizeNF4(new Float32Array(4 * 64).fill(0.5), { blockSize: 64, shape: [4, 64] }));
    const out = createTensor(gpu(), { shape: [4 * 80], label: 'out' });
    const rec = new CommandRecorder(gpu(), 'refused');
    expect(() => kernel.encode(rec, { weight: w64, output: out, outputRowStride: 60 })).toThrowError(/at least the weight's 64 columns/);
    expect(() => kernel.encode(rec, { weight: w, output: out, outputRowStride: 72 })).toThrowError(/multiple of 8 columns/);
    expect(() => kernel.encode(rec, { weight: w64, output: out, outputRowStride: 120 })).toThrowError(InvalidArgumentError);
    rec.submit();
    for (const t of [w, w64, out]) t.release();
  });

  it('rejects NaN with a typed error and frees what it allocated', async () => {
    const t = createTensor(gpu(), { shape: [128], data: new Float32Array(128).fill(1).fill(NaN, 70, 71), label: 'bad weight' });
    const live = gpu().memory.snapshot().byLabel['nf4 weight codes']?.liveBytes ?? 0;
    await expect(quantizeNF4Gpu(gpu(), t, { shape: [2, 64] })).rejects.toThrowError(InvalidArgumentError);
    expect(gpu().memory.snapshot().byLabel['nf4 weight codes']?.liveBytes ?? 0).toBe(live);
    t.release();
  });

  it('rejects a wrong block size and a shape that does not match', async () => {
    const t = createTensor(gpu(), { shape: [128], data: new Float32Array(128), label: 'w' });
    await expect(quantizeNF4Gpu(gpu(), t, { shape: [2, 64], blockSize: 100 })).rejects.toThrow(/block size 100/);
    await expect(quantizeNF4Gpu(gpu(), t, { shape: [3, 64] })).rejects.toThrow(/192 elements/);
    t.release();
  });
});

describe('fused NF4 matmuls on Dawn', () => {
  for (const c of NF4_MATMUL_CASES.full) {
    it(`${c.mode}: ${c.name}`, async () => {
      const r = await runNF4MatmulCase(gpu(), c);
      expect(r.ok, r.detail).toBe(true);
    });
  }
});
