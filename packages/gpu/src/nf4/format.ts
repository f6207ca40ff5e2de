/**
 * NF4 as bitsandbytes defines it (functional.py, backends/default/ops.py; REFERENCE.md):
 * the 16-value NormalFloat codebook, blockwise absmax scaling by x * (1 / absmax), nearest code
 * with ties to the lower code, two codes per byte with the FIRST element in the HIGH nibble,
 * and double quantization of the absmax values with the signed dynamic 8-bit map in blocks of 256.
 */

export const NF4_CODEBOOK = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
  -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
  0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
  0.7229568362236023, 1.0,
]);

/**
 * The 4-bit codebooks the kernels decode: bitsandbytes' NF4, or 'int4', the symmetric integer code
 * (q - 8) / 8 of onnxruntime's MatMulNBits (zero point 8). A MatMulNBits scale s is kept as the
 * block scale 8s, so code[q] * 8s = (q - 8) * s exactly (both factors are exact in float32).
 */
export type Codebook4 = 'nf4' | 'int4';

export const INT4_CODEBOOK = Float32Array.from({ length: 16 }, (_, q) => (q - 8) / 8);

export const codebookValues = (codebook: Codebook4): Float32Array => (codebook === 'int4' ? INT4_CODEBOOK : NF4_CODEBOOK);

/** Code index of 0.0; bitsandbytes pads an odd element count with a scaled 0.0. */
export const NF4_ZERO_CODE = 7;

/** Block sizes bitsandbytes accepts for 4-bit quantization. */
export const NF4_BLOCK_SIZES = [32, 64, 128, 256, 512, 1024, 2048, 4096] as const;

/** bitsandbytes quantizes the absmax values in blocks of this many. */
export const NESTED_BLOCK_SIZE = 256;

const f = Math.fround;

/**
 * torch.linspace(start, end, steps, dtype=float32) as ATen's CPU kernel computes it in torch's
 * AVX2 build (RangeFactoriesKernel.cpp), bit for bit: step = (end - start) / (steps - 1) in
 * float32; whole pairs of 8-wide vectors are filled as base + j * step with separate roundings,
 * and the remaining values one at a time as start + step * idx (end - step * (steps - idx - 1)
 * past halfway), which GCC contracts into a fused multiply-add, one rounding. bitsandbytes'
 * dynamic map is built from these values, so the last bit matters.
 */
function linspaceF32(start: number, end: number, steps: number): number[] {
  const s = f(start);
  const e = f(end);
  const step = f(f(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  // float32 * small integer is exact in float64, so one f() is one float32 rounding (an FMA).
  const fused = (idx: number) => (idx < half ? f(s + step * idx) : f(e - step * (steps - idx - 1)));
  const out: number[] = [];
  const vector = 8;
  let idx = 0;
  for (; idx + 2 * vector <= steps; idx += 2 * vector) {
    for (const chunk of [idx, idx + vector]) {
      const base = fused(chunk);
      for (let j = 0; j < vector; j++) out.push(j === 0 ? base : f(base + f(j * step)));
    }
  }
  for (; idx < steps; idx++) out.push(fused(idx));
  return out;
}

/**
 * bitsandbytes' `create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)`: for
 * i = 0..6, the midpoints of 2^i + 1 evenly spaced float32 boundaries in [0.1, 1] scaled by
 * +-10^(i-6); then 0 and 1; sorted ascending (256 values).
 */
export function createDynamicMap(): Float32Array {
  const values: number[] = [];
  for (let i = 0; i < 7; i++) {
    const b = linspaceF32(0.1, 1, 2 ** i + 1);
    const scale = f(10 ** (i - 6));
    for (let j = 0; j + 1 < b.length; j++) {
      const mid = f(f(b[j]! + b[j + 1]!) / 2);
      values.push(f(scale * mid), f(-scale * mid));
    }
  }
  values.push(0, 1);
  values.sort((x, y) => x - y);
  return Float32Array.from(values);
}

let cachedDynamicMap: Float32Array | undefined;
/** The 256-entry signed dynamic map, computed once. */
export function dynamicMap(): Float32Array {
  cachedDynamicMap ??= createDynamicMap();
  return cachedDynamicMap;
}

/** Index of the nearest code to `scaled` as torch.argmin(|scaled - code|) picks it: first minimum; NaN gives 0. */
export function nearestCode(scaled: number, code: Float32Array): number {
  let best = 0;
  let bestDistance = f(Math.abs(f(scaled - code[0]!)));
  for (let i = 1; i < code.length; i++) {
    const d = f(Math.abs(f(scaled - code[i]!)));
    if (d < bestDistance) {
      best = i;
      bestDistance = d;
    }
  }
  return best;
}
