import { describe, expect, it } from 'vitest';
import { useNodeContext } from './node-context.js';
import { worstError } from './random.js';
import { MATMUL_CASES, matmulRefOnFixtures, runMatmulCase } from './cases/matmul-cases.js';
import { CommandRecorder, createMatmulKernel, createTensor, type GpuContext, type KernelTuning, type MatmulArgs, type MatmulVariant } from '../src/index.js';
import { InvalidArgumentError } from '@webtune/errors';

// Every kernel on every case (lavapipe defaults to 'subgroup', SwiftShader to 'vec4', hardware GPUs
// to 'tiled'). A B^T takes vec4 whenever the shape allows under linear 'vec4' (the default with
// 'scalar' and 'vec4'), and the matmul kernel under linear 'matmul' (lavapipe's default with
// 'subgroup'); other shapes fall back to the scalar kernel.
// The subgroup kernels run in two forms: rows shared by broadcasts where subgroups have exactly 8
// lanes (lavapipe), by shuffles within each 8-lane group where they may have more. The shuffle
// form runs on lavapipe through a context that reports 8-32 lanes; with its real 8-lane subgroups
// each group is the whole subgroup (lane offset 0), so this covers the form's code but not groups
// past the first, which only wider hardware runs.
const TUNINGS: { tuning: Partial<KernelTuning>; reportedMaxLanes?: number }[] = [
  { tuning: { matmul: 'scalar' } }, { tuning: { matmul: 'scalar', linear: 'matmul' } }, { tuning: { matmul: 'vec4' } },
  { tuning: { matmul: 'subgroup' } }, { tuning: { matmul: 'subgroup' }, reportedMaxLanes: 32 }, { tuning: { matmul: 'tiled' } },
];
for (const { tuning, reportedMaxLanes } of TUNINGS) {
  const form = reportedMaxLanes ? `, shuffle form (subgroups reported as 8-${reportedMaxLanes} lanes)` : '';
  describe(`matmul on Dawn, tuning ${JSON.stringify(tuning)}${form}`, () => {
    const gpu = useNodeContext({ tuning });
    const context = (): GpuContext => (reportedMaxLanes ? { ...gpu(), adapter: { ...gpu().adapter, subgroupMaxSize: reportedMaxLanes } } : gpu());
    for (const c of MATMUL_CASES.full) {
      it(c.name, async () => {
        if (c.dtype === 'f16' && !gpu().features.shaderF16) {
          throw new Error('this adapter has no shader-f16; the f16 cases need it (lavapipe has it)');
        }
        const result = await runMatmulCase(context(), c);
        expect(result.validationError).toBeNull();
        expect(result.worst.ratio, JSON.stringify(result.worst)).toBeLessThanOrEqual(1);
        if (tuning.matmul === 'subgroup') {
          // 32 rows per 8-lane group from M = 32 on, 8 below (kernels/matmul.ts); broadcasts only
          // where the context reports exactly 8 lanes, as lavapipe's real subgroups have.
          expect(result.kernels).toEqual([c.m >= 32 ? 'matmul-subgroup-wide' : 'matmul-subgroup']);
          expect([gpu().adapter.subgroupMinSize, gpu().adapter.subgroupMaxSize]).toEqual([8, 8]);
          expect(result.constants.map((k) => k['EIGHT_LANES'])).toEqual([reportedMaxLanes === undefined]);
        }
      });
    }
  });
}

describe('matmul rejects what it cannot run', () => {
  const gpu = useNodeContext();
  const call = async (args: Partial<MatmulArgs>, variant: MatmulVariant = {}) => {
    const ctx = gpu();
    const kernel = await createMatmulKernel(ctx, variant);
    const t = (size: number, label: string) => createTensor(ctx, { shape: [size], dtype: 'f32', label });
    const recorder = new CommandRecorder(ctx, 'errors');
    try {
      kernel.encode(recorder, { a: t(64, 'A'), b: t(64, 'B'), c: t(64, 'C'), m: 4, n: 4, k: 4, ...args });
    } finally {
      recorder.submit();
    }
  };
  it('a row stride below the stored row length', async () => {
    await expect(call({ lda: 3 })).rejects.toThrow(/lda must be an integer of at least 4/);
    await expect(call({ m: 6, lda: 5 }, { transA: true })).rejects.toThrow(/lda must be an integer of at least 6 .*got 5/);
    await expect(call({ n: 5, ldb: 4 })).rejects.toThrow(/ldb must be an integer of at least 5/);
    await expect(call({ ldc: 2.5 })).rejects.toThrow(InvalidArgumentError);
  });
  it('padded rows past the end of an operand', async () => {
    // Four rows 20 apart span (4 - 1) * 20 + 4 = 64 elements, all of A; 21 apart they need 67.
    await expect(call({ lda: 20 })).resolves.toBeUndefined();
    await expect(call({ lda: 21 })).rejects.toThrow(/A "A" has 64 elements .* needs 67/);
  });
  it('batches of padded C that would overlap', async () => {
    await expect(call({ m: 2, n: 2, k: 2, batch: 2, ldc: 3, strideC: 4 })).rejects.toThrow(/strideC \(4\) is below the 5 elements/);
  });
});

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
