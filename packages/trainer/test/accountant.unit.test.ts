import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@webtune/errors';
import {
  DEFAULT_ORDERS, RdpAccountant, computeDpEpsilon, computeLogA, computeRdp, logErfc, rdpToEpsilon,
} from '../src/privacy/accountant.js';

// Written by scripts/make_dp_fixtures.py: an independent scipy/mpmath implementation of the same
// formulas (Mironov et al. 2019, Balle et al. 2020, Opacus' conventions), plus values from
// Opacus' and TF Privacy's own tests. JSON has no Infinity: null stands for it.
interface GridPoint { q: number; sigma: number; steps: number; delta: number; epsilon: number; order: number; gap: number }
interface Published {
  source: string;
  kind: 'epsilon' | 'composed' | 'rdp' | 'logA' | 'convert';
  q?: number; sigma?: number; steps?: number; delta?: number;
  orders?: (number | null)[] | null;
  ordersRange?: [number, number, number];
  parts?: [number, number, number][];
  rdp?: (number | null)[];
  epsilon?: number; order?: number; absTol?: number; relTol?: number;
  cases?: { q: number; sigma: number; alpha: number; logA: number }[];
}
const fx = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures/dp.json'), 'utf8')) as {
  orders: number[];
  grid: GridPoint[];
  rdpVectors: { q: number; sigma: number; steps: number; rdp: (number | null)[] }[];
  logErfc: { x: number; value: number }[];
  logAQuadrature: { q: number; sigma: number; alpha: number; logA: number }[];
  heterogeneous: {
    rounds: { noiseMultiplier: number; sampleRate: number; steps: number }[];
    rdp: (number | null)[];
    results: { delta: number; epsilon: number; order: number; gap: number }[];
  };
  published: Published[];
};
const inf = (v: number | null) => (v === null ? Infinity : v);
const relErr = (got: number, want: number) => Math.abs(got - want) / Math.abs(want);

/** Epsilon must agree with the Python reference to this relative error (both are float64; the
 * observed difference is ~1e-12, dominated by scipy's vs our erfc). */
const EPS_REL_TOL = 1e-6;
/** RDP vectors: same series and cut-off on both sides, so much tighter: 1e-9 relative, plus an
 * absolute 1e-13 on ln A_alpha per step. ln A is a sum of O(1) terms in float64 (differences of
 * two series for fractional orders), so for tiny q it carries ~1e-15 absolute rounding: at
 * q = 0.001, sigma = 1, alpha = 1.1, ln A ~ 9e-8 and the two implementations differ by 1.6e-8
 * relative (mpmath says webtune's is the closer: 5e-9 vs 1.1e-8). */
const RDP_REL_TOL = 1e-9;
const rdpTol = (want: number, alpha: number, steps: number) => RDP_REL_TOL * Math.abs(want) + (1e-13 * steps) / (alpha - 1);

describe('logErfc', () => {
  it('matches mpmath (40 digits) to 1e-13 relative across both tails', () => {
    for (const { x, value } of fx.logErfc) {
      const got = logErfc(x);
      expect(Math.abs(got - value), `x=${x}: ${got} vs ${value}`).toBeLessThanOrEqual(1e-13 * Math.abs(value) + 1e-300);
    }
  });
  it('has the right limits', () => {
    expect(logErfc(Infinity)).toBe(-Infinity);
    expect(logErfc(-Infinity)).toBe(Math.LN2);
    expect(Math.abs(logErfc(0))).toBe(0);
    expect(logErfc(NaN)).toBeNaN();
  });
});

