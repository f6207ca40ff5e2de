/**
 * The pure parts of device adaptation, without a GPU: which settings autoConfigure() considers and
 * in what order for each memory-optimisation level, how a measured candidate wins, the default
 * budget from navigator.deviceMemory, the battery/thermal decision, and recovery's smaller
 * micro-batch. Memory estimates come from the planner (@webtune/trainer, tested on its own against
 * the tensors' sizes); the expected choices here are written out by hand.
 */
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@webtune/errors';
import { estimateTrainingMemory } from '@webtune/trainer';
import { parseModelConfig, resolveAdapterSpec } from '@webtune/model';
import { readFileSync } from 'node:fs';
import { FIXTURES } from '../../model/test/tiny-models.js';
import { chooseCandidate, defaultBudget, divisorsDescending, planCandidates, type AutoCandidate, type CalibrationMeasurement, type CandidateInput } from '../src/auto-configure.js';
import { powerDecision, resolvePowerPolicy } from '../src/device-conditions.js';
import { smallerMicroBatch } from '../src/session.js';

const config = parseModelConfig(JSON.parse(readFileSync(`${FIXTURES}models/tiny-llama/config.json`, 'utf8')));
const lora = resolveAdapterSpec(config, 'lora', { rank: 8, alpha: 16 });
const GiB = 2 ** 30;

function input(patch: Partial<CandidateInput> = {}): CandidateInput {
  return {
    config, loadedFormat: 'f32', adapter: lora, level: 'balanced', budgetBytes: GiB, effectiveBatch: 8, seqLen: 32, override: {},
    device: { adapter: 'test', isSoftware: true, features: { shaderF16: true, subgroups: false }, limits: { maxStorageBufferBindingSize: GiB, maxBufferSize: GiB }, deviceMemoryGiB: undefined },
    ...patch,
  };
}

const bytes = (format: 'f32' | 'nf4', dtype: 'f32' | 'f16', batch: number, recompute: boolean, rank = 8, seq = 32) =>
  estimateTrainingMemory({ config, format, dtype, adapter: resolveAdapterSpec(config, 'lora', { rank }), batch, seq, recompute });

