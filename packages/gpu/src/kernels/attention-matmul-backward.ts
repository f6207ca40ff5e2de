/**
 * Attention's backward as matmuls over row blocks of queries, for f32 activations when the caller
 * lends the scratch ({@link AttentionBackwardScratch}): the same gradients as the flash kernels
 * (attention-backward-dq/-dkv, see attention.ts), computed by webtune's tuned matmul instead of
 * attention's own loops. On lavapipe the flash backward ran at about a tenth of the matmul rate
 * (every score is recomputed twice, by threads that each own one row); here the products are the
 * matmul kernel's and only the exponentials are attention's own.
 *
 * The heads are first copied into one dense [rows, headDim] matrix per (batch, head), kv heads
 * repeated for their group's query heads (HF's repeat_kv; attention-heads.wgsl). Then, for each
 * block of ROW_BLOCK queries i (row0 .. row0 + R - 1) and the keys j < n the block can see
 * (n = positionOffset + row0 + R, at most seqKV: causal, so later keys are skipped), per (batch, head):
 *
 *   S  = scale Q_blk K_n^T          [R, n]   matmul, B^T
 *   dP = dO_blk V_n^T               [R, n]   matmul, B^T
 *   P  = exp(S - lse) masked, dS = P (dP - delta)       attention-backward-scores.wgsl
 *   dV_n += P^T dO_blk              [n, D]   matmul, A^T
 *   dK_n += scale dS^T Q_blk        [n, D]   matmul, A^T
 *   dQ_blk = scale dS K_n           [R, D]   matmul, written over dO_blk (no longer read)
 *
 * The blocks run from the last (which sees the most keys, so it writes every row dK and dV get)
 * to the first (which accumulates). Finally dQ is copied back to the row layout, and dK and dV
 * too, each kv head summing its group's query heads (the gradient of the repeat) and keys no
 * query sees set to 0. Scores of one block at a time live in `scratch.scores`, so the memory is
 * linear in seqKV, as the flash kernels' is; all sums are f32 and the order is fixed
 * (deterministic).
 */
import headsSource from '../shaders/attention-heads.wgsl.js';
import scoresSource from '../shaders/attention-backward-scores.wgsl.js';
import type { GpuContext } from '../device.js';
import type { KernelDefinition } from '../pipeline-cache.js';
import { packParams, type CommandRecorder } from '../recorder.js';
import type { GpuTensor } from '../tensor.js';
import { grid1D } from './grid.js';
import { createMatmulKernel, type MatmulKernel } from './matmul.js';
import { requireDistinct, requireTensor } from './tensor-checks.js';

