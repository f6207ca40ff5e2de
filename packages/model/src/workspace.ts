/**
 * Every activation and scratch buffer one training step or one decode call needs, planned from
 * the shapes alone. The same plan drives the allocation and the memory planner's estimate, so
 * the estimate cannot drift from what is really allocated.
 */
import { attentionMatmulScratchSizes, createTensor, paddedRowStride, type AttentionMatmulScratch, type DType, type GpuContext, type GpuTensor } from '@webtune/gpu';
import type { AdapterBuffers } from './adapters/types.js';
import { architectureOf } from './arch/index.js';
import type { ModelConfig } from './config.js';

export interface WorkspaceShape {
  batch: number;
  /** Rows per sequence, the adapter's virtual tokens included. */
  seq: number;
  /**
   * Key/value prefix rows per layer (prefix tuning): attention reads each sequence's keys and
   * values with the prefix in front, assembled in a shared scratch (and its gradient in training).
   */
  prefixTokens: number;
  /** The prefix is gated per token (UniPELT): attention over prefix and sequence apart, merged. */
  gatedPrefix?: boolean;
  /** Training keeps what backward needs; inference keeps one layer's worth. */
  training: boolean;
  /** Keep only each layer's input and recompute the rest during backward. */
  recompute: boolean;
  /** What the adapter's runtime needs (per trainable layer, and shared); empty without an adapter. */
  adapter: AdapterBuffers;
  /**
   * Training: the lowest layer with trainable tensors. Backward stops there, so the layers below
   * share one scratch copy of their state instead of keeping it.
   */
  lowestTrainable: number;
  /** Rows of the LM head computed at once. */
  headChunk: number;
  /**
   * Elements from one row of the MLP's intermediates (mlpA, mlpB, act and their gradients) to the
   * next: the intermediate size, or padded (mlpRowStride()) where only the transformer's frozen
   * matmuls read and write them.
   */
  mlpRowStride: number;
  /** NF4 base: training dequantizes one frozen weight at a time into a scratch (forward and backward). */
  nf4: boolean;
  /** Storage of activations; statistics (norm rstd/mean, attention lse, losses) stay f32. */
  dtype: 'f32' | 'f16';
}

export interface BufferPlan {
  name: string;
  shape: number[];
  dtype: DType;
  /** How many copies (one per layer for saved activations). */
  copies: number;
}

export const BYTES: Record<DType, number> = { f32: 4, f16: 2, u32: 4, u8: 1 };

/** Buffers of one layer's forward state (what backward reads). */
function layerPlan(config: ModelConfig, ws: WorkspaceShape): BufferPlan[] {
  const t = ws.batch * ws.seq;
  const d = config.hiddenSize;
  const q = config.numHeads * config.headDim;
  const kv = config.numKvHeads * config.headDim;
  const i = ws.mlpRowStride;
  const arch = architectureOf(config);
  const b = (name: string, shape: number[], dtype: DType = ws.dtype): BufferPlan => ({ name, shape, dtype, copies: 1 });
  const stat = (name: string, shape: number[]) => b(name, shape, 'f32');
  const plan = [
    b('n1', [t, d]), stat('rstd1', [t]), b('q', [t, q]), b('k', [t, kv]), b('v', [t, kv]), b('att', [t, q]), stat('lse', [ws.batch * config.numHeads * ws.seq]),
    b('x2', [t, d]), b('n2', [t, d]), stat('rstd2', [t]), b('mlpA', [t, i]), b('act', [t, i]),
  ];
  if (arch.mlp.kind === 'swiglu') plan.push(b('mlpB', [t, i]));
  if (arch.attention.kind === 'fused') plan.push(b('qkv', [t, 3 * d]));
  if (arch.norm === 'layer') plan.push(stat('mean1', [t]), stat('mean2', [t]));
  // A gated prefix: the prefix's and the sequence's attention outputs and the prefix's log-sum-exp, merged into att.
  if (ws.gatedPrefix) plan.push(b('attP', [t, q]), b('attR', [t, q]), stat('lseP', [ws.batch * config.numHeads * ws.seq]));
  plan.push(...ws.adapter.layer);
  return plan;
}

