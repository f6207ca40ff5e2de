import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@webtune/errors';
import { Rng, sample } from '../src/index.js';

describe('sampling', () => {
  const logits = Float32Array.from([1, 3, 2, 0.5, 2.9]);

  it('greedy takes the arg max; top-k 1 and a tiny top-p do too', () => {
    const rng = new Rng(1);
    expect(sample(logits, {}, rng)).toBe(1);
    expect(sample(logits, { temperature: 1, topK: 1 }, rng)).toBe(1);
    expect(sample(logits, { temperature: 1, topP: 1e-6 }, rng)).toBe(1);
  });

  it('temperature sampling follows softmax(logits / T)', () => {
    const rng = new Rng(3);
    const counts = new Array(5).fill(0);
    const n = 20000;
    for (let i = 0; i < n; i++) counts[sample(logits, { temperature: 2 }, rng)]++;
    const e = [...logits].map((x) => Math.exp(x / 2));
    const z = e.reduce((a, b) => a + b, 0);
    e.forEach((p, i) => expect(Math.abs(counts[i] / n - p / z)).toBeLessThan(4 * Math.sqrt((p / z) * (1 - p / z) / n) + 1e-3));
  });

  it('top-k and top-p keep only the head of the distribution', () => {
    const rng = new Rng(4);
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) seen.add(sample(logits, { temperature: 1, topK: 2 }, rng));
    expect([...seen].sort()).toEqual([1, 4]);
    // softmax(logits): p(1) = 0.402, p(4) = 0.363, p(2) = 0.148: top-p 0.7 keeps tokens 1 and 4.
    seen.clear();
    for (let i = 0; i < 2000; i++) seen.add(sample(logits, { temperature: 1, topP: 0.7 }, rng));
    expect([...seen].sort()).toEqual([1, 4]);
  });

  it('refuses a negative temperature', () => {
    expect(() => sample(logits, { temperature: -1 }, new Rng(0))).toThrowError(InvalidArgumentError);
  });

  it('the RNG is repeatable from a saved state', () => {
    const a = new Rng(42);
    a.next();
    const state = a.state;
    const b = new Rng(state);
    expect(Array.from({ length: 5 }, () => a.nextU32())).toEqual(Array.from({ length: 5 }, () => b.nextU32()));
  });
});
