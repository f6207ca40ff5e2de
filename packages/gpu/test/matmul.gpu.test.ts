import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../src/index.js';
import { nodeContext } from './node-context.js';
import { MATMUL_CASES, runMatmulCase } from './cases/matmul-cases.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await nodeContext();
});
afterAll(() => {
  expect(ctx.uncapturedErrors.map((e) => e.message)).toEqual([]);
  ctx.destroy();
});

describe('matmul on Dawn', () => {
  for (const c of MATMUL_CASES.full) {
    it(c.name, async () => {
      if (c.dtype === 'f16' && !ctx.features.shaderF16) {
        throw new Error('this adapter has no shader-f16; the f16 cases need it (lavapipe has it)');
      }
      const result = await runMatmulCase(ctx, c);
      expect(result.validationError).toBeNull();
      expect(result.worst.ratio, JSON.stringify(result.worst)).toBeLessThanOrEqual(1);
    });
  }
});
