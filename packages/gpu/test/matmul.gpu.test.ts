import { describe, expect, it } from 'vitest';
import { useNodeContext } from './node-context.js';
import { worstError } from './random.js';
import { MATMUL_CASES, matmulRefOnFixtures, runMatmulCase } from './cases/matmul-cases.js';

// Every kernel on every case (lavapipe defaults to 'subgroup', SwiftShader to 'vec4', hardware GPUs
// to 'tiled'). A B^T takes vec4 whenever the shape allows under linear 'vec4' (the default with
// 'scalar' and 'vec4'), and the matmul kernel under linear 'matmul' (lavapipe's default with
// 'subgroup'); other shapes fall back to the scalar kernel.
const TUNINGS = [
  { matmul: 'scalar' }, { matmul: 'scalar', linear: 'matmul' }, { matmul: 'vec4' }, { matmul: 'subgroup' }, { matmul: 'tiled' },
] as const;
for (const tuning of TUNINGS) {
  describe(`matmul on Dawn, tuning ${JSON.stringify(tuning)}`, () => {
    const gpu = useNodeContext({ tuning });
    for (const c of MATMUL_CASES.full) {
      it(c.name, async () => {
        if (c.dtype === 'f16' && !gpu().features.shaderF16) {
          throw new Error('this adapter has no shader-f16; the f16 cases need it (lavapipe has it)');
        }
        const result = await runMatmulCase(gpu(), c);
        expect(result.validationError).toBeNull();
        expect(result.worst.ratio, JSON.stringify(result.worst)).toBeLessThanOrEqual(1);
        if (tuning.matmul === 'subgroup') {
          // 32 rows per 8-lane group from M = 32 on, 8 below (kernels/matmul.ts).
          expect(result.kernels).toEqual([c.m >= 32 ? 'matmul-subgroup-wide' : 'matmul-subgroup']);
        }
      });
    }
  });
}

// The randn cases above take their expected values from matmulRef; it must agree with PyTorch.
describe('matmulRef against PyTorch (scripts/make_matmul_fixtures.py)', () => {
  for (const { name, got, expected } of matmulRefOnFixtures()) {
    it(name, () => {
      // Both sum in float64 and round once to float32.
      const worst = worstError(got, expected, 1e-6, 1e-6);
      expect(worst.ratio, JSON.stringify(worst)).toBeLessThanOrEqual(1);
    });
  }
});