describe('planCandidates', () => {
  it('a roomy budget: every format and activation type, each at the whole batch without recomputation', () => {
    const plan = planCandidates(input());
    expect(plan.candidates.map((c) => [c.format, c.dtype, c.microBatchSize, c.gradientAccumulation, c.recompute])).toEqual([
      ['f32', 'f32', 8, 1, false], ['f32', 'f16', 8, 1, false], ['nf4', 'f32', 8, 1, false], ['nf4', 'f16', 8, 1, false],
    ]);
    expect(plan.candidates[0]!.estimate.total).toBe(bytes('f32', 'f32', 8, false).total);
    expect(plan.rejected).toEqual([]);
  });

  it('no shader-f16: f32 activations only; a 4-bit ONNX model stays q4', () => {
    const noF16 = planCandidates(input({ device: { ...input().device, features: { shaderF16: false, subgroups: false } } }));
    expect(noF16.candidates.map((c) => c.dtype)).toEqual(['f32', 'f32']);
    expect(planCandidates(input({ loadedFormat: 'q4' })).candidates.map((c) => c.format)).toEqual(['q4', 'q4']);
    expect(() => planCandidates(input({ override: { dtype: 'f16' }, device: { ...input().device, features: { shaderF16: false, subgroups: false } } }))).toThrowError(/shader-f16/);
  });

  it("'maximum': NF4, f16, recomputation, micro-batch 1 only", () => {
    const plan = planCandidates(input({ level: 'maximum' }));
    expect(plan.candidates.map((c) => [c.format, c.dtype, c.microBatchSize, c.gradientAccumulation, c.recompute])).toEqual([['nf4', 'f16', 1, 8, true]]);
  });

  it("a budget between two estimates: the largest micro-batch under it ('minimal' plans into the whole budget, 'balanced' into 75%)", () => {
    const four = bytes('f32', 'f32', 4, false).total;
    const minimal = planCandidates(input({ level: 'minimal', budgetBytes: four, override: { format: 'f32', dtype: 'f32' } }));
    expect(minimal.candidates.map((c) => [c.microBatchSize, c.recompute])).toEqual([[4, false]]);
    expect(minimal.rejected.map((r) => r.what)).toEqual(['f32 weights, f32 activations, micro-batch 8, seqLen 32, rank 8']);
    const balanced = planCandidates(input({ level: 'balanced', budgetBytes: Math.ceil(four / 0.75), override: { format: 'f32', dtype: 'f32' } }));
    expect(balanced.candidates[0]!.microBatchSize).toBe(4);
  });

  it("'balanced' recomputes before it takes micro-batch 1", () => {
    const twoRecompute = bytes('f32', 'f32', 2, true).total;
    const oneNo = bytes('f32', 'f32', 1, false).total;
    const twoNo = bytes('f32', 'f32', 2, false).total;
    // A budget where micro-batch 2 fits only with recomputation, and micro-batch 1 fits without it.
    expect(twoRecompute).toBeLessThan(twoNo);
    const budget = Math.max(twoRecompute, oneNo);
    if (budget >= twoNo) return expect.fail(`the fixture cannot separate the cases (${twoRecompute}, ${oneNo}, ${twoNo})`);
    const fixed = { format: 'f32' as const, dtype: 'f32' as const };
    expect(planCandidates(input({ level: 'balanced', budgetBytes: Math.ceil(budget / 0.75), override: fixed })).candidates[0]).toMatchObject({ microBatchSize: 2, recompute: true });
    expect(planCandidates(input({ level: 'minimal', budgetBytes: budget, override: fixed })).candidates[0]).toMatchObject({ microBatchSize: 1, recompute: false });
  });

  it('nothing fits: the rank is halved first, then the sequence length; a rank in override is kept', () => {
    const smallest = bytes('nf4', 'f16', 1, true, 8).total;
    const atRank2 = bytes('nf4', 'f16', 1, true, 2).total;
    expect(atRank2).toBeLessThan(smallest);
    const plan = planCandidates(input({ level: 'maximum', budgetBytes: atRank2 }));
    expect(plan.candidates[0]).toMatchObject({ rank: 2, seqLen: 32 });
    expect(plan.candidates[0]!.adapter.config).toMatchObject({ rank: 2, alpha: 4 }); // alpha / rank kept (16 / 8 -> 4 / 2)
    expect(plan.lowered).toEqual(['rank 8 -> 2: nothing fit the budget at rank 8']);
    const kept = planCandidates(input({ level: 'maximum', budgetBytes: atRank2, override: { rank: 8 } }));
    expect(kept.candidates[0]).toMatchObject({ rank: 8 });
    expect(kept.candidates[0]!.seqLen).toBeLessThan(32);
    expect(planCandidates(input({ budgetBytes: 1024 })).candidates).toEqual([]);
  });

  it("'balanced' at micro-batch 1: without recomputation when that fits", () => {
    const oneNo = bytes('f32', 'f32', 1, false).total;
    const twoRecompute = bytes('f32', 'f32', 2, true).total;
    if (oneNo >= twoRecompute) return expect.fail(`the fixture cannot separate the cases (${oneNo}, ${twoRecompute})`);
    // Micro-batch 1 fits without recomputation; nothing larger fits, with or without it.
    const plan = planCandidates(input({ level: 'balanced', budgetBytes: Math.ceil(oneNo / 0.75), override: { format: 'f32', dtype: 'f32' } }));
    expect(plan.candidates[0]).toMatchObject({ microBatchSize: 1, recompute: false });
    expect(plan.rejected.map((r) => r.what).at(-1)).toMatch(/micro-batch 2, seqLen 32, recompute/);
  });

  it('refuses settings that cannot work', () => {
    expect(() => planCandidates(input({ effectiveBatch: 0 }))).toThrowError(InvalidArgumentError);
    for (const override of [{ microBatchSize: -2 }, { microBatchSize: 2.5 }, { seqLen: Number.NaN }, { rank: 0 }, { format: 'f16' as 'f32' }, { dtype: 'bf16' as 'f16' }]) {
      expect(() => planCandidates(input({ override }))).toThrowError(InvalidArgumentError);
    }
    expect(() => planCandidates(input({ adapter: resolveAdapterSpec(config, 'ia3', {}), override: { rank: 4 } }))).toThrowError(/the ia3 adapter has no rank/);
    expect(() => planCandidates(input({ override: { microBatchSize: 3 } }))).toThrowError(/does not divide the effective batch 8/);
    expect(() => planCandidates(input({ override: { format: 'q4' } }))).toThrowError(/4-bit ONNX/);
  });
});

