/**
 * DP-SGD's privacy building blocks without a GPU: the budget (presets, estimatePrivacy, Opacus'
 * get_noise_multiplier as noiseMultiplierFor, checked against a Python transcription in
 * scripts/make_dp_fixtures.py and Opacus' own test values), the hardened CSPRNG Gaussian noise
 * (statistics, the secure-mode formula, no Math.random), and the Poisson sampler (inclusion rate,
 * batch-size variance, exact resume from its state). The accountant itself is tested in
 * accountant.unit.test.ts.
 *
 * Statistical checks use fixed tolerances of 5 standard errors (false-failure rate ~6e-7 each).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { InvalidArgumentError } from '@webtune/errors';
import { Rng, type RngState } from '@webtune/model';
import {
  DEFAULT_ORDERS, PRIVACY_PRESETS, PoissonSampler, addGaussianNoise, secureStandardNormal, computeDpEpsilon, defaultDelta, estimatePrivacy, gaussianNoise,
  noiseMultiplierFor, secureUniform, type PrivacyPreset,
} from '../src/privacy/index.js';
import * as trainer from '../src/index.js';

afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllGlobals();
});

// Written by scripts/make_dp_fixtures.py: Opacus' get_noise_multiplier transcribed over an
// independent numpy/scipy RDP accountant, and the values of Opacus' own tests.
interface SigmaCase {
  targetEpsilon: number; delta: number; sampleRate: number; steps: number; orders: number[] | null;
  sigma: number; epsilon: number; closest: number;
}
const nm = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures/noise-multiplier.json'), 'utf8')) as {
  maxSigma: number;
  epsilonTolerance: number;
  cases: SigmaCase[];
  published: { source: string; targetEpsilon: number; delta: number; sampleRate: number; steps: number; sigma: number; absTol: number }[];
  tooLow: { targetEpsilon: number; delta: number; sampleRate: number; steps: number }[];
};

const EXTENDED_ORDERS = [...DEFAULT_ORDERS, 128, 256, 512];
// The budget functions default to the trainer's orders (Opacus' plus TF Privacy's 128, 256, 512); the Opacus comparisons pass DEFAULT_ORDERS.

describe('the package exports', () => {
  it('the privacy building blocks from @webtune/trainer', () => {
    expect(trainer.noiseMultiplierFor).toBe(noiseMultiplierFor);
    expect(trainer.PoissonSampler).toBe(PoissonSampler);
    expect(trainer.gaussianNoise).toBe(gaussianNoise);
    expect(trainer.RdpAccountant).toBeTypeOf('function');
  });
});

describe('presets and the default delta', () => {
  it('name the target epsilons of the guide', () => {
    expect(PRIVACY_PRESETS).toEqual({ low: 10, medium: 3, high: 1, veryHigh: 0.1 });
    const names: PrivacyPreset[] = ['low', 'medium', 'high', 'veryHigh'];
    expect(Object.keys(PRIVACY_PRESETS)).toEqual(names);
  });
  it('delta defaults to 1 / (10 N)', () => {
    expect(defaultDelta(5000)).toBe(1 / 50_000);
    expect(defaultDelta(1)).toBe(0.1);
    for (const bad of [0, -3, 1.5, NaN, Infinity]) {
      expect(() => defaultDelta(bad)).toThrow(InvalidArgumentError);
      expect(() => defaultDelta(bad)).toThrow(/dataSize must be a positive integer/);
    }
  });
});

describe('estimatePrivacy', () => {
  it('equals computeDpEpsilon at q = batchSize / dataSize, delta 1 / (10 N) by default', () => {
    for (const [dataSize, batchSize, steps, noiseMultiplier] of [[5000, 50, 1000, 1.1], [1000, 1000, 10, 4], [60_000, 256, 2345, 0.8]] as const) {
      const got = estimatePrivacy({ dataSize, batchSize, steps, noiseMultiplier });
      const want = computeDpEpsilon({ noiseMultiplier, sampleRate: batchSize / dataSize, steps, delta: 1 / (10 * dataSize), orders: EXTENDED_ORDERS });
      expect(got).toEqual({
        epsilon: want.epsilon, order: want.order, delta: 1 / (10 * dataSize), sampleRate: batchSize / dataSize, steps, noiseMultiplier,
      });
    }
    const withDelta = estimatePrivacy({ dataSize: 5000, batchSize: 50, steps: 1000, noiseMultiplier: 1.1, delta: 1e-6 });
    expect(withDelta.epsilon).toBe(computeDpEpsilon({ noiseMultiplier: 1.1, sampleRate: 0.01, steps: 1000, delta: 1e-6, orders: EXTENDED_ORDERS }).epsilon);
    expect(withDelta.delta).toBe(1e-6);
    const withOrders = estimatePrivacy({ dataSize: 5000, batchSize: 50, steps: 1000, noiseMultiplier: 1.1, orders: [2, 4, 8] });
    expect(withOrders.epsilon).toBe(computeDpEpsilon({ noiseMultiplier: 1.1, sampleRate: 0.01, steps: 1000, delta: 2e-5, orders: [2, 4, 8] }).epsilon);
  });

  it('gives Infinity for no noise', () => {
    expect(estimatePrivacy({ dataSize: 100, batchSize: 10, steps: 5, noiseMultiplier: 0 }).epsilon).toBe(Infinity);
  });

  it('rejects a batch larger than the data, and every other bad argument, saying what to do', () => {
    const ok = { dataSize: 100, batchSize: 10, steps: 5, noiseMultiplier: 1 };
    const bad: [string, object, RegExp][] = [
      ['batch > data', { batchSize: 101 }, /batchSize \(101\) is larger than dataSize \(100\).*Lower the batch size or add examples/],
      ['batch 0', { batchSize: 0 }, /batchSize must be a positive integer/],
      ['batch fractional', { batchSize: 2.5 }, /batchSize/],
      ['data 0', { dataSize: 0 }, /dataSize must be a positive integer/],
      ['steps 0', { steps: 0 }, /steps must be a positive integer/],
      ['steps fractional', { steps: 1.5 }, /steps/],
      ['sigma negative', { noiseMultiplier: -1 }, /noiseMultiplier must be a finite number >= 0/],
      ['sigma NaN', { noiseMultiplier: NaN }, /noiseMultiplier/],
      ['delta 0', { delta: 0 }, /delta must be a number in \(0, 1\)/],
      ['delta 1', { delta: 1 }, /delta/],
      ['orders', { orders: [1, 2] }, /orders must be a non-empty array of RDP orders > 1/],
    ];
    for (const [name, patch, msg] of bad) {
      const call = () => estimatePrivacy({ ...ok, ...patch });
      expect(call, name).toThrow(InvalidArgumentError);
      expect(call, name).toThrow(msg);
    }
    expect(() => estimatePrivacy(undefined as never)).toThrow(/pass \{ dataSize/);
  });
});

describe('noiseMultiplierFor (Opacus get_noise_multiplier)', () => {
  const epsilonOf = (sigma: number, o: { delta: number; sampleRate: number; steps: number; orders?: readonly number[] }) =>
    computeDpEpsilon({ noiseMultiplier: sigma, orders: EXTENDED_ORDERS, ...o }).epsilon;

  it('returns sigma with epsilon <= target and within 0.01 of it across (epsilon, delta, q, steps)', () => {
    let n = 0;
    for (const targetEpsilon of [1, 3, 8, 10]) {
      for (const delta of [1e-5, 1e-6]) {
        for (const sampleRate of [0.001, 0.01, 0.1]) {
          for (const steps of [100, 1000, 10_000]) {
            const sigma = noiseMultiplierFor({ targetEpsilon, delta, sampleRate, steps });
            const eps = epsilonOf(sigma, { delta, sampleRate, steps });
            const label = `eps=${targetEpsilon} delta=${delta} q=${sampleRate} steps=${steps}: sigma ${sigma}, eps ${eps}`;
            expect(sigma, label).toBeGreaterThan(0);
            expect(eps, label).toBeLessThanOrEqual(targetEpsilon);
            expect(targetEpsilon - eps, label).toBeLessThanOrEqual(0.01);
            n++;
          }
        }
      }
    }
    expect(n).toBe(72);
  });

  it('reaches epsilon 0.1 (the veryHigh preset) only with orders above 63', () => {
    for (const delta of [1e-5, 1e-6]) {
      for (const sampleRate of [0.001, 0.01, 0.1]) {
        for (const steps of [100, 1000, 10_000]) {
          const o = { targetEpsilon: 0.1, delta, sampleRate, steps };
          // With Opacus' default orders epsilon never goes below ~0.103 (delta 1e-5) whatever sigma.
          expect(() => noiseMultiplierFor({ ...o, orders: DEFAULT_ORDERS })).toThrow(InvalidArgumentError);
          expect(() => noiseMultiplierFor({ ...o, orders: DEFAULT_ORDERS })).toThrow(/budget is too low: .* the least any noise can give with RDP orders up to 63/);
          // The default (DP_SGD_ORDERS) reaches it.
          expect(noiseMultiplierFor(o)).toBe(noiseMultiplierFor({ ...o, orders: EXTENDED_ORDERS }));
          const sigma = noiseMultiplierFor({ ...o, orders: EXTENDED_ORDERS });
          const eps = epsilonOf(sigma, { delta, sampleRate, steps, orders: EXTENDED_ORDERS });
          expect(eps).toBeLessThanOrEqual(0.1);
          expect(0.1 - eps).toBeLessThanOrEqual(0.01);
        }
      }
    }
  });

  it('honours epsilonTolerance', () => {
    const o = { targetEpsilon: 3, delta: 1e-5, sampleRate: 0.01, steps: 1000 };
    const fine = noiseMultiplierFor({ ...o, epsilonTolerance: 1e-4 });
    const eps = epsilonOf(fine, o);
    expect(eps).toBeLessThanOrEqual(3);
    expect(3 - eps).toBeLessThanOrEqual(1e-4);
    expect(fine).toBeLessThanOrEqual(noiseMultiplierFor(o)); // a tighter search only removes noise
  });

  it(`gives the same sigma as the Python transcription (${nm.cases.length} cases)`, () => {
    expect(nm.epsilonTolerance).toBe(0.01);
    for (const c of nm.cases) {
      // The fixture's null orders are Opacus' defaults.
      const o = { targetEpsilon: c.targetEpsilon, delta: c.delta, sampleRate: c.sampleRate, steps: c.steps, orders: c.orders ?? DEFAULT_ORDERS };
      // Every epsilon on Python's bisection path was > 1e-9 (relative) away from the target, and the
      // two accountants agree to ~1e-12, so both take the same branches: sigma is bit-identical.
      expect(c.closest).toBeGreaterThan(1e-9);
      const sigma = noiseMultiplierFor(o);
      const label = JSON.stringify(o);
      expect(sigma, label).toBe(c.sigma);
      expect(Math.abs(epsilonOf(sigma, o) - c.epsilon), label).toBeLessThanOrEqual(1e-6 * c.epsilon);
    }
  });

  for (const p of nm.published) {
    it(`matches ${p.source} (sigma ${p.sigma})`, () => {
      const sigma = noiseMultiplierFor({ targetEpsilon: p.targetEpsilon, delta: p.delta, sampleRate: p.sampleRate, steps: p.steps });
      expect(Math.abs(sigma - p.sigma)).toBeLessThanOrEqual(p.absTol);
    });
  }

  it('fails with a typed error where Opacus raises "The privacy budget is too low."', () => {
    expect(nm.maxSigma).toBe(1e6);
    expect(nm.tooLow.length).toBeGreaterThan(0);
    for (const c of nm.tooLow) {
      // The Python cases use Opacus' orders (the fixture's null).
      const o = { ...c, orders: (c as { orders?: number[] | null }).orders ?? DEFAULT_ORDERS };
      expect(() => noiseMultiplierFor(o), JSON.stringify(c)).toThrow(InvalidArgumentError);
      expect(() => noiseMultiplierFor(o), JSON.stringify(c)).toThrow(/privacy budget is too low.*Raise targetEpsilon or delta/);
    }
  });

  it('rejects bad arguments, saying what to do', () => {
    const ok = { targetEpsilon: 3, delta: 1e-5, sampleRate: 0.01, steps: 100 };
    const bad: [string, object, RegExp][] = [
      ['epsilon 0', { targetEpsilon: 0 }, /targetEpsilon must be a finite number > 0/],
      ['epsilon Infinity', { targetEpsilon: Infinity }, /targetEpsilon/],
      ['delta 0', { delta: 0 }, /delta must be a number in \(0, 1\)/],
      ['q 0', { sampleRate: 0 }, /sampleRate must be a number in \(0, 1\]/],
      ['q > 1', { sampleRate: 1.5 }, /sampleRate/],
      ['steps 0', { steps: 0 }, /steps must be a positive integer/],
      ['tolerance 0', { epsilonTolerance: 0 }, /epsilonTolerance must be a finite number > 0/],
      ['orders', { orders: [] }, /orders must be a non-empty array/],
    ];
    for (const [name, patch, msg] of bad) {
      const call = () => noiseMultiplierFor({ ...ok, ...patch });
      expect(call, name).toThrow(InvalidArgumentError);
      expect(call, name).toThrow(msg);
    }
    expect(() => noiseMultiplierFor(null as never)).toThrow(/pass \{ targetEpsilon/);
  });
});

// ---------------------------------------------------------------------------------------------
// noise

/** Sample mean, std, kurtosis (m4 / m2^2) and the fraction within one `std` of 0. */
function moments(values: Iterable<number>, std: number) {
  const xs = Float64Array.from(values);
  const n = xs.length;
  let sum = 0;
  for (const x of xs) sum += x;
  const mean = sum / n;
  let m2 = 0, m4 = 0, within = 0;
  for (const x of xs) {
    const d = x - mean;
    m2 += d * d;
    m4 += d * d * d * d;
    if (Math.abs(x) < std) within++;
  }
  return { n, mean, std: Math.sqrt(m2 / (n - 1)), kurtosis: (m4 / n) / (m2 / n) ** 2, within: within / n };
}

