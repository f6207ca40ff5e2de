/**
 * The matmul test table, shared by the gpu lane (Vitest + Dawn) and the browser lane
 * (Playwright page and worker). `small` is what SwiftShader can run in seconds.
 */
import { createMatmulKernel, createTensor, CommandRecorder, readF32, matmulRef, toF16Bits, fromF16Bits, type GpuContext } from '../../src/index.js';
import { captureDispatches } from '../capture.js';
import { randn, worstError } from '../random.js';
import { f32, type EncodedTensor } from '../fixtures.js';
import matmulJson from '../fixtures/matmul.json';

export interface MatmulCase {
  name: string;
  m: number;
  n: number;
  k: number;
  batch?: number;
  transA?: boolean;
  transB?: boolean;
  accumulate?: boolean;
  alpha?: number;
  /** Share A across the batch (stride 0). */
  broadcastA?: boolean;
  /** Share B across the batch (stride 0). */
  broadcastB?: boolean;
  dtype: 'f32' | 'f16';
  /**
   * Operands as blocks of larger tensors: batch 0 of each starts `offset` elements in and batches
   * are `gap` elements apart beyond their dense size (the matmul's offsetA/strideA, ...). C's
   * elements outside the blocks must come back untouched.
   */
  blocks?: { offsetA: number; offsetB: number; offsetC: number; gapA: number; gapB: number; gapC: number };
  /**
   * Elements past the end of each stored row (the matmul's lda, ldb, ldc = row length + pad): rows
   * padded, or columns of a wider matrix. C's padding must come back untouched.
   */
  pad?: { a: number; b: number; c: number };
  /** Operands and expected result from PyTorch (scripts/make_matmul_fixtures.py) instead of randn and matmulRef. */
  fixture?: MatmulFixture;
}

interface MatmulFixture {
  a: EncodedTensor;
  b: EncodedTensor;
  c0?: EncodedTensor;
  /** alpha op(A) op(B) (+ c0) in float64 from the stored operands, and from them rounded to f16. */
  expected: EncodedTensor;
  expectedF16: EncodedTensor;
}

const matmulFixture = matmulJson as unknown as { generatedBy: string; cases: (Omit<MatmulCase, 'dtype' | 'fixture'> & MatmulFixture)[] };

/** The PyTorch cases: at matmul-tiled's tile edges (64 x 64 outputs, K 16 at a time), shared operands. */
function fixtureCases(dtype: 'f32' | 'f16'): MatmulCase[] {
  return matmulFixture.cases.map(({ a, b, c0, expected, expectedF16, ...shape }) => ({
    ...shape,
    name: `${shape.name} (PyTorch)${dtype === 'f16' ? ' f16' : ''}`,
    dtype,
    fixture: { a, b, c0, expected, expectedF16 },
  }));
}

/** f32: accumulation order differs from the float64 reference; f16: outputs are rounded to f16. */
export const MATMUL_TOLERANCE = { f32: { atol: 2e-5, rtol: 2e-5 }, f16: { atol: 2e-3, rtol: 2e-3 } } as const;

const both = (c: Omit<MatmulCase, 'dtype'>): MatmulCase[] => [
  { ...c, dtype: 'f32' },
  { ...c, name: `${c.name} f16`, dtype: 'f16' },
];

