import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@webtune/errors';
import { BatchStream, learningRateFactor, packTokens } from '../src/index.js';

describe('packTokens', () => {
  it('cuts windows of seq + 1 with stride seq, so every token after the first is a target once', () => {
    const w = packTokens([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 3);
    expect(w.map((x) => [...x])).toEqual([[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]);
    expect(() => packTokens([1, 2], 0)).toThrowError(InvalidArgumentError);
  });
});

describe('BatchStream', () => {
  const windows = packTokens(Array.from({ length: 81 }, (_, i) => i), 4); // 20 windows

  it('is repeatable for a seed and resumes exactly from a saved cursor, across epochs', () => {
    const a = new BatchStream(windows, 3, 11);
    const first = Array.from({ length: 4 }, () => a.next());
    const cursor = a.position;
    const rest = Array.from({ length: 10 }, () => a.next());
    const b = new BatchStream(windows, 3, 11);
    expect(Array.from({ length: 4 }, () => b.next())).toEqual(first);
    const resumed = new BatchStream(windows, 3, cursor);
    expect(Array.from({ length: 10 }, () => resumed.next())).toEqual(rest);
    expect(a.position.epoch).toBeGreaterThan(1);
  });

  it('visits every window once per epoch, with targets shifted by one', () => {
    const s = new BatchStream(windows, 4, 2);
    const seen = new Set<number>();
    for (let i = 0; i < 5; i++) {
      const b = s.next();
      for (let r = 0; r < 4; r++) {
        seen.add(b.ids[r * 4]!);
        expect([...b.targets!.subarray(r * 4, r * 4 + 4)]).toEqual([...b.ids.subarray(r * 4, r * 4 + 4)].map((x) => x + 1));
      }
    }
    expect(seen.size).toBe(20);
  });

  it('refuses data smaller than one batch', () => {
    expect(() => new BatchStream(windows.slice(0, 2), 3, 0)).toThrowError(/gives 2 sequences but a batch needs 3/);
  });
});

describe('learning-rate schedules (transformers get_scheduler formulas)', () => {
  const o = { warmupSteps: 10, totalSteps: 110 };
  it('warm up linearly from 0', () => {
    for (const kind of ['constant', 'linear', 'cosine'] as const) {
      expect(learningRateFactor(0, { kind, ...o })).toBe(0);
      expect(learningRateFactor(5, { kind, ...o })).toBe(0.5);
      expect(learningRateFactor(10, { kind, ...o })).toBe(1);
    }
  });
  it('then hold, fall linearly, or follow half a cosine to 0', () => {
    expect(learningRateFactor(60, { kind: 'constant', ...o })).toBe(1);
    expect(learningRateFactor(60, { kind: 'linear', ...o })).toBe(0.5);
    expect(learningRateFactor(110, { kind: 'linear', ...o })).toBe(0);
    expect(learningRateFactor(60, { kind: 'cosine', ...o })).toBeCloseTo(0.5, 12);
    expect(learningRateFactor(35, { kind: 'cosine', ...o })).toBeCloseTo((1 + Math.SQRT1_2) / 2, 12);
    expect(learningRateFactor(110, { kind: 'cosine', ...o })).toBeCloseTo(0, 12);
  });
});
