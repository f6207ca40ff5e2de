/**
 * Fixed-point encoding of secure aggregation (Flower `common/secure_aggregation/quantization.py`,
 * with the scale chosen so the largest value is Q - 1): each value is clipped to [-c, c] and mapped
 * to [0, Q - 1] by v = (x + c) (Q - 1) / (2c), then rounded stochastically (up with probability
 * v - floor(v), so the rounding is unbiased), from crypto.getRandomValues. Masked sums are taken
 * mod M = 2^32 (uint32 arithmetic).
 *
 * Overflow: n values of at most Q - 1 sum to at most n (Q - 1), which is exact mod 2^32 while
 * n (Q - 1) <= 2^32 - 1, i.e. n <= maxParticipants(Q) = floor((2^32 - 1) / (Q - 1)) (1024 for
 * Flower's Q = 2^22). The coordinator refuses a secure round whose maxClients is larger.
 *
 * Error: one step is 2c / (Q - 1) (3.8e-6 for c = 8, Q = 2^22). Each value's rounding error is below
 * one step and has mean 0, so a sum of n values is off by less than n steps per coordinate, and the
 * mean of n values by less than one step.
 */
import { InvalidArgumentError } from '@webtune/errors';

/** The modulus of masked arithmetic. */
export const MODULUS = 2 ** 32;

/** The most inputs whose quantized sum cannot wrap mod 2^32: floor((2^32 - 1) / (Q - 1)). */
export function maxParticipants(quantizationRange: number): number {
  return Math.floor((MODULUS - 1) / (quantizationRange - 1));
}

/** The size of one quantization step, 2c / (Q - 1). */
export function quantizationStep(clippingRange: number, quantizationRange: number): number {
  return (2 * clippingRange) / (quantizationRange - 1);
}

/** Why (c, Q) cannot be used, or undefined: c finite > 0, Q an integer in [2, 2^31]. */
export function quantizationProblem(clippingRange: unknown, quantizationRange: unknown): string | undefined {
  if (typeof clippingRange !== 'number' || !Number.isFinite(clippingRange) || clippingRange <= 0) return `clippingRange must be a finite number > 0, got ${JSON.stringify(clippingRange)}`;
  if (typeof quantizationRange !== 'number' || !Number.isInteger(quantizationRange) || quantizationRange < 2 || quantizationRange > 2 ** 31) {
    return `quantizationRange must be an integer from 2 to 2^31 (at least two inputs must fit 2^32), got ${JSON.stringify(quantizationRange)}`;
  }
  return undefined;
}

/**
 * Clips, scales and stochastically rounds `values` into [0, Q - 1]. `clipped` counts the values
 * that were outside [-c, c]. `uniform` (tests only) replaces the CSPRNG's uniforms in [0, 1).
 */
export function quantize(values: ArrayLike<number>, clippingRange: number, quantizationRange: number, uniform?: () => number): { quantized: Uint32Array; clipped: number } {
  const problem = quantizationProblem(clippingRange, quantizationRange);
  if (problem) throw new InvalidArgumentError(`quantize: ${problem}`);
  const c = clippingRange;
  const scale = (quantizationRange - 1) / (2 * c);
  const out = new Uint32Array(values.length);
  const random = new Uint32Array(Math.min(16384, values.length));
  let clipped = 0;
  for (let i = 0; i < values.length; i++) {
    const at = i % random.length;
    if (!uniform && at === 0) crypto.getRandomValues(random);
    let x = values[i]!;
    if (!Number.isFinite(x)) throw new InvalidArgumentError(`quantize: value ${i} is ${x}; a secure-aggregation input must be finite`);
    if (x > c) { x = c; clipped++; } else if (x < -c) { x = -c; clipped++; }
    const v = (x + c) * scale;
    const floor = Math.floor(v);
    const u = uniform ? uniform() : random[at]! / MODULUS;
    out[i] = Math.min(quantizationRange - 1, floor + (u < v - floor ? 1 : 0));
  }
  return { quantized: out, clipped };
}

/** The real-valued sum of `count` inputs from their quantized sum mod 2^32 (exact while count <= maxParticipants). */
export function dequantizeSum(sum: Uint32Array, count: number, clippingRange: number, quantizationRange: number): Float64Array {
  const step = quantizationStep(clippingRange, quantizationRange);
  const out = new Float64Array(sum.length);
  for (let i = 0; i < sum.length; i++) out[i] = sum[i]! * step - count * clippingRange;
  return out;
}
