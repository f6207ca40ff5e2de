/**
 * The aggregation rules and server optimizers against the NumPy transcription of Flower's
 * (scripts/make_aggregation_fixtures.py), and the robust rules in real rounds: 10 clients over HTTP,
 * 3 of them sending sign-flipped updates at the clip norm, end near the honest clients' mean with
 * median, trimmed mean and Krum, where FedAvg is dragged away.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { HostTensor } from '@webtune/model';
import { coordinateMedian, krum, serverStep, trimmedMean, weightedMean, type OptimizerState } from '../src/aggregate.js';
import { ConfigError, startCoordinator, type AggregationRule } from '../src/index.js';
import { download, encode, expectClose, flat, initialAdapter, KEYS, register, SECRET, SHAPES, tmp, upload } from './helpers.js';

interface Fixture {
  deltas: number[][];
  weights: number[];
  honestMean: number[];
  mean: number[];
  median: number[];
  median9: number[];
  trimmedMean: { beta: number; value: number[] };
  krum: { byzantine: number; keep: number; value: number[]; chosen: number[] };
  multiKrum: { byzantine: number; keep: number; value: number[]; chosen: number[] };
  global0: number[];
  pseudoGradients: number[][];
  fedyogi: { eta: number; beta1: number; beta2: number; tau: number; globals: number[][] };
  fedadagrad: { eta: number; tau: number; globals: number[][] };
}

const fx = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures/aggregation.json'), 'utf8')) as Fixture;
const deltas = fx.deltas.map((d) => Float32Array.from(d));

describe('aggregation rules vs Flower (NumPy transcription)', () => {
  it('weighted mean, coordinate-wise median (odd and even counts) and trimmed mean', () => {
    expectClose(weightedMean(deltas, fx.weights), fx.mean, 1e-12);
    expectClose(coordinateMedian(deltas), fx.median, 1e-12);
    expectClose(coordinateMedian(deltas.slice(0, 9)), fx.median9, 1e-12);
    expectClose(trimmedMean(deltas, fx.trimmedMean.beta), fx.trimmedMean.value, 1e-12);
  });

  it('Krum keeps the update Flower keeps; MultiKrum the same four, weighted', () => {
    const single = krum(deltas, fx.weights, fx.krum.byzantine, fx.krum.keep);
    expect(single.kept).toEqual(fx.krum.chosen);
    expectClose(single.value, fx.krum.value, 1e-12);
    const multi = krum(deltas, fx.weights, fx.multiKrum.byzantine, fx.multiKrum.keep);
    expect(multi.kept).toEqual(fx.multiKrum.chosen);
    expectClose(multi.value, fx.multiKrum.value, 1e-12);
  });

  for (const type of ['fedyogi', 'fedadagrad'] as const) {
    it(`${type}: four server steps match Flower's update rule`, () => {
      const ref = fx[type];
      let global = Float32Array.from(fx.global0);
      let state: OptimizerState = new Map();
      const optimizer = type === 'fedyogi'
        ? { type, lr: fx.fedyogi.eta, beta1: fx.fedyogi.beta1, beta2: fx.fedyogi.beta2, tau: fx.fedyogi.tau }
        : { type, lr: fx.fedadagrad.eta, tau: fx.fedadagrad.tau };
      fx.pseudoGradients.forEach((d, step) => {
        const next = serverStep(optimizer, global, Float64Array.from(d), state);
        // The coordinator stores the global as f32; Flower's arrays here are f64.
        expectClose(next.global, ref.globals[step]!, 1e-6);
        global = Float32Array.from(ref.globals[step]!);
        state = next.state;
      });
    });
  }
});

describe('robust rounds over HTTP', () => {
  const S = 0.5;
  /** One honest direction; honest clients add a little noise to it. */
  const honestDirection = (() => {
    let s = 3;
    return KEYS.map((_, i) => Float32Array.from({ length: SHAPES[i]![0]! * SHAPES[i]![1]! }, () => ((s = (s * 69069 + 1) >>> 0) / 2 ** 32 - 0.5) * 0.02 + 0.01));
  })();
  const asTensors = (parts: Float32Array[]) => new Map<string, HostTensor>(KEYS.map((k, i) => [k, { shape: SHAPES[i]!, data: parts[i]! }]));
  const norm = (parts: Float32Array[]) => Math.sqrt(parts.reduce((a, p) => a + p.reduce((b, v) => b + v * v, 0), 0));

  async function round(aggregation: AggregationRule): Promise<{ error: number; honestNorm: number }> {
    const path = join(tmp(), 'c.sqlite');
    const c = await startCoordinator({
      db: path, initialAdapter: initialAdapter(), enrolmentSecret: SECRET, log: () => {},
      config: { minClients: 10, maxClients: 10, aggregation, round: { clipNorm: S } },
    });
    try {
      const honest: Float32Array[][] = [];
      let seed = 11;
      for (let client = 0; client < 10; client++) {
        const { token } = await register(c.url);
        let update: Float32Array[];
        if (client < 7) {
          update = honestDirection.map((p) => p.map((v) => v + ((seed = (seed * 69069 + 7) >>> 0) / 2 ** 32 - 0.5) * 0.004));
          honest.push(update);
        } else {
          // The attack: the honest direction flipped and stretched to the clip norm (the most the server allows).
          const k = (-S * 0.999) / norm(honestDirection);
          update = honestDirection.map((p) => p.map((v) => v * k));
        }
        expect((await upload(c.url, token, 1, encode(asTensors(update), { baseVersion: 0 }), { exampleCount: 80 })).status).toBe(200);
      }
      const { token } = await register(c.url);
      const global = flat(await download(c.url, token, 1));
      const g0 = flat(initialAdapter());
      const mean = flat(asTensors(KEYS.map((_, i) => Float32Array.from(honest[0]![i]!.map((_, j) => honest.reduce((a, h) => a + h[i]![j]!, 0) / honest.length)))));
      let err = 0;
      for (let i = 0; i < global.length; i++) err += (global[i]! - g0[i]! - mean[i]!) ** 2;
      return { error: Math.sqrt(err), honestNorm: Math.sqrt(mean.reduce((a, v) => a + v * v, 0)) };
    } finally {
      await c.close();
    }
  }

  it('3 of 10 sign-flipped at the clip norm: median, trimmed mean and Krum stay within 20% of the honest mean; FedAvg does not', async () => {
    const fedavg = await round({ rule: 'mean' });
    expect(fedavg.error / fedavg.honestNorm).toBeGreaterThan(1); // dragged past zero
    for (const rule of [{ rule: 'median' }, { rule: 'trimmed-mean', beta: 0.3 }, { rule: 'krum', byzantine: 3, keep: 5 }] as AggregationRule[]) {
      const r = await round(rule);
      expect(r.error / r.honestNorm, rule.rule).toBeLessThan(0.2);
    }
  });

  it('a robust rule that would hold more than maxRobustBytes, or with central DP, is refused at start', async () => {
    const start = (config: Record<string, unknown>) => startCoordinator({ db: join(tmp(), 'c.sqlite'), initialAdapter: initialAdapter(), enrolmentSecret: SECRET, log: () => {}, config });
    await expect(start({ aggregation: { rule: 'median' }, maxClients: 10, maxRobustBytes: 100 })).rejects.toThrow(ConfigError);
    await expect(start({ aggregation: { rule: 'median' }, round: { dp: { mode: 'central', noiseMultiplier: 1, delta: 1e-5 } } })).rejects.toThrow(/central DP/);
    await expect(start({ aggregation: { rule: 'trimmed-mean', beta: 0.5 } })).rejects.toThrow(/beta/);
  });
});
