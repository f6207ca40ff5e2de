/**
 * Attention with an adapter's key/value prefix, for the transformer (transformer.ts wires it):
 *
 * - in front (prefix tuning): each sequence's own keys and values with the prefix rows first, in
 *   a shared scratch rebuilt in backward, read with positionOffset = prefix length; the prefix
 *   rows' gradients are summed over the batch into the adapter's table gradient.
 * - gated (UniPELT): two scalars per token gate the prefix (keys, values). Attention runs over the
 *   prefix alone, with the queries scaled by the key gate and every prefix row visible, and over the
 *   sequence alone, causally; the two are merged by log-sum-exp, the prefix's share scaled by the
 *   value gate:  w = sigmoid(lseP - lse),  att = w gv attP + (1 - w) attR.  This is exactly softmax
 *   attention over [gk-scaled prefix keys, own keys] with gv-scaled prefix values, without a kernel
 *   of its own; the prefix never enters a KV cache.
 * - prefill: a KV cache's first rows (prefix tuning's generation).
 */
import type { AttentionKernels, CommandRecorder, ElementwiseKernels, GpuTensor, VectorScaleKernels } from '@webtune/gpu';
import type { AdapterRuntime } from './adapters/types.js';
import type { ModelConfig } from './config.js';
import type { KvCache } from './transformer.js';
import type { Workspace } from './workspace.js';

/** What of a call's run state the prefix needs. */
export interface PrefixRun {
  batch: number;
  /** Rows per sequence. */
  seq: number;
  /** Prefix rows in front of the keys and values (prefix tuning), or 0. */
  prefixed: number;
  /** Rows of a gated prefix (UniPELT), or 0. */
  gatedPrefix: number;
}

export interface AttentionShape {
  batch: number;
  seq: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  scale: number;
}

export class PrefixAttention {
  constructor(
    private readonly config: ModelConfig,
    private readonly k: { attention: AttentionKernels; elementwise: ElementwiseKernels; vectorScale: VectorScaleKernels },
  ) {}

  /**
   * Backward of the gated attention: the merge's gradients split dL/d(att) between the sequence's
   * attention (backward with its lse's gradient into dq, dk, dv) and the prefix's (below).
   */
  gatedBackward(rec: CommandRecorder, ws: Workspace, l: number, run: PrefixRun, runtime: AdapterRuntime, shape: AttentionShape): void {
    const c = this.config;
    const s = ws.layer(l);
    const b = ws.buffers;
    this.k.attention.mergeBackward(rec, {
      gradOutput: b['dAtt']!, outA: s['attP']!, lseA: s['lseP']!, outB: s['attR']!, lseB: s['lse']!, gate: runtime.prefix!.gate!.gates(s), gateStride: 2, gateOffset: 1,
      gradOutA: b['dAttP']!, gradOutB: b['dAttR']!, gradLseA: b['dLseP']!, gradLseB: b['dLseR']!, gradGate: b['dGates']!, gradGateStride: 2, gradGateOffset: 1,
      batch: run.batch, seq: run.seq, heads: c.numHeads, headDim: c.headDim,
    });
    this.k.attention.backward(rec, {
      q: s['q']!, k: s['k']!, v: s['v']!, out: s['attR']!, lse: s['lse']!, gradOutput: b['dAttR']!, gradLse: b['dLseR']!,
      gradQ: b['dq']!, gradK: b['dk']!, gradV: b['dv']!, delta: b['delta']!, scratch: ws.attentionScratch, ...shape,
    });
    // The prefix's half adds into dq (before RoPE's inverse, like the sequence's own).
    this.gatedPrefixBackward(rec, ws, l, run, runtime);
  }

  /** Each layer's keys and values with the adapter's prefix in front, per sequence: [batch * (prefix + seq), kv width]. */
  inFront(rec: CommandRecorder, ws: Workspace, l: number, run: PrefixRun, runtime: AdapterRuntime): { keys: GpuTensor; values: GpuTensor } {
    const c = this.config;
    const width = c.numKvHeads * c.headDim;
    const s = ws.layer(l);
    const hooks = runtime.prefix!;
    const p = run.prefixed;
    const stride = p + run.seq;
    const keys = ws.buffers['kPrefixed']!;
    const values = ws.buffers['vPrefixed']!;
    const cols = { srcCols: width, srcOffset: 0, dstCols: width, dstOffset: 0, cols: width };
    const prefix = { src: hooks.table, srcCols: hooks.columns, dstCols: width, dstOffset: 0, cols: width, rows: p };
    for (let b = 0; b < run.batch; b++) {
      this.k.elementwise.copyColumns(rec, { ...prefix, srcOffset: hooks.keyOffset(l), dst: keys, dstRowOffset: b * stride });
      this.k.elementwise.copyColumns(rec, { ...prefix, srcOffset: hooks.valueOffset(l), dst: values, dstRowOffset: b * stride });
      this.k.elementwise.copyColumns(rec, { ...cols, src: s['k']!, srcRowOffset: b * run.seq, dst: keys, rows: run.seq, dstRowOffset: b * stride + p });
      this.k.elementwise.copyColumns(rec, { ...cols, src: s['v']!, srcRowOffset: b * run.seq, dst: values, rows: run.seq, dstRowOffset: b * stride + p });
    }
    return { keys, values };
  }