const small: MatmulCase[] = [
  { name: '1x1x1', m: 1, n: 1, k: 1, dtype: 'f32' },
  { name: '17x33x65 odd sizes', m: 17, n: 33, k: 65, dtype: 'f32' },
  { name: '17x33x65 A^T', m: 17, n: 33, k: 65, transA: true, dtype: 'f32' },
  { name: '17x33x65 B^T', m: 17, n: 33, k: 65, transB: true, dtype: 'f32' },
  { name: '17x33x65 A^T B^T alpha 0.5 accumulate', m: 17, n: 33, k: 65, transA: true, transB: true, alpha: 0.5, accumulate: true, dtype: 'f32' },
  { name: 'batched 3x 9x10x11', m: 9, n: 10, k: 11, batch: 3, dtype: 'f32' },
  { name: 'batched 4x 5x7x6, shared B^T', m: 5, n: 7, k: 6, batch: 4, transB: true, broadcastB: true, dtype: 'f32' },
  { name: '64x64x64', m: 64, n: 64, k: 64, dtype: 'f32' },
  // Multiples of 4 (the vec4 kernel); M = 12 leaves half of the last 8-row block empty.
  { name: '12x8x16 A^T B^T alpha 2 accumulate', m: 12, n: 8, k: 16, transA: true, transB: true, alpha: 2, accumulate: true, dtype: 'f32' },
  { name: 'batched 3x 20x12x8 A^T', m: 20, n: 12, k: 8, batch: 3, transA: true, dtype: 'f32' },
  { name: 'batched 2x 13x16x24, shared B^T', m: 13, n: 16, k: 24, batch: 2, transB: true, broadcastB: true, dtype: 'f32' },
  // Blocks of larger tensors (offsets and strides): attention's backward multiplies rows of heads
  // this way. Quad-aligned (the vec4 kernel) and not (the scalar one).
  { name: 'blocks 3x 8x12x16 B^T', m: 8, n: 12, k: 16, batch: 3, transB: true, blocks: { offsetA: 32, offsetB: 8, offsetC: 12, gapA: 64, gapB: 4, gapC: 20 }, dtype: 'f32' },
  { name: 'blocks 2x 12x8x20 A^T accumulate alpha 0.5', m: 12, n: 8, k: 20, batch: 2, transA: true, accumulate: true, alpha: 0.5, blocks: { offsetA: 4, offsetB: 40, offsetC: 16, gapA: 12, gapB: 0, gapC: 8 }, dtype: 'f32' },
  { name: 'blocks 2x 7x5x9', m: 7, n: 5, k: 9, batch: 2, blocks: { offsetA: 3, offsetB: 5, offsetC: 7, gapA: 1, gapB: 2, gapC: 3 }, dtype: 'f32' },
  // Padded rows (lda, ldb, ldc beyond the row length): odd pads (the scalar kernel), and pads in
  // quads (the vec4 kernel reads them too).
  { name: 'padded rows 2x 9x10x11', m: 9, n: 10, k: 11, batch: 2, pad: { a: 3, b: 5, c: 2 }, dtype: 'f32' },
  { name: 'padded rows 12x8x16 A^T B^T accumulate, quad pads', m: 12, n: 8, k: 16, transA: true, transB: true, accumulate: true, pad: { a: 4, b: 8, c: 4 }, dtype: 'f32' },
  // matmul-tiled's tile edges, with PyTorch's results (scripts/make_matmul_fixtures.py).
  ...fixtureCases('f32'),
];

