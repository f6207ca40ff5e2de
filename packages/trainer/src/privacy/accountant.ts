/**
 * RDP accountant of the sampled Gaussian mechanism (SGM), computed as Opacus computes it
 * (`opacus/accountants/analysis/rdp.py`, `opacus/accountants/rdp.py`, itself from TF Privacy's
 * `rdp_accountant.py`):
 *
 *  - RDP of one SGM release at order alpha: ln(A_alpha) / (alpha - 1), with A_alpha from Mironov,
 *    Talwar and Zhang, "Renyi Differential Privacy of the Sampled Gaussian Mechanism" (arXiv
 *    1908.10530, section 3.3): a binomial sum for integer alpha, two series split at
 *    z0 = sigma^2 ln(1/q - 1) + 1/2 with Gaussian tails (erfc) for fractional alpha, cut once both
 *    new terms are below e^-30. Special cases as Opacus: q = 0 -> 0, sigma = 0 -> Infinity,
 *    q = 1 -> alpha / (2 sigma^2), alpha = Infinity -> Infinity. `steps` releases compose
 *    additively (rdp * steps).
 *  - Conversion to (epsilon, delta)-DP: Balle et al. 2020 (arXiv 1905.09982, Theorem 21),
 *    eps(alpha) = rdp - (ln delta + ln alpha) / (alpha - 1) + ln((alpha - 1) / alpha), minimised over
 *    the orders, NaNs ignored; every eps NaN -> { epsilon: Infinity, order: NaN }. A (degenerate,
 *    e.g. q = 0 with a large delta) negative epsilon is returned as is, as Opacus does (TF Privacy
 *    clamps it to 0). Opacus warns when the best order is the first or last one; here compare
 *    `order` with the ends of the list yourself.
 *
 * All in float64 with V8's fdlibm-derived Math.log/exp/log1p/expm1 and a log-space erfc written
 * here (JavaScript has none); checked against an independent scipy/mpmath implementation
 * (scripts/make_dp_fixtures.py) and the values in Opacus' and TF Privacy's own tests.
 */
import { InvalidArgumentError } from '@webtune/errors';

/** Opacus' RDPAccountant.DEFAULT_ALPHAS: [1 + x / 10 for x in 1..99] + [12..63]. */
export const DEFAULT_ORDERS: readonly number[] = Object.freeze([
  ...Array.from({ length: 99 }, (_, k) => 1 + (k + 1) / 10),
  ...Array.from({ length: 52 }, (_, k) => 12 + k),
]);

// ---------------------------------------------------------------------------------------------
// erfc in log space
// ---------------------------------------------------------------------------------------------

const LOG_SQRT_PI = 0.5 * Math.log(Math.PI);
const TWO_OVER_SQRT_PI = 2 / Math.sqrt(Math.PI);

/**
 * erf(x) for 0 <= x <= 2 from the all-positive series
 *   erf(x) = 2/sqrt(pi) exp(-x^2) sum_{n>=0} 2^n x^(2n+1) / (1 * 3 * ... * (2n+1)),
 * which has no cancellation (relative error a few ulps).
 */
