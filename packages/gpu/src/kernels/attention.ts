/**
 * Causal multi-head attention (grouped-query when kvHeads < heads), forward and backward, and the
 * exact merge of two attentions by their log-sum-exps (with its backward).
 * Activations (q, k, v, out and their gradients) are f32, or f16 storage with f32 arithmetic
 * (`dtype`, like autocast's compute dtype); lse, delta, gates and their gradients are always f32.
 * Two paths with the same results: given `scratch` (training), kernels/attention-matmul.ts runs
 * both directions as webtune's matmuls over blocks of queries; otherwise the flash kernels below.
 * FlashAttention-style: the forward keeps an online softmax over tiles of keys and saves only the
 * log-sum-exp per query row; the backward recomputes P from q, k and lse. Memory grows with the
 * sequence length, never its square, and no float atomics are used (deterministic). Query i is the
 * token at key position positionOffset + i, so it sees the keys
 *
 *   seen(i) = { j : j <= positionOffset + i, j < seqKV }
 *
 * and, with P_ij = exp(scale q_i . k_j - lse_i) for j in seen(i) and 0 otherwise,
 *
 *   forward   out_i = sum_j P_ij v_j,  lse_i = log sum_{j in seen(i)} exp(scale q_i . k_j)
 *   backward  delta_i = dO_i . O_i - gradLse_i                        (attention-backward-delta)
 *             dS_ij = P_ij (dO_i . v_j - delta_i)
 *             dQ_i = scale sum_j dS_ij k_j                            (attention-backward-dq: owns query rows)
 *             dK_j = scale sum_i dS_ij q_i,  dV_j = sum_i P_ij dO_i    (attention-backward-dkv: owns key rows,
 *                                                                     sums its group's query heads)
 *
 * gradLse_i = dL/dlse_i is 0 unless the caller used lse itself (dlse_i / ds_ij = P_ij, so it folds
 * into delta). positionOffset 0 and seqKV = seq is plain causal self-attention. Prefix tuning puts P
 * learned key and value rows before each sequence's own: k/v hold P + seq rows per batch, seqKV =
 * P + seq, positionOffset = P, and every query sees the whole prefix; the backward's dK/dV then
 * include the prefix rows. seqKV = positionOffset = P is the prefix alone, every key visible to
 * every query. KV-cache decoding (forward only) reads seqKV of kvCapacity cached rows per batch.
 *
 * merge and mergeBackward combine two attentions of the same queries over disjoint key sets A and B
 * exactly, by their lse (UniPELT's gated prefix: A = the prefix with gk-scaled queries, B = the
 * causal real keys, g = gv):
 *
 *   w = sigmoid(lseA - lseB)  per (token, head),   out = w g outA + (1 - w) outB
 *   backward  D = sum over the head's columns of dO . (g outA - outB)
 *             dOutA = w g dO,  dOutB = (1 - w) dO,  dLseA = w (1 - w) D = -dLseB,
 *             dg = sum over heads of w (dO . outA)
 *
 * and the two attention backwards take dLseA and dLseB as their gradLse.
 *
 * Layouts: row-major [tokens, heads * headDim], token t = b * seq + s (k/v: b * kvRows + j, kvRows =
 * kvCapacity in the forward, seqKV in the backward); head h occupies columns h * headDim ..; query
 * head h reads kv head floor(h / (heads / kvHeads)). headDim is a multiple of 16 up to 256 (merge:
 * any multiple of 4). Gates are one column of an f32 [tokens, stride] tensor.
 * Shaders: shaders/attention-*.wgsl (shaders/lib/attention-*.wgsl). Reference values:
 * scripts/make_attention_fixtures.py.
 */
import forwardSource from '../shaders/attention-forward.wgsl.js';
import deltaSource from '../shaders/attention-backward-delta.wgsl.js';
import dqSource from '../shaders/attention-backward-dq.wgsl.js';
import dkvSource from '../shaders/attention-backward-dkv.wgsl.js';
import backwardCommonSource from '../shaders/lib/attention-backward-common.wgsl.js';
import mergeSource from '../shaders/attention-merge.wgsl.js';
import mergeBackwardLseSource from '../shaders/attention-merge-backward-lse.wgsl.js';
import mergeBackwardOutSource from '../shaders/attention-merge-backward-out.wgsl.js';
import mergeBackwardGateSource from '../shaders/attention-merge-backward-gate.wgsl.js';
import mergeCommonSource from '../shaders/lib/attention-merge-common.wgsl.js';
import type { GpuContext } from '../device.js';
import { InvalidArgumentError } from '@webtune/errors';
import { requireElementType } from './tensor-checks.js';
import type { ElementType, KernelDefinition } from '../pipeline-cache.js';
import { packParams, type CommandRecorder } from '../recorder.js';
import { createTensor, type GpuTensor } from '../tensor.js';
import { grid1D } from './grid.js';
import { attentionMatmulScratchSizes, createMatmulAttention, type AttentionMatmulScratch } from './attention-matmul.js';

const BACKWARD_COMMON = { path: 'shaders/lib/attention-backward-common.wgsl', source: backwardCommonSource };
const MERGE_COMMON = { path: 'shaders/lib/attention-merge-common.wgsl', source: mergeCommonSource };

