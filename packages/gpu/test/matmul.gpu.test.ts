import { describe, expect, it } from 'vitest';
import { useNodeContext } from './node-context.js';
import { MATMUL_CASES, runMatmulCase } from './cases/matmul-cases.js';

const gpu = useNodeContext();

describe('matmul on Dawn', () => {
  for (const c of MATMUL_CASES.full) {
    it(c.name, async () => {
      if (c.dtype === 'f16' && !gpu().features.shaderF16) {
        throw new Error('this adapter has no shader-f16; the f16 cases need it (lavapipe has it)');
      }
      const result = await runMatmulCase(gpu(), c);
      expect(result.validationError).toBeNull();
      expect(result.worst.ratio, JSON.stringify(result.worst)).toBeLessThanOrEqual(1);
    });
  }
});