describe('RDP accountant vs the Python reference', () => {
  it('uses Opacus default orders', () => {
    expect([...DEFAULT_ORDERS]).toEqual(fx.orders);
    expect(DEFAULT_ORDERS.length).toBe(151);
  });

  it(`epsilon within ${EPS_REL_TOL} relative and the same best order at every grid point`, () => {
    expect(fx.grid.length).toBe(200);
    for (const p of fx.grid) {
      const got = computeDpEpsilon({ noiseMultiplier: p.sigma, sampleRate: p.q, steps: p.steps, delta: p.delta });
      const label = `q=${p.q} sigma=${p.sigma} steps=${p.steps} delta=${p.delta}`;
      expect(relErr(got.epsilon, p.epsilon), `${label}: ${got.epsilon} vs ${p.epsilon}`).toBeLessThanOrEqual(EPS_REL_TOL);
      // The runner-up order is >= 7e-6 relative worse in every grid point (fixture `gap`), far
      // above the numerical differences, so the argmin must agree exactly.
      expect(p.gap).toBeGreaterThan(1e-9);
      expect(got.order, label).toBe(p.order);
    }
  });

  it(`raw RDP vectors match to ${RDP_REL_TOL} relative + 1e-13 absolute on ln A`, () => {
    for (const v of fx.rdpVectors) {
      const got = computeRdp(v.q, v.sigma, v.steps);
      expect(got.length).toBe(v.rdp.length);
      got.forEach((r, k) => {
        const want = inf(v.rdp[k]!);
        const alpha = DEFAULT_ORDERS[k]!;
        expect(Math.abs(r - want), `q=${v.q} sigma=${v.sigma} order=${alpha}: ${r} vs ${want}`)
          .toBeLessThanOrEqual(rdpTol(want, alpha, v.steps));
      });
    }
  });

  it('ln A_alpha agrees with mpmath quadrature of the definition (series cut at e^-30: 1e-9 rel + 1e-12 abs)', () => {
    for (const c of fx.logAQuadrature) {
      const got = computeLogA(c.q, c.sigma, c.alpha);
      expect(Math.abs(got - c.logA), `q=${c.q} sigma=${c.sigma} alpha=${c.alpha}: ${got} vs ${c.logA}`)
        .toBeLessThanOrEqual(1e-9 * Math.abs(c.logA) + 1e-12);
    }
  });
});

describe('values from Opacus and TF Privacy tests', () => {
  for (const p of fx.published) {
    it(p.source, () => {
      switch (p.kind) {
        case 'epsilon': {
          const orders = p.ordersRange
            ? Array.from({ length: p.ordersRange[1] - p.ordersRange[0] }, (_, k) => p.ordersRange![2] * (p.ordersRange![0] + k))
            : undefined;
          const got = computeDpEpsilon({ noiseMultiplier: p.sigma!, sampleRate: p.q!, steps: p.steps!, delta: p.delta!, orders });
          expect(Math.abs(got.epsilon - p.epsilon!)).toBeLessThanOrEqual(p.absTol!);
          break;
        }
        case 'composed': {
          const orders = p.orders as number[];
          const total = orders.map(() => 0);
          for (const [q, sigma, steps] of p.parts!) computeRdp(q, sigma, steps, orders).forEach((r, k) => (total[k]! += r));
          const got = rdpToEpsilon(orders, total, p.delta!);
          expect(Math.abs(got.epsilon - p.epsilon!)).toBeLessThanOrEqual(p.absTol!);
          expect(got.order).toBe(p.order);
          break;
        }
        case 'rdp': {
          const orders = p.orders!.map(inf);
          const got = computeRdp(p.q!, p.sigma!, p.steps!, orders);
          got.forEach((r, k) => {
            const want = inf(p.rdp![k]!);
            if (want === Infinity) expect(r).toBe(Infinity);
            else expect(Math.abs(r - want), `order ${orders[k]}`).toBeLessThanOrEqual(p.absTol!);
          });
          break;
        }
        case 'logA':
          for (const c of p.cases!) {
            expect(relErr(computeLogA(c.q, c.sigma, c.alpha), c.logA)).toBeLessThanOrEqual(p.relTol!);
          }
          break;
        case 'convert': {
          const got = rdpToEpsilon(p.orders as number[], p.rdp as number[], p.delta!);
          expect(Math.abs(got.epsilon - p.epsilon!)).toBeLessThanOrEqual(p.absTol!);
          expect(got.order).toBe(p.order);
          break;
        }
        default:
          throw new Error(`unknown fixture kind ${String(p.kind)}`);
      }
    });
  }
  it('covers every kind', () => {
    expect(new Set(fx.published.map((p) => p.kind))).toEqual(new Set(['epsilon', 'composed', 'rdp', 'logA', 'convert']));
  });
});