export const ATTENTION_FORWARD_KERNEL: KernelDefinition = {
  name: 'attention-forward',
  files: [{ path: 'shaders/attention-forward.wgsl', source: forwardSource }],
  bindings: ['read', 'read', 'read', 'read-write', 'read-write', 'uniform'],
};
export const ATTENTION_BACKWARD_DELTA_KERNEL: KernelDefinition = {
  name: 'attention-backward-delta',
  files: [{ path: 'shaders/attention-backward-delta.wgsl', source: deltaSource }],
  bindings: ['read', 'read', 'read', 'read-write', 'uniform'],
};
export const ATTENTION_BACKWARD_DQ_KERNEL: KernelDefinition = {
  name: 'attention-backward-dq',
  files: [BACKWARD_COMMON, { path: 'shaders/attention-backward-dq.wgsl', source: dqSource }],
  bindings: ['read', 'read', 'read', 'read', 'read', 'read', 'read-write', 'uniform'],
};
export const ATTENTION_BACKWARD_DKV_KERNEL: KernelDefinition = {
  name: 'attention-backward-dkv',
  files: [BACKWARD_COMMON, { path: 'shaders/attention-backward-dkv.wgsl', source: dkvSource }],
  bindings: ['read', 'read', 'read', 'read', 'read', 'read', 'read-write', 'read-write', 'uniform'],
};

export const ATTENTION_MERGE_KERNEL: KernelDefinition = {
  name: 'attention-merge',
  files: [MERGE_COMMON, { path: 'shaders/attention-merge.wgsl', source: mergeSource }],
  bindings: ['read', 'read', 'read', 'read', 'read', 'read-write', 'uniform'],
};
export const ATTENTION_MERGE_BACKWARD_LSE_KERNEL: KernelDefinition = {
  name: 'attention-merge-backward-lse',
  files: [MERGE_COMMON, { path: 'shaders/attention-merge-backward-lse.wgsl', source: mergeBackwardLseSource }],
  bindings: ['read', 'read', 'read', 'read', 'read', 'read', 'read-write', 'read-write', 'uniform'],
};
export const ATTENTION_MERGE_BACKWARD_OUT_KERNEL: KernelDefinition = {
  name: 'attention-merge-backward-out',
  files: [MERGE_COMMON, { path: 'shaders/attention-merge-backward-out.wgsl', source: mergeBackwardOutSource }],
  bindings: ['read', 'read', 'read', 'read', 'read-write', 'read-write', 'uniform'],
};
export const ATTENTION_MERGE_BACKWARD_GATE_KERNEL: KernelDefinition = {
  name: 'attention-merge-backward-gate',
  files: [MERGE_COMMON, { path: 'shaders/attention-merge-backward-gate.wgsl', source: mergeBackwardGateSource }],
  bindings: ['read', 'read', 'read', 'read', 'read-write', 'uniform'],
};

export interface AttentionForwardArgs {
  /** [batch * seqQ, heads * headDim] (RoPE already applied) */
  q: GpuTensor;
  /** [batch * kvCapacity, kvHeads * headDim] */
  k: GpuTensor;
  /** same shape as k */
  v: GpuTensor;
  /** [batch * seqQ, heads * headDim] */
  out: GpuTensor;
  /** [batch, heads, seqQ] log-sum-exp of the scaled scores, written for backward; optional (inference) */
  lse?: GpuTensor;
  batch: number;
  seqQ: number;
  /** keys visible: positions 0 .. seqKV-1 of each batch's kv rows */
  seqKV: number;
  /** rows per batch in k/v (KV cache capacity); default seqKV */
  kvCapacity?: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** softmax scale, usually 1/sqrt(headDim) */
  scale: number;
  /** absolute position of query row 0 (KV-cache decoding); causal: query i sees keys j <= positionOffset + i */
  positionOffset?: number;
  /**
   * kvCapacity = seqKV only: lend this f32 scratch ({@link attentionMatmulScratchSizes} gives its
   * sizes) and the forward runs as matmuls over blocks of 64 queries (kernels/attention-matmul.ts),
   * about 1.6x faster than the flash kernel on lavapipe, all in f32 whatever `dtype` stores.
   * Training lends it; decoding does not.
   */
  scratch?: AttentionMatmulScratch;
}

export interface AttentionBackwardArgs {
  /** [batch * seq, heads * headDim] */
  q: GpuTensor;
  /** [batch * seqKV, kvHeads * headDim] */
  k: GpuTensor;
  /** same shape as k */
  v: GpuTensor;
  /** the forward's output [batch * seq, heads * headDim] */
  out: GpuTensor;
  /** the forward's [batch, heads, seq] log-sum-exp */
  lse: GpuTensor;
  /** dL/dout [batch * seq, heads * headDim] */
  gradOutput: GpuTensor;
  /** overwritten, [batch * seq, heads * headDim] */
  gradQ: GpuTensor;
  /** overwritten, [batch * seqKV, kvHeads * headDim]; rows of keys no query sees get 0 */
  gradK: GpuTensor;
  /** overwritten, [batch * seqKV, kvHeads * headDim]; rows of keys no query sees get 0 */
  gradV: GpuTensor;
  /** [batch, heads, seq] scratch for rowsum(dO * O) (minus gradLse) */
  delta: GpuTensor;
  /**
   * [batch, heads, seq] f32, dL/dlse: the gradient reaching the forward's lse when the caller used
   * it (as merge does); omitted, 0. Read only; subtracted from delta, so dS_ij = P_ij (dO_i . v_j -
   * (delta_i - gradLse_i)).
   */
  gradLse?: GpuTensor;
  /**
   * Lend this f32 scratch ({@link attentionMatmulScratchSizes} gives its sizes) and the backward
   * runs as matmuls over blocks of 64 queries (kernels/attention-matmul.ts), about 5x faster than
   * the flash kernels on lavapipe, all in f32 whatever `dtype` stores; without it the flash
   * kernels run, which need no memory beyond delta.
   */
  scratch?: AttentionMatmulScratch;
  batch: number;
  /** query rows per batch */
  seq: number;
  /**
   * Key rows per batch in k, v, gradK and gradV; default seq. At least positionOffset + seq, as
   * query i's own key (position positionOffset + i) is among them; or at most positionOffset, when
   * every query sees every key (a prefix on its own: seqKV = positionOffset = prefix length).
   */
  seqKV?: number;
  /**
   * Key position of query row 0 (prefix tuning: the prefix length); default 0. Causal: query i sees
   * keys j <= positionOffset + i. As in the forward that produced out and lse.
   */
  positionOffset?: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  scale: number;
}

