/**
 * Types and loader for fixtures/transformer-ops.json (scripts/make_transformer_op_fixtures.py,
 * PyTorch float32): norms, activations, embedding, elementwise ops and AdamW with clipping.
 */
import json from './fixtures/transformer-ops.json';
import type { EncodedTensor } from './fixtures.js';

export interface NormCase {
  name: string;
  rows: number;
  cols: number;
  eps: number;
  x: EncodedTensor;
  weight: EncodedTensor;
  /** Layer norm cases only, and not all of them. */
  bias?: EncodedTensor;
  upstream: EncodedTensor;
  y: EncodedTensor;
  dx: EncodedTensor;
}

export interface SwigluCase {
  name: string;
  size: number;
  gate: EncodedTensor;
  up: EncodedTensor;
  upstream: EncodedTensor;
  out: EncodedTensor;
  dGate: EncodedTensor;
  dUp: EncodedTensor;
}

export interface GeluCase {
  name: string;
  size: number;
  x: EncodedTensor;
  upstream: EncodedTensor;
  y: EncodedTensor;
  dx: EncodedTensor;
}

export interface EmbeddingCase {
  name: string;
  vocab: number;
  dim: number;
  rows: number;
  ids: number[];
  table: EncodedTensor;
  positions?: EncodedTensor;
  maxPositions?: number;
  seqLen?: number;
  positionOffset?: number;
  upstream: EncodedTensor;
  out: EncodedTensor;
  gradTable: EncodedTensor;
  /** With gradTableAccumulated = gradInit + gradTable, for scatterAdd's `+=`. */
  gradInit?: EncodedTensor;
  gradTableAccumulated?: EncodedTensor;
}

export interface ElementwiseFixture {
  axpy: { size: number; alpha: number; target: EncodedTensor; source: EncodedTensor; expected: EncodedTensor };
  addBias: { rows: number; cols: number; target: EncodedTensor; bias: EncodedTensor; expected: EncodedTensor };
  copyColumns: {
    srcRowOffset: number;
    srcOffset: number;
    dstRowOffset: number;
    dstOffset: number;
    rows: number;
    cols: number;
    src: EncodedTensor;
    srcCols: number;
    dst: EncodedTensor;
    dstCols: number;
    overwrite: EncodedTensor;
    accumulate: EncodedTensor;
  };
}

export interface AdamWCase {
  name: string;
  sizes: number[];
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 'inf' for no clipping (JSON has no Infinity). */
  maxNorm: number | 'inf';
  gradScale: number;
  initial: EncodedTensor[];
  /** Per step: the raw gradients (before gradScale), clip_grad_norm_'s total norm, the parameters after the step. */
  steps: { grads: EncodedTensor[]; totalNorm: number; params: EncodedTensor[] }[];
  /** exp_avg and exp_avg_sq after the last step. */
  m: EncodedTensor[];
  v: EncodedTensor[];
}

export const transformerOpsFixture = json as unknown as {
  generatedBy: string;
  rmsnorm: NormCase[];
  layernorm: NormCase[];
  swiglu: SwigluCase[];
  gelu: GeluCase[];
  embedding: EmbeddingCase[];
  elementwise: ElementwiseFixture;
  adamw: AdamWCase[];
};
