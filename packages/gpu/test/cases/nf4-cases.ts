/**
 * NF4 GPU test table, shared by the gpu lane (Dawn) and the browser lane (SwiftShader):
 * quantization against the bitsandbytes goldens, dequantization, and the fused matmuls
 * against their CPU reference.
 */
import {
  CommandRecorder, createNF4DequantizeKernel, createNF4MatmulKernel, createTensor, dequantizeNF4, dequantizeNF4Gpu, doubleQuantizeAbsmax,
  downloadNF4, fromF16Bits, nf4GradInputRef, nf4MatmulRef, paddedRowStride, quantizeNF4, quantizeNF4Gpu, readF32, toF16Bits,
  uploadNF4, type GpuContext, type GpuTensor, type NF4Weight,
} from '../../src/index.js';
import { f32, nf4Fixture, u8 } from '../fixtures.js';
import { capturedKernels } from '../capture.js';
import { randn, worstError } from '../random.js';

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

/** GPU quantization of every fixture case: codes and absmax exactly bitsandbytes'. */
export async function checkQuantizeCases(ctx: GpuContext, names?: (name: string) => boolean): Promise<Check[]> {
  const out: Check[] = [];
  for (const c of nf4Fixture.cases.filter((c) => !names || names(c.name))) {
    const input = f32(c.input);
    const shape: [number, number] = c.shape.length === 2 ? [c.shape[0]!, c.shape[1]!] : [1, input.length];
    const t = createTensor(ctx, { shape: [input.length], data: input, label: 'nf4 input' });
    ctx.device.pushErrorScope('validation');
    const w = await quantizeNF4Gpu(ctx, t, { shape, blockSize: c.blockSize, doubleQuant: c.doubleQuant });
    const got = await downloadNF4(ctx, w);
    const validation = await ctx.device.popErrorScope();
    w.release();
    t.release();
    const problems: string[] = [];
    if (validation) problems.push(`validation: ${validation.message}`);
    if (hex(got.packed) !== hex(u8(c.packed))) problems.push('packed codes differ');
    if (got.scales.doubleQuant) {
      const expectedOffset = c.offset!;
      // The GPU's float32 pairwise mean may differ from the float64 mean in the last bits.
      if (Math.abs(got.scales.offset - expectedOffset) > 4 * 1.2e-7 * Math.abs(expectedOffset)) {
        problems.push(`offset ${got.scales.offset} vs ${expectedOffset}`);
      }
      const cpu = doubleQuantizeAbsmax(f32(c.absmax), got.scales.offset);
      if (hex(got.scales.quantizedAbsmax) !== hex(cpu.quantizedAbsmax)) problems.push('quantized absmax differs from the CPU reference at the same offset');
      if (Array.from(got.scales.nestedAbsmax).join() !== Array.from(cpu.nestedAbsmax).join()) problems.push('nested absmax differs');
      const dq = worstError(dequantizeNF4(got), f32(c.dequantized), 0, 1e-5);
      if (dq.ratio > 1) problems.push(`dequantized vs bitsandbytes: ${JSON.stringify(dq)}`);
    } else if (Array.from(got.scales.absmax).join() !== Array.from(f32(c.absmax)).join()) {
      problems.push('absmax differs');
    }
    out.push({ name: `quantize: ${c.name}`, ok: problems.length === 0, detail: problems.join('; ') });
  }
  return out;
}