/** Arguments of {@link AttentionKernels.merge}: two attentions of the same queries, A and B. */
export interface AttentionMergeArgs {
  /** A's output, [batch * seq, heads * headDim] */
  outA: GpuTensor;
  /** A's log-sum-exp, [batch, heads, seq] f32 (its forward's lse) */
  lseA: GpuTensor;
  /** B's output, [batch * seq, heads * headDim] */
  outB: GpuTensor;
  /** B's log-sum-exp, [batch, heads, seq] f32 */
  lseB: GpuTensor;
  /** [batch * seq, gateStride] f32: column gateOffset scales A's contribution per token (UniPELT's gv) */
  gate: GpuTensor;
  /** Columns of `gate` (default 1). */
  gateStride?: number;
  /** The gate's column, 0 <= gateOffset < gateStride (default 0). */
  gateOffset?: number;
  /** Overwritten, [batch * seq, heads * headDim]: w g outA + (1 - w) outB, w = sigmoid(lseA - lseB) */
  out: GpuTensor;
  batch: number;
  seq: number;
  heads: number;
  /** A multiple of 4. */
  headDim: number;
}

/** Arguments of {@link AttentionKernels.mergeBackward}: merge's inputs (as given to it) and the gradients it writes. */
export interface AttentionMergeBackwardArgs extends Omit<AttentionMergeArgs, 'out'> {
  /** dL/dout, [batch * seq, heads * headDim] */
  gradOutput: GpuTensor;
  /** Overwritten, [batch * seq, heads * headDim]: w g gradOutput (A's backward's gradOutput) */
  gradOutA: GpuTensor;
  /** Overwritten, [batch * seq, heads * headDim]: (1 - w) gradOutput */
  gradOutB: GpuTensor;
  /** Overwritten, [batch, heads, seq] f32: w (1 - w) D (A's backward's gradLse) */
  gradLseA: GpuTensor;
  /** Overwritten, [batch, heads, seq] f32: -w (1 - w) D */
  gradLseB: GpuTensor;
  /** [batch * seq, gradGateStride] f32: column gradGateOffset is overwritten with dL/dgate; the others are untouched */
  gradGate: GpuTensor;
  /** Columns of `gradGate` (default 1). */
  gradGateStride?: number;
  /** The written column, 0 <= gradGateOffset < gradGateStride (default 0). */
  gradGateOffset?: number;
}

export interface AttentionKernelOptions {
  /**
   * Element type of q, k, v, out, gradOutput, gradQ, gradK and gradV: 'f16' stores them as
   * half precision (the shader-f16 feature is needed) while every sum stays f32. Default 'f32'.
   */
  dtype?: ElementType;
}

export interface AttentionKernels {
  readonly dtype: ElementType;
  /** Records the causal attention forward (self-attention over a sequence, with a prefix, or KV-cache decoding). */
  forward(recorder: CommandRecorder, args: AttentionForwardArgs): void;
  /**
   * Records delta, dQ and dK/dV: the gradients of a forward over all seqKV keys (kvCapacity =
   * seqKV), such as self-attention (positionOffset 0), one with a prefix, or a prefix alone; with
   * `gradLse`, also through the forward's lse. With `scratch` (f32), as matmuls over blocks of
   * queries; otherwise with the flash kernels (three dispatches).
   */
  backward(recorder: CommandRecorder, args: AttentionBackwardArgs): void;
  /**
   * Records out = w g outA + (1 - w) outB, w = sigmoid(lseA - lseB) per (token, head) (one
   * dispatch): attention over A's and B's keys together, A's values scaled by the per-token gate g.
   */
  merge(recorder: CommandRecorder, args: AttentionMergeArgs): void;
  /**
   * Records merge's gradients (three dispatches, deterministic): gradOutA, gradOutB, gradLseA,
   * gradLseB and the gate's. Pass gradOutA/gradLseA, gradOutB/gradLseB to the two attentions'
   * backward as gradOutput/gradLse.
   */
  mergeBackward(recorder: CommandRecorder, args: AttentionMergeBackwardArgs): void;
}

/** Threads per workgroup in every attention kernel (fixed in the shaders). */
const WG = 64;
export const ATTENTION_MAX_HEAD_DIM = 256;