const full: MatmulCase[] = [
  ...small.flatMap((c) => (c.fixture ? [c] : both(c))),
  ...fixtureCases('f16'),
  ...both({ name: '1x1x1 B^T', m: 1, n: 1, k: 1, transB: true }),
  ...both({ name: '3x1x2 A^T', m: 3, n: 1, k: 2, transA: true }),
  ...both({ name: '127x129x131', m: 127, n: 129, k: 131 }),
  ...both({ name: '256x512x384 A^T', m: 256, n: 512, k: 384, transA: true }),
  ...both({ name: 'large 512x1024x768 B^T', m: 512, n: 1024, k: 768, transB: true }),
  // matmul-subgroup-wide (M >= 32 under tuning 'subgroup') at its 32-row and 64-row edges, with
  // every flag, shared operands and blocks of larger tensors.
  ...both({ name: 'batched 2x 45x36x20 A^T B^T alpha 0.5 accumulate', m: 45, n: 36, k: 20, batch: 2, transA: true, transB: true, alpha: 0.5, accumulate: true }),
  ...both({ name: 'batched 3x 33x7x9, shared A', m: 33, n: 7, k: 9, batch: 3, broadcastA: true }),
  ...both({ name: '97x70x3 B^T accumulate', m: 97, n: 70, k: 3, transB: true, accumulate: true }),
  ...both({ name: 'blocks 2x 40x12x16 A^T', m: 40, n: 12, k: 16, batch: 2, transA: true, blocks: { offsetA: 5, offsetB: 3, offsetC: 9, gapA: 7, gapB: 1, gapC: 11 } }),
  // Padded rows on every kernel, with every transpose, blocks and shared operands.
  ...both({ name: 'padded rows 40x36x24 B^T, quad pads', m: 40, n: 36, k: 24, transB: true, pad: { a: 8, b: 4, c: 12 } }),
  ...both({ name: 'padded rows 68x40x32 A^T, quad pads', m: 68, n: 40, k: 32, transA: true, pad: { a: 4, b: 12, c: 8 } }),
  ...both({ name: 'padded rows blocks 2x 33x20x17 A^T accumulate alpha 0.5', m: 33, n: 20, k: 17, batch: 2, transA: true, accumulate: true, alpha: 0.5, pad: { a: 1, b: 2, c: 3 }, blocks: { offsetA: 2, offsetB: 5, offsetC: 4, gapA: 3, gapB: 1, gapC: 6 } }),
  ...both({ name: 'padded rows 2x 70x9x40 B^T, shared B', m: 70, n: 9, k: 40, batch: 2, transB: true, broadcastB: true, pad: { a: 5, b: 16, c: 7 } }),
  ...both({ name: 'padded rows 3x 8x12x5 A^T B^T, shared A', m: 8, n: 12, k: 5, batch: 3, transA: true, transB: true, broadcastA: true, pad: { a: 9, b: 1, c: 0 } }),
];

export const MATMUL_CASES = { small, full } as const;

/**
 * matmulRef on the PyTorch cases, as a float32 array per case with PyTorch's result beside it: the
 * randn cases trust matmulRef, so it is checked against PyTorch here.
 */
export function matmulRefOnFixtures(): { name: string; got: Float32Array; expected: Float32Array }[] {
  return fixtureCases('f32').map((c) => {
    const batch = c.batch ?? 1;
    const got = matmulRef(f32(c.fixture!.a), f32(c.fixture!.b), {
      m: c.m, n: c.n, k: c.k, batch, transA: c.transA, transB: c.transB, alpha: c.alpha,
      strideA: c.broadcastA ? 0 : c.m * c.k,
      strideB: c.broadcastB ? 0 : c.k * c.n,
      accumulate: c.fixture!.c0 ? f32(c.fixture!.c0) : undefined,
    });
    return { name: c.name, got, expected: f32(c.fixture!.expected) };
  });
}

export interface CaseResult {
  name: string;
  worst: ReturnType<typeof worstError>;
  validationError: string | null;
  /** The kernels the case dispatched (the tests check which variant ran). */
  kernels: string[];
  /** Their override constants (which form of a kernel ran). */
  constants: Readonly<Record<string, number | boolean>>[];
}