/** The whole workspace: layer inputs, layer state (per layer or shared), backward scratch, LM head. */
export function planWorkspace(config: ModelConfig, ws: WorkspaceShape): BufferPlan[] {
  const t = ws.batch * ws.seq;
  const d = config.hiddenSize;
  const q = config.numHeads * config.headDim;
  const kv = config.numKvHeads * config.headDim;
  const i = ws.mlpRowStride;
  const v = config.vocabSize;
  const arch = architectureOf(config);
  // Saved state: one copy per layer backward visits (plus one scratch copy the frozen layers below share).
  const visited = config.numLayers - ws.lowestTrainable;
  const perLayer = ws.training && !ws.recompute ? visited + (ws.lowestTrainable > 0 ? 1 : 0) : 1;
  const plan: BufferPlan[] = [
    { name: 'ids', shape: [t], dtype: 'u32', copies: 1 },
    // Layer inputs: every layer's when training (backward starts from them), otherwise two that alternate.
    { name: 'x', shape: [t, d], dtype: ws.dtype, copies: ws.training ? config.numLayers + 1 : 2 },
    ...layerPlan(config, ws).map((p) => ({ ...p, copies: perLayer })),
    { name: 'xf', shape: [t, d], dtype: ws.dtype, copies: 1 },
    { name: 'rstdF', shape: [t], dtype: 'f32', copies: 1 },
    { name: 'logits', shape: [ws.headChunk, logitsRowStride(config, ws.dtype)], dtype: ws.dtype, copies: 1 },
  ];
  if (arch.norm === 'layer') plan.push({ name: 'meanF', shape: [t], dtype: 'f32', copies: 1 });
  // The adapter's shared scratch (each method lists what it needs for training or inference).
  plan.push(...ws.adapter.shared);
  if (ws.prefixTokens > 0 && ws.gatedPrefix) {
    // The prefix rows once per sequence and the key-gated queries: rebuilt in backward, one copy for every layer.
    const rows = ws.batch * ws.prefixTokens;
    const stats = ws.batch * config.numHeads * ws.seq;
    plan.push({ name: 'kPrefix', shape: [rows, kv], dtype: ws.dtype, copies: 1 }, { name: 'vPrefix', shape: [rows, kv], dtype: ws.dtype, copies: 1 }, { name: 'qGated', shape: [t, q], dtype: ws.dtype, copies: 1 });
    if (ws.training) {
      plan.push(
        { name: 'dAttP', shape: [t, q], dtype: ws.dtype, copies: 1 }, { name: 'dAttR', shape: [t, q], dtype: ws.dtype, copies: 1 }, { name: 'dqGated', shape: [t, q], dtype: ws.dtype, copies: 1 },
        { name: 'dLseP', shape: [stats], dtype: 'f32', copies: 1 }, { name: 'dLseR', shape: [stats], dtype: 'f32', copies: 1 },
        { name: 'dkPrefix', shape: [rows, kv], dtype: ws.dtype, copies: 1 }, { name: 'dvPrefix', shape: [rows, kv], dtype: ws.dtype, copies: 1 },
        { name: 'dGates', shape: [t, 2], dtype: 'f32', copies: 1 },
      );
    }
  } else if (ws.prefixTokens > 0) {
    // One layer's keys and values with the prefix in front: rebuilt in backward, so one copy serves every layer.
    const rows = ws.batch * (ws.prefixTokens + ws.seq);
    plan.push({ name: 'kPrefixed', shape: [rows, kv], dtype: ws.dtype, copies: 1 }, { name: 'vPrefixed', shape: [rows, kv], dtype: ws.dtype, copies: 1 });
    if (ws.training) plan.push({ name: 'dkPrefixed', shape: [rows, kv], dtype: ws.dtype, copies: 1 }, { name: 'dvPrefixed', shape: [rows, kv], dtype: ws.dtype, copies: 1 });
  }
  if (ws.training) {
    plan.push(
      { name: 'targets', shape: [t], dtype: 'u32', copies: 1 },
      { name: 'losses', shape: [t], dtype: 'f32', copies: 1 },
      { name: 'gRes', shape: [t, d], dtype: ws.dtype, copies: 1 },
      { name: 'dN', shape: [t, d], dtype: ws.dtype, copies: 1 },
      { name: 'dAtt', shape: [t, q], dtype: ws.dtype, copies: 1 },
      { name: 'dq', shape: [t, q], dtype: ws.dtype, copies: 1 },
      { name: 'dk', shape: [t, kv], dtype: ws.dtype, copies: 1 },
      { name: 'dv', shape: [t, kv], dtype: ws.dtype, copies: 1 },
      { name: 'delta', shape: [ws.batch * config.numHeads * ws.seq], dtype: 'f32', copies: 1 },
      { name: 'dAct', shape: [t, i], dtype: ws.dtype, copies: 1 },
      { name: 'dGate', shape: [t, i], dtype: ws.dtype, copies: 1 },
      { name: 'dXf', shape: [t, d], dtype: ws.dtype, copies: 1 },
    );
    plan.push(...attentionScratchPlan(config, ws));
    if (arch.mlp.kind === 'swiglu') plan.push({ name: 'dUp', shape: [t, i], dtype: ws.dtype, copies: 1 });
    if (arch.attention.kind === 'fused') plan.push({ name: 'dQKV', shape: [t, 3 * d], dtype: ws.dtype, copies: 1 });
    if (ws.nf4) {
      // The largest weight, dequantized with its rows padded (weightScratchRowStride).
      const largest = Math.max(...arch.linears.map((n) => { const s = arch.linearShape(config, n); return s.outFeatures * weightScratchRowStride(s.inFeatures, ws.dtype); }));
      plan.push({ name: 'weightScratch', shape: [largest], dtype: ws.dtype, copies: 1 });
    }
  }
  return plan;
}