/** The forward's layout (shaders/attention-forward.wgsl's Params d4, col_groups, rows, tile). */
interface ForwardLayout {
  d4: number;
  /** headDim / 16: in the P V phase each invocation owns 16 columns of four rows. */
  colGroups: number;
  /** Query rows per workgroup: a power of two from 8 to 64 with rows * headDim <= 4096. */
  rows: number;
  /** Keys per tile: 2048 / rows, so the 64 invocations cover the tile's scores in 8 x 4 blocks. */
  tile: number;
}

/**
 * The forward holds rows * tile = 2048 scores (an 8 x 4 block per invocation) in workgroup memory
 * (8 KiB) and gives each invocation 4 rows by 16 columns of the output, which fits the 64
 * invocations while rows * headDim <= 4096. As many rows as fit: the larger the blocks, the fewer
 * loads per multiply-add (every load is a gather on CPU adapters); rows = 64 for headDim <= 64,
 * 32 for 128, 16 for 256.
 */
function forwardLayout(headDim: number): ForwardLayout {
  let rows = 64;
  while (rows > 8 && rows * headDim > 4096) rows /= 2;
  return { d4: headDim / 4, colGroups: headDim / 16, rows, tile: 2048 / rows };
}

/** The backward's layout (shaders/lib/attention-backward-common.wgsl's Params d4, lanes, rows, tile). */
interface BackwardLayout {
  d4: number;
  /** Invocations per row (each owns 16 columns). */
  lanes: number;
  /** Rows (query rows, or key rows for dK/dV) per workgroup. */
  rows: number;
  /** Keys (or queries for dK/dV) per tile staged in workgroup memory. */
  tile: number;
}

/**
 * The backward shaders size their tile storage for tile * d4 <= 256 vec4 and rows * tile <= 1024
 * scores (512 twice for dK/dV), which keeps every kernel under WebGPU's guaranteed 16 KiB of
 * workgroup memory.
 */
function backwardLayout(headDim: number, maxScores: number): BackwardLayout {
  const d4 = headDim / 4;
  const lanes = headDim / 16;
  const rows = Math.floor(WG / lanes);
  const tile = Math.min(32, Math.floor(256 / d4), Math.floor(maxScores / rows));
  return { d4, lanes, rows, tile };
}

function layoutParams(l: ForwardLayout | BackwardLayout): Array<['u32', number]> {
  return [['u32', l.d4], ['u32', 'lanes' in l ? l.lanes : l.colGroups], ['u32', l.rows], ['u32', l.tile]];
}

function describe(t: GpuTensor): string {
  return `"${t.label}" ${t.dtype} [${t.shape.join(', ')}]`;
}

function checkShape(kernel: string, a: { heads: number; kvHeads: number; headDim: number; batch: number }, extra: Record<string, number>): void {
  for (const [name, value] of Object.entries({ batch: a.batch, heads: a.heads, kvHeads: a.kvHeads, headDim: a.headDim, ...extra })) {
    if (!Number.isInteger(value) || value < 1) {
      throw new InvalidArgumentError(`${kernel}: ${name} must be a positive integer, got ${value}.`);
    }
  }
  if (a.headDim % 16 !== 0 || a.headDim > ATTENTION_MAX_HEAD_DIM) {
    throw new InvalidArgumentError(`${kernel}: headDim must be a multiple of 16 up to ${ATTENTION_MAX_HEAD_DIM}, got ${a.headDim}.`);
  }
  if (a.heads % a.kvHeads !== 0) {
    throw new InvalidArgumentError(`${kernel}: heads (${a.heads}) must be a multiple of kvHeads (${a.kvHeads}) for grouped-query attention.`);
  }
}

/** Tensors that are f32 whatever the kernels' dtype: statistics and gates. */
const ALWAYS_F32 = new Set(['lse', 'delta', 'gradLse', 'lseA', 'lseB', 'gradLseA', 'gradLseB', 'gate', 'gradGate']);

function checkTensor(kernel: string, name: string, t: GpuTensor, rows: number, cols: number, what: string, dtype: ElementType): void {
  if (t.dtype !== dtype) {
    throw new InvalidArgumentError(
      `${kernel}: ${name} ${describe(t)} is ${t.dtype} but must be ${dtype}` +
        (ALWAYS_F32.has(name) ? ' (lse, delta, gates and their gradients are always f32).' : ` (the kernels were created for ${dtype}).`),
    );
  }
  if (t.size < rows * cols) {
    throw new InvalidArgumentError(
      `${kernel}: ${name} ${describe(t)} must be ${dtype} with at least ${rows} x ${cols} elements (${what}).`,
    );
  }
}

/** A column of an f32 [rows, stride] tensor: stride >= 1, 0 <= offset < stride, integers. */
function checkColumn(kernel: string, strideName: string, stride: number, offsetName: string, offset: number): void {
  if (!Number.isInteger(stride) || stride < 1) {
    throw new InvalidArgumentError(`${kernel}: ${strideName} must be a positive integer, got ${stride}.`);
  }
  if (!Number.isInteger(offset) || offset < 0 || offset >= stride) {
    throw new InvalidArgumentError(`${kernel}: ${offsetName} must be an integer in [0, ${strideName} = ${stride}), got ${offset}.`);
  }
}