describe('chooseCandidate', () => {
  const candidate = (format: 'f32' | 'nf4', total: number) => ({ format, estimate: { total } }) as AutoCandidate;
  const measurement = (tokensPerSecond: number, failed?: string) => ({ tokensPerSecond, ...(failed ? { failed } : {}) }) as CalibrationMeasurement;

  it('the fastest, unless a smaller one is within 10% of it', () => {
    const big = candidate('f32', 1000);
    const small = candidate('nf4', 400);
    expect(chooseCandidate([big, small], new Map([[big, measurement(100)], [small, measurement(80)]]), 'balanced').chosen).toBe(big);
    const close = chooseCandidate([big, small], new Map([[big, measurement(100)], [small, measurement(91)]]), 'balanced');
    expect(close.chosen).toBe(small);
    expect(close.why).toMatch(/within 10% of the fastest \(91.0 vs 100.0 tokens\/s\)/);
    // With a time budget the fastest wins outright.
    const timed = chooseCandidate([big, small], new Map([[big, measurement(100)], [small, measurement(91)]]), 'balanced', true);
    expect(timed.chosen).toBe(big);
    expect(timed.why).toMatch(/for the time budget/);
  });

  it('a failed measurement is out; nothing measured or "maximum" takes the smallest', () => {
    const big = candidate('f32', 1000);
    const small = candidate('nf4', 400);
    expect(chooseCandidate([big, small], new Map([[big, measurement(100)], [small, measurement(0, 'out of memory')]]), 'minimal').chosen).toBe(big);
    expect(chooseCandidate([big, small], new Map(), 'minimal').chosen).toBe(small);
    expect(chooseCandidate([big, small], new Map([[big, measurement(100)], [small, measurement(10)]]), 'maximum').chosen).toBe(small);
    expect(() => chooseCandidate([big], new Map([[big, measurement(0, 'out of memory')]]), 'balanced')).toThrowError(/every planned setting failed when measured: .*out of memory/);
  });
});

describe('small pieces', () => {
  it('defaultBudget: half of deviceMemory, at most 4 GiB; 4 GiB when unknown', () => {
    expect(defaultBudget(undefined)).toBe(4 * GiB);
    expect(defaultBudget(2)).toBe(GiB);
    expect(defaultBudget(0.5)).toBe(GiB / 4);
    expect(defaultBudget(8)).toBe(4 * GiB);
    expect(defaultBudget(16)).toBe(4 * GiB);
  });

  it('divisorsDescending and smallerMicroBatch', () => {
    expect(divisorsDescending(12)).toEqual([12, 6, 4, 3, 2, 1]);
    expect(smallerMicroBatch(8, 8)).toBe(4);
    expect(smallerMicroBatch(8, 4)).toBe(2);
    expect(smallerMicroBatch(12, 12)).toBe(6);
    expect(smallerMicroBatch(12, 6)).toBe(3);
    expect(smallerMicroBatch(10, 10)).toBe(5);
    expect(smallerMicroBatch(10, 5)).toBe(2);
    expect(smallerMicroBatch(7, 7)).toBe(1);
    expect(smallerMicroBatch(4, 1)).toBe(1);
  });

  it('powerDecision: battery below the threshold while discharging waits; critical waits; serious paces', () => {
    const both = resolvePowerPolicy({ battery: true, thermal: true });
    expect(powerDecision(both, {}, 100)).toEqual({ action: 'run' });
    expect(powerDecision(both, { battery: { charging: false, level: 0.19 } }, 100)).toEqual({ action: 'wait', reason: 'battery' });
    expect(powerDecision(both, { battery: { charging: true, level: 0.05 } }, 100)).toEqual({ action: 'run' });
    expect(powerDecision(both, { battery: { charging: false, level: 0.2 } }, 100)).toEqual({ action: 'run' });
    expect(powerDecision(both, { pressure: 'critical' }, 100)).toEqual({ action: 'wait', reason: 'thermal' });
    expect(powerDecision(both, { pressure: 'serious' }, 120)).toEqual({ action: 'pace', gapMs: 120 });
    expect(powerDecision(both, { pressure: 'serious' }, 10)).toEqual({ action: 'pace', gapMs: 50 });
    expect(powerDecision(both, { pressure: 'fair' }, 100)).toEqual({ action: 'run' });
    expect(powerDecision(resolvePowerPolicy({ thermal: { gapMs: 7 } }), { pressure: 'serious', battery: { charging: false, level: 0 } }, 100)).toEqual({ action: 'pace', gapMs: 7 });
    expect(powerDecision(resolvePowerPolicy({ battery: { minLevel: 0.5 } }), { battery: { charging: false, level: 0.4 }, pressure: 'critical' }, 1)).toEqual({ action: 'wait', reason: 'battery' });
    expect(powerDecision(resolvePowerPolicy(undefined), { battery: { charging: false, level: 0 }, pressure: 'critical' }, 1)).toEqual({ action: 'run' });
    expect(() => resolvePowerPolicy({ thermal: { gapMs: -1 } })).toThrowError(/gapMs/);
  });
});