/**
 * Most attention's matmul scratch may take. Past it (long sequences, large batches) the flash
 * kernels run, which need none.
 */
export const ATTENTION_SCRATCH_MAX_BYTES = 64 * 1024 * 1024;
const ATTENTION_SCRATCH = 'attentionScratch.';

/**
 * The f32 scratch that lets training run attention forward and backward as matmuls (several
 * times faster than the flash kernels on CPU adapters; see @webtune/gpu's AttentionMatmulScratch),
 * for f32 and f16 activations alike, sized for the widest attention of the step (the keys with a
 * prefix in front), one copy for every layer. None past ATTENTION_SCRATCH_MAX_BYTES.
 */
function attentionScratchPlan(config: ModelConfig, ws: WorkspaceShape): BufferPlan[] {
  const sizes = attentionMatmulScratchSizes({
    batch: ws.batch, seq: ws.seq, seqKV: ws.prefixTokens + ws.seq, heads: config.numHeads, headDim: config.headDim,
  });
  const plan = Object.entries(sizes).map(([name, size]): BufferPlan => ({ name: ATTENTION_SCRATCH + name, shape: [size], dtype: 'f32', copies: 1 }));
  return planBytes(plan) <= ATTENTION_SCRATCH_MAX_BYTES ? plan : [];
}

export function planBytes(plan: readonly BufferPlan[]): number {
  let total = 0;
  for (const p of plan) total += Math.ceil((p.shape.reduce((a, b) => a * b, 1) * BYTES[p.dtype]) / 4) * 4 * p.copies;
  return total;
}

/**
 * Elements from one row of the LM head's logits to the next: the vocabulary padded (the LM head's
 * input gradient reads a 32-row block of logits down the vocabulary; see paddedRowStride).
 */
export function logitsRowStride(config: ModelConfig, dtype: 'f32' | 'f16'): number {
  return paddedRowStride(config.vocabSize, dtype);
}

/**
 * The MLP intermediates' row stride. Training pads it (paddedRowStride) when no adaptation method
 * changes an MLP linear, so that only the transformer's own matmuls, which take row strides, read
 * and write those rows: SmolLM2's 1,536-wide rows are 96 lines, and the down projection's X W^T
 * reads 32 of them at one column into two L1 sets (on lavapipe padding them ran it 1.22x faster,
 * and the gate and up input gradients 1.12x; interleaved A/B, issue 22). Methods that change an
 * MLP linear (IA3's feed-forward scaling, LoRA or DoRA on the MLP, adapters, UniPELT) see dense
 * rows, as do inference workspaces (the fused NF4 kernel decodes from dense rows).
 */
export function mlpRowStride(config: ModelConfig, dtype: 'f32' | 'f16', pad: boolean): number {
  return pad ? paddedRowStride(config.intermediateSize, dtype) : config.intermediateSize;
}

/**
 * Row stride of a 4-bit weight dequantized into `weightScratch` for the transformer's own matmuls
 * (training): padded as mlpRowStride pads the activations, where the dequantization can write
 * padded rows (a multiple of 8 columns). The down projection's X W^T reads 32 rows of its
 * 1,536-wide weight at one column, as it reads the activations; on lavapipe padding both ran that
 * product 1.42x faster than dense, 1.16x more than padding the activations alone (interleaved A/B,
 * issue 22). Adapter runtimes that dequantize into the scratch themselves keep dense rows.
 */
