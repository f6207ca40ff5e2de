/** Seeded inputs for kernel tests (mulberry32 + Box-Muller), so failures reproduce. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randn(count: number, seed: number, scale = 1): Float32Array {
  const next = rng(seed);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    const u = Math.max(next(), 1e-12);
    out[i] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next()) * scale;
  }
  return out;
}

/** Largest |actual - expected| / (atol + rtol * |expected|); <= 1 means within tolerance. */
export function worstError(actual: ArrayLike<number>, expected: ArrayLike<number>, atol: number, rtol: number) {
  if (actual.length !== expected.length) {
    return { ratio: Infinity, index: -1, actual: NaN, expected: NaN, maxAbs: Infinity };
  }
  let ratio = 0;
  let index = -1;
  let maxAbs = 0;
  for (let i = 0; i < actual.length; i++) {
    const diff = Math.abs(actual[i]! - expected[i]!);
    const r = diff === 0 ? 0 : Number.isFinite(diff) ? diff / (atol + rtol * Math.abs(expected[i]!)) : Infinity;
    maxAbs = Math.max(maxAbs, diff);
    if (r > ratio || Number.isNaN(r)) {
      ratio = Number.isNaN(r) ? Infinity : r;
      index = i;
    }
  }
  return { ratio, index, actual: actual[index] ?? NaN, expected: expected[index] ?? NaN, maxAbs };
}
