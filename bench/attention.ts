/**
 * Attention kernels against webtune's matmul on the same adapter, in one run: causal attention
 * forward and backward (delta + dQ + dK/dV) at SmolLM2-135M's shape (heads 9, kvHeads 3, headDim 64,
 * seq 256, batch 1), f32 and (with shader-f16) f16 storage, and a matmul X W^T of 256x576x576 (the
 * same tokens and hidden size). Every row is the median of `runs` timed runs after one warm-up, each
 * ending with a read-back, as bench/suite.ts times its rows.
 *
 * FLOPs are counted from the shapes, over the causal visible half, pairs = seq (seq + 1) / 2 per
 * (batch, head), 2 FLOPs per multiply-add:
 *   forward  = 4 * batch * heads * headDim * pairs          (S = Q K^T and O = P V)
 *   backward = 10 * batch * heads * headDim * pairs = 2.5x forward: the five products of
 *              FlashAttention-2's backward (S = Q K^T recomputed, dP = dO V^T, dV = P^T dO,
 *              dQ = dS K, dK = dS^T Q). Softmax exponentials and delta's dO . O are not counted.
 * Each runs twice: with the flash kernels, and as matmuls over blocks of 64 queries (the caller
 * lends f32 scratch, as the transformer does in training), whose work beyond the visible half (each
 * block's rows up to its last query's key) is not counted either.
 */
import {
  attentionMatmulScratchSizes, CommandRecorder, createAttentionKernels, createMatmulKernel, createTensor, readTensor, toF16Bits,
  type AttentionMatmulScratch, type GpuContext, type GpuTensor,
} from '@webtune/gpu';
import { fill, median, type BenchRow } from './suite.js';

export interface AttentionBenchOptions {
  runs: number;
  log?: (line: string) => void;
}

/** SmolLM2-135M's attention. */
const SHAPE = { batch: 1, seq: 256, heads: 9, kvHeads: 3, headDim: 64 };

export async function runAttentionBench(ctx: GpuContext, options: AttentionBenchOptions): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const log = options.log ?? (() => {});
  const push = (row: BenchRow) => {
    rows.push(row);
    log(`${row.benchmark} ${row.shape} ${row.library}: ${row.medianMs.toFixed(2)} ms${row.gflops ? `, ${row.gflops.toFixed(2)} GFLOP/s` : ''}`);
  };
  const { batch, seq, heads, kvHeads, headDim } = SHAPE;
  const shape = `b${batch} s${seq} h${heads}/${kvHeads} d${headDim}`;
  const pairs = batch * heads * seq * (seq + 1) / 2;
  const forwardFlops = 4 * headDim * pairs;
  const backwardFlops = 10 * headDim * pairs;

  // The matmul the attention is compared with: the q projection's X W^T (tokens x hidden x hidden).
  {
    const [m, n, k] = [batch * seq, heads * headDim, heads * headDim];
    const kernel = await createMatmulKernel(ctx, { transB: true });
    const x = createTensor(ctx, { shape: [m, k], data: fill(m * k, 1), label: 'bench X' });
    const w = createTensor(ctx, { shape: [n, k], data: fill(n * k, 2), label: 'bench W' });
    const y = createTensor(ctx, { shape: [m, n], label: 'bench Y' });
    const ms = await median(options.runs, async () => {
      const r = new CommandRecorder(ctx, 'bench matmul');
      kernel.encode(r, { a: x, b: w, c: y, m, n, k });
      r.submit();
      await readTensor(ctx, y);
    });
    push({ benchmark: 'matmul f32 X·W^T', shape: `${m}x${n}x${k}`, library: 'webtune', medianMs: ms, gflops: 2 * m * n * k / ms / 1e6, runs: options.runs });
    for (const t of [x, w, y]) t.release();
  }

  for (const dtype of ctx.features.shaderF16 ? (['f32', 'f16'] as const) : (['f32'] as const)) {
    const attention = await createAttentionKernels(ctx, { dtype });
    const act = (label: string, rowsN: number, cols: number, seed?: number): GpuTensor => {
      const data = seed === undefined ? undefined : fill(rowsN * cols, seed);
      return createTensor(ctx, { shape: [rowsN, cols], dtype, label, data: data && dtype === 'f16' ? toF16Bits(data) : data });
    };
    const stat = (label: string) => createTensor(ctx, { shape: [batch * heads, seq], label });
    const tokens = batch * seq;
    const q = act('bench q', tokens, heads * headDim, 3);
    const k = act('bench k', tokens, kvHeads * headDim, 4);
    const v = act('bench v', tokens, kvHeads * headDim, 5);
    const gradOutput = act('bench dO', tokens, heads * headDim, 6);
    const out = act('bench out', tokens, heads * headDim);
    const gradQ = act('bench dQ', tokens, heads * headDim);
    const gradK = act('bench dK', tokens, kvHeads * headDim);
    const gradV = act('bench dV', tokens, kvHeads * headDim);
    const lse = stat('bench lse');
    const delta = stat('bench delta');
    const args = { batch, heads, kvHeads, headDim, scale: 1 / Math.sqrt(headDim) };

    const scratchSizes = attentionMatmulScratchSizes({ batch, seq, heads, headDim });
    const scratch = Object.fromEntries(Object.entries(scratchSizes).map(([name, size]) =>
      [name, createTensor(ctx, { shape: [size], label: `bench scratch ${name}` })])) as unknown as AttentionMatmulScratch;
    const paths = ['flash', 'matmul'] as const;
    for (const path of paths) {
      const forwardMs = await median(options.runs, async () => {
        const r = new CommandRecorder(ctx, 'bench attention forward');
        attention.forward(r, { q, k, v, out, lse, seqQ: seq, seqKV: seq, ...args, ...(path === 'matmul' ? { scratch } : {}) });
        r.submit();
        await readTensor(ctx, out);
      });
      const name = `attention forward ${dtype} (${path})`;
      push({ benchmark: name, shape, library: 'webtune', medianMs: forwardMs, gflops: forwardFlops / forwardMs / 1e6, runs: options.runs });
    }

    for (const path of paths) {
      const backwardMs = await median(options.runs, async () => {
        const r = new CommandRecorder(ctx, 'bench attention backward');
        attention.backward(r, { q, k, v, out, lse, gradOutput, gradQ, gradK, gradV, delta, seq, ...args, ...(path === 'matmul' ? { scratch } : {}) });
        r.submit();
        await Promise.all([readTensor(ctx, gradQ), readTensor(ctx, gradK), readTensor(ctx, gradV)]);
      });
      const name = `attention backward ${dtype} (${path})`;
      push({ benchmark: name, shape, library: 'webtune', medianMs: backwardMs, gflops: backwardFlops / backwardMs / 1e6, runs: options.runs });
    }
    for (const t of [q, k, v, gradOutput, out, gradQ, gradK, gradV, lse, delta, ...Object.values(scratch)]) t.release();
  }
  return rows;
}
