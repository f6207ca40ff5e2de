/**
 * Shamir secret sharing (Shamir 1979) over the prime field GF(p), p = 2^521 - 1 (a Mersenne prime,
 * the field of NIST P-521), with BigInt. A secret is at most 64 bytes, read as a big-endian integer,
 * so every secret secure aggregation shares (a 32-byte self-mask seed, a 32-byte P-256 or X25519
 * private key) is an element of the field: no secret is reduced, and shares of different secrets
 * never collide. The polynomial's coefficients are uniform in [0, p) from crypto.getRandomValues
 * (rejection sampling), so any t - 1 shares are independent of the secret.
 *
 * Shares are evaluations at x = 1..n (secure aggregation uses each participant's index), encoded as
 * 66 big-endian bytes (SHARE_BYTES); combineShares() interpolates at 0 with Lagrange's formula from
 * any `threshold` distinct shares.
 */
import { InvalidArgumentError } from '@webtune/errors';

/** The field's prime, 2^521 - 1. */
export const SHAMIR_PRIME: bigint = (1n << 521n) - 1n;
/** Bytes of one encoded share value (ceil(521 / 8)). */
export const SHARE_BYTES = 66;
/** The longest secret shareSecret() takes: 64 bytes (512 bits) is below p. */
export const MAX_SECRET_BYTES = 64;

/** One share: the evaluation point x (1-based participant index) and the polynomial's value there. */
export interface Share {
  x: number;
  y: bigint;
}

const mod = (a: bigint): bigint => {
  const r = a % SHAMIR_PRIME;
  return r < 0n ? r + SHAMIR_PRIME : r;
};

export function bytesToBigInt(bytes: Uint8Array): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

export function bigIntToBytes(v: bigint, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = length - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  if (v !== 0n) throw new InvalidArgumentError(`a field element does not fit ${length} bytes`);
  return out;
}

/** A uniform field element from the CSPRNG (rejection sampling on 521-bit draws). */
function randomFieldElement(): bigint {
  const bytes = new Uint8Array(SHARE_BYTES);
  for (;;) {
    crypto.getRandomValues(bytes);
    bytes[0]! &= 0x01; // 66 bytes = 528 bits; keep the low 521
    const v = bytesToBigInt(bytes);
    if (v < SHAMIR_PRIME) return v;
  }
}

/** p(x) = sum coefficients[i] x^i mod p, by Horner's rule. */
export function evaluatePolynomial(coefficients: readonly bigint[], x: number): bigint {
  const X = BigInt(x);
  let acc = 0n;
  for (let i = coefficients.length - 1; i >= 0; i--) acc = mod(acc * X + coefficients[i]!);
  return acc;
}

function checkPoints(xs: readonly number[], where: string): void {
  const seen = new Set<number>();
  for (const x of xs) {
    if (!Number.isSafeInteger(x) || x < 1) throw new InvalidArgumentError(`${where}: share points must be integers >= 1, got ${x}`);
    if (seen.has(x)) throw new InvalidArgumentError(`${where}: share point ${x} appears twice`);
    seen.add(x);
  }
}

/**
 * Splits `secret` (at most MAX_SECRET_BYTES) into one share per point in `xs` (distinct integers
 * >= 1), any `threshold` of which recover it. `coefficients` (tests only) fixes the polynomial's
 * coefficients 1..threshold-1; by default they are uniform from crypto.getRandomValues.
 */
export function shareSecret(secret: Uint8Array, threshold: number, xs: readonly number[], coefficients?: readonly bigint[]): Share[] {
  const where = 'shareSecret';
  if (!(secret instanceof Uint8Array) || secret.length === 0 || secret.length > MAX_SECRET_BYTES) {
    throw new InvalidArgumentError(`${where}: the secret must be 1 to ${MAX_SECRET_BYTES} bytes`);
  }
  if (!Number.isInteger(threshold) || threshold < 1 || threshold > xs.length) {
    throw new InvalidArgumentError(`${where}: threshold must be an integer from 1 to the number of shares (${xs.length}), got ${threshold}`);
  }
  checkPoints(xs, where);
  if (coefficients && coefficients.length !== threshold - 1) throw new InvalidArgumentError(`${where}: ${threshold - 1} coefficients expected, got ${coefficients.length}`);
  const poly = [bytesToBigInt(secret)];
  for (let i = 1; i < threshold; i++) poly.push(coefficients ? mod(coefficients[i - 1]!) : randomFieldElement());
  return xs.map((x) => ({ x, y: evaluatePolynomial(poly, x) }));
}

