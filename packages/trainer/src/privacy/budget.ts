/**
 * The privacy budget before training: presets, the default delta, epsilon for a planned run
 * (estimatePrivacy), and the noise multiplier that reaches a target epsilon (noiseMultiplierFor, a
 * transcription of Opacus' `get_noise_multiplier`, `opacus/accountants/utils.py`). All accounting
 * is the RDP accountant of ./accountant.ts (Opacus' RDPAccountant), at DP_SGD_ORDERS.
 */
import { InvalidArgumentError } from '@webtune/errors';
import { computeDpEpsilon, DEFAULT_ORDERS } from './accountant.js';

/**
 * The RDP orders DP-SGD runs are accounted at: Opacus' alphas (DEFAULT_ORDERS, which end at 63)
 * plus 128, 256 and 512, as TF Privacy's accountant has. Orders up to 63 put a floor under epsilon
 * whatever the noise (about 0.10 at delta 1e-5), which would make the `veryHigh` preset (0.1)
 * unreachable for more than ~8,000 rows at delta = 1 / (10 N); the higher orders lower the floor to
 * about 0.01. Epsilon is the minimum over the orders, and every order gives a valid bound, so more
 * orders can only tighten it: where the best order is <= 63 the result equals Opacus'.
 */
export const DP_SGD_ORDERS: readonly number[] = Object.freeze([...DEFAULT_ORDERS, 128, 256, 512]);

/**
 * Target epsilon of each named privacy level, for delta = defaultDelta(N) unless the app sets one:
 * `low` 10, `medium` 3, `high` 1, `veryHigh` 0.1 (smaller epsilon: stronger privacy, more noise).
 *
 * @example
 * ```ts
 * const sigma = noiseMultiplierFor({ targetEpsilon: PRIVACY_PRESETS.medium, delta: defaultDelta(n), sampleRate: q, steps });
 * ```
 */
export const PRIVACY_PRESETS = { low: 10, medium: 3, high: 1, veryHigh: 0.1 } as const;

/** The name of a privacy level in PRIVACY_PRESETS. */
export type PrivacyPreset = keyof typeof PRIVACY_PRESETS;

function checkDataSize(dataSize: number, where: string): void {
  if (typeof dataSize !== 'number' || !Number.isSafeInteger(dataSize) || dataSize < 1) {
    throw new InvalidArgumentError(
      `${where}: dataSize must be a positive integer (the number of examples: sequences or conversations), got ${String(dataSize)}.`,
    );
  }
}

function checkDelta(delta: number, where: string): void {
  if (typeof delta !== 'number' || !(delta > 0 && delta < 1)) {
    throw new InvalidArgumentError(
      `${where}: delta must be a number in (0, 1), well below 1 / dataSize (leave it out for 1 / (10 N)), got ${String(delta)}.`,
    );
  }
}

function checkOrders(orders: readonly number[], where: string): void {
  if (!Array.isArray(orders) || orders.length === 0 || !orders.every((a) => typeof a === 'number' && a > 1)) {
    throw new InvalidArgumentError(`${where}: orders must be a non-empty array of RDP orders > 1 (leave it out for DP_SGD_ORDERS).`);
  }
}

function checkPositiveInteger(value: number, name: string, where: string, what: string): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new InvalidArgumentError(`${where}: ${name} must be a positive integer (${what}), got ${String(value)}.`);
  }
}

/**
 * The default delta for a dataset of `dataSize` examples: 1 / (10 N). Delta must stay well below
 * 1 / N: a mechanism that publishes each example whole with probability delta is (0, delta)-DP, yet
 * leaks N delta examples on average.
 *
 * @example
 * ```ts
 * defaultDelta(5000); // 2e-5
 * ```
 */
export function defaultDelta(dataSize: number): number {
  checkDataSize(dataSize, 'defaultDelta');
  return 1 / (10 * dataSize);
}

/** What estimatePrivacy takes: the planned run. */
export interface PrivacyEstimateInput {
  /** N, the number of examples (the privacy unit: one sequence or one conversation). */
  dataSize: number;
  /** The expected batch size B; the sampling rate is q = B / N (Poisson sampling). */
  batchSize: number;
  /** Optimizer steps, each one release of the sampled Gaussian mechanism. */
  steps: number;
  /** sigma: noise std divided by the clipping norm C (0: no noise, epsilon Infinity). */
  noiseMultiplier: number;
  /** Defaults to defaultDelta(dataSize). */
  delta?: number;
  /** RDP orders of the accountant (default DP_SGD_ORDERS, the trainer's). */
  orders?: readonly number[];
}

