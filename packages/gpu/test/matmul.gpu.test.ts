import { describe, expect, it } from 'vitest';
import { useNodeContext } from './node-context.js';
import { MATMUL_CASES, runMatmulCase } from './cases/matmul-cases.js';

// Every kernel on every case (lavapipe defaults to 'subgroup', SwiftShader and GPUs to 'vec4';
// A B^T takes vec4 whenever the shape allows, and other shapes fall back to the scalar kernel).
for (const matmul of ['scalar', 'vec4', 'subgroup'] as const) {
  describe(`matmul on Dawn, tuning.matmul = '${matmul}'`, () => {
    const gpu = useNodeContext({ tuning: { matmul } });
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
}