export async function runMatmulCase(ctx: GpuContext, c: MatmulCase): Promise<CaseResult> {
  const batch = c.batch ?? 1;
  const seed = c.m * 7919 + c.n * 104729 + c.k * 13 + batch;
  const roundTo = (x: Float32Array) => (c.dtype === 'f16' ? fromF16Bits(toF16Bits(x)) : x);
  const fx = c.fixture;
  const bl = c.blocks ?? { offsetA: 0, offsetB: 0, offsetC: 0, gapA: 0, gapB: 0, gapC: 0 };
  const pad = c.pad ?? { a: 0, b: 0, c: 0 };
  // Each operand as stored: `rows` rows of `cols`, `ld` apart; batches `stride` apart from `offset`.
  const layout = (rows: number, cols: number, padding: number, offset: number, gap: number, shared = false) => {
    const ld = cols + padding;
    const stride = shared ? 0 : rows * ld + gap;
    return {
      ld, stride,
      size: offset + stride * (batch - 1) + (rows - 1) * ld + cols,
      /** Where element i of the dense [batches, rows, cols] sits in the stored tensor (one batch when shared). */
      at: (i: number) => offset + Math.floor(i / (rows * cols)) * stride + Math.floor((i % (rows * cols)) / cols) * ld + (i % cols),
      dense: rows * cols * (shared ? 1 : batch),
    };
  };
  const la = c.transA ? layout(c.k, c.m, pad.a, bl.offsetA, bl.gapA, c.broadcastA) : layout(c.m, c.k, pad.a, bl.offsetA, bl.gapA, c.broadcastA);
  const lb = c.transB ? layout(c.n, c.k, pad.b, bl.offsetB, bl.gapB, c.broadcastB) : layout(c.k, c.n, pad.b, bl.offsetB, bl.gapB, c.broadcastB);
  const lc = layout(c.m, c.n, pad.c, bl.offsetC, bl.gapC);
  const a = roundTo(fx ? f32(fx.a) : randn(la.size, seed));
  const b = roundTo(fx ? f32(fx.b) : randn(lb.size, seed + 1));
  const c0 = roundTo(fx?.c0 ? f32(fx.c0) : randn(lc.size, seed + 2));
  const gather = (stored: Float32Array, l: typeof la) => Float32Array.from({ length: l.dense }, (_, i) => stored[l.at(i)]!);

  ctx.device.pushErrorScope('validation');
  const kernel = await createMatmulKernel(ctx, { dtype: c.dtype, transA: c.transA, transB: c.transB, accumulate: c.accumulate });
  const ta = createTensor(ctx, { shape: [a.length], dtype: c.dtype, data: a, label: 'A' });
  const tb = createTensor(ctx, { shape: [b.length], dtype: c.dtype, data: b, label: 'B' });
  const tc = createTensor(ctx, { shape: [c0.length], dtype: c.dtype, data: c0, label: 'C' });
  const recorder = new CommandRecorder(ctx, c.name);
  const dispatched = await captureDispatches(ctx, () => kernel.encode(recorder, {
    a: ta, b: tb, c: tc, m: c.m, n: c.n, k: c.k, batch, alpha: c.alpha, strideA: la.stride, strideB: lb.stride,
    ...(c.blocks ? { strideC: lc.stride, offsetA: bl.offsetA, offsetB: bl.offsetB, offsetC: bl.offsetC } : {}),
    ...(c.pad ? { lda: la.ld, ldb: lb.ld, ldc: lc.ld } : {}),
  }));
  recorder.submit();
  const got = await readF32(ctx, tc);
  const validation = await ctx.device.popErrorScope();
  for (const t of [ta, tb, tc]) t.release();

  // The reference multiplies dense copies of the blocks the kernel was pointed at.
  const product = fx
    ? f32(c.dtype === 'f16' ? fx.expectedF16 : fx.expected)
    : matmulRef(gather(a, la), gather(b, lb), {
        m: c.m, n: c.n, k: c.k, batch, transA: c.transA, transB: c.transB, alpha: c.alpha,
        strideA: c.broadcastA ? 0 : undefined, strideB: c.broadcastB ? 0 : undefined,
        accumulate: c.accumulate ? gather(c0, lc) : undefined,
      });
  // Outside the blocks (and in row padding), C keeps what it held.
  const expected = Float32Array.from(c0);
  product.forEach((value, i) => { expected[lc.at(i)] = value; });
  const tol = MATMUL_TOLERANCE[c.dtype];
  return { name: c.name, worst: worstError(got, roundTo(expected), tol.atol * Math.sqrt(c.k), tol.rtol), validationError: validation?.message ?? null, kernels: dispatched.map((d) => d.kernel), constants: dispatched.map((d) => d.constants) };
}
