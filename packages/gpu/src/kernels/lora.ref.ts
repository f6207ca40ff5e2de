/** CPU reference for the LoRA layer kernels (packages/gpu/src/kernels/lora.ts). W is dense [N, K]. */
import { matmulRef } from './matmul.ref.js';

export interface LoraRefInput {
  x: ArrayLike<number>;
  w: ArrayLike<number>;
  a: ArrayLike<number>;
  b: ArrayLike<number>;
  m: number;
  k: number;
  n: number;
  r: number;
  scale: number;
}

export function loraForwardRef(p: LoraRefInput): { y: Float32Array; h: Float32Array } {
  const h = matmulRef(p.x, p.a, { m: p.m, n: p.r, k: p.k, transB: true });
  const base = matmulRef(p.x, p.w, { m: p.m, n: p.n, k: p.k, transB: true });
  const y = matmulRef(h, p.b, { m: p.m, n: p.n, k: p.r, transB: true, alpha: p.scale, accumulate: base });
  return { y, h };
}

export function loraBackwardRef(p: LoraRefInput, g: ArrayLike<number>): { dx: Float32Array; dA: Float32Array; dB: Float32Array } {
  const { h } = loraForwardRef(p);
  const dB = matmulRef(g, h, { m: p.n, n: p.r, k: p.m, transA: true, alpha: p.scale });
  const gB = matmulRef(g, p.b, { m: p.m, n: p.r, k: p.n });
  const dA = matmulRef(gB, p.x, { m: p.r, n: p.k, k: p.m, transA: true, alpha: p.scale });
  const gw = matmulRef(g, p.w, { m: p.m, n: p.k, k: p.n });
  const dx = matmulRef(gB, p.a, { m: p.m, n: p.k, k: p.r, alpha: p.scale, accumulate: gw });
  return { dx, dA, dB };
}
