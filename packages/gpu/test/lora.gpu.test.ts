import { describe, expect, it } from 'vitest';
import { createLoraKernels, createTensor, CommandRecorder } from '../src/index.js';
import { InvalidArgumentError } from '@webtune/errors';
import { useNodeContext } from './node-context.js';
import { LORA_CASES, runLoraCase } from './cases/lora-cases.js';

const gpu = useNodeContext();

describe('LoRA forward + backward on Dawn against PyTorch autograd', () => {
  for (const c of LORA_CASES) {
    it(c.name, async () => {
      const r = await runLoraCase(gpu(), c);
      expect(r.ok, r.detail).toBe(true);
    });
  }

  for (const c of LORA_CASES.filter((c) => c.weightFormat === 'nf4')) {
    it(`${c.name}, forward and input gradient through a dequantized scratch`, async () => {
      const r = await runLoraCase(gpu(), c, { dequantized: true });
      expect(r.ok, r.detail).toBe(true);
    });
  }

  it('refuses mismatched A, B and W with the shapes in the message', async () => {
    const kernels = await createLoraKernels(gpu(), { base: { format: 'dense' } });
    const t = (shape: number[]) => createTensor(gpu(), { shape, label: 't' });
    const layer = { base: { format: 'dense' as const, weight: t([8, 16]) }, a: t([4, 16]), b: t([8, 3]), scale: 1 };
    const rec = new CommandRecorder(gpu(), 'bad lora');
    expect(() => kernels.forward(rec, { layer, m: 2, x: t([2, 16]), h: t([2, 4]), y: t([2, 8]) })).toThrowError(InvalidArgumentError);
    expect(() => kernels.forward(rec, { layer, m: 2, x: t([2, 16]), h: t([2, 4]), y: t([2, 8]) })).toThrow(/A \[4, 16\], B \[8, 3\]/);
    rec.submit();
  });
});