function checkMergeShape(kernel: string, a: { batch: number; seq: number; heads: number; headDim: number }): void {
  for (const [name, value] of Object.entries({ batch: a.batch, seq: a.seq, heads: a.heads, headDim: a.headDim })) {
    if (!Number.isInteger(value) || value < 1) {
      throw new InvalidArgumentError(`${kernel}: ${name} must be a positive integer, got ${value}.`);
    }
  }
  if (a.headDim % 4 !== 0) throw new InvalidArgumentError(`${kernel}: headDim must be a multiple of 4, got ${a.headDim}.`);
}

function checkDistinct(kernel: string, written: Record<string, GpuTensor>, read: Record<string, GpuTensor>): void {
  const all = Object.entries({ ...read, ...written });
  for (const [name, t] of Object.entries(written)) {
    for (const [other, u] of all) {
      if (other !== name && u.buffer === t.buffer) {
        throw new InvalidArgumentError(`${kernel}: ${name} "${t.label}" and ${other} "${u.label}" share a buffer; ${name} is written, so they must be distinct tensors.`);
      }
    }
  }
}

/** (query, key) pairs causal attention computes: query i sees keys j < seqKV with j <= offset + i. */
function visiblePairs(seqQ: number, seqKV: number, offset: number): number {
  // Queries whose limit offset + i + 1 is below seqKV see offset + i + 1 keys; the rest see seqKV.
  const partial = Math.max(0, Math.min(seqQ, seqKV - offset - 1));
  return partial * (offset + 1) + (partial * (partial - 1)) / 2 + (seqQ - partial) * seqKV;
}

/**
 * Compiles the attention pipelines once for activations of element type `dtype` (default f32);
 * `forward`, `backward`, `merge` and `mergeBackward` then record dispatches.
 *
 * @example
 * ```ts
 * const attention = await createAttentionKernels(ctx);
 * const rec = new CommandRecorder(ctx, 'layer');
 * attention.forward(rec, { q, k, v, out, lse, batch: 2, seqQ: 128, seqKV: 128, heads: 8, kvHeads: 2, headDim: 64, scale: 1 / 8 });
 * attention.backward(rec, { q, k, v, out, lse, gradOutput, gradQ, gradK, gradV, delta, batch: 2, seq: 128, heads: 8, kvHeads: 2, headDim: 64, scale: 1 / 8 });
 * rec.submit();
 *
 * // Prefix tuning with 16 virtual tokens: k, v, gradK and gradV hold [2 * (16 + 128), kvHeads * headDim].
 * const prefix = { batch: 2, seqKV: 16 + 128, positionOffset: 16, heads: 8, kvHeads: 2, headDim: 64, scale: 1 / 8 };
 * attention.forward(rec, { q, k, v, out, lse, seqQ: 128, ...prefix });
 * attention.backward(rec, { q, k, v, out, lse, gradOutput, gradQ, gradK, gradV, delta, seq: 128, ...prefix });
 *
 * // UniPELT's gated prefix in two passes: the prefix alone (pk/pv [2 * 16, ...], queries qp = gk * q,
 * // every key visible) and the causal real keys, merged by their lse with gv = column 1 of gates [256, 2].
 * const shape = { batch: 2, heads: 8, kvHeads: 2, headDim: 64, scale: 1 / 8 };
 * const alone = { ...shape, seqKV: 16, positionOffset: 16 };
 * attention.forward(rec, { q: qp, k: pk, v: pv, out: outP, lse: lseP, seqQ: 128, ...alone });
 * attention.forward(rec, { q, k, v, out: outR, lse: lseR, seqQ: 128, seqKV: 128, ...shape });
 * const gv = { gate: gates, gateStride: 2, gateOffset: 1 };
 * attention.merge(rec, { outA: outP, lseA: lseP, outB: outR, lseB: lseR, ...gv, out, batch: 2, seq: 128, heads: 8, headDim: 64 });
 * attention.mergeBackward(rec, {
 *   gradOutput, outA: outP, lseA: lseP, outB: outR, lseB: lseR, ...gv, gradOutA: gradOutP, gradOutB: gradOutR,
 *   gradLseA: gradLseP, gradLseB: gradLseR, gradGate: gradGates, gradGateStride: 2, gradGateOffset: 1,
 *   batch: 2, seq: 128, heads: 8, headDim: 64,
 * });
 * attention.backward(rec, { q: qp, k: pk, v: pv, out: outP, lse: lseP, gradOutput: gradOutP, gradLse: gradLseP,
 *   gradQ: gradQp, gradK: gradPk, gradV: gradPv, delta, seq: 128, ...alone });
 * attention.backward(rec, { q, k, v, out: outR, lse: lseR, gradOutput: gradOutR, gradLse: gradLseR,
 *   gradQ, gradK, gradV, delta, seq: 128, ...shape });
 * ```
 */