export function weightScratchRowStride(inFeatures: number, dtype: 'f32' | 'f16'): number {
  return inFeatures % 8 === 0 ? paddedRowStride(inFeatures, dtype) : inFeatures;
}

/** Default LM-head chunk: rows of logits up to ~8 MiB, rounded up to whole 64-row workgroups (and never more than the tokens). */
export function defaultHeadChunk(config: ModelConfig, tokens: number, maxBinding: number, dtype: 'f32' | 'f16' = 'f32'): number {
  const perRow = logitsRowStride(config, dtype) * BYTES[dtype];
  const rows = Math.floor(Math.min(8 * 1024 * 1024, maxBinding) / perRow);
  // The head's matmuls cover 64 rows per workgroup (8 x 4 blocks in 8 x 8 invocations; 'tiled'
  // 64 x 64): a chunk of 42 rows (SmolLM2's f32 logits in 8 MiB) leaves a third of every
  // workgroup idle. From 32 rows on, whole workgroups: at most twice the 8 MiB.
  const whole = Math.ceil(rows / 64) * 64;
  return Math.max(1, Math.min(tokens, rows >= 32 && whole * perRow <= maxBinding ? whole : rows));
}

export type LayerState = Record<string, GpuTensor>;

export class Workspace {
  /** Layer inputs; inputs[numLayers] is the last layer's output. In inference two alternate. */
  readonly inputs: GpuTensor[] = [];
  private readonly layers: LayerState[] = [];
  readonly buffers: Record<string, GpuTensor> = {};
  /** Attention's matmul scratch, where the plan holds it (training, up to ATTENTION_SCRATCH_MAX_BYTES). */
  readonly attentionScratch: AttentionMatmulScratch | undefined;
  private readonly owned: GpuTensor[] = [];

  constructor(
    ctx: GpuContext,
    readonly config: ModelConfig,
    readonly shape: WorkspaceShape,
  ) {
    const layerNames = new Set(layerPlan(config, shape).map((p) => p.name));
    try {
      for (const p of planWorkspace(config, shape)) {
        for (let c = 0; c < p.copies; c++) {
          const t = createTensor(ctx, { shape: p.shape, dtype: p.dtype, label: `activation ${p.name.split(':')[0]}` });
          this.owned.push(t);
          if (p.name === 'x') this.inputs.push(t);
          else if (layerNames.has(p.name)) (this.layers[c] ??= {})[p.name] = t;
          else this.buffers[p.name] = t;
        }
      }
    } catch (error) {
      this.release();
      throw error;
    }
    const at = (name: keyof AttentionMatmulScratch) => this.buffers[ATTENTION_SCRATCH + name]!;
    this.attentionScratch = this.buffers[`${ATTENTION_SCRATCH}q`]
      ? { q: at('q'), gradOutput: at('gradOutput'), k: at('k'), v: at('v'), gradK: at('gradK'), gradV: at('gradV'), scores: at('scores') }
      : undefined;
  }

  get tokens(): number {
    return this.shape.batch * this.shape.seq;
  }

  /** Elements from one row of buffers['logits'] to the next (logitsRowStride). */
  get logitsRowStride(): number {
    return logitsRowStride(this.config, this.shape.dtype);
  }

  /**
   * Layer l's saved state: shared by all layers with recomputation or in inference; when backward
   * stops above layer 0, the frozen layers below share copy 0 and layer l >= lowest has its own.
   */
  layer(l: number): LayerState {
    if (this.layers.length === 1) return this.layers[0]!;
    const lowest = this.shape.lowestTrainable;
    if (lowest === 0) return this.layers[l]!;
    return this.layers[l < lowest ? 0 : l - lowest + 1]!;
  }

  /** Input and output buffers of layer l. */
  io(l: number): { x: GpuTensor; out: GpuTensor } {
    if (this.inputs.length === 2) return { x: this.inputs[l % 2]!, out: this.inputs[(l + 1) % 2]! };
    return { x: this.inputs[l]!, out: this.inputs[l + 1]! };
  }

  get last(): GpuTensor {
    return this.io(this.config.numLayers - 1).out;
  }

  release(): void {
    for (const t of this.owned) t.release();
    this.owned.length = 0;
  }
}