  /** Each sequence's copy of layer l's prefix keys and values: [batch * prefix, kv width] (a gated prefix is attended to apart). */
  private perSequence(rec: CommandRecorder, ws: Workspace, l: number, run: PrefixRun, runtime: AdapterRuntime): { keys: GpuTensor; values: GpuTensor } {
    const c = this.config;
    const width = c.numKvHeads * c.headDim;
    const hooks = runtime.prefix!;
    const keys = ws.buffers['kPrefix']!;
    const values = ws.buffers['vPrefix']!;
    const prefix = { src: hooks.table, srcCols: hooks.columns, dstCols: width, dstOffset: 0, cols: width, rows: run.gatedPrefix };
    for (let b = 0; b < run.batch; b++) {
      this.k.elementwise.copyColumns(rec, { ...prefix, srcOffset: hooks.keyOffset(l), dst: keys, dstRowOffset: b * run.gatedPrefix });
      this.k.elementwise.copyColumns(rec, { ...prefix, srcOffset: hooks.valueOffset(l), dst: values, dstRowOffset: b * run.gatedPrefix });
    }
    return { keys, values };
  }


  /**
   * A gated prefix (UniPELT): the gates from the attention's input, attention of the key-gated
   * queries over the prefix alone (every prefix row visible), and the merge with the sequence's own
   * attention (attR, lse) by log-sum-exp, the prefix's share scaled by the value gate:
   *   w = sigmoid(lseP - lse),  att = w * gv * attP + (1 - w) * attR.
   */
  gatedForward(rec: CommandRecorder, ws: Workspace, l: number, run: PrefixRun, runtime: AdapterRuntime): void {
    const c = this.config;
    const s = ws.layer(l);
    const m = ws.tokens;
    const gates = runtime.prefix!.gate!.forward(rec, { layer: l, input: s['n1']!, m, state: s });
    const qGated = ws.buffers['qGated']!;
    this.k.vectorScale.scaleRows(rec, { src: s['q']!, dst: qGated, gate: gates, gateStride: 2, gateOffset: 0, rows: m, cols: c.numHeads * c.headDim });
    const { keys, values } = this.perSequence(rec, ws, l, run, runtime);
    const p = run.gatedPrefix;
    const shape = { batch: run.batch, heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim, scale: 1 / Math.sqrt(c.headDim) };
    this.k.attention.forward(rec, {
      ...shape, q: qGated, k: keys, v: values, out: s['attP']!, lse: s['lseP'], seqQ: run.seq, seqKV: p, kvCapacity: p, positionOffset: p, scratch: ws.attentionScratch,
    });
    this.k.attention.merge(rec, {
      outA: s['attP']!, lseA: s['lseP']!, outB: s['attR']!, lseB: s['lse']!, gate: gates, gateStride: 2, gateOffset: 1, out: s['att']!,
      batch: run.batch, seq: run.seq, heads: c.numHeads, headDim: c.headDim,
    });
  }


