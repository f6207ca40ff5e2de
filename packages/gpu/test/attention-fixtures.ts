/** Loads packages/gpu/test/fixtures/attention.json (scripts/make_attention_fixtures.py, PyTorch). */
import attentionJson from './fixtures/attention.json';
import type { EncodedTensor } from './fixtures.js';
import type { RopeScaling } from '../src/kernels/rope.js';

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
  /** Backward cases only (seqQ == seqKV == kvCapacity, positionOffset 0). */
  upstream?: EncodedTensor;
  dq?: EncodedTensor;
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

export const attentionFixture = attentionJson as unknown as {
  generatedBy: string;
  ignoreIndex: number;
  rope: RopeCase[];
  attention: AttentionCase[];
  crossEntropy: CrossEntropyCase[];
};
