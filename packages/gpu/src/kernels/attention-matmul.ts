/**
 * Attention as matmuls over row blocks of queries, when the caller lends the f32
 * scratch ({@link AttentionMatmulScratch}): the same results as the flash kernels (attention.ts),
 * computed by webtune's tuned matmul instead of attention's own loops. On lavapipe the flash
 * backward ran at about a tenth of the matmul rate (every score is recomputed twice, by threads
 * that each own one row) and the forward at about a quarter; here the products are the matmul
 * kernel's and only the softmax is attention's own.
 *
 * The heads are first copied into one dense [rows, headDim] matrix per (batch, head), kv heads
 * repeated for their group's query heads (HF's repeat_kv; attention-to-heads.wgsl), in f32 whatever
 * the activations' storage (f16 activations are widened there and rounded once on the way back,
 * attention-from-heads.wgsl). Then, for each block of ATTENTION_ROW_BLOCK queries i
 * (row0 .. row0 + R - 1) and the keys j < n the block can see
 * (n = positionOffset + row0 + R, at most seqKV: causal, so later keys are skipped), per (batch, head):
 *
 *   forward   S = scale Q_blk K_n^T     [R, n]   matmul, B^T
 *             P = softmax(S) masked, lse           attention-forward-softmax.wgsl
 *             O_blk = P V_n             [R, D]   matmul
 *   backward  S = scale Q_blk K_n^T,  dP = dO_blk V_n^T                 matmuls, B^T
 *             P = exp(S - lse) masked, dS = P (dP - delta)             attention-backward-scores.wgsl
 *             dV_n += P^T dO_blk,  dK_n += scale dS^T Q_blk  [n, D]   matmuls, A^T
 *             dQ_blk = scale dS K_n     [R, D]   matmul, written over dO_blk (no longer read)
 *
 * The backward runs the blocks from the last (which sees the most keys, so it writes every row dK
 * and dV get) to the first (which accumulates). Finally the results go back to the row layout, dK
 * and dV with each kv head summing its group's query heads (the gradient of the repeat) and keys
 * no query sees set to 0. Scores of one block at a time live in `scratch.scores`, so the memory is
 * linear in seqKV, as the flash kernels' is; all sums are f32 and in a fixed order (deterministic).
 */
import toHeadsSource from '../shaders/attention-to-heads.wgsl.js';
import fromHeadsSource from '../shaders/attention-from-heads.wgsl.js';
import scoresSource from '../shaders/attention-backward-scores.wgsl.js';
import softmaxSource from '../shaders/attention-forward-softmax.wgsl.js';
import type { GpuContext } from '../device.js';
import type { ElementType, KernelDefinition } from '../pipeline-cache.js';
import { packParams, type CommandRecorder } from '../recorder.js';
import type { GpuTensor } from '../tensor.js';
import { grid1D } from './grid.js';
import { createMatmulKernel } from './matmul.js';
import { requireDistinct, requireTensor } from './tensor-checks.js';

export const ATTENTION_TO_HEADS_KERNEL: KernelDefinition = {
  name: 'attention-to-heads',
  files: [{ path: 'shaders/attention-to-heads.wgsl', source: toHeadsSource }],
  bindings: ['read', 'read-write', 'uniform'],
};
export const ATTENTION_FROM_HEADS_KERNEL: KernelDefinition = {
  name: 'attention-from-heads',
  files: [{ path: 'shaders/attention-from-heads.wgsl', source: fromHeadsSource }],
  bindings: ['read', 'read-write', 'uniform'],
};
export const ATTENTION_FORWARD_SOFTMAX_KERNEL: KernelDefinition = {
  name: 'attention-forward-softmax',
  files: [{ path: 'shaders/attention-forward-softmax.wgsl', source: softmaxSource }],
  bindings: ['read-write', 'read-write', 'uniform'],
};
export const ATTENTION_BACKWARD_SCORES_KERNEL: KernelDefinition = {
  name: 'attention-backward-scores',
  files: [{ path: 'shaders/attention-backward-scores.wgsl', source: scoresSource }],
  bindings: ['read-write', 'read', 'read', 'uniform'],
};

