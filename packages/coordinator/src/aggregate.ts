/**
 * The arithmetic of a round: the running weighted sum (f64, one array the size of the adapter),
 * the average, the robust rules over all of a round's updates, central-DP noise and the server
 * optimizer step. Pure functions over flat arrays. The robust rules and FedYogi/FedAdagrad follow
 * Flower's (framework/py/flwr/server/strategy/aggregate.py, fedyogi.py, fedadagrad.py); their
 * goldens come from a NumPy transcription (scripts/make_aggregation_fixtures.py).
 */
import { secureStandardNormal } from '@webtune/federated';
import type { AggregationRule, ServerOptimizer } from './config.js';

/** sum += weight * delta (in place). */
export function accumulate(sum: Float64Array, delta: Float32Array, weight: number): void {
  for (let i = 0; i < sum.length; i++) sum[i]! += weight * delta[i]!;
}

/**
 * A standard normal sampler over crypto.getRandomValues, hardened as DP-SGD's noise is (Opacus'
 * secure mode: the sum of four Box-Muller normals from 53-bit uniforms, halved; see
 * @webtune/trainer's privacy/noise.ts for why).
 */
export function cryptoGaussian(): () => number {
  return secureStandardNormal();
}

/** avg += N(0, sigma^2) per element (in place). */
export function addGaussianNoise(avg: Float64Array, sigma: number, gaussian: () => number = cryptoGaussian()): void {
  for (let i = 0; i < avg.length; i++) avg[i]! += sigma * gaussian();
}

/** The weighted mean of the deltas (FedAvg). */
export function weightedMean(deltas: readonly Float32Array[], weights: readonly number[]): Float64Array {
  const out = new Float64Array(deltas[0]!.length);
  let total = 0;
  deltas.forEach((d, i) => {
    accumulate(out, d, weights[i]!);
    total += weights[i]!;
  });
  for (let i = 0; i < out.length; i++) out[i]! /= total;
  return out;
}

/** Per coordinate: the middle value over clients (the mean of the two middle ones for an even count), as np.median. */
export function coordinateMedian(deltas: readonly Float32Array[]): Float64Array {
  const n = deltas.length;
  const out = new Float64Array(deltas[0]!.length);
  const column = new Float64Array(n);
  for (let i = 0; i < out.length; i++) {
    for (let c = 0; c < n; c++) column[c] = deltas[c]![i]!;
    column.sort();
    out[i] = n % 2 ? column[(n - 1) / 2]! : (column[n / 2 - 1]! + column[n / 2]!) / 2;
  }
  return out;
}

/** Per coordinate: drop floor(beta * n) values from each end, then the mean (scipy.stats.trim_mean). */
export function trimmedMean(deltas: readonly Float32Array[], beta: number): Float64Array {
  const n = deltas.length;
  const cut = Math.floor(beta * n);
  if (2 * cut >= n) throw new RangeError(`trimmed mean: beta ${beta} leaves nothing of ${n} updates`);
  const out = new Float64Array(deltas[0]!.length);
  const column = new Float64Array(n);
  for (let i = 0; i < out.length; i++) {
    for (let c = 0; c < n; c++) column[c] = deltas[c]![i]!;
    column.sort();
    let s = 0;
    for (let c = cut; c < n - cut; c++) s += column[c]!;
    out[i] = s / (n - 2 * cut);
  }
  return out;
}

/**
 * Krum (Blanchard et al. 2017): each update's score is the sum of squared distances to its
 * n - f - 2 nearest others; Krum keeps the lowest-scoring update, MultiKrum (keep > 0) the weighted
 * mean of the `keep` lowest. Returns the aggregate and the indices it kept.
 */
export function krum(deltas: readonly Float32Array[], weights: readonly number[], byzantine: number, keep: number): { value: Float64Array; kept: number[] } {
  const n = deltas.length;
  const dist: number[][] = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (let a = 0; a < n; a++) {
    for (let b = a + 1; b < n; b++) {
      let s = 0;
      const x = deltas[a]!;
      const y = deltas[b]!;
      for (let i = 0; i < x.length; i++) s += (x[i]! - y[i]!) ** 2;
      dist[a]![b] = s;
      dist[b]![a] = s;
    }
  }
  const closest = Math.max(1, n - byzantine - 2);
  const scores = dist.map((row, a) => row.filter((_, b) => b !== a).sort((p, q) => p - q).slice(0, closest).reduce((s, v) => s + v, 0));
  const order = scores.map((s, i) => [s, i] as const).sort((p, q) => p[0] - q[0] || p[1] - q[1]).map(([, i]) => i);
  const kept = (keep > 0 ? order.slice(0, keep) : order.slice(0, 1)).sort((p, q) => p - q);
  return { value: weightedMean(kept.map((i) => deltas[i]!), kept.map((i) => weights[i]!)), kept };
}

