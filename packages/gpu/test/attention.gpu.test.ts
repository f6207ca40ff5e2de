/**
 * RoPE, causal attention (forward + backward, with and without the lse's gradient), the lse merge
 * of two attentions (forward + backward) and cross-entropy on Dawn against PyTorch
 * (scripts/make_attention_fixtures.py: HF transformers' formulas in plain torch, autograd for the
 * gradients). f32 against torch's f32, and f16 storage (f32 arithmetic) against torch's f32 on the
 * float16-rounded inputs, outputs rounded to float16; tolerances below say what differs.
 */
import { describe, expect, it } from 'vitest';
import {
  attentionMatmulScratchSizes, CommandRecorder, createTensor, readF32, readTensor, type AttentionMatmulScratch, type GpuContext, type GpuTensor,
} from '../src/index.js';
import { InvalidArgumentError } from '@webtune/errors';
import { createAttentionKernels } from '../src/kernels/attention.js';
import { createCrossEntropyKernel, IGNORE_INDEX } from '../src/kernels/cross-entropy.js';
import { createRopeKernel, ropeTables } from '../src/kernels/rope.js';
import {
  attentionFixture, f16, f16Bits,
  type AttentionCase, type AttentionF16Case, type CrossEntropyCase, type CrossEntropyF16Case, type MergeCase, type RopeCase, type RopeF16Case,
  type F16Tensor,
} from './attention-fixtures.js';
import { capturedKernels } from './capture.js';
import { f32 } from './fixtures.js';
import { nodeContext, useNodeContext } from './node-context.js';
import { worstError } from './random.js';

const gpu = useNodeContext();

/**
 * inv_freq: torch's vectorized powf is not always correctly rounded (1 ulp off for some dims,
 * none of the fixture's), so allow one float32 ulp. cos/sin: torch's float32 cosf/sinf against
 * float64 rounded to float32, one ulp of the result, plus what a one-ulp inv_freq difference does
 * to the angle at position p (p * inv_freq * 2^-23).
 */
const INV_FREQ_RTOL = 2 ** -23;
const tableAtol = (position: number) => 1.2e-7 + position * 2 ** -23;
/** RoPE on the GPU: two products and a sum per element, with or without an FMA. */
const ROPE_TOL = { atol: 1e-6, rtol: 1e-6 };
/** Attention: f32 against f32 with a different summation order (online softmax over tiles). */
const ATTENTION_TOL = { atol: 2e-6, rtol: 1e-4 };
/** Gradients sum over up to seq * group terms; scale atol with sqrt of that. */
const gradTol = (c: { seqKV: number; heads: number; kvHeads: number }) => ({ atol: 2e-6 * Math.sqrt(c.seqKV * (c.heads / c.kvHeads)), rtol: 1e-4 });
/** Cross-entropy: lse over up to 50257 terms (pairwise tree here, vectorized sum in torch). */
const CE_LOSS_TOL = { atol: 1e-5, rtol: 1e-5 };
const CE_GRAD_TOL = { atol: 1e-8, rtol: 1e-4 };
/**
 * f16 outputs: both sides are the same f32 computation (up to the f32 differences above) rounded
 * to float16, which can land one f16 ulp apart (at most 2^-10 of the value, so rtol 1e-3), plus the
 * f32 tests' atol for results near zero. Cross-entropy's gradient needs atol 2^-24, the spacing of
 * f16 subnormals, as most of a 1000-way softmax / 7 lies below f16's smallest normal (6.1e-5).
 * lse and losses are f32 from the same rounded inputs: the f32 tolerances.
 */
const F16_RTOL = 1e-3;
const ROPE_F16_TOL = { atol: ROPE_TOL.atol, rtol: F16_RTOL };
const ATTENTION_F16_TOL = { atol: ATTENTION_TOL.atol, rtol: F16_RTOL };
const gradF16Tol = (c: AttentionF16Case) => ({ atol: gradTol(c).atol, rtol: F16_RTOL });
const CE_GRAD_F16_TOL = { atol: 2 ** -24, rtol: F16_RTOL };
/**
 * merge: out and the output gradients are a couple of f32 products and a sum on both sides, but
 * torch's 1 - w is a subtraction where the kernel's is not (off by up to 2^-25 absolute next to
 * w = 1), times |outB| or |upstream| (< 5): atol 5e-7. The lse gradients sum headDim products in a
 * different order (torch: g sum(dO outA) - sum(dO outB); here sum(dO (g outA - outB))), and the
 * gate's heads * headDim: atol 1e-6 sqrt(terms) as gradTol, rtol 1e-5. f16 outputs: F16_RTOL.
 */
const MERGE_TOL = { atol: 5e-7, rtol: 1e-5 };
const mergeSumTol = (terms: number) => ({ atol: 1e-6 * Math.sqrt(terms), rtol: 1e-5 });
const MERGE_F16_TOL = { atol: MERGE_TOL.atol, rtol: F16_RTOL };

function expectClose(name: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: { atol: number; rtol: number }): void {
  const r = worstError(got, want, tol.atol, tol.rtol);
  expect(r.ratio, `${name}: ${JSON.stringify(r)}`).toBeLessThanOrEqual(1);
}

async function withValidation<T>(ctx: GpuContext, body: () => Promise<T>): Promise<T> {
  ctx.device.pushErrorScope('validation');
  const result = await body();
  const error = await ctx.device.popErrorScope();
  expect(error?.message).toBeUndefined();
  return result;
}

function tensor(ctx: GpuContext, label: string, shape: number[], data?: Float32Array): GpuTensor {
  return createTensor(ctx, { shape, label, data });
}

describe('ropeTables against HF transformers (PyTorch)', () => {
  for (const c of attentionFixture.rope) {
    it(c.name, () => {
      const half = c.headDim / 2;
      const tables = ropeTables({ headDim: c.headDim, theta: c.theta, scaling: c.scaling, positions: c.positions });
      expect(tables.attentionScaling).toBe(1);
      expect(tables.cos.length).toBe(c.positions * half);
      expectClose('invFreq', tables.invFreq, f32(c.invFreq), { atol: 0, rtol: INV_FREQ_RTOL });
      const cos = f32(c.cos);
      const sin = f32(c.sin);
      c.samplePositions.forEach((p, row) => {
        if (p >= c.positions) return;
        const at = (t: Float32Array, base: number) => t.subarray(base, base + half);
        expectClose(`cos at ${p}`, at(tables.cos, p * half), at(cos, row * half), { atol: tableAtol(p), rtol: 0 });
        expectClose(`sin at ${p}`, at(tables.sin, p * half), at(sin, row * half), { atol: tableAtol(p), rtol: 0 });
      });
    });
  }

  it('refuses odd head dims, empty tables and bad llama3 factors', () => {
    expect(() => ropeTables({ headDim: 15, theta: 1e4, scaling: { type: 'default' }, positions: 4 })).toThrowError(InvalidArgumentError);
    expect(() => ropeTables({ headDim: 16, theta: 1e4, scaling: { type: 'default' }, positions: 0 })).toThrowError(InvalidArgumentError);
    const bad = { type: 'llama3' as const, factor: 8, lowFreqFactor: 4, highFreqFactor: 1, originalMaxPositionEmbeddings: 8192 };
    expect(() => ropeTables({ headDim: 16, theta: 1e4, scaling: bad, positions: 4 })).toThrowError(InvalidArgumentError);
  });
});

/**
 * Rotates in place with one form of the kernel and returns x, checking which form ran: vec4 where
 * headDim / 2 is a multiple of 4 (every fixture's head size) unless `vec4: false` forces the
 * scalar form, which other head sizes take.
 */
async function runRope(ctx: GpuContext, c: RopeCase, input: Float32Array, inverse: boolean, vec4: boolean): Promise<Float32Array> {
  const rope = await createRopeKernel(ctx, { vec4 });
  const half = c.headDim / 2;
  const positions = c.seqLen + c.positionOffset;
  const tables = ropeTables({ headDim: c.headDim, theta: c.theta, scaling: c.scaling, positions });
  const x = tensor(ctx, 'rope x', [c.rows, c.heads * c.headDim], input);
  const cos = tensor(ctx, 'rope cos', [positions, half], tables.cos);
  const sin = tensor(ctx, 'rope sin', [positions, half], tables.sin);
  const kernels = await capturedKernels(ctx, () => {
    const rec = new CommandRecorder(ctx, `rope ${c.name}`);
    rope.apply(rec, { x, cos, sin, rows: c.rows, heads: c.heads, headDim: c.headDim, seqLen: c.seqLen, positionOffset: c.positionOffset, inverse });
    rec.submit();
  });
  expect(kernels).toEqual([vec4 && half % 4 === 0 ? 'rope-vec4' : 'rope']);
  const out = await readF32(ctx, x);
  for (const t of [x, cos, sin]) t.release();
  return out;
}