/**
 * Queries per block: the matmul kernels cover 64 rows per workgroup, and a block of 64 over a
 * 256-token sequence computes 10/16 of the full score matrix (the causal half is 8/16).
 */
export const ATTENTION_ROW_BLOCK = 64;

/**
 * f32 scratch the matmul path works in. `q`, `gradOutput` (the forward's output, and dO then dQ
 * in the backward), `k`, `v`, `gradK` and `gradV` hold one [rows, headDim] matrix per (batch,
 * query head); `scores` one block's scores (and, in the backward, their gradients). Sizes:
 * {@link attentionMatmulScratchSizes}. Seven distinct tensors (a dispatch may not read and write
 * one buffer); their contents are overwritten, so one scratch serves every layer in turn.
 */
export interface AttentionMatmulScratch {
  q: GpuTensor;
  gradOutput: GpuTensor;
  k: GpuTensor;
  v: GpuTensor;
  gradK: GpuTensor;
  gradV: GpuTensor;
  scores: GpuTensor;
}

export interface AttentionMatmulShape {
  batch: number;
  seq: number;
  /** default seq */
  seqKV?: number;
  heads: number;
  headDim: number;
}

/** Elements of each f32 tensor of {@link AttentionMatmulScratch} for a backward of this shape. */
export function attentionMatmulScratchSizes(s: AttentionMatmulShape): Record<keyof AttentionMatmulScratch, number> {
  const seqKV = s.seqKV ?? s.seq;
  const queries = s.batch * s.heads * s.seq * s.headDim;
  const keys = s.batch * s.heads * seqKV * s.headDim;
  return {
    q: queries, gradOutput: queries, k: keys, v: keys, gradK: keys, gradV: keys,
    scores: 2 * s.batch * s.heads * Math.min(ATTENTION_ROW_BLOCK, s.seq) * seqKV,
  };
}

/** The shape both directions run at: attention.ts has checked it (and, for the forward, kvCapacity = seqKV). */
interface MatmulAttentionRun {
  batch: number;
  seq: number;
  seqKV: number;
  positionOffset: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  scale: number;
}

/** What {@link MatmulAttention.forward} needs. */
export interface MatmulForwardArgs extends MatmulAttentionRun {
  q: GpuTensor;
  k: GpuTensor;
  v: GpuTensor;
  out: GpuTensor;
  /** Written when given. */
  lse?: GpuTensor;
}

/** What {@link MatmulAttention.backward} needs; attention.ts has written delta. */
export interface MatmulBackwardArgs extends MatmulAttentionRun {
  q: GpuTensor;
  k: GpuTensor;
  v: GpuTensor;
  gradOutput: GpuTensor;
  lse: GpuTensor;
  delta: GpuTensor;
  gradQ: GpuTensor;
  gradK: GpuTensor;
  gradV: GpuTensor;
}

export interface MatmulAttention {
  /** Throws InvalidArgumentError when a scratch tensor is not f32, too small, or shared with one of `tensors`. */
  check(kernel: string, shape: AttentionMatmulShape, scratch: AttentionMatmulScratch, tensors: Record<string, GpuTensor | undefined>): void;
  forward(recorder: CommandRecorder, args: MatmulForwardArgs, scratch: AttentionMatmulScratch): void;
  backward(recorder: CommandRecorder, args: MatmulBackwardArgs, scratch: AttentionMatmulScratch): void;
}

