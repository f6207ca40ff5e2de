/** CPU reference for shaders/nf4-matmul.wgsl and shaders/nf4-matmul-grad-input.wgsl: dequantize, then multiply. */
import { dequantizeNF4, type NF4Quantized } from '../nf4/quantize.js';
import { matmulRef } from './matmul.ref.js';

/** Y [M, N] = X [M, K] dequant(W [N, K])^T */
export function nf4MatmulRef(x: ArrayLike<number>, w: NF4Quantized, m: number): Float32Array {
  const [n, k] = w.shape as [number, number];
  return matmulRef(x, dequantizeNF4(w), { m, n, k, transB: true });
}

/** DX [M, K] = DY [M, N] dequant(W [N, K]) */
export function nf4GradInputRef(dy: ArrayLike<number>, w: NF4Quantized, m: number): Float32Array {
  const [n, k] = w.shape as [number, number];
  return matmulRef(dy, dequantizeNF4(w), { m, n: k, k: n });
}