/** Checks N(0, std^2) to 5 standard errors: mean std/sqrt(n); std std/sqrt(2n) (normal approximation
 * to the chi distribution); kurtosis sqrt(24/n) around 3; the fraction within one std (p = 0.682689)
 * sqrt(p (1 - p) / n). */
function expectGaussian(values: Iterable<number>, std: number): void {
  const s = moments(values, std);
  expect(Math.abs(s.mean), `mean ${s.mean}`).toBeLessThanOrEqual((5 * std) / Math.sqrt(s.n));
  expect(Math.abs(s.std - std), `std ${s.std}`).toBeLessThanOrEqual((5 * std) / Math.sqrt(2 * s.n));
  expect(Math.abs(s.kurtosis - 3), `kurtosis ${s.kurtosis}`).toBeLessThanOrEqual(5 * Math.sqrt(24 / s.n));
  const p = 0.682689492137;
  expect(Math.abs(s.within - p), `within one std ${s.within}`).toBeLessThanOrEqual(5 * Math.sqrt((p * (1 - p)) / s.n));
}

/** Opacus' secure-mode formula written out here: (std / 2) * sum of four Box-Muller cosines, each from
 * its own pair of uniforms (u1, u2), with ln(1 - u1). */
function secureModeValue(std: number, u: readonly number[]): number {
  let sum = 0;
  for (let k = 0; k < 4; k++) sum += Math.sqrt(-2 * Math.log(1 - u[2 * k]!)) * Math.cos(2 * Math.PI * u[2 * k + 1]!);
  return (std / 2) * sum;
}