describe('special cases (as Opacus)', () => {
  it('q = 0 gives zero RDP', () => {
    expect(computeRdp(0, 1.3, 100)).toEqual(DEFAULT_ORDERS.map(() => 0));
    expect(computeRdp(0, 0, 5)).toEqual(DEFAULT_ORDERS.map(() => 0)); // q = 0 is checked before sigma = 0
  });
  it('q = 1 gives alpha / (2 sigma^2) per step', () => {
    const got = computeRdp(1, 2, 3, [1.5, 4, 63]);
    expect(got).toEqual([(3 * 1.5) / 8, (3 * 4) / 8, (3 * 63) / 8]);
  });
  it('sigma = 0 gives Infinity: epsilon Infinity at the first order', () => {
    expect(computeRdp(0.1, 0, 2, [2, 3.5])).toEqual([Infinity, Infinity]);
    expect(computeDpEpsilon({ noiseMultiplier: 0, sampleRate: 0.1, steps: 1, delta: 1e-5 }))
      .toEqual({ epsilon: Infinity, order: DEFAULT_ORDERS[0] });
  });
  it('order Infinity gives Infinity RDP and a NaN epsilon that the argmin skips', () => {
    const orders = [2, Infinity];
    const rdp = computeRdp(0.1, 1, 1, orders);
    expect(rdp[1]).toBe(Infinity);
    expect(rdpToEpsilon(orders, rdp, 1e-5).order).toBe(2);
  });
  it('all-NaN epsilon (sigma = 0 for 0 steps: Infinity * 0) -> { Infinity, NaN }', () => {
    const got = rdpToEpsilon([2, 3], computeRdp(0.5, 0, 0, [2, 3]), 1e-5);
    expect(got.epsilon).toBe(Infinity);
    expect(got.order).toBeNaN();
  });
  it('NaNs are skipped and ties go to the first order', () => {
    expect(rdpToEpsilon([2, 3, 4], [NaN, 1, 1], 1e-5).order).not.toBe(2);
    const eps = (a: number, r: number, d: number) => r - (Math.log(d) + Math.log(a)) / (a - 1) + Math.log((a - 1) / a);
    expect(rdpToEpsilon([2, 3, 4], [NaN, 1, 1], 1e-5).epsilon).toBe(Math.min(eps(3, 1, 1e-5), eps(4, 1, 1e-5)));
    const same = [Infinity, Infinity];
    expect(rdpToEpsilon([5, 6], same, 1e-5)).toEqual({ epsilon: Infinity, order: 5 });
  });
  it('a conversion below 0 (no data, large delta) is clamped to epsilon 0, as TF Privacy\'s compute_eps does', () => {
    // rdp = 0, so ln((a - 1) / a) -> -inf drives the minimum to the smallest order, where the raw value is negative.
    const got = computeDpEpsilon({ noiseMultiplier: 1, sampleRate: 0, steps: 10, delta: 0.9 });
    const a = 1.1;
    expect(got.order).toBe(a);
    expect(-(Math.log(0.9) + Math.log(a)) / (a - 1) + Math.log((a - 1) / a)).toBeLessThan(0);
    expect(got.epsilon).toBe(0);
  });
  it('epsilon grows with steps and falls with sigma', () => {
    const e = (sigma: number, steps: number) => computeDpEpsilon({ noiseMultiplier: sigma, sampleRate: 0.01, steps, delta: 1e-5 }).epsilon;
    expect(e(1, 200)).toBeGreaterThan(e(1, 100));
    expect(e(2, 100)).toBeLessThan(e(1, 100));
  });
});

describe('argument errors', () => {
  const bad: [string, () => unknown, RegExp][] = [
    ['q > 1', () => computeRdp(1.5, 1, 1), /sampleRate \(q\) must be a number in \[0, 1\], got 1.5/],
    ['q < 0', () => computeRdp(-0.1, 1, 1), /sampleRate/],
    ['q NaN', () => computeRdp(NaN, 1, 1), /sampleRate/],
    ['sigma < 0', () => computeRdp(0.1, -1, 1), /noiseMultiplier \(sigma\) must be a finite number >= 0/],
    ['sigma Infinity', () => computeRdp(0.1, Infinity, 1), /noiseMultiplier/],
    ['steps fractional', () => computeRdp(0.1, 1, 1.5), /steps must be a non-negative integer, got 1.5/],
    ['steps negative', () => computeRdp(0.1, 1, -1), /steps/],
    ['order 1', () => computeRdp(0.1, 1, 1, [1, 2]), /every RDP order must be a number > 1/],
    ['order 0.5', () => computeRdp(0.1, 1, 1, [0.5]), /order/],
    ['no orders', () => computeRdp(0.1, 1, 1, []), /non-empty/],
    ['delta 0', () => rdpToEpsilon([2], [1], 0), /delta must be a number in \(0, 1\), got 0/],
    ['delta 1', () => rdpToEpsilon([2], [1], 1), /delta/],
    ['length mismatch', () => rdpToEpsilon([2, 3], [1], 1e-5), /as long as orders \(2\), got 1/],
    ['negative rdp', () => rdpToEpsilon([2], [-1], 1e-5), /RDP values must be numbers >= 0/],
    ['computeDpEpsilon delta', () => computeDpEpsilon({ noiseMultiplier: 1, sampleRate: 0.1, steps: 1, delta: -1 }), /delta/],
    ['accountant step q', () => new RdpAccountant().step({ noiseMultiplier: 1, sampleRate: 2 }), /RdpAccountant.step: sampleRate/],
    ['accountant epsilon delta', () => new RdpAccountant().epsilon(0), /RdpAccountant.epsilon: delta/],
    ['accountant orders', () => new RdpAccountant([2, Infinity]), /finite/],
    ['fromJSON text', () => RdpAccountant.fromJSON('{'), /not JSON/],
    ['fromJSON format', () => RdpAccountant.fromJSON({ version: 1 } as never), /webtune-rdp-accountant/],
    ['fromJSON entry', () => RdpAccountant.fromJSON({
      format: 'webtune-rdp-accountant', version: 1, orders: [2], history: [{ noiseMultiplier: 1, sampleRate: 0.1, steps: 0 }],
    }), /steps >= 1/],
  ];
  for (const [name, fn, msg] of bad) {
    it(name, () => {
      expect(fn).toThrow(InvalidArgumentError);
      expect(fn).toThrow(msg);
    });
  }
});

