/**
 * Types and loader for fixtures/transformer-ops.json (scripts/make_transformer_op_fixtures.py,
 * PyTorch float32): norms, activations, embedding, elementwise ops and AdamW with clipping, and
 * an `f16` section (inputs rounded to float16, reference in float32, expected outputs rounded to
 * float16; all stored as float32, which holds every float16 value exactly).
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

/** An f16 norm case: x, upstream and the outputs are f16 values; weight, bias, rstd and mean float32. */
export interface NormCaseF16 extends NormCase {
  /** dx + upstream, rounded to f16 (backward with accumulate onto the upstream gradient). */
  dxAccumulated: EncodedTensor;
  /** [rows], float32. */
  rstd: EncodedTensor;
  /** [rows], float32, layer norm only. */
  mean?: EncodedTensor;
}

/** cast between f32 and f16, each direction overwriting and accumulating. */
export interface CastFixture {
  size: number;
  /** f32 -> f16: source, the f16 tensor's initial value for +=, and the results. */
  float: EncodedTensor;
  halfInit: EncodedTensor;
  toHalf: EncodedTensor;
  toHalfAccumulated: EncodedTensor;
  /** f16 -> f32: source (f16 values), the f32 tensor's initial value for +=, and the results. */
  half: EncodedTensor;
  floatInit: EncodedTensor;
  toFloat: EncodedTensor;
  toFloatAccumulated: EncodedTensor;
}

export interface F16Fixture {
  rmsnorm: NormCaseF16[];
  layernorm: NormCaseF16[];
  swiglu: SwigluCase[];
  gelu: GeluCase[];
  /** With positions and gradInit. */
  embedding: EmbeddingCase[];
  /** addBias's bias is float32; the rest are f16 values. */
  elementwise: ElementwiseFixture & { cast: CastFixture };
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
  f16: F16Fixture;
};
