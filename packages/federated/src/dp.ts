/**
 * Client-side privacy mechanics for federated updates (Flower `common/differential_privacy.py`,
 * McMahan et al. 2018): flat L2 clipping of the whole update, Gaussian noise from a
 * cryptographically secure source, and the local-DP noise scale of Flower's LocalDpMod.
 *
 * Clipping follows Flower's `clip_inputs_inplace` (used by `compute_clip_model_update`):
 * factor = min(1, S / ||delta||_2), with no epsilon in the denominator (Opacus' per-example
 * clipping uses min(1, C / (norm + 1e-6)); that is not this). A zero update is left as is.
 */
import { InvalidArgumentError } from '@webtune/errors';

/** 2^-53: a 53-bit integer k maps to the double k * 2^-53 exactly. */
const TWO_POW_M53 = 2 ** -53;
const TWO_POW_26 = 2 ** 26;

/**
 * A generator of uniform doubles strictly inside (0, 1) from crypto.getRandomValues, drawn in
 * blocks of 1024 u32s: each value takes two u32s, 27 + 26 bits, k = hi * 2^26 + lo in [0, 2^53),
 * u = k * 2^-53, and k = 0 is redrawn (probability 2^-53). Never Math.random.
 */
export function secureUniform(): () => number {
  if (typeof globalThis.crypto?.getRandomValues !== 'function') {
    throw new InvalidArgumentError(
      'secureUniform: crypto.getRandomValues is unavailable; DP noise needs a cryptographically secure source (Web Crypto).',
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

function materialize(tensors: Iterable<Float32Array>, where: string): Float32Array[] {
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
 * Clips the update's global L2 norm to `maxNorm` (S) in place: every tensor is scaled by
 * factor = min(1, S / ||delta||_2) (Flower's `compute_clip_model_update` / `clip_inputs_inplace`).
 * The norm is accumulated in float64 over all tensors. Returns the norm before clipping and the
 * factor applied (1 when the update is already within S, including a zero update). Throws
 * InvalidArgumentError if S is not a finite positive number or the update holds NaN/Infinity.
 */
export function clipGlobalNorm(tensors: Iterable<Float32Array>, maxNorm: number): { norm: number; factor: number } {
  const where = 'clipGlobalNorm';
  if (typeof maxNorm !== 'number' || !(maxNorm > 0) || !Number.isFinite(maxNorm)) {
    throw new InvalidArgumentError(`${where}: maxNorm (the clipping bound S) must be a finite number > 0, got ${String(maxNorm)}.`);
  }
  const list = materialize(tensors, where);
  let sum = 0;
  for (const t of list) for (let i = 0; i < t.length; i++) sum += t[i]! * t[i]!;
  const norm = Math.sqrt(sum);
  if (!Number.isFinite(norm)) {
    throw new InvalidArgumentError(`${where}: the update contains NaN or Infinity (norm ${norm}); refusing to clip or send it.`);
  }
  const factor = Math.min(1, maxNorm / norm); // norm 0 -> S/0 = Infinity -> 1
  if (factor < 1) for (const t of list) for (let i = 0; i < t.length; i++) t[i] = t[i]! * factor;
  return { norm, factor };
}

/**
 * Adds independent N(0, std^2) noise to every element, in place (rounded to float32). The
 * normals come from the Box-Muller transform over uniforms from `random` (default: secureUniform(),
 * i.e. crypto.getRandomValues with 53-bit resolution; never Math.random). `random` must return
 * values in [0, 1); both outputs of each Box-Muller pair are used.
 */
export function addGaussianNoise(tensors: Iterable<Float32Array>, std: number, random?: () => number): void {
  const where = 'addGaussianNoise';
  if (typeof std !== 'number' || !(std >= 0) || !Number.isFinite(std)) {
    throw new InvalidArgumentError(`${where}: std must be a finite number >= 0, got ${String(std)}.`);
  }
  if (random !== undefined && typeof random !== 'function') {
    throw new InvalidArgumentError(`${where}: random must be a function returning uniform values in [0, 1).`);
  }
  const list = materialize(tensors, where);
  if (std === 0) return;
  const uniform = random ?? secureUniform();
  const draw = (): number => {
    const u = uniform();
    if (!(u >= 0 && u < 1)) throw new InvalidArgumentError(`${where}: random() returned ${u}, outside [0, 1).`);
    return u;
  };
  let spare = 0;
  let haveSpare = false;
  const normal = (): number => {
    if (haveSpare) {
      haveSpare = false;
      return spare;
    }
    const u1 = 1 - draw(); // (0, 1]: ln(u1) is finite
    const u2 = draw();
    const r = Math.sqrt(-2 * Math.log(u1));
    const theta = 2 * Math.PI * u2;
    spare = r * Math.sin(theta);
    haveSpare = true;
    return r * Math.cos(theta);
  };
  for (const t of list) for (let i = 0; i < t.length; i++) t[i] = t[i]! + std * normal();
}

/**
 * Local-DP noise std per release for (epsilon, delta) with L2 sensitivity `clipNorm` (S): the
 * classical Gaussian mechanism, sigma = S * sqrt(2 ln(1.25 / delta)) / epsilon, as Flower's
 * LocalDpMod (`add_localdp_gaussian_noise_to_params`). Like Flower this does not enforce
 * epsilon < 1, the range where Dwork and Roth's Theorem A.1 proves this calibration.
 */
export function localDpNoiseStd(clipNorm: number, epsilon: number, delta: number): number {
  const where = 'localDpNoiseStd';
  if (typeof clipNorm !== 'number' || !(clipNorm > 0) || !Number.isFinite(clipNorm)) {
    throw new InvalidArgumentError(`${where}: clipNorm (S) must be a finite number > 0, got ${String(clipNorm)}.`);
  }
  if (typeof epsilon !== 'number' || !(epsilon > 0) || !Number.isFinite(epsilon)) {
    throw new InvalidArgumentError(`${where}: epsilon must be a finite number > 0, got ${String(epsilon)}.`);
  }
  if (typeof delta !== 'number' || !(delta > 0 && delta < 1)) {
    throw new InvalidArgumentError(`${where}: delta must be a number in (0, 1), got ${String(delta)}.`);
  }
  return (clipNorm * Math.sqrt(2 * Math.log(1.25 / delta))) / epsilon;
}
