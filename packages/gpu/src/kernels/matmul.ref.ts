/** CPU reference for shaders/matmul.wgsl, in float64 accumulation. */

export interface MatmulRefOptions {
  m: number;
  n: number;
  k: number;
  batch?: number;
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  /** Per-batch element strides; 0 broadcasts. Defaults to the dense strides. */
  strideA?: number;
  strideB?: number;
  /** Where batch 0 of A and B starts (elements); default 0. The result is dense [batch, m, n]. */
  offsetA?: number;
  offsetB?: number;
  /** Added to the result (C += ...) when given. */
  accumulate?: Float32Array;
}

export function matmulRef(a: ArrayLike<number>, b: ArrayLike<number>, o: MatmulRefOptions): Float32Array {
  const { m, n, k } = o;
  const batch = o.batch ?? 1;
  const alpha = o.alpha ?? 1;
  const strideA = o.strideA ?? m * k;
  const strideB = o.strideB ?? k * n;
  const out = new Float32Array(batch * m * n);
  for (let bi = 0; bi < batch; bi++) {
    const ba = (o.offsetA ?? 0) + bi * strideA;
    const bb = (o.offsetB ?? 0) + bi * strideB;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let sum = 0;
        for (let p = 0; p < k; p++) {
          const av = o.transA ? a[ba + p * m + i]! : a[ba + i * k + p]!;
          const bv = o.transB ? b[bb + j * k + p]! : b[bb + p * n + j]!;
          sum += av * bv;
        }
        const idx = bi * m * n + i * n + j;
        out[idx] = alpha * sum + (o.accumulate ? o.accumulate[idx]! : 0);
      }
    }
  }
  return out;
}