/** GPU dequantization of the bitsandbytes-quantized fixtures. */
export async function checkDequantizeCases(ctx: GpuContext): Promise<Check[]> {
  const out: Check[] = [];
  for (const c of nf4Fixture.cases) {
    const input = f32(c.input);
    const q = quantizeNF4(input, { blockSize: c.blockSize, doubleQuant: c.doubleQuant, shape: c.shape.length === 2 ? c.shape : [1, input.length] });
    const w = uploadNF4(ctx, q);
    let t: GpuTensor | undefined;
    const kernels = await dispatchedKernels(ctx, async () => { t = await dequantizeNF4Gpu(ctx, w); });
    const got = await readF32(ctx, t!);
    t!.release();
    // Double quantization's code2 * absmax2 + offset may be fused on the GPU: allow an ulp or two.
    const r = worstError(got, f32(c.dequantized), 0, c.doubleQuant ? 3e-7 : 0);
    out.push({ name: `dequantize (${kernels}): ${c.name}`, ok: r.ratio <= 1, detail: JSON.stringify(r) });
    if (ctx.features.shaderF16) out.push(await checkHalfDequantize(ctx, c.name, w, f32(c.dequantized)));
    if (c.shape.length === 2 && c.shape[1]! % 8 === 0) {
      const cols = c.shape[1]!;
      for (const dtype of ctx.features.shaderF16 ? (['f32', 'f16'] as const) : (['f32'] as const)) {
        // paddedRowStride (always past the columns: it keeps a row that is already an odd number
        // of 64-byte lines), as training takes it; and a stride whose rows start off 16 bytes.
        for (const ld of [paddedRowStride(cols + 1, dtype), cols + (dtype === 'f16' ? 2 : 1)]) {
          out.push(await checkPaddedDequantize(ctx, c.name, w, f32(c.dequantized), dtype, ld));
        }
      }
    }
    w.release();
  }
  out.push(...(await checkDequantizeLayouts(ctx)));
  return out;
}

/**
 * The layouts the fixtures leave out of the 16-byte-store path (nf4-dequantize-quads), against
 * the CPU dequantizer (itself checked against bitsandbytes' goldens in nf4.unit.test.ts): the
 * smallest block (32 values, one invocation's words) and a larger one, double quantization,
 * words that span two rows (dense, cols % 8 != 0), padded rows on and off 16 bytes, the int4
 * codebook, and a count that is not a multiple of 8.
 */
async function checkDequantizeLayouts(ctx: GpuContext): Promise<Check[]> {
  const out: Check[] = [];
  const layouts: { name: string; shape: [number, number]; blockSize: number; doubleQuant: boolean; int4?: boolean; padded?: { f32: number[]; f16: number[] } }[] = [
    { name: 'block 32, words across rows', shape: [8, 3], blockSize: 32, doubleQuant: false },
    { name: 'block 32, double quant, words across rows', shape: [8, 3], blockSize: 32, doubleQuant: true },
    { name: 'block 32, int4 codebook', shape: [8, 3], blockSize: 32, doubleQuant: false, int4: true },
    { name: 'block 128, double quant', shape: [4, 96], blockSize: 128, doubleQuant: true },
    { name: 'block 32, 15 values', shape: [3, 5], blockSize: 32, doubleQuant: false },
    // f32 rows 12 and 16 apart start on 16 bytes, 9 and 10 apart do not; f16 16 does, 10 does not.
    { name: 'block 32, padded rows', shape: [5, 8], blockSize: 32, doubleQuant: true, padded: { f32: [12, 9, 10], f16: [16, 10] } },
  ];
  for (const [i, l] of layouts.entries()) {
    const q = quantizeNF4(randn(l.shape[0] * l.shape[1], 4100 + i), { blockSize: l.blockSize, doubleQuant: l.doubleQuant, shape: l.shape });
    const quantized = l.int4 ? { ...q, codebook: 'int4' as const } : q;
    const expected = dequantizeNF4(quantized);
    const w = uploadNF4(ctx, quantized);
    let t: GpuTensor | undefined;
    const kernels = await dispatchedKernels(ctx, async () => { t = await dequantizeNF4Gpu(ctx, w); });
    const got = await readF32(ctx, t!);
    t!.release();
    const r = worstError(got, expected, 0, l.doubleQuant ? 3e-7 : 0);
    out.push({ name: `dequantize (${kernels}): ${l.name}`, ok: r.ratio <= 1, detail: JSON.stringify(r) });
    if (ctx.features.shaderF16) out.push(await checkHalfDequantize(ctx, l.name, w, expected));
    for (const dtype of ctx.features.shaderF16 ? (['f32', 'f16'] as const) : (['f32'] as const)) {
      for (const ld of l.padded?.[dtype] ?? []) out.push(await checkPaddedDequantize(ctx, l.name, w, expected, dtype, ld));
    }
    w.release();
  }
  return out;
}