describe('RoPE on Dawn against apply_rotary_pos_emb and its autograd', () => {
  for (const c of attentionFixture.rope) {
    for (const vec4 of [true, false]) {
      it(`${c.name}: rotate, and the inverse rotation is the backward (${vec4 ? 'vec4' : 'scalar'} form)`, async () => {
        await withValidation(gpu(), async () => {
          expectClose('rotated', await runRope(gpu(), c, f32(c.x), false, vec4), f32(c.rotated), ROPE_TOL);
          expectClose('grad x', await runRope(gpu(), c, f32(c.upstream), true, vec4), f32(c.gradX), ROPE_TOL);
        });
      });
    }
  }

  it('refuses tables that do not cover the positions, and a short x, naming the shapes', async () => {
    const ctx = gpu();
    const rope = await createRopeKernel(ctx);
    const x = tensor(ctx, 'x', [6, 32]);
    const table = tensor(ctx, 'cos', [8, 8]);
    const rec = new CommandRecorder(ctx, 'bad rope');
    const args = { x, cos: table, sin: table, rows: 6, heads: 2, headDim: 16, seqLen: 6 };
    expect(() => rope.apply(rec, { ...args, positionOffset: 3 })).toThrow(/cover.*position 8.*\[8, 8\]/);
    expect(() => rope.apply(rec, { ...args, rows: 7 })).toThrowError(InvalidArgumentError);
    expect(() => rope.apply(rec, { ...args, rows: 7 })).toThrow(/7 x 32.*\[6, 32\]/);
    expect(() => rope.apply(rec, { ...args, headDim: 15 })).toThrowError(InvalidArgumentError);
    rec.submit();
    for (const t of [x, table]) t.release();
  });
});

type AnyAttentionCase = AttentionCase | AttentionF16Case;

/** k/v rows of a backward case: the backward reads seqKV rows per batch and has no spare capacity. */
function backwardKvRows(c: AnyAttentionCase): number {
  expect(c.kvCapacity, `${c.name}: backward cases have kvCapacity == seqKV`).toBe(c.seqKV);
  return c.batch * c.seqKV;
}

/**
 * The backward's seqKV and positionOffset for a prefix case; self-attention cases leave both to
 * their defaults, as the callers written before prefixes existed do.
 */
function prefixArgs(c: AnyAttentionCase): { seqKV?: number; positionOffset?: number } {
  return c.seqKV === c.seqQ && c.positionOffset === 0 ? {} : { seqKV: c.seqKV, positionOffset: c.positionOffset };
}

interface AttentionRun {
  out: Float32Array;
  lse: Float32Array;
  dq?: Float32Array;
  dk?: Float32Array;
  dv?: Float32Array;
}

/** A valid f32 backward of batch 2 x seq 5, heads 4/2, headDim 16: what the refusal tests vary. */
function smallBackwardArgs(ctx: GpuContext) {
  const t = (shape: number[], label: string) => tensor(ctx, label, shape);
  return {
    q: t([10, 64], 'q'), k: t([10, 32], 'k'), v: t([10, 32], 'v'), out: t([10, 64], 'out'), lse: t([2, 4, 5], 'lse'),
    gradOutput: t([10, 64], 'dO'), gradQ: t([10, 64], 'dQ'), gradK: t([10, 32], 'dK'), gradV: t([10, 32], 'dV'), delta: t([2, 4, 5], 'delta'),
    batch: 2, seq: 5, heads: 4, kvHeads: 2, headDim: 16, scale: 0.25,
  };
}

/**
 * The two paths: the flash kernels, and matmuls over blocks of queries when the caller lends f32
 * scratch (kernels/attention-matmul.ts), forward and backward. Every training case (kvCapacity =
 * seqKV), f32 and f16, runs both.
 */
const ATTENTION_PATHS = ['flash', 'matmul'] as const;
type AttentionPath = (typeof ATTENTION_PATHS)[number];

/**
 * The results came from the matmul path: the forward wrote the scores and the head-layout output
 * (in scratch.gradOutput), the backward dV's head layout; the flash kernels leave them NaN.
 */
async function expectMatmulPathRan(ctx: GpuContext, scratch: AttentionMatmulScratch, withBackward: boolean): Promise<void> {
  const written = withBackward ? (['scores', 'gradV'] as const) : (['scores', 'gradOutput'] as const);
  for (const name of written) {
    const values = await readF32(ctx, scratch[name]);
    expect(Number.isNaN(values[0]!), `scratch.${name} untouched: the flash kernels ran`).toBe(false);
  }
}

/** The matmul path's scratch, NaN-filled so a value read before it is written shows. */
function matmulScratch(ctx: GpuContext, c: AnyAttentionCase): AttentionMatmulScratch {
  const sizes = attentionMatmulScratchSizes({ batch: c.batch, seq: c.seqQ, seqKV: c.seqKV, heads: c.heads, headDim: c.headDim });
  return Object.fromEntries(Object.entries(sizes).map(([name, size]) =>
    [name, tensor(ctx, `scratch ${name}`, [size], new Float32Array(size).fill(Number.NaN))])) as unknown as AttentionMatmulScratch;
}

async function runAttention(ctx: GpuContext, c: AttentionCase, withBackward: boolean, path: AttentionPath = 'flash'): Promise<AttentionRun> {
  const attention = await createAttentionKernels(ctx);
  const qCols = c.heads * c.headDim;
  const kvCols = c.kvHeads * c.headDim;
  const tokens = c.batch * c.seqQ;
  const q = tensor(ctx, 'q', [tokens, qCols], f32(c.q));
  const k = tensor(ctx, 'k', [c.batch * c.kvCapacity, kvCols], f32(c.k));
  const v = tensor(ctx, 'v', [c.batch * c.kvCapacity, kvCols], f32(c.v));
  const out = tensor(ctx, 'out', [tokens, qCols]);
  const lse = tensor(ctx, 'lse', [c.batch, c.heads, c.seqQ]);
  const scratch = path === 'matmul' ? matmulScratch(ctx, c) : undefined;
  const temporaries = [q, k, v, out, lse, ...(scratch ? Object.values(scratch) : [])];
  const rec = new CommandRecorder(ctx, `attention ${c.name}`);
  attention.forward(rec, {
    q, k, v, out, lse, batch: c.batch, seqQ: c.seqQ, seqKV: c.seqKV, kvCapacity: c.kvCapacity,
    heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, scale: c.scale, positionOffset: c.positionOffset, ...(scratch ? { scratch } : {}),
  });
  const grads: GpuTensor[] = [];
  if (withBackward) {
    const kvRows = backwardKvRows(c);
    const gradOutput = tensor(ctx, 'dO', [tokens, qCols], f32(c.upstream!));
    // NaN-filled, so a row the kernels forget to write fails the comparison.
    const gradQ = tensor(ctx, 'dQ', [tokens, qCols], new Float32Array(tokens * qCols).fill(Number.NaN));
    const gradK = tensor(ctx, 'dK', [kvRows, kvCols], new Float32Array(kvRows * kvCols).fill(Number.NaN));
    const gradV = tensor(ctx, 'dV', [kvRows, kvCols], new Float32Array(kvRows * kvCols).fill(Number.NaN));
    const delta = tensor(ctx, 'delta', [c.batch, c.heads, c.seqQ]);
    const gradLse = c.upstreamLse ? tensor(ctx, 'dLse', [c.batch, c.heads, c.seqQ], f32(c.upstreamLse)) : undefined;
    temporaries.push(gradOutput, delta, ...(gradLse ? [gradLse] : []));
    grads.push(gradQ, gradK, gradV);
    attention.backward(rec, {
      q, k, v, out, lse, gradOutput, gradQ, gradK, gradV, delta, ...(gradLse ? { gradLse } : {}), ...(scratch ? { scratch } : {}),
      batch: c.batch, seq: c.seqQ, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, scale: c.scale, ...prefixArgs(c),
    });
  }
  rec.submit();
  const result: AttentionRun = { out: await readF32(ctx, out), lse: await readF32(ctx, lse) };
  if (withBackward) {
    [result.dq, result.dk, result.dv] = await Promise.all(grads.map((g) => readF32(ctx, g)));
  }
  if (scratch) await expectMatmulPathRan(ctx, scratch, withBackward);
  for (const t of [...temporaries, ...grads]) t.release();
  return result;
}

