/**
 * Client-side privacy mechanics for federated updates (Flower `common/differential_privacy.py`,
 * McMahan et al. 2018): flat L2 clipping of the whole update and the local-DP noise scale of
 * Flower's LocalDpMod. The Gaussian noise itself (CSPRNG, hardened as Opacus' secure mode) and the
 * RDP accountant live in @webtune/trainer, which DP-SGD shares; this package re-exports them.
 *
 * Clipping follows Flower's `clip_inputs_inplace` (used by `compute_clip_model_update`):
 * factor = min(1, S / ||delta||_2), with no epsilon in the denominator (Opacus' per-example
 * clipping uses min(1, C / (norm + 1e-6)); that is not this). A zero update is left as is.
 */
import { InvalidArgumentError } from '@webtune/errors';
import { float32Tensors } from '@webtune/trainer';

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
  const list = float32Tensors(tensors, where);
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