/**
 * Dequantization into f16, as QLoRA training's f16 scratch takes it: the kernel writes two values
 * per 32-bit store, so an odd count ends with half a word, and what the buffer holds past the
 * weight must survive (the scratch is sized for the largest weight).
 */
async function checkHalfDequantize(ctx: GpuContext, name: string, w: NF4Weight, expected: Float32Array): Promise<Check> {
  const n = expected.length;
  const sentinel = 1234; // exact in f16
  const kernel = await createNF4DequantizeKernel(ctx, { blockSize: w.blockSize, doubleQuant: w.doubleQuant, codebook: w.codebook, dtype: 'f16' });
  const t = createTensor(ctx, { shape: [n + 3], dtype: 'f16', data: new Float32Array(n + 3).fill(sentinel), label: 'f16 dequantized' });
  const recorder = new CommandRecorder(ctx, 'nf4 dequantize f16');
  const kernels = await dispatchedKernels(ctx, () => kernel.encode(recorder, { weight: w, output: t }));
  recorder.submit();
  const got = await readF32(ctx, t);
  t.release();
  // f32 -> f16 may round either way (WGSL): within one f16 ulp of the f32 value.
  const r = worstError(got.subarray(0, n), fromF16Bits(toF16Bits(expected)), 0, 2 ** -10);
  const past = Array.from(got.subarray(n));
  return {
    name: `dequantize to f16 (${kernels}): ${name}`,
    ok: r.ratio <= 1 && past.every((v) => v === sentinel),
    detail: JSON.stringify({ ...r, pastTheEnd: past }),
  };
}

/**
 * Dequantization into padded rows (outputRowStride = paddedRowStride, as QLoRA training's scratch
 * takes it for the matmul's ldb): every row is bitsandbytes' (to an f16 ulp in f16), and the
 * padding keeps what it held.
 */
async function checkPaddedDequantize(ctx: GpuContext, name: string, w: NF4Weight, expected: Float32Array, dtype: 'f32' | 'f16', ld: number): Promise<Check> {
  const [rows, cols] = w.shape;
  const sentinel = 1234; // exact in f16
  const kernel = await createNF4DequantizeKernel(ctx, { blockSize: w.blockSize, doubleQuant: w.doubleQuant, codebook: w.codebook, dtype });
  const t = createTensor(ctx, { shape: [rows, ld], dtype, data: new Float32Array(rows * ld).fill(sentinel), label: 'padded dequantized' });
  const recorder = new CommandRecorder(ctx, 'nf4 dequantize padded');
  const kernels = await dispatchedKernels(ctx, () => kernel.encode(recorder, { weight: w, output: t, outputRowStride: ld }));
  recorder.submit();
  const got = await readF32(ctx, t);
  t.release();
  const dense = new Float32Array(rows * cols);
  const padding: number[] = [];
  for (let r = 0; r < rows; r++) {
    dense.set(got.subarray(r * ld, r * ld + cols), r * cols);
    padding.push(...got.subarray(r * ld + cols, (r + 1) * ld));
  }
  const r = dtype === 'f32'
    ? worstError(dense, expected, 0, w.doubleQuant ? 3e-7 : 0)
    : worstError(dense, fromF16Bits(toF16Bits(expected)), 0, 2 ** -10);
  const overwritten = padding.filter((v) => v !== sentinel).length;
  return {
    name: `dequantize into padded rows (${dtype}, ${cols} -> ${ld}, ${kernels}): ${name}`,
    ok: ld > cols && r.ratio <= 1 && overwritten === 0,
    detail: JSON.stringify({ ...r, paddingOverwritten: overwritten }),
  };
}

/** The kernels `work` dispatches, joined, for a check's name. */
async function dispatchedKernels(ctx: GpuContext, work: () => unknown): Promise<string> {
  return (await capturedKernels(ctx, work)).join(', ');
}

export interface NF4MatmulCase {
  name: string;
  m: number;
  n: number;
  k: number;
  blockSize?: number;
  doubleQuant?: boolean;
  dtype: 'f32' | 'f16';
  mode: 'forward' | 'grad-input';
  alpha?: number;
  accumulate?: boolean;
}