export async function createAttentionKernels(ctx: GpuContext, options: AttentionKernelOptions = {}): Promise<AttentionKernels> {
  const dtype = requireElementType(ctx, 'attention', options.dtype ?? 'f32');
  const [forward, delta, deltaGradLse, dq, dkv, merge, mergeLse, mergeOut, mergeGate] = await Promise.all([
    ctx.pipelines.get(ATTENTION_FORWARD_KERNEL, dtype),
    ctx.pipelines.get(ATTENTION_BACKWARD_DELTA_KERNEL, dtype, { HAS_GRAD_LSE: false }),
    ctx.pipelines.get(ATTENTION_BACKWARD_DELTA_KERNEL, dtype, { HAS_GRAD_LSE: true }),
    ctx.pipelines.get(ATTENTION_BACKWARD_DQ_KERNEL, dtype),
    ctx.pipelines.get(ATTENTION_BACKWARD_DKV_KERNEL, dtype),
    ctx.pipelines.get(ATTENTION_MERGE_KERNEL, dtype),
    ctx.pipelines.get(ATTENTION_MERGE_BACKWARD_LSE_KERNEL, dtype),
    ctx.pipelines.get(ATTENTION_MERGE_BACKWARD_OUT_KERNEL, dtype),
    ctx.pipelines.get(ATTENTION_MERGE_BACKWARD_GATE_KERNEL, dtype),
  ]);
  // The matmul path, for callers that lend its scratch.
  const matmulPath = await createMatmulAttention(ctx, dtype);
  // Bound in place of lse when the caller wants none (inference); the shader skips writing it.
  let unusedLse: GpuTensor | undefined;
  const maxGroups = ctx.limits.maxComputeWorkgroupsPerDimension;

  return {
    dtype,
    forward(recorder, a) {
      const kernel = 'attention forward';
      const kvCapacity = a.kvCapacity ?? a.seqKV;
      const positionOffset = a.positionOffset ?? 0;
      checkShape(kernel, a, { seqQ: a.seqQ, seqKV: a.seqKV, kvCapacity });
      if (!Number.isInteger(positionOffset) || positionOffset < 0) {
        throw new InvalidArgumentError(`${kernel}: positionOffset must be a non-negative integer, got ${positionOffset}.`);
      }
      if (a.seqKV > kvCapacity) {
        throw new InvalidArgumentError(`${kernel}: seqKV (${a.seqKV}) exceeds kvCapacity (${kvCapacity}).`);
      }
      const qCols = a.heads * a.headDim;
      const kvCols = a.kvHeads * a.headDim;
      const qShape = `batch ${a.batch} x seqQ ${a.seqQ}, heads ${a.heads} x headDim ${a.headDim}`;
      const kvShape = `batch ${a.batch} x kvCapacity ${kvCapacity}, kvHeads ${a.kvHeads} x headDim ${a.headDim}`;
      checkTensor(kernel, 'q', a.q, a.batch * a.seqQ, qCols, qShape, dtype);
      checkTensor(kernel, 'k', a.k, a.batch * kvCapacity, kvCols, kvShape, dtype);
      checkTensor(kernel, 'v', a.v, a.batch * kvCapacity, kvCols, kvShape, dtype);
      checkTensor(kernel, 'out', a.out, a.batch * a.seqQ, qCols, qShape, dtype);
      if (a.lse) checkTensor(kernel, 'lse', a.lse, a.batch * a.heads, a.seqQ, `[batch ${a.batch}, heads ${a.heads}, seqQ ${a.seqQ}]`, 'f32');
      checkDistinct(kernel, { out: a.out, ...(a.lse ? { lse: a.lse } : {}) }, { q: a.q, k: a.k, v: a.v });
      if (!Number.isFinite(a.scale)) throw new InvalidArgumentError(`${kernel}: scale must be finite, got ${a.scale}.`);
      if (a.scratch) {
        if (kvCapacity !== a.seqKV) {
          throw new InvalidArgumentError(`${kernel}: scratch needs kvCapacity = seqKV (got ${kvCapacity} and ${a.seqKV}); KV-cache decoding runs the flash kernel, leave scratch out.`);
        }
        const matmulArgs = { ...a, seq: a.seqQ, positionOffset };
        matmulPath.check(kernel, matmulArgs, a.scratch, { q: a.q, k: a.k, v: a.v, out: a.out, lse: a.lse });
        matmulPath.forward(recorder, matmulArgs, a.scratch);
        return;
      }
      const layout = forwardLayout(a.headDim);
      unusedLse ??= createTensor(ctx, { shape: [1], label: 'attention lse (unused)' });
      recorder.dispatch(forward, [a.q.buffer, a.k.buffer, a.v.buffer, a.out.buffer, (a.lse ?? unusedLse).buffer],
        packParams([
          ...layoutParams(layout),
          ['u32', a.seqQ], ['u32', a.seqKV], ['u32', kvCapacity], ['u32', a.heads], ['u32', a.kvHeads],
          ['u32', positionOffset], ['f32', a.scale], ['u32', a.lse ? 1 : 0],
        ]),
        [Math.ceil(a.seqQ / layout.rows), a.heads, a.batch],
        { flops: 4 * a.headDim * a.heads * a.batch * visiblePairs(a.seqQ, a.seqKV, positionOffset) });
    },

    backward(recorder, a) {
      const kernel = 'attention backward';
      const seqKV = a.seqKV ?? a.seq;
      const positionOffset = a.positionOffset ?? 0;
      checkShape(kernel, a, { seq: a.seq, seqKV });
      if (!Number.isInteger(positionOffset) || positionOffset < 0) {
        throw new InvalidArgumentError(`${kernel}: positionOffset must be a non-negative integer, got ${positionOffset}.`);
      }
      // The forward also allows fewer keys (a query past the end of a KV cache sees them all). A
      // training step has each query's own key, or (a prefix on its own) keys that all come before
      // every query: anything between is a wrong seqKV or offset.
      if (positionOffset + a.seq > seqKV && seqKV > positionOffset) {
        throw new InvalidArgumentError(
          `${kernel}: positionOffset (${positionOffset}) + seq (${a.seq}) = ${positionOffset + a.seq} exceeds seqKV (${seqKV}); ` +
            `query i is the token at key position positionOffset + i, so k and v need positionOffset + seq rows per batch ` +
            `(prefix tuning: seqKV = prefix length + seq, positionOffset = prefix length), or at most positionOffset ` +
            `when every query sees every key (a prefix alone: seqKV = positionOffset = prefix length).`,
        );
      }
      const tokens = a.batch * a.seq;
      const qCols = a.heads * a.headDim;
      const kvCols = a.kvHeads * a.headDim;
      const qShape = `batch ${a.batch} x seq ${a.seq}, heads ${a.heads} x headDim ${a.headDim}`;
      const kvShape = `batch ${a.batch} x seqKV ${seqKV}, kvHeads ${a.kvHeads} x headDim ${a.headDim}`;
      const statShape = `[batch ${a.batch}, heads ${a.heads}, seq ${a.seq}]`;
      for (const [name, t] of [['q', a.q], ['out', a.out], ['gradOutput', a.gradOutput], ['gradQ', a.gradQ]] as const) {
        checkTensor(kernel, name, t, tokens, qCols, qShape, dtype);
      }
      for (const [name, t] of [['k', a.k], ['v', a.v], ['gradK', a.gradK], ['gradV', a.gradV]] as const) {
        checkTensor(kernel, name, t, a.batch * seqKV, kvCols, kvShape, dtype);
      }
      checkTensor(kernel, 'lse', a.lse, a.batch * a.heads, a.seq, statShape, 'f32');
      checkTensor(kernel, 'delta', a.delta, a.batch * a.heads, a.seq, statShape, 'f32');
      if (a.gradLse) checkTensor(kernel, 'gradLse', a.gradLse, a.batch * a.heads, a.seq, statShape, 'f32');
      checkDistinct(kernel, { gradQ: a.gradQ, gradK: a.gradK, gradV: a.gradV, delta: a.delta },
        { q: a.q, k: a.k, v: a.v, out: a.out, lse: a.lse, gradOutput: a.gradOutput, ...(a.gradLse ? { gradLse: a.gradLse } : {}) });
      if (!Number.isFinite(a.scale)) throw new InvalidArgumentError(`${kernel}: scale must be finite, got ${a.scale}.`);
      const matmulArgs = { ...a, seqKV, positionOffset };
      if (a.scratch) {
        matmulPath.check(kernel, matmulArgs, a.scratch, {
          q: a.q, k: a.k, v: a.v, out: a.out, lse: a.lse, gradOutput: a.gradOutput, delta: a.delta, gradLse: a.gradLse, gradQ: a.gradQ, gradK: a.gradK, gradV: a.gradV,
        });
      }

      const d4 = a.headDim / 4;
      const g = grid1D(tokens * a.heads, WG, maxGroups);
      // Without gradLse the shader never reads binding 2; lse fills it (read-only, like it).
      recorder.dispatch(a.gradLse ? deltaGradLse : delta, [a.gradOutput.buffer, a.out.buffer, (a.gradLse ?? a.lse).buffer, a.delta.buffer],
        packParams([['u32', tokens], ['u32', a.seq], ['u32', a.heads], ['u32', d4], ['u32', g.rowStride]]), g.workgroups);
      if (a.scratch) {
        matmulPath.backward(recorder, matmulArgs, a.scratch);
        return;
      }

      const shape: Array<['u32' | 'f32', number]> = [
        ['u32', a.seq], ['u32', seqKV], ['u32', positionOffset], ['u32', a.heads], ['u32', a.kvHeads], ['f32', a.scale],
      ];
      const reads = [a.q.buffer, a.k.buffer, a.v.buffer, a.gradOutput.buffer, a.lse.buffer, a.delta.buffer];
      // Per visible (query, key) pair and head: dQ recomputes S and dP and adds dS K (3 products of
      // headDim), dK/dV recomputes S and dP and adds P^T dO and dS^T Q (4).
      const pairFlops = 2 * a.headDim * a.heads * a.batch * visiblePairs(a.seq, seqKV, positionOffset);
      const dqLayout = backwardLayout(a.headDim, 1024);
      recorder.dispatch(dq, [...reads, a.gradQ.buffer], packParams([...layoutParams(dqLayout), ...shape]),
        [Math.ceil(a.seq / dqLayout.rows), a.heads, a.batch], { flops: 3 * pairFlops });
      const dkvLayout = backwardLayout(a.headDim, 512);
      recorder.dispatch(dkv, [...reads, a.gradK.buffer, a.gradV.buffer], packParams([...layoutParams(dkvLayout), ...shape]),
        [Math.ceil(seqKV / dkvLayout.rows), a.kvHeads, a.batch], { flops: 4 * pairFlops });
    },

    merge(recorder, a) {
      const kernel = 'attention merge';
      const m = checkMerge(kernel, a, dtype);
      checkTensor(kernel, 'out', a.out, m.tokens, m.cols, m.rowShape, dtype);
      checkDistinct(kernel, { out: a.out }, { outA: a.outA, lseA: a.lseA, outB: a.outB, lseB: a.lseB, gate: a.gate });
      const g = grid1D(m.tokens * m.cols / 4, WG, maxGroups);
      recorder.dispatch(merge, [a.outA.buffer, a.lseA.buffer, a.outB.buffer, a.lseB.buffer, a.gate.buffer, a.out.buffer],
        mergeParams(a, m, g.rowStride, 1, 0), g.workgroups);
    },

    mergeBackward(recorder, a) {
      const kernel = 'attention mergeBackward';
      const m = checkMerge(kernel, a, dtype);
      const gradGateStride = a.gradGateStride ?? 1;
      const gradGateOffset = a.gradGateOffset ?? 0;
      checkColumn(kernel, 'gradGateStride', gradGateStride, 'gradGateOffset', gradGateOffset);
      for (const [name, t] of [['gradOutput', a.gradOutput], ['gradOutA', a.gradOutA], ['gradOutB', a.gradOutB]] as const) {
        checkTensor(kernel, name, t, m.tokens, m.cols, m.rowShape, dtype);
      }
      checkTensor(kernel, 'gradLseA', a.gradLseA, a.batch * a.heads, a.seq, m.statShape, 'f32');
      checkTensor(kernel, 'gradLseB', a.gradLseB, a.batch * a.heads, a.seq, m.statShape, 'f32');
      checkTensor(kernel, 'gradGate', a.gradGate, m.tokens, gradGateStride, `[tokens ${m.tokens}, gradGateStride ${gradGateStride}]`, 'f32');
      checkDistinct(kernel,
        { gradOutA: a.gradOutA, gradOutB: a.gradOutB, gradLseA: a.gradLseA, gradLseB: a.gradLseB, gradGate: a.gradGate },
        { gradOutput: a.gradOutput, outA: a.outA, lseA: a.lseA, outB: a.outB, lseB: a.lseB, gate: a.gate });
      const perHead = grid1D(m.tokens * a.heads, WG, maxGroups);
      recorder.dispatch(mergeLse,
        [a.gradOutput.buffer, a.outA.buffer, a.outB.buffer, a.lseA.buffer, a.lseB.buffer, a.gate.buffer, a.gradLseA.buffer, a.gradLseB.buffer],
        mergeParams(a, m, perHead.rowStride, gradGateStride, gradGateOffset), perHead.workgroups);
      const perVec4 = grid1D(m.tokens * m.cols / 4, WG, maxGroups);
      recorder.dispatch(mergeOut,
        [a.gradOutput.buffer, a.lseA.buffer, a.lseB.buffer, a.gate.buffer, a.gradOutA.buffer, a.gradOutB.buffer],
        mergeParams(a, m, perVec4.rowStride, gradGateStride, gradGateOffset), perVec4.workgroups);
      const perToken = grid1D(m.tokens, WG, maxGroups);
      recorder.dispatch(mergeGate,
        [a.gradOutput.buffer, a.outA.buffer, a.lseA.buffer, a.lseB.buffer, a.gradGate.buffer],
        mergeParams(a, m, perToken.rowStride, gradGateStride, gradGateOffset), perToken.workgroups);
    },
  };
}