/**
 * a^-1 mod p by the extended Euclidean algorithm (about 15x faster than Fermat's a^(p-2) on 521
 * bits: unmasking a SecAgg+ round inverts t values per neighbourhood). a is never 0 mod p here:
 * share points are distinct integers far below p.
 */
function inverse(a: bigint): bigint {
  let [r0, r1] = [mod(a), SHAMIR_PRIME];
  let [s0, s1] = [1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  if (r0 !== 1n) throw new InvalidArgumentError('a share point difference has no inverse mod p');
  return mod(s0);
}

/**
 * The Lagrange coefficients at 0 for these points (lambda_i = prod_{j != i} x_j / (x_j - x_i) mod p),
 * remembered for the last few point sets: unmasking a round combines one secret per client, most
 * from the same holders, and each inversion is a 521-bit exponentiation.
 */
const lagrangeCache = new Map<string, bigint[]>();
function lagrangeAtZero(xs: readonly number[]): bigint[] {
  const key = xs.join(',');
  const hit = lagrangeCache.get(key);
  if (hit) return hit;
  const out = xs.map((x, i) => {
    const xi = BigInt(x);
    let num = 1n;
    let den = 1n;
    for (let j = 0; j < xs.length; j++) {
      if (j === i) continue;
      const xj = BigInt(xs[j]!);
      num = (num * xj) % SHAMIR_PRIME;
      den = mod(den * (xj - xi));
    }
    return (num * inverse(den)) % SHAMIR_PRIME;
  });
  if (lagrangeCache.size >= 64) lagrangeCache.delete(lagrangeCache.keys().next().value!);
  lagrangeCache.set(key, out);
  return out;
}

/**
 * Recovers a secret of `byteLength` bytes from at least `threshold` shares (the first `threshold`
 * are used) by Lagrange interpolation at 0. Fewer shares, repeated points or a value outside the
 * field are InvalidArgumentError; wrong shares give a wrong value, which the caller detects (a
 * value longer than byteLength is refused here).
 */
export function combineShares(shares: readonly Share[], threshold: number, byteLength: number): Uint8Array {
  const where = 'combineShares';
  if (!Number.isSafeInteger(threshold) || threshold < 1) throw new InvalidArgumentError(`${where}: threshold must be an integer >= 1, got ${threshold}`);
  if (shares.length < threshold) throw new InvalidArgumentError(`${where}: ${threshold} shares are needed, got ${shares.length}`);
  const used = shares.slice(0, threshold);
  checkPoints(used.map((s) => s.x), where);
  for (const s of used) if (typeof s.y !== 'bigint' || s.y < 0n || s.y >= SHAMIR_PRIME) throw new InvalidArgumentError(`${where}: share ${s.x} is not a field element`);
  const lambda = lagrangeAtZero(used.map((s) => s.x));
  let secret = 0n;
  for (let i = 0; i < used.length; i++) secret = (secret + used[i]!.y * lambda[i]!) % SHAMIR_PRIME;
  if (secret >> BigInt(8 * byteLength) !== 0n) throw new InvalidArgumentError(`${where}: the shares do not combine to a ${byteLength}-byte secret (wrong or mixed shares)`);
  return bigIntToBytes(secret, byteLength);
}

/** A share's value as SHARE_BYTES big-endian bytes. */
export function encodeShareValue(y: bigint): Uint8Array {
  return bigIntToBytes(y, SHARE_BYTES);
}

/** The inverse of encodeShareValue; a value of another length or outside the field is InvalidArgumentError. */
export function decodeShareValue(bytes: Uint8Array): bigint {
  if (bytes.length !== SHARE_BYTES) throw new InvalidArgumentError(`a share value is ${SHARE_BYTES} bytes, got ${bytes.length}`);
  const y = bytesToBigInt(bytes);
  if (y >= SHAMIR_PRIME) throw new InvalidArgumentError('a share value is outside the field');
  return y;
}
