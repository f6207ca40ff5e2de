/**
 * CPU references for the vector-scale kernels (packages/gpu/src/kernels/vector-scale.ts), plain
 * loops over row-major [rows, cols] arrays. Results are float32; columnDotRef sums in float64.
 */

/** The inputs of {@link scaleColumnsRef}. */
export interface ScaleColumnsRefInput {
  /** [rows, cols] */
  src: ArrayLike<number>;
  /** [cols] */
  vector: ArrayLike<number>;
  rows: number;
  cols: number;
  /** [rows, cols]: the initial dst, added to (dst += src * vector); omitted, dst = src * vector. */
  accumulate?: ArrayLike<number>;
}

/** dst[r, c] = (accumulate ? accumulate[r, c] : 0) + src[r, c] * vector[c]. */
export function scaleColumnsRef(p: ScaleColumnsRefInput): Float32Array {
  const out = new Float32Array(p.rows * p.cols);
  for (let r = 0; r < p.rows; r++) {
    for (let c = 0; c < p.cols; c++) {
      const i = r * p.cols + c;
      // The product rounded to f32 first, as an f32 multiply then add does.
      out[i] = (p.accumulate ? p.accumulate[i]! : 0) + Math.fround(p.src[i]! * p.vector[c]!);
    }
  }
  return out;
}

/** The inputs of {@link columnDotRef}. */
export interface ColumnDotRefInput {
  /** [rows, cols] */
  a: ArrayLike<number>;
  /** [rows, cols]; omitted, the column sums of a. */
  b?: ArrayLike<number>;
  rows: number;
  cols: number;
  /** [cols]: the initial out, added to; omitted, out starts at 0. */
  accumulate?: ArrayLike<number>;
}

/** out[c] = (accumulate ? accumulate[c] : 0) + sum over r of a[r, c] * (b ? b[r, c] : 1). */
export function columnDotRef(p: ColumnDotRefInput): Float32Array {
  const out = new Float32Array(p.cols);
  for (let c = 0; c < p.cols; c++) {
    let sum = 0;
    for (let r = 0; r < p.rows; r++) {
      const i = r * p.cols + c;
      sum += p.a[i]! * (p.b ? p.b[i]! : 1);
    }
    out[c] = (p.accumulate ? p.accumulate[c]! : 0) + sum;
  }
  return out;
}