describe('gaussianNoise (Opacus secure mode on the CSPRNG)', () => {
  const N = 200_000;
  const STD = 0.7;

  it('secureStandardNormal (the coordinator\'s central-DP noise) is N(0, 1) by the same formula', () => {
    const fixed = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8];
    let at = 0;
    expect(secureStandardNormal(() => fixed[at++ % 8]!)()).toBe(secureModeValue(1, fixed));
    const normal = secureStandardNormal();
    expectGaussian(Array.from({ length: N }, normal), 1);
  });

  it('draws N(0, std^2) from crypto.getRandomValues, never Math.random (200k values, 5 standard errors)', () => {
    const random = vi.spyOn(Math, 'random').mockImplementation(() => {
      throw new Error('Math.random used for DP noise');
    });
    const getRandomValues = vi.spyOn(globalThis.crypto, 'getRandomValues');
    const noise = gaussianNoise(N, STD);
    expect(random).not.toHaveBeenCalled();
    // 4 normals x 2 uniforms x 2 u32 = 16 u32 per value, in blocks of 1024.
    expect(getRandomValues.mock.calls.length).toBeGreaterThanOrEqual(Math.floor((16 * N) / 1024));
    expect(noise).toBeInstanceOf(Float32Array);
    expect(noise.length).toBe(N);
    expectGaussian(noise, STD);
  });

  it('is (std / 2) (z1 + z2 + z3 + z4), each z from its own two uniforms, rounded once to float32', () => {
    const stream = Array.from({ length: 24 }, (_, k) => ((k * 7919) % 1000) / 1000 + 0.0003);
    let at = 0;
    const noise = gaussianNoise(3, 1.5, () => stream[at++]!);
    expect(at).toBe(24); // 8 uniforms per value
    for (let i = 0; i < 3; i++) expect(noise[i]).toBe(Math.fround(secureModeValue(1.5, stream.slice(8 * i, 8 * i + 8))));
  });

  it('std 0 gives zeros and draws nothing; length 0 gives an empty array', () => {
    const uniform = vi.fn(() => 0.5);
    expect(Array.from(gaussianNoise(4, 0, uniform))).toEqual([0, 0, 0, 0]);
    expect(uniform).not.toHaveBeenCalled();
    expect(gaussianNoise(0, 1).length).toBe(0);
  });

  it('rejects bad arguments', () => {
    expect(() => gaussianNoise(-1, 1)).toThrow(/length must be a non-negative integer/);
    expect(() => gaussianNoise(1.5, 1)).toThrow(InvalidArgumentError);
    expect(() => gaussianNoise(4, -1)).toThrow(/std must be a finite number >= 0/);
    expect(() => gaussianNoise(4, Infinity)).toThrow(InvalidArgumentError);
    expect(() => gaussianNoise(4, 1, () => 1)).toThrow(/outside \[0, 1\)/);
    expect(() => gaussianNoise(4, 1, 'x' as never)).toThrow(/uniform must be a function/);
  });
});

