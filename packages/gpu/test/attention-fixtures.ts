/** Loads packages/gpu/test/fixtures/attention.json (scripts/make_attention_fixtures.py, PyTorch). */
import attentionJson from './fixtures/attention.json';
import type { EncodedTensor } from './fixtures.js';
import { fromF16Bits } from '../src/f16.js';
import type { RopeScaling } from '../src/kernels/rope.js';

/** A tensor the kernels hold as f16, written by the generator as little-endian binary16 bytes. */
export interface F16Tensor {
  dtype: 'f16';
  shape: number[];
  b64: string;
}

/** The raw binary16 bits, for uploading to an f16 tensor unchanged. */
export function f16Bits(t: F16Tensor): Uint16Array {
  if (t.dtype !== 'f16') throw new Error(`fixture tensor is ${String(t.dtype)}, not f16`);
  const bin = atob(t.b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new Uint16Array(bytes.buffer);
}

/** The f16 values widened to f32 (exact), for comparing with what readF32 returns. */
export function f16(t: F16Tensor): Float32Array {
  return fromF16Bits(f16Bits(t));
}

export interface RopeCase {
  name: string;
  headDim: number;
  theta: number;
  scaling: RopeScaling;
  /** Table rows to build: positions 0 .. positions - 1. */
  positions: number;
  /** Positions whose cos/sin rows the fixture holds, in order. */
  samplePositions: number[];
  invFreq: EncodedTensor;
  /** [samplePositions.length, headDim / 2] */
  cos: EncodedTensor;
  sin: EncodedTensor;
  rows: number;
  heads: number;
  seqLen: number;
  positionOffset: number;
  /** [rows, heads * headDim] */
  x: EncodedTensor;
  rotated: EncodedTensor;
  upstream: EncodedTensor;
  /** autograd: d sum(rope(x) * upstream) / dx */
  gradX: EncodedTensor;
}

export interface AttentionCase {
  name: string;
  batch: number;
  seqQ: number;
  seqKV: number;
  kvCapacity: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  scale: number;
  positionOffset: number;
  /** [batch * seqQ, heads * headDim] */
  q: EncodedTensor;
  /** [batch * kvCapacity, kvHeads * headDim] */
  k: EncodedTensor;
  v: EncodedTensor;
  out: EncodedTensor;
  /** [batch, heads, seqQ] */
  lse: EncodedTensor;
  /** Backward cases only (kvCapacity == seqKV; self-attention or a prefix). */
  upstream?: EncodedTensor;
  /** gradLse cases only: [batch, heads, seqQ], dL/dlse (the loss adds sum(lse * upstreamLse)) */
  upstreamLse?: EncodedTensor;
  /** [batch * seqQ, heads * headDim] */
  dq?: EncodedTensor;
  /** [batch * seqKV, kvHeads * headDim], prefix rows included */
  dk?: EncodedTensor;
  dv?: EncodedTensor;
}

export interface CrossEntropyCase {
  name: string;
  rows: number;
  vocab: number;
  /** u32 targets; ignored rows are 0xffffffff. */
  targets: number[];
  /** 1 / (rows not ignored): the fixture's loss is the mean. */
  gradScale: number;
  loss: number;
  logits: EncodedTensor;
  losses: EncodedTensor;
  gradLogits: EncodedTensor;
}

/**
 * Half-precision cases (f16 storage, f32 arithmetic): inputs rounded to float16, the reference
 * computed in float32 from them, and what the kernels store as f16 rounded to float16.
 */
export interface RopeF16Case {
  name: string;
  headDim: number;
  theta: number;
  scaling: RopeScaling;
  rows: number;
  heads: number;
  seqLen: number;
  positionOffset: number;
  /** [rows, heads * headDim], all f16 */
  x: F16Tensor;
  rotated: F16Tensor;
  upstream: F16Tensor;
  gradX: F16Tensor;
}

export interface AttentionF16Case {
  name: string;
  batch: number;
  seqQ: number;
  seqKV: number;
  kvCapacity: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  scale: number;
  positionOffset: number;
  q: F16Tensor;
  k: F16Tensor;
  v: F16Tensor;
  /** float16-rounded output; the backward reference reads this out (delta = rowsum(dO * out)). */
  out: F16Tensor;
  /** f32, [batch, heads, seqQ] */
  lse: EncodedTensor;
  upstream?: F16Tensor;
  /** gradLse cases only: f32 [batch, heads, seqQ] */
  upstreamLse?: EncodedTensor;
  dq?: F16Tensor;
  dk?: F16Tensor;
  dv?: F16Tensor;
}

export interface CrossEntropyF16Case {
  name: string;
  rows: number;
  vocab: number;
  targets: number[];
  gradScale: number;
  loss: number;
  /** f16 [rows, vocab] */
  logits: F16Tensor;
  /** f32 [rows] */
  losses: EncodedTensor;
  /** f16 [rows, vocab] */
  gradLogits: F16Tensor;
}

/**
 * merge: out = w g outA + (1 - w) outB, w = sigmoid(lseA - lseB) per (token, head), g column
 * gateOffset of gate; the gradients are autograd's of sum(out * upstream). Activations (outA, outB,
 * upstream, out, gradOutA, gradOutB) are f32, or f16 in mergeF16; lse, gates and their gradients f32.
 */
export interface MergeCase<T = EncodedTensor> {
  name: string;
  batch: number;
  seq: number;
  heads: number;
  headDim: number;
  gateStride: number;
  gateOffset: number;
  gradGateStride: number;
  gradGateOffset: number;
  /** [batch * seq, heads * headDim] */
  outA: T;
  outB: T;
  /** [batch, heads, seq] f32 */
  lseA: EncodedTensor;
  lseB: EncodedTensor;
  /** [batch * seq, gateStride] f32 */
  gate: EncodedTensor;
  upstream: T;
  out: T;
  gradOutA: T;
  gradOutB: T;
  gradLseA: EncodedTensor;
  gradLseB: EncodedTensor;
  /** [batch * seq] f32: the gate column's gradient */
  gradGate: EncodedTensor;
}

export const attentionFixture = attentionJson as unknown as {
  generatedBy: string;
  ignoreIndex: number;
  rope: RopeCase[];
  attention: AttentionCase[];
  crossEntropy: CrossEntropyCase[];
  ropeF16: RopeF16Case[];
  attentionF16: AttentionF16Case[];
  crossEntropyF16: CrossEntropyF16Case[];
  /** Prefix tuning: seqKV = kvCapacity = prefix + seqQ, positionOffset = prefix (one case has unseen keys past them). */
  attentionPrefix: AttentionCase[];
  attentionPrefixF16: AttentionF16Case[];
  /** With dL/dlse: causal, a prefix with its tokens, and the prefix alone (seqKV = positionOffset). */
  attentionGradLse: AttentionCase[];
  attentionGradLseF16: AttentionF16Case[];
  merge: MergeCase[];
  mergeF16: MergeCase<F16Tensor>[];
};
