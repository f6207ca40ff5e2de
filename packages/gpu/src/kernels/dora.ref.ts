/**
 * CPU reference for DoRA's weight norm (packages/gpu/src/kernels/dora.ts): plain loops over
 * row-major arrays in float64, results rounded to float32.
 */

/**
 * The inputs of {@link doraWeightNormRef}.
 *
 * @example
 * ```ts
 * const input: DoraWeightNormRefInput = { weight, a, b, scale: 2, magnitude: m, out: 5, in: 7, rank: 3 };
 * ```
 */
export interface DoraWeightNormRefInput {
  /** W [out, in] (f16 weights as their float32 values). */
  weight: ArrayLike<number>;
  /** LoRA A [rank, in]. */
  a: ArrayLike<number>;
  /** LoRA B [out, rank]. */
  b: ArrayLike<number>;
  /** The LoRA scaling s. */
  scale: number;
  /** DoRA's magnitude m [out]; omitted, no mOverNorm. */
  magnitude?: ArrayLike<number>;
  /** Rows of W. */
  out: number;
  /** Columns of W. */
  in: number;
  /** The LoRA rank r. */
  rank: number;
}

/**
 * The outputs of {@link doraWeightNormRef}, each [out].
 *
 * @example
 * ```ts
 * const { norm, invNorm, mOverNorm }: DoraWeightNormRefOutput = doraWeightNormRef(input);
 * ```
 */
export interface DoraWeightNormRefOutput {
  /** ||W + s B A||_2 of each row. */
  norm: Float32Array;
  /** 1 / norm. */
  invNorm: Float32Array;
  /** magnitude / norm, when a magnitude was given. */
  mOverNorm?: Float32Array;
}

/**
 * norm[o] = sqrt(sum over i of (W[o, i] + s * sum over k of B[o, k] A[k, i])^2), invNorm = 1 / norm,
 * mOverNorm = m / norm (PEFT's DoraLinearLayer.get_weight_norm, and the scale DoRA applies).
 *
 * @example
 * ```ts
 * const { norm, mOverNorm } = doraWeightNormRef({ weight, a, b, scale: alpha / rank, magnitude: m, out, in: inFeatures, rank });
 * ```
 */
export function doraWeightNormRef(p: DoraWeightNormRefInput): DoraWeightNormRefOutput {
  const norm = new Float32Array(p.out);
  const invNorm = new Float32Array(p.out);
  const mOverNorm = p.magnitude ? new Float32Array(p.out) : undefined;
  for (let o = 0; o < p.out; o++) {
    let squares = 0;
    for (let i = 0; i < p.in; i++) {
      let ba = 0;
      for (let k = 0; k < p.rank; k++) ba += p.b[o * p.rank + k]! * p.a[k * p.in + i]!;
      const v = p.weight[o * p.in + i]! + p.scale * ba;
      squares += v * v;
    }
    const n = Math.sqrt(squares);
    norm[o] = n;
    invNorm[o] = 1 / n;
    if (mOverNorm) mOverNorm[o] = p.magnitude![o]! / n;
  }
  return mOverNorm ? { norm, invNorm, mOverNorm } : { norm, invNorm };
}