/** What estimatePrivacy returns: the run's (epsilon, delta) and what it was computed from. */
export interface PrivacyEstimate {
  /** Epsilon spent after all the steps, at `delta`. */
  epsilon: number;
  delta: number;
  /** q = batchSize / dataSize. */
  sampleRate: number;
  /** The RDP order that gave the smallest epsilon. */
  order: number;
  steps: number;
  noiseMultiplier: number;
}

/**
 * Epsilon that `steps` DP-SGD steps with Poisson sampling rate batchSize / dataSize and noise
 * multiplier sigma will spend, at delta (default 1 / (10 N)), by the RDP accountant: what to show
 * before training starts.
 *
 * @example
 * ```ts
 * const { epsilon, delta } = estimatePrivacy({ dataSize: 5000, batchSize: 50, steps: 1000, noiseMultiplier: 1.1 });
 * ```
 */
export function estimatePrivacy(input: PrivacyEstimateInput): PrivacyEstimate {
  const where = 'estimatePrivacy';
  if (input == null || typeof input !== 'object') {
    throw new InvalidArgumentError(`${where}: pass { dataSize, batchSize, steps, noiseMultiplier, delta? }.`);
  }
  const { dataSize, batchSize, steps, noiseMultiplier } = input;
  checkDataSize(dataSize, where);
  checkPositiveInteger(batchSize, 'batchSize', where, 'the expected number of examples per step');
  if (batchSize > dataSize) {
    throw new InvalidArgumentError(
      `${where}: batchSize (${batchSize}) is larger than dataSize (${dataSize}); the sampling rate batchSize / dataSize must be ` +
        'at most 1. Lower the batch size or add examples.',
    );
  }
  checkPositiveInteger(steps, 'steps', where, 'the number of optimizer steps planned');
  if (typeof noiseMultiplier !== 'number' || !(noiseMultiplier >= 0) || !Number.isFinite(noiseMultiplier)) {
    throw new InvalidArgumentError(
      `${where}: noiseMultiplier must be a finite number >= 0 (noise std / clipping norm; noiseMultiplierFor finds one for a ` +
        `target epsilon), got ${String(noiseMultiplier)}.`,
    );
  }
  const delta = input.delta ?? defaultDelta(dataSize);
  checkDelta(delta, where);
  const orders = input.orders ?? DP_SGD_ORDERS;
  checkOrders(orders, where);
  const sampleRate = batchSize / dataSize;
  const { epsilon, order } = computeDpEpsilon({ noiseMultiplier, sampleRate, steps, delta, orders });
  return { epsilon, delta, sampleRate, order, steps, noiseMultiplier };
}

/** What noiseMultiplierFor takes (Opacus get_noise_multiplier's arguments, by steps). */
export interface NoiseMultiplierInput {
  /** The epsilon the whole run may spend. */
  targetEpsilon: number;
  delta: number;
  /** q, the Poisson sampling rate (expected batch size / dataset size), in (0, 1]. */
  sampleRate: number;
  /** Optimizer steps planned. */
  steps: number;
  /** The search stops once target - epsilon <= this (default 0.01, as Opacus). */
  epsilonTolerance?: number;
  /**
   * RDP orders of the accountant (default DP_SGD_ORDERS, the trainer's; pass DEFAULT_ORDERS for
   * Opacus' own alphas, which end at 63 and so put a floor under epsilon whatever the noise: about
   * 0.10 at delta 1e-5, 0.14 at 1e-6).
   */
  orders?: readonly number[];
}

/**
 * The smallest epsilon the conversion can give at `delta` over `orders`, reached as the RDP tends to
 * 0 (sigma to Infinity): min over alpha of -(ln delta + ln alpha) / (alpha - 1) + ln((alpha - 1) / alpha).
 */
function epsilonFloor(orders: readonly number[], delta: number): number {
  let floor = Infinity;
  for (const a of orders) {
    const e = -(Math.log(delta) + Math.log(a)) / (a - 1) + Math.log((a - 1) / a);
    if (e < floor) floor = e;
  }
  return floor;
}

/** Opacus' MAX_SIGMA: a noise multiplier above it is "the privacy budget is too low". */
const MAX_SIGMA = 1e6;

