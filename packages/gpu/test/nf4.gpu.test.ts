import { describe, expect, it } from 'vitest';
import { createTensor, quantizeNF4Gpu } from '../src/index.js';
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

  it('dequantize', async () => {
    const checks = await checkDequantizeCases(gpu());
    expect(checks.filter((c) => !c.ok)).toEqual([]);
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