export const ATTENTION_HEADS_KERNEL: KernelDefinition = {
  name: 'attention-heads',
  files: [{ path: 'shaders/attention-heads.wgsl', source: headsSource }],
  bindings: ['read', 'read-write', 'uniform'],
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
 * f32 scratch the matmul backward works in. `q`, `gradOutput` (which ends up holding dQ), `k`,
 * `v`, `gradK` and `gradV` hold one [rows, headDim] matrix per (batch, query head); `scores` one
 * block's scores and their gradients. Sizes: {@link attentionBackwardScratchSizes}. Seven distinct
 * tensors (a dispatch may not read and write one buffer); their contents are overwritten.
 */
export interface AttentionBackwardScratch {
  q: GpuTensor;
  gradOutput: GpuTensor;
  k: GpuTensor;
  v: GpuTensor;
  gradK: GpuTensor;
  gradV: GpuTensor;
  scores: GpuTensor;
}

export interface AttentionBackwardShape {
  batch: number;
  seq: number;
  /** default seq */
  seqKV?: number;
  heads: number;
  headDim: number;
}

/** Elements of each f32 tensor of {@link AttentionBackwardScratch} for a backward of this shape. */
export function attentionBackwardScratchSizes(s: AttentionBackwardShape): Record<keyof AttentionBackwardScratch, number> {
  const seqKV = s.seqKV ?? s.seq;
  const queries = s.batch * s.heads * s.seq * s.headDim;
  const keys = s.batch * s.heads * seqKV * s.headDim;
  return {
    q: queries, gradOutput: queries, k: keys, v: keys, gradK: keys, gradV: keys,
    scores: 2 * s.batch * s.heads * Math.min(ATTENTION_ROW_BLOCK, s.seq) * seqKV,
  };
}

/** What {@link MatmulAttentionBackward.record} needs: attention.ts has checked the shapes and written delta. */
export interface MatmulBackwardArgs {
  q: GpuTensor;
  k: GpuTensor;
  v: GpuTensor;
  gradOutput: GpuTensor;
  lse: GpuTensor;
  delta: GpuTensor;
  gradQ: GpuTensor;
  gradK: GpuTensor;
  gradV: GpuTensor;
  batch: number;
  seq: number;
  seqKV: number;
  positionOffset: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  scale: number;
}

export interface MatmulAttentionBackward {
  /** Throws InvalidArgumentError when a scratch tensor is not f32, too small, or shared. */
  check(kernel: string, args: MatmulBackwardArgs, scratch: AttentionBackwardScratch): void;
  record(recorder: CommandRecorder, args: MatmulBackwardArgs, scratch: AttentionBackwardScratch): void;
}

export async function createMatmulAttentionBackward(ctx: GpuContext): Promise<MatmulAttentionBackward> {
  const [toHeads, fromHeads, scoresKernel, scoresMatmul, intoKeys, addIntoKeys, intoQueries] = await Promise.all([
    ctx.pipelines.get(ATTENTION_HEADS_KERNEL, 'f32', { TO_HEADS: true }),
    ctx.pipelines.get(ATTENTION_HEADS_KERNEL, 'f32', { TO_HEADS: false }),
    ctx.pipelines.get(ATTENTION_BACKWARD_SCORES_KERNEL, 'f32'),
    createMatmulKernel(ctx, { transB: true }),
    createMatmulKernel(ctx, { transA: true }),
    createMatmulKernel(ctx, { transA: true, accumulate: true }),
    createMatmulKernel(ctx, {}),
  ]);
  const maxGroups = ctx.limits.maxComputeWorkgroupsPerDimension;
  const WG = 64;

  return {
    check(kernel, a, scratch) {
      const sizes = attentionBackwardScratchSizes(a);
      const what = `batch ${a.batch}, heads ${a.heads}, seq ${a.seq}, seqKV ${a.seqKV}, headDim ${a.headDim}; attentionBackwardScratchSizes gives each size`;
      for (const name of Object.keys(sizes) as (keyof AttentionBackwardScratch)[]) {
        requireTensor(kernel, `scratch.${name}`, scratch[name], sizes[name], what, 'f32');
      }
      const written = Object.fromEntries(Object.entries(scratch).map(([n, t]) => [`scratch.${n}`, t]));
      requireDistinct(kernel, written, {
        q: a.q, k: a.k, v: a.v, gradOutput: a.gradOutput, lse: a.lse, delta: a.delta, gradQ: a.gradQ, gradK: a.gradK, gradV: a.gradV,
      });
    },

    record(recorder, a, s) {
      const { batch, seq, seqKV, heads, kvHeads, headDim: d } = a;
      const d4 = d / 4;
      const heads4 = (src: GpuTensor, dst: GpuTensor, rows: number, narrow: number) => {
        const g = grid1D(batch * heads * rows * d4, WG, maxGroups);
        recorder.dispatch(toHeads, [src.buffer, dst.buffer],
          packParams([['u32', batch], ['u32', rows], ['u32', heads], ['u32', narrow], ['u32', d4], ['u32', g.rowStride], ['u32', rows]]), g.workgroups);
      };
      const rows4 = (src: GpuTensor, dst: GpuTensor, rows: number, narrow: number, validRows: number) => {
        const g = grid1D(batch * rows * narrow * d4, WG, maxGroups);
        recorder.dispatch(fromHeads, [src.buffer, dst.buffer],
          packParams([['u32', batch], ['u32', rows], ['u32', heads], ['u32', narrow], ['u32', d4], ['u32', g.rowStride], ['u32', validRows]]), g.workgroups);
      };
      heads4(a.q, s.q, seq, heads);
      heads4(a.gradOutput, s.gradOutput, seq, heads);
      heads4(a.k, s.k, seqKV, kvHeads);
      heads4(a.v, s.v, seqKV, kvHeads);

      const perHeadQ = seq * d;
      const perHeadKV = seqKV * d;
      const bh = batch * heads;
      const blocks = Math.ceil(seq / ATTENTION_ROW_BLOCK);
      // Keys a block's queries see: up to the last query's own position, at most seqKV.
      const keysOf = (row0: number, rows: number) => Math.min(seqKV, a.positionOffset + row0 + rows);
      const widest = keysOf((blocks - 1) * ATTENTION_ROW_BLOCK, seq - (blocks - 1) * ATTENTION_ROW_BLOCK);
      for (let blk = blocks - 1; blk >= 0; blk--) {
        const row0 = blk * ATTENTION_ROW_BLOCK;
        const rows = Math.min(ATTENTION_ROW_BLOCK, seq - row0);
        const n = keysOf(row0, rows);
        const block = rows * n;
        const dpAt = bh * block;
        const queries = { strideA: perHeadQ, offsetA: row0 * d };
        // S and dP: queries of the block against keys 0 .. n - 1.
        scoresMatmul.encode(recorder, { a: s.q, b: s.k, c: s.scores, m: rows, n, k: d, batch: bh, alpha: a.scale, ...queries, strideB: perHeadKV });
        scoresMatmul.encode(recorder, { a: s.gradOutput, b: s.v, c: s.scores, m: rows, n, k: d, batch: bh, ...queries, strideB: perHeadKV, offsetC: dpAt });
        const g = grid1D(bh * block, WG, maxGroups);
        recorder.dispatch(scoresKernel, [s.scores.buffer, a.lse.buffer, a.delta.buffer], packParams([
          ['u32', bh * block], ['u32', rows], ['u32', n], ['u32', row0], ['u32', seq], ['u32', a.positionOffset],
          ['u32', 0], ['u32', dpAt], ['u32', g.rowStride],
        ]), g.workgroups);
        // dV and dK for keys 0 .. n - 1: the last block sees the most keys and overwrites them.
        const keys = blk === blocks - 1 ? intoKeys : addIntoKeys;
        const blockRows = { strideB: perHeadQ, offsetB: row0 * d, strideC: perHeadKV };
        keys.encode(recorder, { a: s.scores, b: s.gradOutput, c: s.gradV, m: n, n: d, k: rows, batch: bh, strideA: block, ...blockRows });
        keys.encode(recorder, { a: s.scores, b: s.q, c: s.gradK, m: n, n: d, k: rows, batch: bh, alpha: a.scale, strideA: block, offsetA: dpAt, ...blockRows });
        // dQ of the block, over its rows of dO (read for the last time above).
        intoQueries.encode(recorder, {
          a: s.scores, b: s.k, c: s.gradOutput, m: rows, n: d, k: n, batch: bh, alpha: a.scale,
          strideA: block, offsetA: dpAt, strideB: perHeadKV, strideC: perHeadQ, offsetC: row0 * d,
        });
      }
      rows4(s.gradOutput, a.gradQ, seq, heads, seq);
      rows4(s.gradK, a.gradK, seqKV, kvHeads, widest);
      rows4(s.gradV, a.gradV, seqKV, kvHeads, widest);
    },
  };
}