describe('addGaussianNoise', () => {
  it('adds N(0, std^2) in place from the CSPRNG, never Math.random', () => {
    const N = 200_000;
    const STD = 0.7;
    const ts = [new Float32Array(N / 4).fill(2), new Float32Array((3 * N) / 4).fill(2)];
    const random = vi.spyOn(Math, 'random').mockImplementation(() => {
      throw new Error('Math.random used for DP noise');
    });
    addGaussianNoise(ts, STD);
    expect(random).not.toHaveBeenCalled();
    expectGaussian(ts.flatMap((t) => Array.from(t, (v) => v - 2)), STD);
  });

  it('uses the same secure-mode formula, rounding the sum (value + noise) once', () => {
    const t = Float32Array.of(3, -1);
    const stream = [0.25, 0.5, 0.1, 0.9, 0.75, 0.3, 0.6, 0.05, 0.2, 0.4, 0.8, 0.7, 0.33, 0.66, 0.01, 0.99];
    let at = 0;
    addGaussianNoise([t], 2, () => stream[at++]!);
    expect(t[0]).toBe(Math.fround(3 + secureModeValue(2, stream.slice(0, 8))));
    expect(t[1]).toBe(Math.fround(-1 + secureModeValue(2, stream.slice(8, 16))));
  });

  it('std 0 is a no-op; bad arguments throw', () => {
    const t = Float32Array.of(1, 2);
    addGaussianNoise([t], 0);
    expect(Array.from(t)).toEqual([1, 2]);
    expect(() => addGaussianNoise([t], -1)).toThrow(InvalidArgumentError);
    expect(() => addGaussianNoise([t], NaN)).toThrow(/std must be/);
    expect(() => addGaussianNoise([t], 1, () => 1)).toThrow(/outside \[0, 1\)/);
    expect(() => addGaussianNoise([[1, 2] as unknown as Float32Array], 1)).toThrow(/not a Float32Array/);
    expect(() => addGaussianNoise(3 as never, 1)).toThrow(/iterable of Float32Array/);
  });
});

