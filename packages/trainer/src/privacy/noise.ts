/**
 * Noise for differential privacy: uniforms from the platform's CSPRNG (crypto.getRandomValues, never
 * Math.random) and Gaussian noise generated the way Opacus generates it in secure mode, so that the
 * floating-point representation of a noised value does not give the noise away.
 *
 * Why secure mode. Mironov (2012, "On Significance of the Least Significant Bits for Differential
 * Privacy", CCS) showed that a textbook floating-point Laplace sampler breaks DP: the doubles it can
 * output are unevenly spaced, so the set of values x + noise can take depends on x, and some outputs
 * are possible for one database and impossible for a neighbouring one. Holohan and Braghin (2021,
 * "Secure Random Sampling in Differential Privacy", ESORICS, arXiv 2107.10138) extended the attack
 * to Gaussian noise drawn by Box-Muller (and the polar method): from one output an attacker can
 * search the 2^53 candidate uniforms that could have produced it, and Jin et al. (2022, "Are We There
 * Yet? Timing and Floating-Point Attacks on Differential Privacy Systems", IEEE S&P, arXiv 2112.05307)
 * ran it against Opacus. The countermeasure of Holohan and Braghin (section 5.1), which Opacus
 * applies with `secure_mode=True` (`opacus/optimizers/optimizer.py`, `_generate_noise`), is to
 * output the sum of 2n independent N(0, std^2) draws divided by sqrt(2n); Opacus takes n = 2: four
 * draws, divided by 2. The sum has exactly the same distribution (N(0, std^2)), but inverting it
 * means searching about 2^(53 (2n - 1)) = 2^159 combinations of uniforms instead of 2^53.
 *
 * What is done here: each standard normal is one Box-Muller value from its own two 53-bit uniforms
 * (the sine half of the pair is discarded, so no two of the four normals share uniforms: r cos t +
 * r sin t would be one Box-Muller value again), computed in float64; the output is
 * (std / 2) (z1 + z2 + z3 + z4), rounded once to float32. Opacus also throws away one normal drawn
 * before the others to decorrelate torch's generator from its seed; a CSPRNG has no such seed, so
 * nothing is thrown away here. Cost: 16 u32 of CSPRNG output and four log/sqrt/cos per noise value.
 *
 * What it does not defend: it is the heuristic hardening Opacus ships, not an exact sampler (no
 * snapping mechanism as Mironov proposes, no discrete Gaussian as Canonne, Kamath and Steinke 2020);
 * adding the noise to a float32 gradient sum still rounds, and the set of reachable float32 sums
 * still depends (very slightly) on the sum. It does not defend timing side channels (Jin et al.),
 * a platform whose crypto.getRandomValues is broken, or anyone who can read this process's memory.
 */
import { InvalidArgumentError } from '@webtune/errors';

/** 2^-53: a 53-bit integer k maps to the double k * 2^-53 exactly. */
const TWO_POW_M53 = 2 ** -53;
const TWO_POW_26 = 2 ** 26;
const TWO_PI = 2 * Math.PI;

/**
 * A generator of uniform doubles strictly inside (0, 1) from crypto.getRandomValues, drawn in
 * blocks of 1024 u32s: each value takes two u32s, 27 + 26 bits, k = hi * 2^26 + lo in [0, 2^53),
 * u = k * 2^-53, and k = 0 is redrawn (probability 2^-53). Never Math.random. Throws
 * InvalidArgumentError where Web Crypto is missing (every browser and Node >= 19 have it).
 *
 * @example
 * ```ts
 * const uniform = secureUniform();
 * const u = uniform(); // 0 < u < 1, a multiple of 2^-53
 * ```
 */
export function secureUniform(): () => number {
  if (typeof globalThis.crypto?.getRandomValues !== 'function') {
    throw new InvalidArgumentError(
      'secureUniform: crypto.getRandomValues is unavailable; DP noise needs a cryptographically secure source (Web Crypto). ' +
        'Run in a browser, a worker or Node >= 20, where globalThis.crypto exists.',
    );
  }
  const block = new Uint32Array(1024);
  let at = block.length;
  return () => {
    for (;;) {
      if (at === block.length) {
        crypto.getRandomValues(block);
        at = 0;
      }
      const hi = block[at++]! >>> 5; // 27 bits
      const lo = block[at++]! >>> 6; // 26 bits
      const k = hi * TWO_POW_26 + lo;
      if (k !== 0) return k * TWO_POW_M53;
    }
  };
}

function checkStd(std: number, where: string): void {
  if (typeof std !== 'number' || !(std >= 0) || !Number.isFinite(std)) {
    throw new InvalidArgumentError(`${where}: std must be a finite number >= 0, got ${String(std)}.`);
  }
}