/** `dtype`: the activations' storage (the row layouts); the scratch and all arithmetic are f32 either way. */
export async function createMatmulAttention(ctx: GpuContext, dtype: ElementType): Promise<MatmulAttention> {
  const [toHeads, fromHeads, softmaxKernel, scoresKernel, scoresMatmul, intoKeys, addIntoKeys, intoQueries] = await Promise.all([
    ctx.pipelines.get(ATTENTION_TO_HEADS_KERNEL, dtype),
    ctx.pipelines.get(ATTENTION_FROM_HEADS_KERNEL, dtype),
    ctx.pipelines.get(ATTENTION_FORWARD_SOFTMAX_KERNEL, 'f32'),
    ctx.pipelines.get(ATTENTION_BACKWARD_SCORES_KERNEL, 'f32'),
    createMatmulKernel(ctx, { transB: true }),
    createMatmulKernel(ctx, { transA: true }),
    createMatmulKernel(ctx, { transA: true, accumulate: true }),
    createMatmulKernel(ctx, {}),
  ]);
  const maxGroups = ctx.limits.maxComputeWorkgroupsPerDimension;
  const WG = 64;

  // One dense [rows, headDim] matrix per (batch, head) from the row layout, kv heads repeated (narrow < heads).
  const toHeadLayout = (recorder: CommandRecorder, a: LayoutShape, src: GpuTensor, dst: GpuTensor, rows: number, narrow: number) => {
    const g = grid1D(a.batch * a.heads * rows, WG, maxGroups);
    recorder.dispatch(toHeads, [src.buffer, dst.buffer], packParams([
      ['u32', a.batch], ['u32', rows], ['u32', a.heads], ['u32', narrow], ['u32', a.headDim / 4], ['u32', g.rowStride],
    ]), g.workgroups);
  };
  // Back to the row layout, `narrow` heads each summing heads / narrow of them; rows past validRows get 0.
  const toRowLayout = (recorder: CommandRecorder, a: LayoutShape, src: GpuTensor, dst: GpuTensor, rows: number, narrow: number, validRows: number) => {
    const g = grid1D(a.batch * rows * narrow, WG, maxGroups);
    recorder.dispatch(fromHeads, [src.buffer, dst.buffer], packParams([
      ['u32', a.batch], ['u32', rows], ['u32', a.heads], ['u32', narrow], ['u32', a.headDim / 4], ['u32', g.rowStride], ['u32', validRows],
    ]), g.workgroups);
  };
  // The blocks of queries, and the keys each sees: up to its last query's own position, at most seqKV.
  const blocksOf = (a: { seq: number; seqKV: number; positionOffset: number }) =>
    Array.from({ length: Math.ceil(a.seq / ATTENTION_ROW_BLOCK) }, (_, blk) => {
      const row0 = blk * ATTENTION_ROW_BLOCK;
      const rows = Math.min(ATTENTION_ROW_BLOCK, a.seq - row0);
      return { row0, rows, keys: Math.min(a.seqKV, a.positionOffset + row0 + rows) };
    });

  return {
    check(kernel, shape, scratch, tensors) {
      const sizes = attentionMatmulScratchSizes(shape);
      const what = `batch ${shape.batch}, heads ${shape.heads}, seq ${shape.seq}, seqKV ${shape.seqKV ?? shape.seq}, headDim ${shape.headDim}; attentionMatmulScratchSizes gives each size`;
      for (const name of Object.keys(sizes) as (keyof AttentionMatmulScratch)[]) {
        requireTensor(kernel, `scratch.${name}`, scratch[name], sizes[name], what, 'f32');
      }
      const written = Object.fromEntries(Object.entries(scratch).map(([n, t]) => [`scratch.${n}`, t]));
      requireDistinct(kernel, written, tensors);
    },

    forward(recorder, a, s) {
      const d = a.headDim;
      const bh = a.batch * a.heads;
      toHeadLayout(recorder, a, a.q, s.q, a.seq, a.heads);
      toHeadLayout(recorder, a, a.k, s.k, a.seqKV, a.kvHeads);
      toHeadLayout(recorder, a, a.v, s.v, a.seqKV, a.kvHeads);
      for (const { row0, rows, keys } of blocksOf(a)) {
        scoresMatmul.encode(recorder, {
          a: s.q, b: s.k, c: s.scores, m: rows, n: keys, k: d, batch: bh, alpha: a.scale,
          strideA: a.seq * d, offsetA: row0 * d, strideB: a.seqKV * d,
        });
        const g = grid1D(bh * rows, WG, maxGroups);
        recorder.dispatch(softmaxKernel, [s.scores.buffer, (a.lse ?? s.gradK).buffer], packParams([
          ['u32', bh * rows], ['u32', rows], ['u32', keys], ['u32', row0], ['u32', a.seq], ['u32', a.positionOffset],
          ['u32', a.lse ? 1 : 0], ['u32', g.rowStride],
        ]), g.workgroups);
        // The block's output rows, in the head layout of `gradOutput`'s scratch.
        intoQueries.encode(recorder, {
          a: s.scores, b: s.v, c: s.gradOutput, m: rows, n: d, k: keys, batch: bh,
          strideB: a.seqKV * d, strideC: a.seq * d, offsetC: row0 * d,
        });
      }
      toRowLayout(recorder, a, s.gradOutput, a.out, a.seq, a.heads, a.seq);
    },

    backward(recorder, a, s) {
      const { seq, seqKV, headDim: d } = a;
      toHeadLayout(recorder, a, a.q, s.q, seq, a.heads);
      toHeadLayout(recorder, a, a.gradOutput, s.gradOutput, seq, a.heads);
      toHeadLayout(recorder, a, a.k, s.k, seqKV, a.kvHeads);
      toHeadLayout(recorder, a, a.v, s.v, seqKV, a.kvHeads);

      const perHeadQ = seq * d;
      const perHeadKV = seqKV * d;
      const bh = a.batch * a.heads;
      const blocks = blocksOf(a);
      const widest = blocks.at(-1)!.keys;
      for (let blk = blocks.length - 1; blk >= 0; blk--) {
        const { row0, rows, keys: n } = blocks[blk]!;
        const block = rows * n;
        const dpAt = bh * block;
        const queries = { strideA: perHeadQ, offsetA: row0 * d };
        // S and dP: queries of the block against keys 0 .. n - 1.
        scoresMatmul.encode(recorder, { a: s.q, b: s.k, c: s.scores, m: rows, n, k: d, batch: bh, alpha: a.scale, ...queries, strideB: perHeadKV });
        scoresMatmul.encode(recorder, { a: s.gradOutput, b: s.v, c: s.scores, m: rows, n, k: d, batch: bh, ...queries, strideB: perHeadKV, offsetC: dpAt });
        const g = grid1D(bh * rows, WG, maxGroups);
        recorder.dispatch(scoresKernel, [s.scores.buffer, a.lse.buffer, a.delta.buffer], packParams([
          ['u32', bh * rows], ['u32', rows], ['u32', n], ['u32', row0], ['u32', seq], ['u32', a.positionOffset],
          ['u32', 0], ['u32', dpAt], ['u32', g.rowStride],
        ]), g.workgroups);
        // dV and dK for keys 0 .. n - 1: the last block sees the most keys and overwrites them.
        const keys = blk === blocks.length - 1 ? intoKeys : addIntoKeys;
        const blockRows = { strideB: perHeadQ, offsetB: row0 * d, strideC: perHeadKV };
        keys.encode(recorder, { a: s.scores, b: s.gradOutput, c: s.gradV, m: n, n: d, k: rows, batch: bh, strideA: block, ...blockRows });
        keys.encode(recorder, { a: s.scores, b: s.q, c: s.gradK, m: n, n: d, k: rows, batch: bh, alpha: a.scale, strideA: block, offsetA: dpAt, ...blockRows });
        // dQ of the block, over its rows of dO (read for the last time above).
        intoQueries.encode(recorder, {
          a: s.scores, b: s.k, c: s.gradOutput, m: rows, n: d, k: n, batch: bh, alpha: a.scale,
          strideA: block, offsetA: dpAt, strideB: perHeadKV, strideC: perHeadQ, offsetC: row0 * d,
        });
      }
      toRowLayout(recorder, a, s.gradOutput, a.gradQ, seq, a.heads, seq);
      toRowLayout(recorder, a, s.gradK, a.gradK, seqKV, a.kvHeads, widest);
      toRowLayout(recorder, a, s.gradV, a.gradV, seqKV, a.kvHeads, widest);
    },
  };
}

type LayoutShape = Pick<MatmulAttentionRun, 'batch' | 'heads' | 'headDim'>;