/** The round's aggregate of all its updates under a rule that needs them all (not 'mean'). */
export function robustAggregate(rule: AggregationRule, deltas: readonly Float32Array[], weights: readonly number[]): Float64Array {
  switch (rule.rule) {
    case 'mean':
      return weightedMean(deltas, weights);
    case 'median':
      return coordinateMedian(deltas);
    case 'trimmed-mean':
      return trimmedMean(deltas, rule.beta);
    case 'krum':
      return krum(deltas, weights, rule.byzantine, rule.keep ?? 0).value;
  }
}

export type OptimizerState = Map<string, Float64Array>;

/** The optimizer's defaults made explicit (what a round's config snapshot records). */
export function resolveOptimizer(o: ServerOptimizer): Required<ServerOptimizer> {
  switch (o.type) {
    case 'fedavg':
      return { type: 'fedavg', lr: o.lr ?? 1 };
    case 'fedavgm':
      return { type: 'fedavgm', lr: o.lr ?? 1, momentum: o.momentum ?? 0.9 };
    case 'fedadam':
      return { type: 'fedadam', lr: o.lr ?? 0.1, beta1: o.beta1 ?? 0.9, beta2: o.beta2 ?? 0.99, tau: o.tau ?? 1e-9 };
    case 'fedyogi':
      return { type: 'fedyogi', lr: o.lr ?? 1e-2, beta1: o.beta1 ?? 0.9, beta2: o.beta2 ?? 0.99, tau: o.tau ?? 1e-3 };
    case 'fedadagrad':
      return { type: 'fedadagrad', lr: o.lr ?? 0.1, tau: o.tau ?? 1e-9 };
  }
}

/**
 * One server step on the (possibly noised) average delta. Returns the new global (f32) and the
 * new optimizer state (fresh arrays; the inputs are not changed).
 */
export function serverStep(optimizer: ServerOptimizer, global: Float32Array, avg: Float64Array, state: OptimizerState): { global: Float32Array; state: OptimizerState } {
  const o = resolveOptimizer(optimizer);
  const n = global.length;
  const out = new Float32Array(n);
  const next: OptimizerState = new Map();
  const get = (name: string) => state.get(name) ?? new Float64Array(n);
  switch (o.type) {
    case 'fedavg':
      for (let i = 0; i < n; i++) out[i] = global[i]! + o.lr * avg[i]!;
      break;
    case 'fedavgm': {
      const v = Float64Array.from(get('momentum'));
      for (let i = 0; i < n; i++) {
        v[i] = o.momentum * v[i]! + avg[i]!;
        out[i] = global[i]! + o.lr * v[i]!;
      }
      next.set('momentum', v);
      break;
    }
    case 'fedadam': {
      const m = Float64Array.from(get('m'));
      const v = Float64Array.from(get('v'));
      for (let i = 0; i < n; i++) {
        const d = avg[i]!;
        m[i] = o.beta1 * m[i]! + (1 - o.beta1) * d;
        v[i] = o.beta2 * v[i]! + (1 - o.beta2) * d * d;
        out[i] = global[i]! + (o.lr * m[i]!) / (Math.sqrt(v[i]!) + o.tau);
      }
      next.set('m', m);
      next.set('v', v);
      break;
    }
    case 'fedyogi': {
      const m = Float64Array.from(get('m'));
      const v = Float64Array.from(get('v'));
      for (let i = 0; i < n; i++) {
        const d = avg[i]!;
        const d2 = d * d;
        m[i] = o.beta1 * m[i]! + (1 - o.beta1) * d;
        v[i] = v[i]! - (1 - o.beta2) * d2 * Math.sign(v[i]! - d2);
        out[i] = global[i]! + (o.lr * m[i]!) / (Math.sqrt(v[i]!) + o.tau);
      }
      next.set('m', m);
      next.set('v', v);
      break;
    }
    case 'fedadagrad': {
      const v = Float64Array.from(get('v'));
      for (let i = 0; i < n; i++) {
        const d = avg[i]!;
        v[i] = v[i]! + d * d;
        out[i] = global[i]! + (o.lr * d) / (Math.sqrt(v[i]!) + o.tau);
      }
      next.set('v', v);
      break;
    }
  }
  return { global: out, state: next };
}