/**
 * The secure-mode draw before scaling: z1 + z2 + z3 + z4 in float64 (N(0, 4) in distribution), each
 * z one Box-Muller value from its own two uniforms. `uniform` must return values in [0, 1); 1 - u
 * keeps the logarithm finite when a caller's source can return 0.
 */
function sumOfFourNormals(uniform: () => number, where: string): number {
  let sum = 0;
  for (let k = 0; k < 4; k++) {
    const u1 = uniform();
    const u2 = uniform();
    if (!(u1 >= 0 && u1 < 1) || !(u2 >= 0 && u2 < 1)) {
      throw new InvalidArgumentError(`${where}: uniform() returned ${!(u1 >= 0 && u1 < 1) ? u1 : u2}, outside [0, 1); pass a source of uniforms in [0, 1).`);
    }
    sum += Math.sqrt(-2 * Math.log(1 - u1)) * Math.cos(TWO_PI * u2);
  }
  return sum;
}

/**
 * A sampler of standard normals hardened as gaussianNoise is (the sum of four Box-Muller normals
 * from 53-bit CSPRNG uniforms, halved, in float64), for callers that add noise in float64 (the
 * coordinator's central DP).
 *
 * @example
 * ```ts
 * const normal = secureStandardNormal();
 * for (let i = 0; i < sum.length; i++) sum[i] += std * normal();
 * ```
 */
export function secureStandardNormal(uniform: () => number = secureUniform()): () => number {
  return () => sumOfFourNormals(uniform, 'secureStandardNormal') / 2;
}

/**
 * `length` independent N(0, std^2) values as float32, generated as Opacus' secure mode does (see the
 * file's comment: the sum of four independent Box-Muller normals from 53-bit CSPRNG uniforms, times
 * std / 2, in float64, rounded once to float32). std = 0 gives zeros, as Opacus. `uniform` defaults
 * to secureUniform(); pass another source only in tests (it must return values in [0, 1)).
 *
 * @example
 * ```ts
 * // DP-SGD: noise N(0, (sigma C)^2) for a clipped gradient sum of n values
 * const noise = gaussianNoise(n, noiseMultiplier * maxGradNorm);
 * ```
 */
export function gaussianNoise(length: number, std: number, uniform: () => number = secureUniform()): Float32Array {
  const where = 'gaussianNoise';
  if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 0) {
    throw new InvalidArgumentError(`${where}: length must be a non-negative integer (the number of values to draw), got ${String(length)}.`);
  }
  checkStd(std, where);
  if (typeof uniform !== 'function') {
    throw new InvalidArgumentError(`${where}: uniform must be a function returning uniform values in [0, 1) (leave it out to use the CSPRNG).`);
  }
  const out = new Float32Array(length);
  if (std === 0) return out;
  const half = std / 2;
  for (let i = 0; i < length; i++) out[i] = half * sumOfFourNormals(uniform, where);
  return out;
}

/**
 * The tensors of an update or gradient as a list, each checked to be a Float32Array; throws
 * InvalidArgumentError naming `where` otherwise (the clipping and noising functions' argument check).
 */
export function float32Tensors(tensors: Iterable<Float32Array>, where: string): Float32Array[] {
  if (tensors == null || typeof (tensors as Iterable<Float32Array>)[Symbol.iterator] !== 'function') {
    throw new InvalidArgumentError(`${where}: tensors must be an iterable of Float32Array.`);
  }
  const list = Array.from(tensors);
  list.forEach((t, i) => {
    if (!(t instanceof Float32Array)) {
      throw new InvalidArgumentError(`${where}: tensor ${i} is not a Float32Array (${Object.prototype.toString.call(t)}).`);
    }
  });
  return list;
}

/**
 * Adds independent N(0, std^2) noise to every element, in place, with the same hardened generator as
 * gaussianNoise (four Box-Muller normals from 53-bit CSPRNG uniforms, summed, times std / 2); each
 * element is rounded to float32 once, after the addition. `random` (default: secureUniform(), i.e.
 * crypto.getRandomValues; never Math.random) must return values in [0, 1). std = 0 leaves the
 * tensors as they are.
 *
 * @example
 * ```ts
 * clipGlobalNorm(deltas, S);
 * addGaussianNoise(deltas, noiseMultiplier * S); // local DP on a federated update
 * ```
 */
export function addGaussianNoise(tensors: Iterable<Float32Array>, std: number, random?: () => number): void {
  const where = 'addGaussianNoise';
  checkStd(std, where);
  if (random !== undefined && typeof random !== 'function') {
    throw new InvalidArgumentError(`${where}: random must be a function returning uniform values in [0, 1).`);
  }
  const list = float32Tensors(tensors, where);
  if (std === 0) return;
  const uniform = random ?? secureUniform();
  const half = std / 2;
  for (const t of list) for (let i = 0; i < t.length; i++) t[i] = t[i]! + half * sumOfFourNormals(uniform, where);
}
