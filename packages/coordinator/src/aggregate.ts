/**
 * The arithmetic of a round: the running weighted sum (f64, one array the size of the adapter),
 * the average, central-DP noise and the server optimizer step. Pure functions over flat arrays.
 */
import type { ServerOptimizer } from './config.js';

/** sum += weight * delta (in place). */
export function accumulate(sum: Float64Array, delta: Float32Array, weight: number): void {
  for (let i = 0; i < sum.length; i++) sum[i]! += weight * delta[i]!;
}

/** A standard normal sampler over crypto.getRandomValues (Box-Muller on 53-bit uniforms). */
export function cryptoGaussian(): () => number {
  const block = new Uint32Array(1024);
  let at = block.length;
  const word = () => {
    if (at === block.length) {
      crypto.getRandomValues(block);
      at = 0;
    }
    return block[at++]!;
  };
  // (0, 1]: never 0, so the log is finite.
  const uniform = () => ((word() >>> 5) * 67108864 + (word() >>> 6) + 1) / 9007199254740992;
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const s = spare;
      spare = undefined;
      return s;
    }
    const r = Math.sqrt(-2 * Math.log(uniform()));
    const theta = 2 * Math.PI * uniform();
    spare = r * Math.sin(theta);
    return r * Math.cos(theta);
  };
}

/** avg += N(0, sigma^2) per element (in place). */
export function addGaussianNoise(avg: Float64Array, sigma: number, gaussian: () => number = cryptoGaussian()): void {
  for (let i = 0; i < avg.length; i++) avg[i]! += sigma * gaussian();
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
  }
  return { global: out, state: next };
}