describe('secureUniform', () => {
  it('maps pairs of u32 to 53-bit doubles in (0, 1), redrawing 0', () => {
    vi.spyOn(globalThis.crypto, 'getRandomValues').mockImplementation(<T extends ArrayBufferView | null>(a: T): T => {
      const u = a as unknown as Uint32Array;
      u.fill(0x12345678);
      u.set([0, 0, 0xffffffff, 0xffffffff, 0, 1 << 6]);
      return a;
    });
    const next = secureUniform();
    expect(next()).toBe(1 - 2 ** -53); // the (0, 0) pair was skipped
    expect(next()).toBe(2 ** -53);
    expect(next()).toBe(((0x12345678 >>> 5) * 2 ** 26 + (0x12345678 >>> 6)) * 2 ** -53);
  });

  it('is uniform on (0, 1) (mean and second moment to 5 standard errors)', () => {
    const next = secureUniform();
    const n = 100_000;
    let sum = 0, sumSq = 0, outside = 0, fractional = 0;
    for (let i = 0; i < n; i++) {
      const u = next();
      if (!(u > 0 && u < 1)) outside++;
      if (!Number.isInteger(u * 2 ** 53)) fractional++;
      sum += u;
      sumSq += u * u;
    }
    expect(outside).toBe(0);
    expect(fractional).toBe(0); // multiples of 2^-53
    expect(Math.abs(sum / n - 0.5)).toBeLessThanOrEqual(5 * Math.sqrt(1 / 12 / n));
    expect(Math.abs(sumSq / n - 1 / 3)).toBeLessThanOrEqual(5 * Math.sqrt(4 / 45 / n)); // Var(U^2) = 1/5 - 1/9
  });

  it('throws a typed error where Web Crypto is missing', () => {
    // A fault that cannot be caused for real: browsers, workers and Node >= 20 all have
    // globalThis.crypto. Stubbed away for this test only.
    vi.stubGlobal('crypto', undefined);
    expect(() => secureUniform()).toThrow(InvalidArgumentError);
    expect(() => secureUniform()).toThrow(/crypto.getRandomValues is unavailable.*Node >= 20/);
    expect(() => gaussianNoise(3, 1)).toThrow(InvalidArgumentError);
    expect(() => new PoissonSampler(0.1)).toThrow(/crypto.getRandomValues is unavailable to seed the sampler/);
    // A sampler resumed from a saved state needs no crypto.
    expect(new PoissonSampler(0.5, [1, 2, 3, 4]).sample(4)).toBeInstanceOf(Array);
  });
});