describe('RdpAccountant', () => {
  const het = fx.heterogeneous;
  const build = () => {
    const acc = new RdpAccountant();
    for (const r of het.rounds) {
      // Alternate single steps (merged like Opacus' history) and bulk steps.
      if (r.steps <= 50) for (let s = 0; s < r.steps; s++) acc.step({ noiseMultiplier: r.noiseMultiplier, sampleRate: r.sampleRate });
      else acc.step(r);
    }
    return acc;
  };

  it('merges consecutive equal releases like Opacus', () => {
    // rounds 0 and 1 have the same (sigma, q): one entry of 80 steps.
    expect(build().history).toEqual([
      { noiseMultiplier: 1, sampleRate: 0.01, steps: 80 },
      { noiseMultiplier: 0.8, sampleRate: 0.05, steps: 10 },
      { noiseMultiplier: 2, sampleRate: 0.2, steps: 1 },
      { noiseMultiplier: 1.3, sampleRate: 0.001, steps: 400 },
    ]);
  });

  it('RDP of heterogeneous rounds is the sum of per-round RDP, and matches Python', () => {
    const acc = build();
    const got = acc.rdp();
    const sum = DEFAULT_ORDERS.map(() => 0);
    for (const r of het.rounds) computeRdp(r.sampleRate, r.noiseMultiplier, r.steps).forEach((v, k) => (sum[k]! += v));
    got.forEach((v, k) => {
      expect(relErr(v, sum[k]!)).toBeLessThanOrEqual(1e-13);
      const want = inf(het.rdp[k]!);
      const steps = het.rounds.reduce((a, r) => a + r.steps, 0);
      expect(Math.abs(v - want), `order ${DEFAULT_ORDERS[k]}`).toBeLessThanOrEqual(rdpTol(want, DEFAULT_ORDERS[k]!, steps));
    });
    for (const want of het.results) {
      const e = acc.epsilon(want.delta);
      expect(relErr(e.epsilon, want.epsilon)).toBeLessThanOrEqual(EPS_REL_TOL);
      expect(e.order).toBe(want.order);
      // Composition costs more than any single round alone.
      for (const r of het.rounds) {
        expect(e.epsilon).toBeGreaterThan(computeDpEpsilon({ ...r, delta: want.delta }).epsilon);
      }
    }
  });

  it('with no history spends nothing ({ epsilon: 0, order: 0 }, as Opacus)', () => {
    expect(new RdpAccountant().epsilon(1e-5)).toEqual({ epsilon: 0, order: 0 });
  });

  it('persists through toJSON / fromJSON (object and text)', () => {
    const acc = build();
    const json = acc.toJSON();
    expect(json.format).toBe('webtune-rdp-accountant');
    const back1 = RdpAccountant.fromJSON(json);
    const back2 = RdpAccountant.fromJSON(JSON.stringify(acc));
    for (const b of [back1, back2]) {
      expect(b.history).toEqual(acc.history);
      expect(b.orders).toEqual(acc.orders);
      expect(b.epsilon(1e-5)).toEqual(acc.epsilon(1e-5));
    }
    // Custom orders survive too.
    const custom = new RdpAccountant([2, 4, 8]);
    custom.step({ noiseMultiplier: 1, sampleRate: 0.1, steps: 3 });
    expect(RdpAccountant.fromJSON(JSON.stringify(custom)).rdp()).toEqual(computeRdp(0.1, 1, 3, [2, 4, 8]));
  });

  it('history is a copy', () => {
    const acc = build();
    const h = acc.history as unknown as { steps: number }[];
    expect(() => {
      h[0]!.steps = 1;
    }).toThrow();
    expect(acc.history[0]!.steps).toBe(80);
  });
});