describe('causal attention on Dawn against HF eager attention (PyTorch autograd)', () => {
  for (const c of attentionFixture.attention) {
    const backward = c.dq !== undefined;
    for (const path of c.kvCapacity === c.seqKV ? ATTENTION_PATHS : (['flash'] as const)) {
      it(`${c.name}: forward${backward ? ' + backward' : ''} (${path})`, async () => {
        const r = await withValidation(gpu(), () => runAttention(gpu(), c, backward, path));
        expectClose('out', r.out, f32(c.out), ATTENTION_TOL);
        expectClose('lse', r.lse, f32(c.lse), ATTENTION_TOL);
        if (backward) {
          expectClose('dq', r.dq!, f32(c.dq!), gradTol(c));
          expectClose('dk', r.dk!, f32(c.dk!), gradTol(c));
          expectClose('dv', r.dv!, f32(c.dv!), gradTol(c));
        }
      });
    }
  }

  for (const path of ATTENTION_PATHS) {
    it(`backward (${path}) is deterministic: two runs agree bit for bit`, async () => {
      const c = attentionFixture.attention.find((a) => a.dq && a.seqQ > 100)!;
      const [a, b] = [await runAttention(gpu(), c, true, path), await runAttention(gpu(), c, true, path)];
      for (const name of ['out', 'lse', 'dq', 'dk', 'dv'] as const) {
        expect(Buffer.from(a[name]!.buffer).equals(Buffer.from(b[name]!.buffer)), name).toBe(true);
      }
    });
  }

  it('refuses matmul scratch that is short, shared with an input, or lent to KV-cache decoding', async () => {
    const ctx = gpu();
    const attention = await createAttentionKernels(ctx);
    const t = (shape: number[], label = 't') => tensor(ctx, label, shape);
    const bwd = smallBackwardArgs(ctx);
    const sizes = attentionMatmulScratchSizes(bwd);
    // Keys are repeated per query head: 2 x 4 heads x 5 rows x 16; scores: two 5 x 5 blocks per (batch, head).
    expect(sizes).toEqual({ q: 640, gradOutput: 640, k: 640, v: 640, gradK: 640, gradV: 640, scores: 400 });
    const scratch = Object.fromEntries(Object.entries(sizes).map(([n, size]) => [n, t([size], `s.${n}`)])) as unknown as AttentionMatmulScratch;
    const rec = new CommandRecorder(ctx, 'bad scratch');
    expect(() => attention.backward(rec, { ...bwd, scratch })).not.toThrow();
    expect(() => attention.backward(rec, { ...bwd, scratch: { ...scratch, scores: t([399], 'short') } }))
      .toThrow(/scratch.scores "short" must be f32 with at least 400 elements \(batch 2, heads 4, seq 5, seqKV 5, headDim 16; attentionMatmulScratchSizes/);
    expect(() => attention.backward(rec, { ...bwd, scratch: { ...scratch, v: scratch.k } })).toThrow(/scratch.k "s.k" and scratch.v "s.k" are the same buffer/);
    expect(() => attention.backward(rec, { ...bwd, scratch: { ...scratch, q: bwd.q } })).toThrow(/scratch.q "q" and q "q" are the same buffer/);
    const fwd = { q: bwd.q, k: bwd.k, v: bwd.v, out: bwd.out, lse: bwd.lse, batch: 2, seqQ: 5, seqKV: 5, heads: 4, kvHeads: 2, headDim: 16, scale: 0.25 };
    expect(() => attention.forward(rec, { ...fwd, scratch })).not.toThrow();
    expect(() => attention.forward(rec, { ...fwd, scratch: { ...scratch, scores: bwd.out } })).toThrow(/scratch.scores "out" and out "out" are the same buffer/);
    expect(() => attention.forward(rec, { ...fwd, seqQ: 1, seqKV: 4, kvCapacity: 5, positionOffset: 3, scratch }))
      .toThrow(/scratch needs kvCapacity = seqKV \(got 5 and 4\); KV-cache decoding runs the flash kernel/);
    rec.submit();
  });

  it('forward alone on the matmul path (a prefix, several blocks): out and lse, without lse', async () => {
    for (const c of [attentionFixture.attention.find((a) => a.seqQ > 128)!, attentionFixture.attentionPrefix.at(-1)!]) {
      const r = await withValidation(gpu(), () => runAttention(gpu(), c, false, 'matmul'));
      expectClose('out', r.out, f32(c.out), ATTENTION_TOL);
      expectClose('lse', r.lse, f32(c.lse), ATTENTION_TOL);
    }
  });

  it('covers several blocks of queries on the matmul path, the last one partial, with and without a prefix', () => {
    expect(attentionFixture.attention.some((c) => c.dq && c.seqQ > 2 * 64 && c.seqQ % 64 !== 0)).toBe(true);
    expect(attentionFixture.attentionPrefix.some((c) => c.seqQ > 2 * 64 && c.seqKV === c.positionOffset + c.seqQ)).toBe(true);
    expect(attentionFixture.attentionPrefix.some((c) => c.seqQ > 64 && c.seqKV > c.positionOffset + c.seqQ)).toBe(true);
    expect(attentionFixture.attentionGradLse.some((c) => c.seqQ > 2 * 64 && c.seqKV === c.positionOffset)).toBe(true);
  });

  it('forward without lse (inference) gives the same output', async () => {
    const ctx = gpu();
    const c = attentionFixture.attention.find((a) => a.positionOffset > 0)!;
    const attention = await createAttentionKernels(ctx);
    const q = tensor(ctx, 'q', [c.batch * c.seqQ, c.heads * c.headDim], f32(c.q));
    const k = tensor(ctx, 'k', [c.batch * c.kvCapacity, c.kvHeads * c.headDim], f32(c.k));
    const v = tensor(ctx, 'v', [c.batch * c.kvCapacity, c.kvHeads * c.headDim], f32(c.v));
    const out = tensor(ctx, 'out', [c.batch * c.seqQ, c.heads * c.headDim]);
    const rec = new CommandRecorder(ctx, 'attention without lse');
    attention.forward(rec, {
      q, k, v, out, batch: c.batch, seqQ: c.seqQ, seqKV: c.seqKV, kvCapacity: c.kvCapacity,
      heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, scale: c.scale, positionOffset: c.positionOffset,
    });
    rec.submit();
    expectClose('out', await readF32(ctx, out), f32(c.out), ATTENTION_TOL);
    for (const t of [q, k, v, out]) t.release();
  });

  it('refuses mismatched shapes, head counts and aliased outputs with the shapes in the message', async () => {
    const ctx = gpu();
    const attention = await createAttentionKernels(ctx);
    const t = (shape: number[], label = 't') => tensor(ctx, label, shape);
    const q = t([2 * 5, 4 * 16], 'q');
    const kv = t([2 * 5, 2 * 16], 'kv');
    const out = t([2 * 5, 4 * 16], 'out');
    const lse = t([2, 4, 5], 'lse');
    const base = { q, k: kv, v: kv, out, lse, batch: 2, seqQ: 5, seqKV: 5, heads: 4, kvHeads: 2, headDim: 16, scale: 0.25 };
    const rec = new CommandRecorder(ctx, 'bad attention');
    expect(() => attention.forward(rec, { ...base, seqQ: 6 })).toThrowError(InvalidArgumentError);
    expect(() => attention.forward(rec, { ...base, seqQ: 6 })).toThrow(/q "q" f32 \[10, 64\].*12 x 64/);
    expect(() => attention.forward(rec, { ...base, kvCapacity: 8 })).toThrow(/k "kv" f32 \[10, 32\].*16 x 32/);
    expect(() => attention.forward(rec, { ...base, seqKV: 6, kvCapacity: 5 })).toThrow(/seqKV \(6\) exceeds kvCapacity \(5\)/);
    expect(() => attention.forward(rec, { ...base, kvHeads: 3 })).toThrow(/heads \(4\) must be a multiple of kvHeads \(3\)/);
    expect(() => attention.forward(rec, { ...base, headDim: 24 })).toThrow(/headDim must be a multiple of 16/);
    expect(() => attention.forward(rec, { ...base, out: q })).toThrow(/out "q" and q "q" share a buffer/);
    expect(() => attention.forward(rec, { ...base, lse: t([2, 4, 4], 'short lse') })).toThrow(/lse "short lse" f32 \[2, 4, 4\]/);
    const grads = { gradOutput: t([10, 64]), gradQ: t([10, 64]), gradK: t([10, 32]), gradV: t([10, 32]), delta: t([2, 4, 5]) };
    const bwd = { ...base, ...grads, seq: 5 };
    expect(() => attention.backward(rec, { ...bwd, gradK: t([9, 32], 'dK') })).toThrow(/gradK "dK" f32 \[9, 32\].*10 x 32/);
    expect(() => attention.backward(rec, { ...bwd, gradV: grads.gradK })).toThrow(/share a buffer/);
    expect(() => attention.backward(rec, { ...bwd, delta: lse })).toThrowError(InvalidArgumentError);
    rec.submit();
  });
});

/** Padding past each row of logits holds this; the kernel must leave it alone. */
const PAD_SENTINEL = 7.25;

/** `pad` > 0 stores each row of a chunk `pad` elements apart beyond vocab (logitsRowStride), as the LM head does. */
async function runCrossEntropy(ctx: GpuContext, c: CrossEntropyCase, chunks: number[], pad = 0): Promise<{ losses: Float32Array; grad: Float32Array; padding: number[] }> {
  const ce = await createCrossEntropyKernel(ctx);
  const logits = f32(c.logits);
  const targets = createTensor(ctx, { shape: [c.rows], dtype: 'u32', label: 'targets', data: Uint32Array.from(c.targets) });
  const losses = tensor(ctx, 'losses', [c.rows], new Float32Array(c.rows).fill(Number.NaN));
  const grad = new Float32Array(c.rows * c.vocab);
  const padding: number[] = [];
  const stride = c.vocab + pad;
  let offset = 0;
  for (const rows of chunks) {
    const stored = new Float32Array(rows * stride).fill(PAD_SENTINEL);
    for (let r = 0; r < rows; r++) stored.set(logits.subarray((offset + r) * c.vocab, (offset + r + 1) * c.vocab), r * stride);
    const chunk = tensor(ctx, 'logits chunk', [rows, stride], stored);
    const rec = new CommandRecorder(ctx, `cross-entropy ${c.name}`);
    ce.encode(rec, { logits: chunk, targets, losses, rows, vocab: c.vocab, targetOffset: offset, gradScale: c.gradScale, ...(pad ? { logitsRowStride: stride } : {}) });
    rec.submit();
    const out = await readF32(ctx, chunk);
    for (let r = 0; r < rows; r++) {
      grad.set(out.subarray(r * stride, r * stride + c.vocab), (offset + r) * c.vocab);
      padding.push(...out.subarray(r * stride + c.vocab, (r + 1) * stride));
    }
    chunk.release();
    offset += rows;
  }
  const result = { losses: await readF32(ctx, losses), grad, padding };
  targets.release();
  losses.release();
  return result;
}

describe('cross-entropy on Dawn against torch.nn.functional.cross_entropy (mean, ignore_index)', () => {
  for (const c of attentionFixture.crossEntropy) {
    it(c.name, async () => {
      // Two chunks where there are rows enough, as the LM head is processed in chunks.
      const chunks = c.rows > 3 ? [Math.ceil(c.rows / 2), Math.floor(c.rows / 2)] : [c.rows];
      const r = await withValidation(gpu(), () => runCrossEntropy(gpu(), c, chunks));
      expectClose('losses', r.losses, f32(c.losses), CE_LOSS_TOL);
      expectClose('grad logits', r.grad, f32(c.gradLogits), CE_GRAD_TOL);
      const mean = r.losses.reduce((s, x) => s + x, 0) * c.gradScale;
      expect(Math.abs(mean - c.loss)).toBeLessThanOrEqual(CE_LOSS_TOL.atol + CE_LOSS_TOL.rtol * Math.abs(c.loss));
      c.targets.forEach((t, row) => {
        if (t === IGNORE_INDEX) {
          expect(r.losses[row]).toBe(0);
          expect(r.grad.subarray(row * c.vocab, (row + 1) * c.vocab).every((g) => g === 0)).toBe(true);
        }
      });
    });
  }

  it('rows padded past the vocabulary (logitsRowStride): same results, padding untouched', async () => {
    for (const c of attentionFixture.crossEntropy) {
      const chunks = c.rows > 3 ? [Math.ceil(c.rows / 2), Math.floor(c.rows / 2)] : [c.rows];
      const r = await withValidation(gpu(), () => runCrossEntropy(gpu(), c, chunks, 5));
      expectClose(`${c.name}: losses`, r.losses, f32(c.losses), CE_LOSS_TOL);
      expectClose(`${c.name}: grad logits`, r.grad, f32(c.gradLogits), CE_GRAD_TOL);
      expect(r.padding.length).toBe(5 * c.rows);
      expect(r.padding.every((x) => x === PAD_SENTINEL)).toBe(true);
    }
  });

  it('writes NaN for a target past the vocabulary and leaves other rows alone', async () => {
    const ctx = gpu();
    const c = attentionFixture.crossEntropy.find((x) => x.vocab === 1000)!;
    const bad = { ...c, targets: c.targets.map((t, i) => (i === 0 ? c.vocab : t)) };
    const r = await runCrossEntropy(ctx, bad, [c.rows]);
    expect(r.losses[0]).toBeNaN();
    expectClose('other rows', r.losses.subarray(1), f32(c.losses).subarray(1), CE_LOSS_TOL);
  });

  it('refuses short tensors and wrong dtypes with the shapes in the message', async () => {
    const ctx = gpu();
    const ce = await createCrossEntropyKernel(ctx);
    const logits = tensor(ctx, 'logits', [4, 100]);
    const targets = createTensor(ctx, { shape: [6], dtype: 'u32', label: 'targets' });
    const losses = tensor(ctx, 'losses', [6]);
    const base = { logits, targets, losses, rows: 4, vocab: 100, targetOffset: 2, gradScale: 1 };
    const rec = new CommandRecorder(ctx, 'bad cross-entropy');
    expect(() => ce.encode(rec, { ...base, vocab: 101 })).toThrow(/4 x 101.*\[4, 100\]/);
    expect(() => ce.encode(rec, { ...base, targetOffset: 3 })).toThrowError(InvalidArgumentError);
    expect(() => ce.encode(rec, { ...base, targetOffset: 3 })).toThrow(/targets "targets".*3 \+ rows 4 = 7.*u32 \[6\]/);
    expect(() => ce.encode(rec, { ...base, targets: losses })).toThrow(/must be u32.*got f32/);
    expect(() => ce.encode(rec, { ...base, losses: logits })).toThrowError(InvalidArgumentError);
    expect(() => ce.encode(rec, { ...base, logitsRowStride: 99 })).toThrow(/logitsRowStride must be an integer of at least vocab \(100\), got 99/);
    // Four rows 101 apart span 3 * 101 + 100 = 403 elements, past the 400 there are.
    expect(() => ce.encode(rec, { ...base, logitsRowStride: 101 })).toThrow(/4 x 100 elements \(rows x vocab\), rows 101 apart: 403; got f32 \[4, 100\]/);
    rec.submit();
    expect(await readTensor(ctx, targets)).toHaveLength(6);
    for (const t of [logits, targets, losses]) t.release();
  });
});

// ---- half precision: f16 storage, f32 arithmetic ----

function requireF16(ctx: GpuContext): void {
  if (!ctx.features.shaderF16) throw new Error('this adapter has no shader-f16; the f16 cases need it (lavapipe has it)');
}

function half(ctx: GpuContext, label: string, shape: number[], bits?: Uint16Array): GpuTensor {
  return createTensor(ctx, { shape, label, dtype: 'f16', data: bits });
}

async function runRopeF16(ctx: GpuContext, c: RopeF16Case, input: Uint16Array, inverse: boolean, vec4: boolean): Promise<Float32Array> {
  const rope = await createRopeKernel(ctx, { dtype: 'f16', vec4 });
  expect(rope.dtype).toBe('f16');
  const half2 = c.headDim / 2;
  const positions = c.seqLen + c.positionOffset;
  const tables = ropeTables({ headDim: c.headDim, theta: c.theta, scaling: c.scaling, positions });
  const x = half(ctx, 'rope x (f16)', [c.rows, c.heads * c.headDim], input);
  const cos = tensor(ctx, 'rope cos', [positions, half2], tables.cos);
  const sin = tensor(ctx, 'rope sin', [positions, half2], tables.sin);
  const kernels = await capturedKernels(ctx, () => {
    const rec = new CommandRecorder(ctx, `rope f16 ${c.name}`);
    rope.apply(rec, { x, cos, sin, rows: c.rows, heads: c.heads, headDim: c.headDim, seqLen: c.seqLen, positionOffset: c.positionOffset, inverse });
    rec.submit();
  });
  expect(kernels).toEqual([vec4 && half2 % 4 === 0 ? 'rope-vec4' : 'rope']);
  const out = await readF32(ctx, x);
  for (const t of [x, cos, sin]) t.release();
  return out;
}

describe('RoPE with f16 x on Dawn against apply_rotary_pos_emb on float16-rounded inputs', () => {
  for (const c of attentionFixture.ropeF16) {
    for (const vec4 of [true, false]) {
      it(`${c.name}: rotate, and the inverse rotation is the backward (${vec4 ? 'vec4' : 'scalar'} form)`, async () => {
        requireF16(gpu());
        await withValidation(gpu(), async () => {
          expectClose('rotated', await runRopeF16(gpu(), c, f16Bits(c.x), false, vec4), f16(c.rotated), ROPE_F16_TOL);
          expectClose('grad x', await runRopeF16(gpu(), c, f16Bits(c.upstream), true, vec4), f16(c.gradX), ROPE_F16_TOL);
        });
      });
    }
  }

  it('refuses an x whose dtype is not the kernel\'s, and f16 tables, naming the tensor and dtypes', async () => {
    const ctx = gpu();
    requireF16(ctx);
    const [rope16, rope32] = await Promise.all([createRopeKernel(ctx, { dtype: 'f16' }), createRopeKernel(ctx)]);
    expect(rope32.dtype).toBe('f32');
    const x32 = tensor(ctx, 'x32', [6, 32]);
    const x16 = half(ctx, 'x16', [6, 32]);
    const table = tensor(ctx, 'cos', [8, 8]);
    const table16 = half(ctx, 'cos16', [8, 8]);
    const args = { cos: table, sin: table, rows: 6, heads: 2, headDim: 16, seqLen: 6 };
    const rec = new CommandRecorder(ctx, 'bad rope f16');
    expect(() => rope16.apply(rec, { ...args, x: x32 })).toThrowError(InvalidArgumentError);
    expect(() => rope16.apply(rec, { ...args, x: x32 })).toThrow(/x "x32" is f32 but the kernel was created for f16/);
    expect(() => rope32.apply(rec, { ...args, x: x16 })).toThrow(/x "x16" is f16 but the kernel was created for f32/);
    expect(() => rope16.apply(rec, { ...args, x: x16, cos: table16 })).toThrow(/cos table "cos16" must be f32.*got f16/);
    rec.submit();
    for (const t of [x32, x16, table, table16]) t.release();
  });
});

interface AttentionF16Run {
  out: Float32Array;
  lse: Float32Array;
  dq?: Float32Array;
  dk?: Float32Array;
  dv?: Float32Array;
}

/**
 * Forward, and backward in the same command buffer. The backward reads the fixture's float16 out
 * (what the reference's delta = rowsum(dO * out) used) rather than this forward's, which may sit
 * one f16 ulp away in a few elements; the forward's out is checked on its own.
 */
async function runAttentionF16(ctx: GpuContext, c: AttentionF16Case, withBackward: boolean, path: AttentionPath = 'flash'): Promise<AttentionF16Run> {
  const attention = await createAttentionKernels(ctx, { dtype: 'f16' });
  expect(attention.dtype).toBe('f16');
  const qCols = c.heads * c.headDim;
  const kvCols = c.kvHeads * c.headDim;
  const tokens = c.batch * c.seqQ;
  const q = half(ctx, 'q', [tokens, qCols], f16Bits(c.q));
  const k = half(ctx, 'k', [c.batch * c.kvCapacity, kvCols], f16Bits(c.k));
  const v = half(ctx, 'v', [c.batch * c.kvCapacity, kvCols], f16Bits(c.v));
  const out = half(ctx, 'out', [tokens, qCols]);
  const lse = tensor(ctx, 'lse', [c.batch, c.heads, c.seqQ]);
  const scratch = path === 'matmul' ? matmulScratch(ctx, c) : undefined;
  const temporaries = [q, k, v, out, lse, ...(scratch ? Object.values(scratch) : [])];
  const rec = new CommandRecorder(ctx, `attention f16 ${c.name}`);
  attention.forward(rec, {
    q, k, v, out, lse, batch: c.batch, seqQ: c.seqQ, seqKV: c.seqKV, kvCapacity: c.kvCapacity,
    heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, scale: c.scale, positionOffset: c.positionOffset, ...(scratch ? { scratch } : {}),
  });
  const grads: GpuTensor[] = [];
  if (withBackward) {
    const nan = (n: number) => new Uint16Array(n).fill(0x7e00);
    const outRef = half(ctx, 'out (fixture)', [tokens, qCols], f16Bits(c.out));
    const gradOutput = half(ctx, 'dO', [tokens, qCols], f16Bits(c.upstream!));
    const kvRows = backwardKvRows(c);
    const gradQ = half(ctx, 'dQ', [tokens, qCols], nan(tokens * qCols));
    const gradK = half(ctx, 'dK', [kvRows, kvCols], nan(kvRows * kvCols));
    const gradV = half(ctx, 'dV', [kvRows, kvCols], nan(kvRows * kvCols));
    const delta = tensor(ctx, 'delta', [c.batch, c.heads, c.seqQ]);
    const gradLse = c.upstreamLse ? tensor(ctx, 'dLse', [c.batch, c.heads, c.seqQ], f32(c.upstreamLse)) : undefined;
    temporaries.push(outRef, gradOutput, delta, ...(gradLse ? [gradLse] : []));
    grads.push(gradQ, gradK, gradV);
    attention.backward(rec, {
      q, k, v, out: outRef, lse, gradOutput, gradQ, gradK, gradV, delta, ...(gradLse ? { gradLse } : {}), ...(scratch ? { scratch } : {}),
      batch: c.batch, seq: c.seqQ, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, scale: c.scale, ...prefixArgs(c),
    });
  }
  rec.submit();
  const result: AttentionF16Run = { out: await readF32(ctx, out), lse: await readF32(ctx, lse) };
  if (withBackward) {
    [result.dq, result.dk, result.dv] = await Promise.all(grads.map((g) => readF32(ctx, g)));
  }
  if (scratch) await expectMatmulPathRan(ctx, scratch, withBackward);
  for (const t of [...temporaries, ...grads]) t.release();
  return result;
}

describe('causal attention with f16 activations on Dawn against HF eager attention on float16-rounded inputs', () => {
  for (const c of attentionFixture.attentionF16) {
    const backward = c.dq !== undefined;
    for (const path of c.kvCapacity === c.seqKV ? ATTENTION_PATHS : (['flash'] as const)) {
      it(`${c.name}: forward${backward ? ' + backward' : ''} (${path})`, async () => {
        requireF16(gpu());
        const r = await withValidation(gpu(), () => runAttentionF16(gpu(), c, backward, path));
        expectClose('out', r.out, f16(c.out), ATTENTION_F16_TOL);
        expectClose('lse', r.lse, f32(c.lse), ATTENTION_TOL);
        if (backward) {
          expectClose('dq', r.dq!, f16(c.dq!), gradF16Tol(c));
          expectClose('dk', r.dk!, f16(c.dk!), gradF16Tol(c));
          expectClose('dv', r.dv!, f16(c.dv!), gradF16Tol(c));
        }
      });
    }
  }

  it('refuses activations whose dtype is not the kernels\', and f16 lse or delta, naming the tensor and dtypes', async () => {
    const ctx = gpu();
    requireF16(ctx);
    const [att16, att32] = await Promise.all([createAttentionKernels(ctx, { dtype: 'f16' }), createAttentionKernels(ctx)]);
    expect(att32.dtype).toBe('f32');
    const h = (shape: number[], label: string) => half(ctx, label, shape);
    const f = (shape: number[], label: string) => tensor(ctx, label, shape);
    const q = h([10, 64], 'q');
    const kv = h([10, 32], 'kv');
    const out = h([10, 64], 'out');
    const lse = f([2, 4, 5], 'lse');
    const base = { q, k: kv, v: kv, out, lse, batch: 2, seqQ: 5, seqKV: 5, heads: 4, kvHeads: 2, headDim: 16, scale: 0.25 };
    const rec = new CommandRecorder(ctx, 'bad attention f16');
    expect(() => att16.forward(rec, { ...base, q: f([10, 64], 'q32') })).toThrowError(InvalidArgumentError);
    expect(() => att16.forward(rec, { ...base, q: f([10, 64], 'q32') })).toThrow(/q "q32" f32 \[10, 64\] is f32 but must be f16/);
    expect(() => att16.forward(rec, { ...base, out: f([10, 64], 'out32') })).toThrow(/out "out32" f32 \[10, 64\] is f32 but must be f16/);
    expect(() => att32.forward(rec, base)).toThrow(/q "q" f16 \[10, 64\] is f16 but must be f32/);
    expect(() => att16.forward(rec, { ...base, lse: h([2, 4, 5], 'lse16') })).toThrow(/lse "lse16" f16 \[2, 4, 5\] is f16 but must be f32/);
    const grads = { gradOutput: h([10, 64], 'dO'), gradQ: h([10, 64], 'dQ'), gradK: h([10, 32], 'dK'), gradV: h([10, 32], 'dV'), delta: f([2, 4, 5], 'delta') };
    const bwd = { ...base, ...grads, seq: 5 };
    expect(() => att16.backward(rec, { ...bwd, gradV: f([10, 32], 'dV32') })).toThrow(/gradV "dV32" f32 \[10, 32\] is f32 but must be f16/);
    expect(() => att16.backward(rec, { ...bwd, delta: h([2, 4, 5], 'delta16') })).toThrow(/delta "delta16" f16 \[2, 4, 5\] is f16 but must be f32/);
    rec.submit();
  });
});

async function runCrossEntropyF16(ctx: GpuContext, c: CrossEntropyF16Case, chunks: number[]): Promise<{ losses: Float32Array; grad: Float32Array }> {
  const ce = await createCrossEntropyKernel(ctx, { dtype: 'f16' });
  expect(ce.dtype).toBe('f16');
  const logits = f16Bits(c.logits);
  const targets = createTensor(ctx, { shape: [c.rows], dtype: 'u32', label: 'targets', data: Uint32Array.from(c.targets) });
  const losses = tensor(ctx, 'losses', [c.rows], new Float32Array(c.rows).fill(Number.NaN));
  const grad = new Float32Array(c.rows * c.vocab);
  let offset = 0;
  for (const rows of chunks) {
    const chunk = half(ctx, 'logits chunk (f16)', [rows, c.vocab], logits.slice(offset * c.vocab, (offset + rows) * c.vocab));
    const rec = new CommandRecorder(ctx, `cross-entropy f16 ${c.name}`);
    ce.encode(rec, { logits: chunk, targets, losses, rows, vocab: c.vocab, targetOffset: offset, gradScale: c.gradScale });
    rec.submit();
    grad.set(await readF32(ctx, chunk), offset * c.vocab);
    chunk.release();
    offset += rows;
  }
  const result = { losses: await readF32(ctx, losses), grad };
  targets.release();
  losses.release();
  return result;
}

describe('cross-entropy with f16 logits on Dawn against torch.nn.functional.cross_entropy on float16-rounded logits', () => {
  for (const c of attentionFixture.crossEntropyF16) {
    it(c.name, async () => {
      requireF16(gpu());
      const r = await withValidation(gpu(), () => runCrossEntropyF16(gpu(), c, [Math.ceil(c.rows / 2), Math.floor(c.rows / 2)]));
      expectClose('losses', r.losses, f32(c.losses), CE_LOSS_TOL);
      expectClose('grad logits', r.grad, f16(c.gradLogits), CE_GRAD_F16_TOL);
      const mean = r.losses.reduce((s, x) => s + x, 0) * c.gradScale;
      expect(Math.abs(mean - c.loss)).toBeLessThanOrEqual(CE_LOSS_TOL.atol + CE_LOSS_TOL.rtol * Math.abs(c.loss));
      expect(c.targets.some((t) => t === IGNORE_INDEX)).toBe(true);
      c.targets.forEach((t, row) => {
        if (t === IGNORE_INDEX) {
          expect(r.losses[row]).toBe(0);
          expect(r.grad.subarray(row * c.vocab, (row + 1) * c.vocab).every((g) => g === 0)).toBe(true);
        }
      });
    });
  }

  it('refuses logits whose dtype is not the kernel\'s, and f16 losses, naming the tensor and dtypes', async () => {
    const ctx = gpu();
    requireF16(ctx);
    const [ce16, ce32] = await Promise.all([createCrossEntropyKernel(ctx, { dtype: 'f16' }), createCrossEntropyKernel(ctx)]);
    expect(ce32.dtype).toBe('f32');
    const logits16 = half(ctx, 'logits16', [4, 100]);
    const logits32 = tensor(ctx, 'logits32', [4, 100]);
    const targets = createTensor(ctx, { shape: [4], dtype: 'u32', label: 'targets' });
    const losses = tensor(ctx, 'losses', [4]);
    const losses16 = half(ctx, 'losses16', [4]);
    const base = { logits: logits16, targets, losses, rows: 4, vocab: 100, targetOffset: 0, gradScale: 0.25 };
    const rec = new CommandRecorder(ctx, 'bad cross-entropy f16');
    expect(() => ce16.encode(rec, { ...base, logits: logits32 })).toThrowError(InvalidArgumentError);
    expect(() => ce16.encode(rec, { ...base, logits: logits32 })).toThrow(/logits "logits32" is f32 but the kernel was created for f16/);
    expect(() => ce32.encode(rec, base)).toThrow(/logits "logits16" is f16 but the kernel was created for f32/);
    expect(() => ce16.encode(rec, { ...base, vocab: 101 })).toThrow(/must be f16 with at least 4 x 101.*\[4, 100\]/);
    expect(() => ce16.encode(rec, { ...base, losses: losses16 })).toThrow(/losses "losses16" must be f32.*got f16/);
    rec.submit();
    for (const t of [logits16, logits32, targets, losses, losses16]) t.release();
  });
});

// ---- prefix tuning: P learned key/value rows before each sequence's own ----

/** Key rows (batch-major, as in dk/dv) that no query sees: positions past positionOffset + seqQ - 1. */
function unseenKeyRows(c: AnyAttentionCase): number[] {
  const rows: number[] = [];
  for (let b = 0; b < c.batch; b++) {
    for (let j = c.positionOffset + c.seqQ; j < c.seqKV; j++) rows.push(b * c.seqKV + j);
  }
  return rows;
}

function expectZeroRows(name: string, got: Float32Array, rows: number[], cols: number): void {
  for (const r of rows) {
    const row = got.subarray(r * cols, (r + 1) * cols);
    expect(row.every((x) => x === 0), `${name} row ${r} is ${row.slice(0, 4).join(', ')}...`).toBe(true);
  }
}

describe('attention with a prefix (prefix tuning) on Dawn against HF eager attention over past_key_values (PyTorch autograd)', () => {
  for (const [c, path] of attentionFixture.attentionPrefix.flatMap((c) => ATTENTION_PATHS.map((p) => [c, p] as const))) {
    it(`${c.name}: forward + backward (${path})`, async () => {
      expect(c.positionOffset).toBeGreaterThan(0);
      const r = await withValidation(gpu(), () => runAttention(gpu(), c, true, path));
      expectClose('out', r.out, f32(c.out), ATTENTION_TOL);
      expectClose('lse', r.lse, f32(c.lse), ATTENTION_TOL);
      expectClose('dq', r.dq!, f32(c.dq!), gradTol(c));
      expectClose('dk (prefix rows included)', r.dk!, f32(c.dk!), gradTol(c));
      expectClose('dv (prefix rows included)', r.dv!, f32(c.dv!), gradTol(c));
    });
  }

  for (const path of ATTENTION_PATHS) {
    it(`writes exact zeros to dK and dV rows of keys that no query sees (${path})`, async () => {
      const c = attentionFixture.attentionPrefix.find((a) => a.seqKV > a.positionOffset + a.seqQ)!;
      const rows = unseenKeyRows(c);
      expect(rows.length).toBeGreaterThan(0);
      const r = await withValidation(gpu(), () => runAttention(gpu(), c, true, path));
      expectZeroRows('dk', r.dk!, rows, c.kvHeads * c.headDim);
      expectZeroRows('dv', r.dv!, rows, c.kvHeads * c.headDim);
    });
  }

  it('backward is deterministic with a prefix: two runs agree bit for bit', async () => {
    const c = attentionFixture.attentionPrefix.find((a) => a.positionOffset === 30 && a.seqQ === 33)!;
    const [a, b] = [await runAttention(gpu(), c, true), await runAttention(gpu(), c, true)];
    for (const name of ['out', 'lse', 'dq', 'dk', 'dv'] as const) {
      expect(Buffer.from(a[name]!.buffer).equals(Buffer.from(b[name]!.buffer)), name).toBe(true);
    }
  });

  it('refuses a backward whose seqKV cannot hold positionOffset + seq keys, bad offsets and short k/v or gradients', async () => {
    const ctx = gpu();
    const attention = await createAttentionKernels(ctx);
    const t = (shape: number[], label = 't') => tensor(ctx, label, shape);
    // batch 2, 5 queries after a prefix of 3: k, v, dK, dV hold 2 * 8 rows.
    const kv = t([16, 32], 'kv');
    const bwd = {
      q: t([10, 64], 'q'), k: kv, v: kv, out: t([10, 64], 'out'), lse: t([2, 4, 5], 'lse'),
      gradOutput: t([10, 64], 'dO'), gradQ: t([10, 64], 'dQ'), gradK: t([16, 32], 'dK'), gradV: t([16, 32], 'dV'), delta: t([2, 4, 5], 'delta'),
      batch: 2, seq: 5, seqKV: 8, positionOffset: 3, heads: 4, kvHeads: 2, headDim: 16, scale: 0.25,
    };
    const rec = new CommandRecorder(ctx, 'bad attention backward with a prefix');
    expect(() => attention.backward(rec, { ...bwd, seqKV: 7 })).toThrowError(InvalidArgumentError);
    expect(() => attention.backward(rec, { ...bwd, seqKV: 7 })).toThrow(/positionOffset \(3\) \+ seq \(5\) = 8 exceeds seqKV \(7\).*or at most positionOffset/);
    // Every query seeing every key (the prefix alone: seqKV <= positionOffset) is accepted.
    expect(() => attention.backward(rec, { ...bwd, seqKV: 3 })).not.toThrow();
    expect(() => attention.backward(rec, { ...bwd, seqKV: 2 })).not.toThrow();
    expect(() => attention.backward(rec, { ...bwd, seqKV: 4 })).toThrow(/= 8 exceeds seqKV \(4\)/);
    // Forgetting seqKV leaves it at seq, which cannot hold the prefix.
    expect(() => attention.backward(rec, { ...bwd, seqKV: undefined })).toThrow(/= 8 exceeds seqKV \(5\)/);
    expect(() => attention.backward(rec, { ...bwd, positionOffset: -1 })).toThrow(/positionOffset must be a non-negative integer, got -1/);
    expect(() => attention.backward(rec, { ...bwd, positionOffset: 1.5 })).toThrow(/positionOffset must be a non-negative integer, got 1.5/);
    expect(() => attention.backward(rec, { ...bwd, seqKV: 0 })).toThrow(/seqKV must be a positive integer, got 0/);
    expect(() => attention.backward(rec, { ...bwd, k: t([10, 32], 'k without prefix') }))
      .toThrow(/k "k without prefix" f32 \[10, 32\].*16 x 32 elements \(batch 2 x seqKV 8, kvHeads 2 x headDim 16\)/);
    expect(() => attention.backward(rec, { ...bwd, gradV: t([15, 32], 'short dV') })).toThrow(/gradV "short dV" f32 \[15, 32\].*16 x 32/);
    // Queries stay [batch * seq]: a prefix does not change dQ's size.
    expect(() => attention.backward(rec, { ...bwd, gradQ: t([9, 64], 'short dQ') })).toThrow(/gradQ "short dQ" f32 \[9, 64\].*10 x 64/);
    rec.submit();
  });
});

describe('attention with a prefix and f16 activations on Dawn against HF eager attention on float16-rounded inputs', () => {
  for (const [c, path] of attentionFixture.attentionPrefixF16.flatMap((c) => ATTENTION_PATHS.map((p) => [c, p] as const))) {
    it(`${c.name}: forward + backward (${path})`, async () => {
      requireF16(gpu());
      expect(c.positionOffset).toBeGreaterThan(0);
      const r = await withValidation(gpu(), () => runAttentionF16(gpu(), c, true, path));
      expectClose('out', r.out, f16(c.out), ATTENTION_F16_TOL);
      expectClose('lse', r.lse, f32(c.lse), ATTENTION_TOL);
      expectClose('dq', r.dq!, f16(c.dq!), gradF16Tol(c));
      expectClose('dk (prefix rows included)', r.dk!, f16(c.dk!), gradF16Tol(c));
      expectClose('dv (prefix rows included)', r.dv!, f16(c.dv!), gradF16Tol(c));
    });
  }
});

// ---- the lse's gradient: a caller that used the forward's lse (UniPELT's merge) ----

describe('attention backward with gradLse on Dawn against PyTorch autograd of sum(out * upstream) + sum(lse * upstreamLse)', () => {
  for (const [c, path] of attentionFixture.attentionGradLse.flatMap((c) => ATTENTION_PATHS.map((p) => [c, p] as const))) {
    it(`${c.name}: forward + backward (${path})`, async () => {
      expect(c.upstreamLse).toBeDefined();
      const r = await withValidation(gpu(), () => runAttention(gpu(), c, true, path));
      expectClose('out', r.out, f32(c.out), ATTENTION_TOL);
      expectClose('lse', r.lse, f32(c.lse), ATTENTION_TOL);
      expectClose('dq', r.dq!, f32(c.dq!), gradTol(c));
      expectClose('dk', r.dk!, f32(c.dk!), gradTol(c));
      expectClose('dv', r.dv!, f32(c.dv!), gradTol(c));
    });
  }

  it('covers the prefix alone (seqKV = positionOffset: every query sees every key)', () => {
    expect(attentionFixture.attentionGradLse.some((c) => c.seqKV === c.positionOffset && c.seqKV < c.seqQ)).toBe(true);
    expect(attentionFixture.attentionGradLse.some((c) => c.positionOffset === 0)).toBe(true);
  });

  it('a gradLse of zeros gives the bits of the backward without one', async () => {
    const c = attentionFixture.attentionGradLse[0]!;
    const zeros = { ...c, upstreamLse: { ...c.upstreamLse!, b64: Buffer.from(new Float32Array(c.batch * c.heads * c.seqQ).buffer).toString('base64') } };
    const plain = { ...c, upstreamLse: undefined };
    const [a, b] = [await runAttention(gpu(), zeros, true), await runAttention(gpu(), plain, true)];
    for (const name of ['dq', 'dk', 'dv'] as const) {
      expect(Buffer.from(a[name]!.buffer).equals(Buffer.from(b[name]!.buffer)), name).toBe(true);
    }
  });

  it('refuses a gradLse of the wrong shape or dtype, or one that is also written', async () => {
    const ctx = gpu();
    const attention = await createAttentionKernels(ctx);
    const t = (shape: number[], label = 't') => tensor(ctx, label, shape);
    const bwd = smallBackwardArgs(ctx);
    const rec = new CommandRecorder(ctx, 'bad gradLse');
    expect(() => attention.backward(rec, { ...bwd, gradLse: t([2, 4, 4], 'short dLse') })).toThrowError(InvalidArgumentError);
    expect(() => attention.backward(rec, { ...bwd, gradLse: t([2, 4, 4], 'short dLse') }))
      .toThrow(/gradLse "short dLse" f32 \[2, 4, 4\] must be f32 with at least 8 x 5 elements \(\[batch 2, heads 4, seq 5\]\)/);
    expect(() => attention.backward(rec, { ...bwd, gradLse: bwd.delta })).toThrow(/delta "delta" and gradLse "delta" share a buffer/);
    if (ctx.features.shaderF16) {
      const h = createTensor(ctx, { shape: [2, 4, 5], dtype: 'f16', label: 'dLse16' });
      expect(() => attention.backward(rec, { ...bwd, gradLse: h })).toThrow(/gradLse "dLse16" f16 \[2, 4, 5\] is f16 but must be f32 \(lse, delta, gates/);
    }
    rec.submit();
  });
});

describe('attention backward with gradLse and f16 activations on Dawn against the written-out backward on float16-rounded inputs', () => {
  for (const [c, path] of attentionFixture.attentionGradLseF16.flatMap((c) => ATTENTION_PATHS.map((p) => [c, p] as const))) {
    it(`${c.name}: forward + backward (${path})`, async () => {
      requireF16(gpu());
      const r = await withValidation(gpu(), () => runAttentionF16(gpu(), c, true, path));
      expectClose('out', r.out, f16(c.out), ATTENTION_F16_TOL);
      expectClose('lse', r.lse, f32(c.lse), ATTENTION_TOL);
      expectClose('dq', r.dq!, f16(c.dq!), gradF16Tol(c));
      expectClose('dk', r.dk!, f16(c.dk!), gradF16Tol(c));
      expectClose('dv', r.dv!, f16(c.dv!), gradF16Tol(c));
    });
  }
});

// ---- merge: two attentions over disjoint keys combined by their lse (UniPELT's gated prefix) ----

interface MergeRun {
  out: Float32Array;
  gradOutA: Float32Array;
  gradOutB: Float32Array;
  gradLseA: Float32Array;
  gradLseB: Float32Array;
  /** the whole [tokens, gradGateStride] buffer */
  gradGate: Float32Array;
}

/** The sentinel in gradGate's other columns, which mergeBackward must leave alone. */
const UNTOUCHED = 1234.5;

async function runMerge(ctx: GpuContext, c: MergeCase | MergeCase<F16Tensor>, dtype: 'f32' | 'f16'): Promise<MergeRun> {
  const attention = await createAttentionKernels(ctx, { dtype });
  const tokens = c.batch * c.seq;
  const cols = c.heads * c.headDim;
  const act = (label: string, t?: EncodedOrF16) =>
    t === undefined
      ? (dtype === 'f16' ? half(ctx, label, [tokens, cols], new Uint16Array(tokens * cols).fill(0x7e00))
        : tensor(ctx, label, [tokens, cols], new Float32Array(tokens * cols).fill(Number.NaN)))
      : (dtype === 'f16' ? half(ctx, label, [tokens, cols], f16Bits(t as F16Tensor)) : tensor(ctx, label, [tokens, cols], f32(t as EncodedF32)));
  const stat = (label: string, data?: Float32Array) =>
    tensor(ctx, label, [c.batch, c.heads, c.seq], data ?? new Float32Array(c.batch * c.heads * c.seq).fill(Number.NaN));
  const outA = act('outA', c.outA);
  const outB = act('outB', c.outB);
  const gradOutput = act('dO', c.upstream);
  const lseA = stat('lseA', f32(c.lseA));
  const lseB = stat('lseB', f32(c.lseB));
  const gate = tensor(ctx, 'gate', [tokens, c.gateStride], f32(c.gate));
  const out = act('out');
  const gradOutA = act('dOutA');
  const gradOutB = act('dOutB');
  const gradLseA = stat('dLseA');
  const gradLseB = stat('dLseB');
  const gradGate = tensor(ctx, 'dGate', [tokens, c.gradGateStride], new Float32Array(tokens * c.gradGateStride).fill(UNTOUCHED));
  const shape = { batch: c.batch, seq: c.seq, heads: c.heads, headDim: c.headDim };
  // The defaults (stride 1, offset 0) are left out, as a caller with one-column gates would.
  const gateColumn = c.gateStride === 1 && c.gateOffset === 0 ? {} : { gateStride: c.gateStride, gateOffset: c.gateOffset };
  const gradColumn = c.gradGateStride === 1 && c.gradGateOffset === 0 ? {} : { gradGateStride: c.gradGateStride, gradGateOffset: c.gradGateOffset };
  await withValidation(ctx, async () => {
    const rec = new CommandRecorder(ctx, `merge ${c.name}`);
    attention.merge(rec, { outA, lseA, outB, lseB, gate, ...gateColumn, out, ...shape });
    attention.mergeBackward(rec, {
      gradOutput, outA, lseA, outB, lseB, gate, ...gateColumn, gradOutA, gradOutB, gradLseA, gradLseB, gradGate, ...gradColumn, ...shape,
    });
    rec.submit();
  });
  const [o, ga, gb, la, lb, gg] = await Promise.all([out, gradOutA, gradOutB, gradLseA, gradLseB, gradGate].map((t) => readF32(ctx, t)));
  for (const t of [outA, outB, gradOutput, lseA, lseB, gate, out, gradOutA, gradOutB, gradLseA, gradLseB, gradGate]) t.release();
  return { out: o!, gradOutA: ga!, gradOutB: gb!, gradLseA: la!, gradLseB: lb!, gradGate: gg! };
}

type EncodedF32 = Parameters<typeof f32>[0];
type EncodedOrF16 = EncodedF32 | F16Tensor;

function checkMerge(c: MergeCase | MergeCase<F16Tensor>, r: MergeRun, dtype: 'f32' | 'f16'): void {
  const read = (t: EncodedOrF16) => (dtype === 'f16' ? f16(t as F16Tensor) : f32(t as EncodedF32));
  const actTol = dtype === 'f16' ? MERGE_F16_TOL : MERGE_TOL;
  expectClose('out', r.out, read(c.out), actTol);
  expectClose('gradOutA', r.gradOutA, read(c.gradOutA), actTol);
  expectClose('gradOutB', r.gradOutB, read(c.gradOutB), actTol);
  expectClose('gradLseA', r.gradLseA, f32(c.gradLseA), mergeSumTol(c.headDim));
  expectClose('gradLseB', r.gradLseB, f32(c.gradLseB), mergeSumTol(c.headDim));
  const tokens = c.batch * c.seq;
  const column = Float32Array.from({ length: tokens }, (_, t) => r.gradGate[t * c.gradGateStride + c.gradGateOffset]!);
  expectClose('gradGate', column, f32(c.gradGate), mergeSumTol(c.heads * c.headDim));
  const other = r.gradGate.findIndex((v, i) => i % c.gradGateStride !== c.gradGateOffset && v !== UNTOUCHED);
  expect(other, `gradGate: a column other than ${c.gradGateOffset} changed at ${other}`).toBe(-1);
}

describe('attention merge and its backward on Dawn against PyTorch autograd of w g outA + (1 - w) outB', () => {
  for (const c of attentionFixture.merge) {
    it(`${c.name}: merge + mergeBackward`, async () => checkMerge(c, await runMerge(gpu(), c, 'f32'), 'f32'));
  }
  for (const c of attentionFixture.mergeF16) {
    it(`${c.name}: merge + mergeBackward`, async () => {
      requireF16(gpu());
      checkMerge(c, await runMerge(gpu(), c, 'f16'), 'f16');
    });
  }

  it('mergeBackward is deterministic: two runs agree bit for bit', async () => {
    const c = attentionFixture.merge.find((m) => m.heads > 10)!;
    const [a, b] = [await runMerge(gpu(), c, 'f32'), await runMerge(gpu(), c, 'f32')];
    for (const name of ['out', 'gradOutA', 'gradOutB', 'gradLseA', 'gradLseB', 'gradGate'] as const) {
      expect(Buffer.from(a[name].buffer).equals(Buffer.from(b[name].buffer)), name).toBe(true);
    }
  });

  it('refuses bad shapes, dtypes, gate columns and aliased outputs with the shapes in the message', async () => {
    const ctx = gpu();
    const attention = await createAttentionKernels(ctx);
    const t = (shape: number[], label = 't') => tensor(ctx, label, shape);
    // batch 2, seq 5, 4 heads of 16: rows [10, 64], statistics [2, 4, 5], gates [10, 2].
    const base = { outA: t([10, 64], 'outA'), lseA: t([2, 4, 5], 'lseA'), outB: t([10, 64], 'outB'), lseB: t([2, 4, 5], 'lseB'),
      gate: t([10, 2], 'gates'), gateStride: 2, gateOffset: 1, batch: 2, seq: 5, heads: 4, headDim: 16 };
    const fwd = { ...base, out: t([10, 64], 'out') };
    const bwd = { ...base, gradOutput: t([10, 64], 'dO'), gradOutA: t([10, 64], 'dOutA'), gradOutB: t([10, 64], 'dOutB'),
      gradLseA: t([2, 4, 5], 'dLseA'), gradLseB: t([2, 4, 5], 'dLseB'), gradGate: t([10, 2], 'dGates'), gradGateStride: 2, gradGateOffset: 0 };
    const rec = new CommandRecorder(ctx, 'bad merge');
    const cases: [() => void, RegExp][] = [
      [() => attention.merge(rec, { ...fwd, seq: 6 }), /attention merge: outA "outA" f32 \[10, 64\] must be f32 with at least 12 x 64 elements \(batch 2 x seq 6, heads 4 x headDim 16\)/],
      [() => attention.merge(rec, { ...fwd, lseB: t([2, 4, 4], 'short lse') }), /attention merge: lseB "short lse" f32 \[2, 4, 4\].*8 x 5 elements \(\[batch 2, heads 4, seq 5\]\)/],
      [() => attention.merge(rec, { ...fwd, gateStride: 3 }), /attention merge: gate "gates" f32 \[10, 2\].*10 x 3 elements \(\[tokens 10, gateStride 3\]\)/],
      [() => attention.merge(rec, { ...fwd, gateOffset: 2 }), /attention merge: gateOffset must be an integer in \[0, gateStride = 2\), got 2/],
      [() => attention.merge(rec, { ...fwd, gateStride: 0 }), /attention merge: gateStride must be a positive integer, got 0/],
      [() => attention.merge(rec, { ...fwd, headDim: 6, heads: 1 }), /attention merge: headDim must be a multiple of 4, got 6/],
      [() => attention.merge(rec, { ...fwd, batch: 0 }), /attention merge: batch must be a positive integer, got 0/],
      [() => attention.merge(rec, { ...fwd, out: fwd.outB }), /attention merge: out "outB" and outB "outB" share a buffer/],
      [() => attention.merge(rec, { ...fwd, out: t([9, 64], 'short out') }), /out "short out" f32 \[9, 64\].*10 x 64/],
      [() => attention.mergeBackward(rec, { ...bwd, gradGateOffset: 2 }), /attention mergeBackward: gradGateOffset must be an integer in \[0, gradGateStride = 2\), got 2/],
      [() => attention.mergeBackward(rec, { ...bwd, gradGateStride: 3 }), /gradGate "dGates" f32 \[10, 2\].*10 x 3 elements \(\[tokens 10, gradGateStride 3\]\)/],
      [() => attention.mergeBackward(rec, { ...bwd, gradLseB: bwd.gradLseA }), /gradLseA "dLseA" and gradLseB "dLseA" share a buffer/],
      [() => attention.mergeBackward(rec, { ...bwd, gradGate: bwd.gate }), /gradGate "gates" and gate "gates" share a buffer/],
      [() => attention.mergeBackward(rec, { ...bwd, gradOutA: bwd.gradOutput }), /gradOutA "dO" and gradOutput "dO" share a buffer/],
      [() => attention.mergeBackward(rec, { ...bwd, gradOutB: t([10, 60], 'short dOutB') }), /gradOutB "short dOutB" f32 \[10, 60\].*10 x 64/],
      [() => attention.mergeBackward(rec, { ...bwd, gradLseA: t([2, 4, 4], 'short dLseA') }), /gradLseA "short dLseA".*8 x 5/],
    ];
    if (ctx.features.shaderF16) {
      const h = (shape: number[], label: string) => half(ctx, label, shape);
      const att16 = await createAttentionKernels(ctx, { dtype: 'f16' });
      cases.push(
        [() => att16.merge(rec, { ...fwd, outA: h([10, 64], 'outA16'), outB: h([10, 64], 'outB16') }), /out "out" f32 \[10, 64\] is f32 but must be f16/],
        [() => att16.merge(rec, { ...fwd, outA: h([10, 64], 'outA16'), outB: h([10, 64], 'outB16'), out: h([10, 64], 'o16'), lseA: h([2, 4, 5], 'lse16') }),
          /lseA "lse16" f16 \[2, 4, 5\] is f16 but must be f32 \(lse, delta, gates and their gradients are always f32\)/],
        [() => attention.mergeBackward(rec, { ...bwd, gradGate: h([10, 2], 'dGate16') }), /gradGate "dGate16" f16 \[10, 2\] is f16 but must be f32/],
      );
    }
    for (const [call, message] of cases) {
      let error: unknown;
      try {
        call();
      } catch (e) {
        error = e;
      }
      expect(error, String(message)).toBeInstanceOf(InvalidArgumentError);
      expect((error as Error).message).toMatch(message);
    }
    rec.submit();
  });
});

describe("dtype 'f16' on a device without shader-f16", () => {
  it("is refused by every family with InvalidArgumentError saying to use 'f32'", async () => {
    const ctx = await nodeContext({ disableFeatures: ['shader-f16'] });
    try {
      expect(ctx.features.shaderF16).toBe(false);
      for (const [family, create] of [
        ['rope', () => createRopeKernel(ctx, { dtype: 'f16' })],
        ['attention', () => createAttentionKernels(ctx, { dtype: 'f16' })],
        ['cross-entropy', () => createCrossEntropyKernel(ctx, { dtype: 'f16' })],
      ] as const) {
        const error = await (create() as Promise<unknown>).then(() => undefined, (e: unknown) => e);
        expect(error, family).toBeInstanceOf(InvalidArgumentError);
        expect((error as Error).message, family).toMatch(new RegExp(`^${family}: dtype 'f16' needs the 'shader-f16' feature.*use dtype 'f32'`));
      }
      // f32 is unaffected.
      await expect(createRopeKernel(ctx)).resolves.toBeDefined();
    } finally {
      ctx.destroy();
    }
  });
});