  /**
   * The prefix's half of gatedBackward: the merge's gradients split dL/d(att) between the two
   * attentions (with their log-sum-exps' gradients), the prefix's keys and values are summed over
   * the batch into the adapter's table gradient, and the key gate's part of dq is added; dGates
   * then holds both gates' gradients (the gate's own backward runs once dN is written).
   */
  private gatedPrefixBackward(rec: CommandRecorder, ws: Workspace, l: number, run: PrefixRun, runtime: AdapterRuntime): void {
    const c = this.config;
    const s = ws.layer(l);
    const b = ws.buffers;
    const m = ws.tokens;
    const p = run.gatedPrefix;
    const qCols = c.numHeads * c.headDim;
    const width = c.numKvHeads * c.headDim;
    const hooks = runtime.prefix!;
    const gates = runtime.prefix!.gate!.gates(s);
    const shape = { batch: run.batch, heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim, scale: 1 / Math.sqrt(c.headDim) };
    this.k.vectorScale.scaleRows(rec, { src: s['q']!, dst: b['qGated']!, gate: gates, gateStride: 2, gateOffset: 0, rows: m, cols: qCols });
    const { keys, values } = this.perSequence(rec, ws, l, run, runtime);
    this.k.attention.backward(rec, {
      ...shape, q: b['qGated']!, k: keys, v: values, out: s['attP']!, lse: s['lseP']!, gradOutput: b['dAttP']!, gradLse: b['dLseP']!,
      gradQ: b['dqGated']!, gradK: b['dkPrefix']!, gradV: b['dvPrefix']!, delta: b['delta']!, scratch: ws.attentionScratch, seq: run.seq, seqKV: p, positionOffset: p,
    });
    // q's gradient through the key gate, and the key gate's own: d(gk * q) -> gk * dqg, q . dqg.
    this.k.vectorScale.scaleRows(rec, { src: b['dqGated']!, dst: b['dq']!, gate: gates, gateStride: 2, gateOffset: 0, rows: m, cols: qCols, accumulate: true });
    this.k.vectorScale.rowDot(rec, { a: s['q']!, b: b['dqGated']!, out: b['dGates']!, outStride: 2, outOffset: 0, rows: m, cols: qCols });
    for (let i = 0; i < run.batch; i++) {
      const grad = { srcCols: width, srcOffset: 0, dst: hooks.gradient, dstCols: hooks.columns, cols: width, rows: p, srcRowOffset: i * p, accumulate: true };
      this.k.elementwise.copyColumns(rec, { ...grad, src: b['dkPrefix']!, dstOffset: hooks.keyOffset(l) });
      this.k.elementwise.copyColumns(rec, { ...grad, src: b['dvPrefix']!, dstOffset: hooks.valueOffset(l) });
    }
  }


  /** The first decode call with a prefix adapter: every layer's prefix becomes the cache's first rows. */
  prefill(rec: CommandRecorder, runtime: AdapterRuntime, cache: KvCache): void {
    const c = this.config;
    const width = c.numKvHeads * c.headDim;
    const hooks = runtime.prefix!;
    runtime.beforeForward(rec);
    const cols = { src: hooks.table, srcCols: hooks.columns, dstCols: width, dstOffset: 0, cols: width, rows: hooks.count };
    for (let l = 0; l < c.numLayers; l++) {
      this.k.elementwise.copyColumns(rec, { ...cols, srcOffset: hooks.keyOffset(l), dst: cache.k[l]! });
      this.k.elementwise.copyColumns(rec, { ...cols, srcOffset: hooks.valueOffset(l), dst: cache.v[l]! });
    }
    cache.length = hooks.count;
  }


  /**
   * Attention backward over the prefixed keys and values: the gradients of the sequence's own
   * rows go to dk / dv, those of the prefix rows are summed over the batch into the adapter's.
   */
  inFrontBackward(
    rec: CommandRecorder, ws: Workspace, l: number, run: PrefixRun, runtime: AdapterRuntime,
    shape: AttentionShape,
  ): void {
    const s = ws.layer(l);
    const b = ws.buffers;
    const p = run.prefixed;
    const stride = p + run.seq;
    const { keys, values } = this.inFront(rec, ws, l, run, runtime);
    this.k.attention.backward(rec, {
      q: s['q']!, k: keys, v: values, out: s['att']!, lse: s['lse']!, gradOutput: b['dAtt']!,
      gradQ: b['dq']!, gradK: b['dkPrefixed']!, gradV: b['dvPrefixed']!, delta: b['delta']!, scratch: ws.attentionScratch,
      ...shape, seqKV: stride, positionOffset: p,
    });
    const width = shape.kvHeads * shape.headDim;
    const cols = { srcCols: width, srcOffset: 0, dstCols: width, dstOffset: 0, cols: width };
    const hooks = runtime.prefix!;
    for (let i = 0; i < run.batch; i++) {
      this.k.elementwise.copyColumns(rec, { ...cols, src: b['dkPrefixed']!, srcRowOffset: i * stride + p, dst: b['dk']!, dstRowOffset: i * run.seq, rows: run.seq });
      this.k.elementwise.copyColumns(rec, { ...cols, src: b['dvPrefixed']!, srcRowOffset: i * stride + p, dst: b['dv']!, dstRowOffset: i * run.seq, rows: run.seq });
      const grad = { srcCols: width, srcOffset: 0, dst: hooks.gradient, dstCols: hooks.columns, cols: width, rows: p, srcRowOffset: i * stride, accumulate: true };
      this.k.elementwise.copyColumns(rec, { ...grad, src: b['dkPrefixed']!, dstOffset: hooks.keyOffset(l) });
      this.k.elementwise.copyColumns(rec, { ...grad, src: b['dvPrefixed']!, dstOffset: hooks.valueOffset(l) });
    }
  }
}