const both = (c: Omit<NF4MatmulCase, 'mode'>): NF4MatmulCase[] => [
  { ...c, mode: 'forward' },
  { ...c, name: `${c.name} (grad-input)`, mode: 'grad-input' },
];

export const NF4_MATMUL_CASES = {
  small: [
    ...both({ name: '1x1x1', m: 1, n: 1, k: 1, dtype: 'f32' }),
    ...both({ name: '17x33x65 odd sizes', m: 17, n: 33, k: 65, dtype: 'f32' }),
    ...both({ name: '9x40x96 double quant, blocks straddle rows', m: 9, n: 40, k: 96, doubleQuant: true, dtype: 'f32' }),
    ...both({ name: '8x24x128 alpha 0.5 accumulate', m: 8, n: 24, k: 128, alpha: 0.5, accumulate: true, dtype: 'f32' }),
  ],
  full: [] as NF4MatmulCase[],
};
NF4_MATMUL_CASES.full = [
  ...NF4_MATMUL_CASES.small,
  ...both({ name: '17x33x65 f16', m: 17, n: 33, k: 65, dtype: 'f16' }),
  ...both({ name: '64x96x256 block 128, double quant', m: 64, n: 96, k: 256, blockSize: 128, doubleQuant: true, dtype: 'f32' }),
  ...both({ name: '64x96x256 double quant f16', m: 64, n: 96, k: 256, doubleQuant: true, dtype: 'f16' }),
  ...both({ name: 'large 256x1024x1024 double quant', m: 256, n: 1024, k: 1024, doubleQuant: true, dtype: 'f32' }),
];

export const NF4_MATMUL_TOLERANCE = { f32: { atol: 2e-5, rtol: 2e-5 }, f16: { atol: 2e-3, rtol: 2e-3 } } as const;

export async function runNF4MatmulCase(ctx: GpuContext, c: NF4MatmulCase): Promise<Check> {
  const roundTo = (x: Float32Array) => (c.dtype === 'f16' ? fromF16Bits(toF16Bits(x)) : x);
  const seed = c.m * 31 + c.n * 17 + c.k;
  const weight = randn(c.n * c.k, seed, 0.05);
  const q = quantizeNF4(weight, { shape: [c.n, c.k], blockSize: c.blockSize ?? 64, doubleQuant: c.doubleQuant });
  const [inCols, outCols] = c.mode === 'forward' ? [c.k, c.n] : [c.n, c.k];
  const input = roundTo(randn(c.m * inCols, seed + 1));
  const initial = roundTo(randn(c.m * outCols, seed + 2));

  ctx.device.pushErrorScope('validation');
  const w = uploadNF4(ctx, q);
  const kernel = await createNF4MatmulKernel(ctx, {
    mode: c.mode, dtype: c.dtype, accumulate: c.accumulate, blockSize: q.blockSize, doubleQuant: q.scales.doubleQuant,
  });
  const x = createTensor(ctx, { shape: [c.m, inCols], dtype: c.dtype, data: input, label: 'input' });
  const y = createTensor(ctx, { shape: [c.m, outCols], dtype: c.dtype, data: initial, label: 'output' });
  const recorder = new CommandRecorder(ctx, c.name);
  kernel.encode(recorder, { weight: w, input: x, output: y, m: c.m, alpha: c.alpha });
  recorder.submit();
  const got = await readF32(ctx, y);
  const validation = await ctx.device.popErrorScope();
  for (const t of [x, y]) t.release();
  w.release();

  const product = c.mode === 'forward' ? nf4MatmulRef(input, q, c.m) : nf4GradInputRef(input, q, c.m);
  const expected = product.map((v, i) => (c.alpha ?? 1) * v + (c.accumulate ? initial[i]! : 0));
  const tol = NF4_MATMUL_TOLERANCE[c.dtype];
  const r = worstError(got, roundTo(expected), tol.atol * Math.sqrt(inCols), tol.rtol);
  return { name: `${c.mode}: ${c.name}`, ok: r.ratio <= 1 && !validation, detail: validation ? validation.message : JSON.stringify(r) };
}