interface MergeLayout {
  tokens: number;
  /** heads * headDim */
  cols: number;
  gateStride: number;
  gateOffset: number;
  rowShape: string;
  statShape: string;
}

/** The checks merge and mergeBackward share: shapes, the inputs of the forward, the gate's column. */
function checkMerge(kernel: string, a: AttentionMergeArgs | AttentionMergeBackwardArgs, dtype: ElementType): MergeLayout {
  checkMergeShape(kernel, a);
  const gateStride = a.gateStride ?? 1;
  const gateOffset = a.gateOffset ?? 0;
  checkColumn(kernel, 'gateStride', gateStride, 'gateOffset', gateOffset);
  const tokens = a.batch * a.seq;
  const cols = a.heads * a.headDim;
  const rowShape = `batch ${a.batch} x seq ${a.seq}, heads ${a.heads} x headDim ${a.headDim}`;
  const statShape = `[batch ${a.batch}, heads ${a.heads}, seq ${a.seq}]`;
  checkTensor(kernel, 'outA', a.outA, tokens, cols, rowShape, dtype);
  checkTensor(kernel, 'outB', a.outB, tokens, cols, rowShape, dtype);
  checkTensor(kernel, 'lseA', a.lseA, a.batch * a.heads, a.seq, statShape, 'f32');
  checkTensor(kernel, 'lseB', a.lseB, a.batch * a.heads, a.seq, statShape, 'f32');
  checkTensor(kernel, 'gate', a.gate, tokens, gateStride, `[tokens ${tokens}, gateStride ${gateStride}]`, 'f32');
  return { tokens, cols, gateStride, gateOffset, rowShape, statShape };
}

/** shaders/lib/attention-merge-common.wgsl's Params. */
function mergeParams(a: { seq: number; heads: number; headDim: number }, m: MergeLayout, rowStride: number,
  gradGateStride: number, gradGateOffset: number): ArrayBuffer {
  return packParams([
    ['u32', m.tokens], ['u32', a.seq], ['u32', a.heads], ['u32', a.headDim / 4], ['u32', rowStride],
    ['u32', m.gateStride], ['u32', m.gateOffset], ['u32', gradGateStride], ['u32', gradGateOffset],
  ]);
}