/**
 * The noise multiplier sigma for which `steps` steps at sampling rate q spend at most targetEpsilon
 * at delta, within epsilonTolerance of it: Opacus' `get_noise_multiplier` (`opacus/accountants/
 * utils.py`) with its RDP accountant, step by step. sigma_high starts at 10 and doubles (first tried:
 * 20) while epsilon(sigma_high) > target, failing once sigma_high > 1e6 (MAX_SIGMA); then bisection
 * on [0, sigma_high] keeps sigma_high on the private side (epsilon < target) until
 * target - epsilon(sigma_high) <= tolerance, and sigma_high is returned. So the result's epsilon is
 * at most the target and within the tolerance of it. Two additions to Opacus, neither of which
 * changes a result: a target below the floor of the orders (see `orders`), which no sigma reaches,
 * fails at once with that reason instead of after the doubling; and if bisection can no longer split
 * the interval (float64 exhausted, only possible for a non-monotone accountant), it stops and
 * returns the private end.
 *
 * @example
 * ```ts
 * const sigma = noiseMultiplierFor({ targetEpsilon: 3, delta: 1e-5, sampleRate: 0.01, steps: 1000 });
 * ```
 */
export function noiseMultiplierFor(input: NoiseMultiplierInput): number {
  const where = 'noiseMultiplierFor';
  if (input == null || typeof input !== 'object') {
    throw new InvalidArgumentError(`${where}: pass { targetEpsilon, delta, sampleRate, steps, epsilonTolerance? }.`);
  }
  const { targetEpsilon, delta, sampleRate, steps } = input;
  const tolerance = input.epsilonTolerance ?? 0.01;
  if (typeof targetEpsilon !== 'number' || !(targetEpsilon > 0) || !Number.isFinite(targetEpsilon)) {
    throw new InvalidArgumentError(
      `${where}: targetEpsilon must be a finite number > 0 (e.g. a value of PRIVACY_PRESETS), got ${String(targetEpsilon)}.`,
    );
  }
  checkDelta(delta, where);
  if (typeof sampleRate !== 'number' || !(sampleRate > 0 && sampleRate <= 1)) {
    throw new InvalidArgumentError(
      `${where}: sampleRate must be a number in (0, 1] (expected batch size / dataset size), got ${String(sampleRate)}.`,
    );
  }
  checkPositiveInteger(steps, 'steps', where, 'the number of optimizer steps planned');
  if (typeof tolerance !== 'number' || !(tolerance > 0) || !Number.isFinite(tolerance)) {
    throw new InvalidArgumentError(`${where}: epsilonTolerance must be a finite number > 0 (default 0.01), got ${String(tolerance)}.`);
  }
  const orders = input.orders ?? DP_SGD_ORDERS;
  checkOrders(orders, where);
  const epsilonAt = (sigma: number): number => computeDpEpsilon({ noiseMultiplier: sigma, sampleRate, steps, delta, orders }).epsilon;
  const floor = epsilonFloor(orders, delta);
  if (targetEpsilon < floor) {
    throw new InvalidArgumentError(
      `${where}: the privacy budget is too low: epsilon ${targetEpsilon} at delta ${delta} is below ${floor.toPrecision(4)}, the ` +
        `least any noise can give with RDP orders up to ${Math.max(...orders)}. Raise targetEpsilon or delta, or pass higher orders ` +
        '(e.g. orders: [...DP_SGD_ORDERS, 1024]).',
    );
  }

  let epsHigh = Infinity;
  let sigmaLow = 0;
  let sigmaHigh = 10;
  while (epsHigh > targetEpsilon) {
    sigmaHigh = 2 * sigmaHigh;
    epsHigh = epsilonAt(sigmaHigh);
    if (sigmaHigh > MAX_SIGMA) {
      throw new InvalidArgumentError(
        `${where}: the privacy budget is too low: epsilon ${targetEpsilon} at delta ${delta} is out of reach over ${steps} steps at ` +
          `sampling rate ${sampleRate} even with noise multiplier ${MAX_SIGMA}. Raise targetEpsilon or delta, or train fewer steps ` +
          'or with a lower sampling rate (smaller batches or more data).',
      );
    }
  }
  while (targetEpsilon - epsHigh > tolerance) {
    const sigma = (sigmaLow + sigmaHigh) / 2;
    if (sigma === sigmaLow || sigma === sigmaHigh) break; // no double left between them
    const eps = epsilonAt(sigma);
    if (eps < targetEpsilon) {
      sigmaHigh = sigma;
      epsHigh = eps;
    } else {
      sigmaLow = sigma;
    }
  }
  return sigmaHigh;
}