describe('privacy/ sources', () => {
  it('never use Math.random (every file of packages/trainer/src/privacy, comments aside)', () => {
    const dir = join(import.meta.dirname, '../src/privacy');
    const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));
    for (const f of ['accountant.ts', 'noise.ts', 'poisson.ts', 'budget.ts', 'index.ts']) expect(files).toContain(f);
    for (const f of files) {
      const code = readFileSync(join(dir, f), 'utf8')
        .replace(/\/\*[\s\S]*?\*\//g, '') // block comments
        .replace(/(^|\s)\/\/.*$/gm, '$1'); // line comments
      expect(code, f).not.toMatch(/\bMath\s*(\.\s*random\b|\[\s*['"`]random)/);
      expect(code, f).not.toMatch(/\brandom\s*\}\s*=\s*Math\b/);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Poisson sampling

describe('PoissonSampler', () => {
  it('includes each example with probability q: the empirical rate over many steps, to 5 standard errors', () => {
    const q = 0.05;
    const N = 1000;
    const steps = 2000;
    const sampler = new PoissonSampler(q);
    const sizes: number[] = [];
    const perIndex = new Uint32Array(N);
    let disordered = 0;
    for (let s = 0; s < steps; s++) {
      const batch = sampler.sample(N);
      for (let k = 0; k < batch.length; k++) {
        const i = batch[k]!;
        // Integers in [0, N), ascending, no repeats.
        if (!Number.isInteger(i) || i < 0 || i >= N || (k > 0 && i <= batch[k - 1]!)) disordered++;
        perIndex[i]!++;
      }
      sizes.push(batch.length);
    }
    expect(disordered).toBe(0);
    const trials = N * steps;
    const total = sizes.reduce((a, b) => a + b, 0);
    expect(Math.abs(total / trials - q)).toBeLessThanOrEqual(5 * Math.sqrt((q * (1 - q)) / trials));
    // Batch sizes are Binomial(N, q): mean N q, variance N q (1 - q). The sample variance's standard
    // error is about var * sqrt(2 / (steps - 1)).
    const mean = total / steps;
    const variance = sizes.reduce((a, b) => a + (b - mean) ** 2, 0) / (steps - 1);
    const want = N * q * (1 - q);
    expect(Math.abs(mean - N * q)).toBeLessThanOrEqual(5 * Math.sqrt(want / steps));
    expect(Math.abs(variance - want)).toBeLessThanOrEqual(5 * want * Math.sqrt(2 / (steps - 1)));
    // No index is favoured: the first and last tenth of the data get the same share.
    const share = (from: number, to: number) => perIndex.slice(from, to).reduce((a, b) => a + b, 0) / ((to - from) * steps);
    for (const [from, to] of [[0, 100], [900, 1000]] as const) {
      expect(Math.abs(share(from, to) - q)).toBeLessThanOrEqual(5 * Math.sqrt((q * (1 - q)) / ((to - from) * steps)));
    }
  });

  it('compares a 53-bit uniform from two xoshiro128** words per example with q', () => {
    const state: RngState = [0x9e3779b9, 0x243f6a88, 0xb7e15162, 0x12345678];
    const q = 0.3;
    const rng = new Rng([...state] as RngState);
    const want: number[] = [];
    for (let i = 0; i < 500; i++) {
      const k = (rng.nextU32() >>> 5) * 2 ** 26 + (rng.nextU32() >>> 6);
      if (k * 2 ** -53 < q) want.push(i);
    }
    const sampler = new PoissonSampler(q, state);
    expect(sampler.sample(500)).toEqual(want);
    expect(sampler.state).toEqual(rng.state);
  });

  it('resumes exactly from its state (same state, same batches), and the state round-trips through JSON', () => {
    const a = new PoissonSampler(0.1);
    for (let s = 0; s < 7; s++) a.sample(300);
    const saved = JSON.parse(JSON.stringify(a.state)) as RngState;
    const b = new PoissonSampler(0.1, saved);
    expect(b.state).toEqual(a.state);
    for (let s = 0; s < 20; s++) expect(b.sample(300)).toEqual(a.sample(300));
    expect(b.state).toEqual(a.state);
    // The state is a copy: changing it changes nothing.
    const st = b.state;
    st[0] = 0;
    expect(b.state).not.toEqual(st);
    expect(new PoissonSampler(0.1, saved).state).toEqual(saved);
  });

  it('seeds a fresh sampler from crypto.getRandomValues, redrawing an all-zero state', () => {
    const spy = vi.spyOn(globalThis.crypto, 'getRandomValues');
    const a = new PoissonSampler(0.5);
    const b = new PoissonSampler(0.5);
    expect(spy).toHaveBeenCalledTimes(2);
    expect(a.state).not.toEqual(b.state);
    spy.mockRestore();
    let call = 0;
    vi.spyOn(globalThis.crypto, 'getRandomValues').mockImplementation(<T extends ArrayBufferView | null>(arr: T): T => {
      (arr as unknown as Uint32Array).set(call++ === 0 ? [0, 0, 0, 0] : [5, 6, 7, 8]);
      return arr;
    });
    expect(new PoissonSampler(0.5).state).toEqual([5, 6, 7, 8]);
    expect(call).toBe(2);
  });

  it('takes everything at q = 1 and can return an empty step', () => {
    expect(new PoissonSampler(1).sample(5)).toEqual([0, 1, 2, 3, 4]);
    const tiny = new PoissonSampler(1e-9, [1, 2, 3, 4]);
    expect(tiny.sample(10)).toEqual([]);
  });

  it('rejects a bad rate, size or state, saying what to do', () => {
    for (const q of [0, -0.1, 1.5, NaN, '0.5' as never]) {
      expect(() => new PoissonSampler(q)).toThrow(InvalidArgumentError);
      expect(() => new PoissonSampler(q)).toThrow(/sampleRate must be a number in \(0, 1\]/);
    }
    const s = new PoissonSampler(0.5, [1, 2, 3, 4]);
    for (const n of [0, -1, 2.5, NaN]) expect(() => s.sample(n)).toThrow(/dataSize must be a positive integer/);
    for (const st of [[1, 2, 3], [1, 2, 3, 2 ** 32], [1, 2, 3, -1], [1, 2, 3, 0.5], 'abc']) {
      expect(() => new PoissonSampler(0.5, st as never)).toThrow(/state must be four u32 words/);
    }
    expect(() => new PoissonSampler(0.5, [0, 0, 0, 0])).toThrow(/all zeros/);
  });
});
