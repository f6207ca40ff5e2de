/**
 * The federated client's own privacy mechanics (Flower's flat clipping and LocalDpMod's noise scale),
 * and the accountant and noise it re-exports from @webtune/trainer under the names it always had
 * (their tests are packages/trainer/test/accountant.unit.test.ts and privacy.unit.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@webtune/errors';
import * as trainer from '@webtune/trainer';
import * as federated from '../src/index.js';
import { clipGlobalNorm, localDpNoiseStd } from '../src/dp.js';

const relErr = (got: number, want: number) => Math.abs(got - want) / Math.abs(want);

describe('re-exports from @webtune/trainer', () => {
  it('are the same functions and class, not copies', () => {
    for (const name of ['DEFAULT_ORDERS', 'computeRdp', 'rdpToEpsilon', 'computeDpEpsilon', 'RdpAccountant', 'addGaussianNoise', 'secureUniform'] as const) {
      expect(federated[name], name).toBe(trainer[name]);
    }
  });
});

describe('clipGlobalNorm', () => {
  const norm = (ts: Float32Array[]) => Math.sqrt(ts.reduce((s, t) => s + t.reduce((a, v) => a + v * v, 0), 0));
  const randomTensors = (seed: number, sizes: number[], scale: number) => {
    let s = seed;
    const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5) * scale;
    return sizes.map((n) => Float32Array.from({ length: n }, next));
  };

  it('scales an update above S down to norm S (1e-6 relative), direction kept', () => {
    const ts = randomTensors(1, [300, 17, 1000], 2);
    const before = norm(ts);
    const copy = ts.map((t) => t.slice());
    const S = 1.25;
    expect(before).toBeGreaterThan(S);
    const { norm: n, factor } = clipGlobalNorm(ts, S);
    expect(relErr(n, before)).toBeLessThan(1e-12);
    expect(factor).toBeCloseTo(S / before, 12); // Flower: min(1, S / norm), no 1e-6
    expect(relErr(norm(ts), S)).toBeLessThanOrEqual(1e-6);
    ts.forEach((t, i) => t.forEach((v, j) => expect(v).toBe(Math.fround(copy[i]![j]! * factor))));
  });

  it('leaves an update below S (and a zero update) untouched', () => {
    const ts = randomTensors(2, [50, 60], 0.01);
    const copy = ts.map((t) => t.slice());
    const before = norm(ts);
    const r = clipGlobalNorm(ts, before * 1.0001);
    expect(r.factor).toBe(1);
    expect(ts).toEqual(copy);
    const zero = [new Float32Array(8)];
    expect(clipGlobalNorm(zero, 1)).toEqual({ norm: 0, factor: 1 });
    expect(Array.from(zero[0]!)).toEqual(new Array(8).fill(0));
  });

  it('accepts a one-shot iterable (generator)', () => {
    const ts = randomTensors(3, [100, 100], 4);
    clipGlobalNorm((function* () { yield* ts; })(), 0.5);
    expect(relErr(norm(ts), 0.5)).toBeLessThanOrEqual(1e-6);
  });

  it('rejects bad arguments', () => {
    expect(() => clipGlobalNorm([new Float32Array(2)], 0)).toThrow(InvalidArgumentError);
    expect(() => clipGlobalNorm([new Float32Array(2)], Infinity)).toThrow(/maxNorm/);
    expect(() => clipGlobalNorm([Float32Array.of(1, NaN)], 1)).toThrow(/NaN or Infinity/);
    expect(() => clipGlobalNorm([[1, 2] as unknown as Float32Array], 1)).toThrow(/not a Float32Array/);
  });
});

describe('localDpNoiseStd', () => {
  it('is S sqrt(2 ln(1.25 / delta)) / epsilon (Flower LocalDpMod)', () => {
    expect(localDpNoiseStd(1, 1, 1e-5)).toBeCloseTo(4.844805262605389, 12); // numpy
    expect(localDpNoiseStd(2.5, 0.5, 1e-6)).toBeCloseTo((2.5 * Math.sqrt(2 * Math.log(1.25e6))) / 0.5, 12);
  });
  it('rejects bad arguments', () => {
    expect(() => localDpNoiseStd(0, 1, 1e-5)).toThrow(InvalidArgumentError);
    expect(() => localDpNoiseStd(1, 0, 1e-5)).toThrow(/epsilon/);
    expect(() => localDpNoiseStd(1, 1, 1)).toThrow(/delta/);
  });
});