function erfSeries(x: number): number {
  if (x === 0) return 0;
  const x2 = x * x;
  let term = x;
  let sum = x;
  for (let n = 1; n < 200; n++) {
    term *= (2 * x2) / (2 * n + 1);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return TWO_OVER_SQRT_PI * Math.exp(-x2) * sum;
}

/**
 * ln(sqrt(pi) exp(x^2) erfc(x)) for x >= 2, from Laplace's continued fraction
 *   erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...)))))
 * evaluated with the modified Lentz algorithm (converges in < 100 terms at x = 2, fewer beyond).
 */
function logScaledErfcCf(x: number): number {
  const tiny = 1e-300;
  let f = x;
  let c = x;
  let d = 0;
  for (let n = 1; n < 5000; n++) {
    const a = n / 2;
    d = x + a * d;
    if (d === 0) d = tiny;
    c = x + a / c;
    if (c === 0) c = tiny;
    d = 1 / d;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return -Math.log(f);
}

/**
 * ln(erfc(x)) for every real x, accurate for large x where erfc underflows (Opacus computes
 * ln 2 + scipy.special.log_ndtr(-x sqrt 2)). Relative error of erfc below ~1e-13 everywhere.
 */
export function logErfc(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x === Infinity) return -Infinity;
  if (x === -Infinity) return Math.LN2;
  if (x >= 2) return -x * x - LOG_SQRT_PI + logScaledErfcCf(x);
  if (x >= 0) return Math.log1p(-erfSeries(x));
  // x < 0: erfc(x) = 1 + erf(-x) = 2 - erfc(-x)
  const y = -x;
  if (y < 2) return Math.log1p(erfSeries(y));
  return Math.log(2 - Math.exp(-y * y - LOG_SQRT_PI + logScaledErfcCf(y)));
}

// ---------------------------------------------------------------------------------------------
// log-space arithmetic (Opacus _log_add / _log_sub)
// ---------------------------------------------------------------------------------------------

function logAdd(logx: number, logy: number): number {
  const a = Math.min(logx, logy);
  const b = Math.max(logx, logy);
  if (a === -Infinity) return b;
  return Math.log1p(Math.exp(a - b)) + b;
}

function logSub(logx: number, logy: number): number {
  if (logx < logy) throw new RangeError('RDP accountant: log-space subtraction went negative (numerical failure).');
  if (logy === -Infinity) return logx;
  if (logx === logy) return -Infinity;
  const e = Math.expm1(logx - logy);
  if (!Number.isFinite(e)) return logx; // Python's OverflowError branch
  return Math.log(e) + logy;
}

// ---------------------------------------------------------------------------------------------
// ln A_alpha (Mironov et al. section 3.3)
// ---------------------------------------------------------------------------------------------

function logAIntAlpha(q: number, sigma: number, alpha: number): number {
  let logA = -Infinity;
  let binom = 1; // C(alpha, i), built up multiplicatively
  for (let i = 0; i <= alpha; i++) {
    if (i > 0) binom = (binom * (alpha - i + 1)) / i;
    const logCoef = Math.log(binom) + i * Math.log(q) + (alpha - i) * Math.log(1 - q);
    const s = logCoef + (i * i - i) / (2 * sigma ** 2);
    logA = logAdd(logA, s);
  }
  return logA;
}

const MAX_FRAC_TERMS = 10_000_000;

function logAFracAlpha(q: number, sigma: number, alpha: number): number {
  // The two parts of A_alpha, integrals over (-inf, z0] and [z0, inf), start at 0 (-inf in logs).
  let logA0 = -Infinity;
  let logA1 = -Infinity;
  const z0 = sigma ** 2 * Math.log(1 / q - 1) + 0.5;
  const logQ = Math.log(q);
  const log1mQ = Math.log(1 - q);
  const s2 = Math.SQRT2 * sigma;
  let coef = 1; // generalised binomial C(alpha, i)
  for (let i = 0; ; i++) {
    if (i > 0) coef = (coef * (alpha - i + 1)) / i;
    const logCoef = Math.log(Math.abs(coef));
    const j = alpha - i;
    const logT0 = logCoef + i * logQ + j * log1mQ;
    const logT1 = logCoef + j * logQ + i * log1mQ;
    const logE0 = Math.log(0.5) + logErfc((i - z0) / s2);
    const logE1 = Math.log(0.5) + logErfc((z0 - j) / s2);
    const logS0 = logT0 + (i * i - i) / (2 * sigma ** 2) + logE0;
    const logS1 = logT1 + (j * j - j) / (2 * sigma ** 2) + logE1;
    if (coef > 0) {
      logA0 = logAdd(logA0, logS0);
      logA1 = logAdd(logA1, logS1);
    } else {
      logA0 = logSub(logA0, logS0);
      logA1 = logSub(logA1, logS1);
    }
    if (Math.max(logS0, logS1) < -30) break;
    if (Number.isNaN(logS0) || Number.isNaN(logS1) || i >= MAX_FRAC_TERMS) {
      throw new RangeError(
        `RDP accountant: the fractional-order series did not converge (q=${q}, sigma=${sigma}, alpha=${alpha}).`,
      );
    }
  }
  return logAdd(logA0, logA1);
}

/** ln A_alpha for 0 < q < 1, sigma > 0 and a finite alpha > 1 (exported for tests). */
export function computeLogA(q: number, sigma: number, alpha: number): number {
  return Number.isInteger(alpha) ? logAIntAlpha(q, sigma, alpha) : logAFracAlpha(q, sigma, alpha);
}

function rdpOneStep(q: number, sigma: number, alpha: number): number {
  if (q === 0) return 0;
  if (sigma === 0) return Infinity; // no privacy
  if (q === 1) return alpha / (2 * sigma ** 2);
  if (alpha === Infinity) return Infinity;
  return computeLogA(q, sigma, alpha) / (alpha - 1);
}

// ---------------------------------------------------------------------------------------------
// argument checks
// ---------------------------------------------------------------------------------------------

function checkSampleRate(q: number, where: string): void {
  if (typeof q !== 'number' || !(q >= 0 && q <= 1)) {
    throw new InvalidArgumentError(`${where}: sampleRate (q) must be a number in [0, 1], got ${String(q)}.`);
  }
}

function checkNoiseMultiplier(sigma: number, where: string): void {
  if (typeof sigma !== 'number' || !(sigma >= 0) || !Number.isFinite(sigma)) {
    throw new InvalidArgumentError(
      `${where}: noiseMultiplier (sigma) must be a finite number >= 0, got ${String(sigma)} ` +
        '(0 means no noise, i.e. no privacy: epsilon is Infinity).',
    );
  }
}

function checkSteps(steps: number, where: string): void {
  if (typeof steps !== 'number' || !Number.isSafeInteger(steps) || steps < 0) {
    throw new InvalidArgumentError(`${where}: steps must be a non-negative integer, got ${String(steps)}.`);
  }
}

function checkOrders(orders: readonly number[], where: string): void {
  if (!Array.isArray(orders) || orders.length === 0) {
    throw new InvalidArgumentError(`${where}: orders must be a non-empty array of RDP orders > 1.`);
  }
  for (const a of orders) {
    if (typeof a !== 'number' || !(a > 1)) {
      throw new InvalidArgumentError(
        `${where}: every RDP order must be a number > 1 (Infinity allowed), got ${String(a)}.`,
      );
    }
  }
}

function checkDelta(delta: number, where: string): void {
  if (typeof delta !== 'number' || !(delta > 0 && delta < 1)) {
    throw new InvalidArgumentError(`${where}: delta must be a number in (0, 1), got ${String(delta)}.`);
  }
}

// ---------------------------------------------------------------------------------------------
// public API
// ---------------------------------------------------------------------------------------------

/**
 * RDP of `steps` releases of the sampled Gaussian mechanism with sampling rate `q` and noise
 * multiplier `noiseMultiplier` (noise std / L2 sensitivity), at each order (Opacus compute_rdp).
 */
export function computeRdp(
  q: number, noiseMultiplier: number, steps: number, orders: readonly number[] = DEFAULT_ORDERS,
): number[] {
  const where = 'computeRdp';
  checkSampleRate(q, where);
  checkNoiseMultiplier(noiseMultiplier, where);
  checkSteps(steps, where);
  checkOrders(orders, where);
  return orders.map((alpha) => rdpOneStep(q, noiseMultiplier, alpha) * steps);
}

/**
 * (epsilon, delta)-DP from RDP values at the given orders (Opacus get_privacy_spent, Balle et al.
 * 2020): the smallest epsilon over the orders, NaNs ignored, the first order on ties; all NaN ->
 * { epsilon: Infinity, order: NaN }.
 */
export function rdpToEpsilon(orders: readonly number[], rdp: readonly number[], delta: number): { epsilon: number; order: number } {
  const where = 'rdpToEpsilon';
  checkOrders(orders, where);
  checkDelta(delta, where);
  if (!Array.isArray(rdp) || rdp.length !== orders.length) {
    throw new InvalidArgumentError(
      `${where}: rdp must be an array as long as orders (${orders.length}), got ${Array.isArray(rdp) ? rdp.length : typeof rdp}.`,
    );
  }
  for (const r of rdp) {
    if (typeof r !== 'number' || r < 0) {
      throw new InvalidArgumentError(`${where}: RDP values must be numbers >= 0 (NaN and Infinity allowed), got ${String(r)}.`);
    }
  }
  const logDelta = Math.log(delta);
  let best = -1;
  let bestEps = NaN;
  for (let k = 0; k < orders.length; k++) {
    const a = orders[k]!;
    const eps = rdp[k]! - (logDelta + Math.log(a)) / (a - 1) + Math.log((a - 1) / a);
    if (Number.isNaN(eps)) continue;
    if (best < 0 || eps < bestEps) {
      best = k;
      bestEps = eps;
    }
  }
  if (best < 0) return { epsilon: Infinity, order: NaN };
  // The conversion can go below 0 at high orders with a large delta and much noise; epsilon is never
  // negative, so it is clamped as TF Privacy's compute_eps does (Opacus returns the raw minimum).
  return { epsilon: Math.max(0, bestEps), order: orders[best]! };
}

/** Epsilon of `steps` homogeneous SGM releases at `delta` (computeRdp then rdpToEpsilon). */
export function computeDpEpsilon(o: {
  noiseMultiplier: number; sampleRate: number; steps: number; delta: number; orders?: readonly number[];
}): { epsilon: number; order: number } {
  const orders = o.orders ?? DEFAULT_ORDERS;
  checkDelta(o.delta, 'computeDpEpsilon');
  return rdpToEpsilon(orders, computeRdp(o.sampleRate, o.noiseMultiplier, o.steps, orders), o.delta);
}

/** One entry of an accountant's history: `steps` consecutive releases with the same (sigma, q). */
export interface RdpHistoryEntry {
  readonly noiseMultiplier: number;
  readonly sampleRate: number;
  readonly steps: number;
}

/** What RdpAccountant.toJSON() writes and fromJSON() reads. */
export interface RdpAccountantJSON {
  format: 'webtune-rdp-accountant';
  version: 1;
  orders: number[];
  history: { noiseMultiplier: number; sampleRate: number; steps: number }[];
}

/**
 * Accumulates heterogeneous releases (a different q and sigma per round) like Opacus'
 * RDPAccountant: consecutive steps with equal (sigma, q) merge into one history entry, and the
 * RDP of the whole history is the per-order sum over entries. With no history, epsilon() returns
 * { epsilon: 0, order: 0 } as Opacus does.
 */
export class RdpAccountant {
  readonly orders: readonly number[];
  #history: { noiseMultiplier: number; sampleRate: number; steps: number }[] = [];

  constructor(orders: readonly number[] = DEFAULT_ORDERS) {
    checkOrders(orders, 'RdpAccountant');
    if (!orders.every(Number.isFinite)) {
      throw new InvalidArgumentError('RdpAccountant: orders must be finite (they are persisted as JSON).');
    }
    this.orders = Object.freeze([...orders]);
  }

  /** Records `steps` (default 1) releases with this noise multiplier and sampling rate. */
  step(o: { noiseMultiplier: number; sampleRate: number; steps?: number }): void {
    const where = 'RdpAccountant.step';
    const steps = o.steps ?? 1;
    checkNoiseMultiplier(o.noiseMultiplier, where);
    checkSampleRate(o.sampleRate, where);
    checkSteps(steps, where);
    if (steps === 0) return;
    const last = this.#history[this.#history.length - 1];
    if (last && last.noiseMultiplier === o.noiseMultiplier && last.sampleRate === o.sampleRate) {
      last.steps += steps;
    } else {
      this.#history.push({ noiseMultiplier: o.noiseMultiplier, sampleRate: o.sampleRate, steps });
    }
  }

  /** The summed RDP of every release so far at each of this accountant's orders. */
  rdp(): number[] {
    const total = this.orders.map(() => 0);
    for (const h of this.#history) {
      const r = computeRdp(h.sampleRate, h.noiseMultiplier, h.steps, this.orders);
      for (let k = 0; k < total.length; k++) total[k]! += r[k]!;
    }
    return total;
  }

  /** Privacy spent so far as (epsilon, delta)-DP at `delta`, and the order that gave it. */
  epsilon(delta: number): { epsilon: number; order: number } {
    checkDelta(delta, 'RdpAccountant.epsilon');
    if (this.#history.length === 0) return { epsilon: 0, order: 0 };
    return rdpToEpsilon(this.orders, this.rdp(), delta);
  }

  get history(): readonly RdpHistoryEntry[] {
    return this.#history.map((h) => Object.freeze({ ...h }));
  }

  /** The orders and history as plain JSON data, for storage; fromJSON() restores the same accountant. */
  toJSON(): RdpAccountantJSON {
    return {
      format: 'webtune-rdp-accountant',
      version: 1,
      orders: [...this.orders],
      history: this.#history.map((h) => ({ ...h })),
    };
  }

  /** Restores an accountant written by toJSON() (a parsed object or its JSON text). */
  static fromJSON(json: RdpAccountantJSON | string): RdpAccountant {
    let doc: unknown = json;
    if (typeof json === 'string') {
      try {
        doc = JSON.parse(json);
      } catch (e) {
        throw new InvalidArgumentError(`RdpAccountant.fromJSON: not JSON (${(e as Error).message}).`);
      }
    }
    const d = doc as Partial<RdpAccountantJSON> | null;
    if (!d || typeof d !== 'object' || d.format !== 'webtune-rdp-accountant' || d.version !== 1) {
      throw new InvalidArgumentError(
        'RdpAccountant.fromJSON: expected {format: "webtune-rdp-accountant", version: 1, orders, history}.',
      );
    }
    if (!Array.isArray(d.history)) throw new InvalidArgumentError('RdpAccountant.fromJSON: history must be an array.');
    const acc = new RdpAccountant(d.orders ?? DEFAULT_ORDERS);
    for (const h of d.history) {
      if (!h || typeof h !== 'object') throw new InvalidArgumentError('RdpAccountant.fromJSON: bad history entry.');
      const where = 'RdpAccountant.fromJSON';
      checkNoiseMultiplier(h.noiseMultiplier, where);
      checkSampleRate(h.sampleRate, where);
      checkSteps(h.steps, where);
      if (h.steps === 0) throw new InvalidArgumentError(`${where}: history entries must have steps >= 1.`);
      // Kept as written (not re-merged), so the restored history equals the saved one.
      acc.#history.push({ noiseMultiplier: h.noiseMultiplier, sampleRate: h.sampleRate, steps: h.steps });
    }
    return acc;
  }
}
