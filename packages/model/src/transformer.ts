/**
 * The transformer on the GPU: Llama-family (RMSNorm, RoPE, grouped-query attention, SwiGLU) and
 * GPT-2 (learned positions, LayerNorm, GELU tanh, fused qkv), as the architecture descriptor
 * (arch/) says, with an adapter of any method (adapters/) on its linears. Every
 * forward and backward op is a WGSL kernel from @webtune/gpu; this file only wires them.
 *
 * A training step: embedding gather -> layers (state saved per layer, or only layer inputs with
 * recomputation) -> final norm -> LM head + cross-entropy in row chunks (no [tokens x vocab]
 * buffer) -> backward through the head, the layers in reverse down to the lowest adapted layer
 * (residual gradient kept in one buffer, `gRes`, that each block's norm backward adds into) ->
 * adapter gradients accumulated.
 * Work is submitted per layer so no single submit runs for long.
 *
 * Methods that change the sequence (adapters/types.ts SequenceLayout): virtual tokens are extra
 * rows at the start of every sequence (their targets ignored, their logits not returned); key/value
 * prefixes are assembled in front of each layer's keys and values (`kPrefixed`), or prefilled into
 * a KV cache. Either way a real token t has position (virtual + prefix) + t, as PEFT's models see it.
 */
import { CommandRecorder, createAttentionKernels, createCrossEntropyKernel, createElementwiseKernels, createEmbeddingKernels, createGeluKernels, createMatmulKernel, createNF4DequantizeKernel, createNF4MatmulKernel, createNormKernels, createRopeKernel, createSwigluKernels, createTensor, createVectorScaleKernels, IGNORE_INDEX, readF32, ropeTables, writeTensor, type AttentionKernels, type CrossEntropyKernel, type ElementwiseKernels, type EmbeddingKernels, type GeluKernels, type GpuContext, type GpuTensor, type FrozenWeight, type MatmulKernel, type NF4DequantizeKernel, type NF4MatmulKernel, type NormKernels, type RopeKernel, type SwigluKernels, type VectorScaleKernels } from '@webtune/gpu';
import { InvalidArgumentError } from '@webtune/errors';
import { NO_SEQUENCE_CHANGE, type Adapter, type AdapterRuntime, type SequenceLayout } from './adapters/types.js';
import { architectureOf, mlpLinears, type ArchitectureDescriptor } from './arch/index.js';
import type { ModelConfig } from './config.js';
import type { BaseModel, FrozenLinear } from './weights.js';
import { defaultHeadChunk, mlpRowStride, weightScratchRowStride, Workspace, type LayerState, type WorkspaceShape } from './workspace.js';
import { PrefixAttention } from './prefix-attention.js';

interface Kernels {
  /** Frozen linear without an adapter: forward (dense or NF4), input gradient, input gradient added (dense). */
  frozenForward: MatmulKernel | NF4MatmulKernel;
  frozenBackward: MatmulKernel;
  frozenBackwardAcc: MatmulKernel;
  /** NF4 base: W is dequantized into the workspace's `weightScratch` in training (forward and input gradient). */
  dequantize: NF4DequantizeKernel | undefined;
  /** LM head: logits = h E^T, and dh = dlogits E. Also X W^T over a dequantized NF4 weight in training. */
  head: MatmulKernel;
  headBackward: MatmulKernel;
  norm: NormKernels;
  swiglu: SwigluKernels | undefined;
  gelu: GeluKernels | undefined;
  embedding: EmbeddingKernels;
  elementwise: ElementwiseKernels;
  rope: RopeKernel | undefined;
  attention: AttentionKernels;
  crossEntropy: CrossEntropyKernel;
  /** Row scaling and row dots (a gated prefix's key gate). */
  vectorScale: VectorScaleKernels;
}

/** One step's token batch. Targets use IGNORE_INDEX (0xffffffff) for positions without a loss. */
export interface TokenBatch {
  /** [batch * seq] token ids */
  ids: Uint32Array;
  /** [batch * seq] next-token targets */
  targets?: Uint32Array;
  batch: number;
  seq: number;
}

export interface TrainOptions {
  /** Keep only layer inputs and recompute each block in backward. */
  recompute?: boolean;
  /** Seed and per-step stream of adapter dropout masks (LoRA dropout). */
  dropoutSeed?: number;
  step?: number;
  /** LM-head rows per chunk; default keeps a chunk of logits near 32 MiB. */
  headChunk?: number;
}

export interface KvCache {
  capacity: number;
  /** Tokens already in the cache. */
  length: number;
  k: GpuTensor[];
  v: GpuTensor[];
  release(): void;
}

class Encoder {
  private recorder: CommandRecorder;
  constructor(
    private readonly ctx: GpuContext,
    private label: string,
  ) {
    this.recorder = new CommandRecorder(ctx, label);
  }
  get r(): CommandRecorder {
    return this.recorder;
  }
  /** Submits what was recorded; later work is recorded under `label` (the profiler's phase). */
  flush(label = this.label): void {
    this.recorder.submit();
    this.label = label;
    this.recorder = new CommandRecorder(this.ctx, label);
  }
}

export class Transformer {
  private workspace: Workspace | undefined;
  private readonly ropeCos: GpuTensor | undefined;
  private readonly ropeSin: GpuTensor | undefined;
  private adapter: Adapter | undefined;
  /** The adapter's GPU hooks in this model, built on first use after setAdapter. */
  private runtime: Promise<AdapterRuntime> | undefined;
  private readonly arch: ArchitectureDescriptor;
  /** Attention with an adapter's key/value prefix (in front, or gated). */
  private readonly prefix: PrefixAttention;

  private constructor(
    readonly ctx: GpuContext,
    readonly base: BaseModel,
    private readonly k: Kernels,
  ) {
    const c = base.config;
    this.arch = architectureOf(c);
    this.prefix = new PrefixAttention(c, k);
    if (this.arch.positions === 'rope') {
      const tables = ropeTables({ headDim: c.headDim, theta: c.ropeTheta, scaling: c.ropeScaling, positions: c.maxPositions });
      this.ropeCos = createTensor(ctx, { shape: [c.maxPositions, c.headDim / 2], label: 'rope cos', data: tables.cos });
      this.ropeSin = createTensor(ctx, { shape: [c.maxPositions, c.headDim / 2], label: 'rope sin', data: tables.sin });
    }
  }

  static async create(ctx: GpuContext, base: BaseModel): Promise<Transformer> {
    const c = base.config;
    const nf4 = base.nf4;
    const dtype = base.dtype;
    const [frozenForward, frozenBackward, frozenBackwardAcc, head, headBackward, dequantize] = await Promise.all([
      nf4 ? createNF4MatmulKernel(ctx, { mode: 'forward', dtype, ...nf4 }) : createMatmulKernel(ctx, { dtype, transB: true }),
      createMatmulKernel(ctx, { dtype }),
      createMatmulKernel(ctx, { dtype, accumulate: true }),
      createMatmulKernel(ctx, { dtype, transB: true }),
      createMatmulKernel(ctx, { dtype }),
      nf4 ? createNF4DequantizeKernel(ctx, { ...nf4, dtype }) : undefined,
    ]);
    const arch = architectureOf(c);
    const [norm, swiglu, gelu, embedding, elementwise, rope, attention, crossEntropy, vectorScale] = await Promise.all([
      createNormKernels(ctx, { kind: arch.norm, eps: c.normEps, dtype }),
      arch.mlp.kind === 'swiglu' ? createSwigluKernels(ctx, { dtype }) : undefined,
      arch.mlp.kind === 'gelu' ? createGeluKernels(ctx, { dtype }) : undefined,
      createEmbeddingKernels(ctx, { dtype }),
      createElementwiseKernels(ctx, { dtype }),
      arch.positions === 'rope' ? createRopeKernel(ctx, { dtype }) : undefined,
      createAttentionKernels(ctx, { dtype }),
      createCrossEntropyKernel(ctx, { dtype }),
      createVectorScaleKernels(ctx, { dtype }),
    ]);
    return new Transformer(ctx, base, {
      frozenForward, frozenBackward, frozenBackwardAcc, dequantize, head, headBackward,
      norm, swiglu, gelu, embedding, elementwise, rope, attention, crossEntropy, vectorScale,
    });
  }

  get config(): ModelConfig {
    return this.base.config;
  }

  /** How the current adapter changes the sequence. */
  private get layout(): SequenceLayout {
    return this.adapter?.sequence ?? NO_SEQUENCE_CHANGE;
  }

  /** Positions the current adapter takes before the first real token (virtual tokens and prefixes). */
  get leadingTokens(): number {
    const { virtualTokens, prefixTokens } = this.layout;
    return virtualTokens + prefixTokens;
  }

  /** Rows of a KV cache the adapter fills before the first real token (a gated prefix stays out of the cache). */
  get cacheLeadingRows(): number {
    const { virtualTokens, prefixTokens, gatedPrefix } = this.layout;
    return virtualTokens + (gatedPrefix ? 0 : prefixTokens);
  }

  /** The adapter setAdapter() attached, if any. */
  get activeAdapter(): Adapter | undefined {
    return this.adapter;
  }

  /** Attaches (or detaches, with undefined) the adapter (any method) used by every later call. */
  setAdapter(adapter: Adapter | undefined): void {
    // Generation sets the adapter before every call: keep the workspace and runtime then.
    if (adapter === this.adapter) return;
    if (adapter && adapter.model !== this.config) {
      const a = adapter.model;
      const c = this.config;
      if (a.hiddenSize !== c.hiddenSize || a.numLayers !== c.numLayers || a.modelType !== c.modelType) {
        throw new InvalidArgumentError('This adapter was made for another model (different type, width or depth).');
      }
    }
    this.releaseRuntime();
    this.adapter = adapter;
    this.dropWorkspace();
  }

  private releaseRuntime(): void {
    const runtime = this.runtime;
    this.runtime = undefined;
    void runtime?.then((r) => r.release(), () => undefined);
  }

  /**
   * The current adapter's runtime (built once per adapter, on first use), or undefined without
   * one. Building compiles kernels (an await): if setAdapter() swaps the adapter meanwhile, the
   * call is refused rather than run with a released runtime or a workspace planned for another
   * adapter. A failed build is not cached, so the next call tries again.
   */
  private async adapterRuntime(): Promise<AdapterRuntime | undefined> {
    const adapter = this.adapter;
    if (!adapter) return undefined;
    if (!this.runtime) {
      const building = adapter.createRuntime({
        ctx: this.ctx,
        dtype: this.base.dtype,
        nf4: this.base.nf4,
        ops: {
          frozenForward: (rec, lin, x, y) => this.frozen(rec, lin.weight, 'forward', x, y, this.workspace!.tokens, lin),
          frozenBackward: (rec, lin, gy, gx, accumulate) => this.frozen(rec, lin.weight, accumulate ? 'backwardAcc' : 'backward', gy, gx, this.workspace!.tokens, lin),
          linear: (layer, name) => this.base.layers[layer]!.linears.get(name)!,
          scratch: (name) => this.workspace?.buffers[name],
        },
      });
      this.runtime = building;
      building.catch(() => {
        if (this.runtime === building) this.runtime = undefined;
      });
    }
    const runtime = await this.runtime;
    if (this.adapter !== adapter) throw new InvalidArgumentError('The adapter was changed (setAdapter) while this call was starting; run it again.');
    return runtime;
  }

  /** The shape the next workspace will have, for the memory planner. */
  workspaceShape(batch: number, seq: number, training: boolean, options: TrainOptions = {}): WorkspaceShape {
    const adapter = this.adapter;
    // Virtual tokens are rows of every sequence; prefixes are extra keys and values only.
    const rows = seq + this.layout.virtualTokens;
    const tokens = batch * rows;
    return {
      batch,
      seq: rows,
      prefixTokens: this.layout.prefixTokens,
      gatedPrefix: this.layout.gatedPrefix === true,
      training,
      recompute: training && (options.recompute ?? false),
      adapter: adapter ? adapter.buffers({ tokens, training, dtype: this.base.dtype, fourBit: this.base.nf4 !== undefined }) : { layer: [], shared: [] },
      // Backward stops at the lowest adapted layer; the frozen layers below it keep no state.
      lowestTrainable: training && adapter ? adapter.lowestLayer : 0,
      headChunk: options.headChunk ?? defaultHeadChunk(this.config, tokens, this.ctx.limits.maxStorageBufferBindingSize, this.base.dtype),
      mlpRowStride: mlpRowStride(this.config, this.base.dtype, training && !this.adapterTouchesMlp()),
      nf4: this.base.nf4 !== undefined,
      dtype: this.base.dtype,
    };
  }

  /** Whether the adapter changes an MLP linear of any layer (the MLP intermediates keep dense rows then). */
  private adapterTouchesMlp(): boolean {
    const adapter = this.adapter;
    if (!adapter) return false;
    const mlp = mlpLinears(this.config);
    return this.base.layers.some((layer) => mlp.some((name) => adapter.touches(layer.linears.get(name)!.module)));
  }

  private workspaceFor(shape: WorkspaceShape): Workspace {
    const w = this.workspace;
    if (w && JSON.stringify(w.shape) === JSON.stringify(shape)) return w;
    this.dropWorkspace();
    this.workspace = new Workspace(this.ctx, this.config, shape);
    return this.workspace;
  }

  /** Frees activation buffers (they are reallocated on the next call). */
  dropWorkspace(): void {
    this.workspace?.release();
    this.workspace = undefined;
  }

  private checkBatch(batch: TokenBatch, needTargets: boolean): void {
    const { ids, targets, seq } = batch;
    const t = batch.batch * seq;
    if (!Number.isInteger(batch.batch) || !Number.isInteger(seq) || batch.batch < 1 || seq < 1) {
      throw new InvalidArgumentError(`Batch and sequence length must be positive integers, got ${batch.batch} x ${seq}.`);
    }
    const lead = this.leadingTokens;
    if (lead + seq > this.config.maxPositions) {
      const adapter = lead > 0 ? ` plus the adapter's ${lead} virtual or prefix tokens` : '';
      throw new InvalidArgumentError(`Sequence length ${seq}${adapter} exceeds the model's max_position_embeddings (${this.config.maxPositions}); use shorter sequences.`);
    }
    if (ids.length !== t) throw new InvalidArgumentError(`ids has ${ids.length} tokens; batch ${batch.batch} x seq ${seq} needs ${t}.`);
    const v = this.config.vocabSize;
    for (let i = 0; i < t; i++) {
      if (ids[i]! >= v) throw new InvalidArgumentError(`Token id ${ids[i]} at position ${i} is outside the vocabulary (size ${v}); was the text tokenized for another model?`);
    }
    if (needTargets) {
      if (!targets || targets.length !== t) throw new InvalidArgumentError(`targets must have ${t} entries (one per token), got ${targets?.length}.`);
      for (let i = 0; i < t; i++) {
        if (targets[i]! >= v && targets[i] !== IGNORE_INDEX) throw new InvalidArgumentError(`Target ${targets[i]} at position ${i} is outside the vocabulary (size ${v}).`);
      }
    }
  }

  /**
   * Forward + backward of one micro-batch: LoRA gradients are added into the adapter's gradient
   * buffers (the optimizer clears them). Returns the mean cross-entropy over targets that are
   * not ignored, and how many there were. `gradScale` multiplies the loss's gradient (1 by
   * default; the trainer leaves micro-batch averaging to the optimizer).
   */
  async trainStep(batch: TokenBatch, options: TrainOptions = {}): Promise<{ loss: number; tokens: number }> {
    const adapter = this.adapter;
    if (!adapter) throw new InvalidArgumentError('trainStep needs a LoRA adapter, or one of another method (IA3, BitFit): call setAdapter() first.');
    this.checkBatch(batch, true);
    const targets = batch.targets!;
    const valid = countTargets(targets);
    if (valid === 0) throw new InvalidArgumentError('Every target in this batch is ignored; there is nothing to learn from.');
    const runtime = (await this.adapterRuntime())!;
    const ws = this.workspaceFor(this.workspaceShape(batch.batch, batch.seq, true, options));
    const enc = new Encoder(this.ctx, 'forward');
    this.writeBatch(ws, batch, true);
    const run = this.sequenceRun(batch, true, options.dropoutSeed ?? 0, options.step ?? 0);

    this.forwardLayers(enc, ws, run, runtime);
    enc.flush('head and loss');
    this.headAndLoss(enc, ws, 1 / valid);
    enc.flush('backward');
    // Backward stops at the lowest adapted layer: nothing below it has a trainable tensor.
    for (let l = this.config.numLayers - 1; l >= ws.shape.lowestTrainable; l--) {
      if (ws.shape.recompute) this.forwardLayer(enc, ws, l, run, runtime);
      this.backwardLayer(enc, ws, l, run, runtime);
      enc.flush();
    }
    this.virtualTokensBackward(enc, ws, run, runtime);
    runtime.afterBackward(enc.r);
    enc.r.submit();
    return { loss: await this.meanLoss(ws, valid), tokens: valid };
  }

  /** Mean cross-entropy of a batch without touching gradients (held-out evaluation). */
  async evaluate(batch: TokenBatch, options: Pick<TrainOptions, 'headChunk'> = {}): Promise<{ loss: number; tokens: number }> {
    this.checkBatch(batch, true);
    const targets = batch.targets!;
    const valid = countTargets(targets);
    if (valid === 0) throw new InvalidArgumentError('Every target in this batch is ignored; there is nothing to evaluate.');
    const runtime = await this.adapterRuntime();
    const ws = this.workspaceFor(this.workspaceShape(batch.batch, batch.seq, true, options));
    const enc = new Encoder(this.ctx, 'evaluate');
    this.writeBatch(ws, batch, true);
    const run = this.sequenceRun(batch, false, 0, 0);
    this.forwardLayers(enc, ws, run, runtime);
    this.headAndLoss(enc, ws, 1 / valid, false);
    enc.r.submit();
    return { loss: await this.meanLoss(ws, valid), tokens: valid };
  }

  /** Full logits [batch * seq, vocab] of a batch's tokens (no dropout, no gradients; an adapter's virtual tokens are left out). */
  async logits(batch: TokenBatch): Promise<Float32Array> {
    this.checkBatch(batch, false);
    const runtime = await this.adapterRuntime();
    const ws = this.workspaceFor(this.workspaceShape(batch.batch, batch.seq, false));
    const enc = new Encoder(this.ctx, 'logits');
    this.writeBatch(ws, batch, false);
    const run = this.sequenceRun(batch, false, 0, 0);
    this.forwardLayers(enc, ws, run, runtime);
    this.finalNorm(enc, ws);
    const v = this.config.vocabSize;
    const out = new Float32Array(batch.batch * batch.seq * v);
    const chunk = ws.shape.headChunk;
    for (let r0 = 0; r0 < ws.tokens; r0 += chunk) {
      const rows = Math.min(chunk, ws.tokens - r0);
      this.headRows(enc, ws, r0, rows);
      enc.flush();
      const part = await readF32(this.ctx, ws.buffers['logits']!);
      const stride = ws.logitsRowStride;
      for (let r = 0; r < rows; r++) {
        const real = this.realRow(r0 + r, run);
        if (real >= 0) out.set(part.subarray(r * stride, r * stride + v), real * v);
      }
    }
    return out;
  }

  /** The batch's ids (and targets) with each sequence's virtual-token rows in front (id 0, target ignored). */
  private writeBatch(ws: Workspace, batch: TokenBatch, withTargets: boolean, lead = this.layout.virtualTokens): void {
    const expand = (src: Uint32Array, fill: number): Uint32Array => {
      if (lead === 0) return src;
      const rows = batch.seq + lead;
      const out = new Uint32Array(batch.batch * rows).fill(fill);
      for (let b = 0; b < batch.batch; b++) out.set(src.subarray(b * batch.seq, (b + 1) * batch.seq), b * rows + lead);
      return out;
    };
    writeTensor(this.ctx, ws.buffers['ids']!, expand(batch.ids, 0));
    if (withTargets) writeTensor(this.ctx, ws.buffers['targets']!, expand(batch.targets!, IGNORE_INDEX));
  }

  /** Run state of a whole-sequence call: rows include the virtual tokens; positions start after the prefix. */
  private sequenceRun(batch: TokenBatch, training: boolean, seed: number, step: number): RunState {
    const { virtualTokens, prefixTokens, gatedPrefix } = this.layout;
    if (gatedPrefix) return { batch: batch.batch, seq: batch.seq + virtualTokens, training, seed, step, offset: 0, positions: prefixTokens, virtualRows: virtualTokens, prefixed: 0, gatedPrefix: prefixTokens };
    return { batch: batch.batch, seq: batch.seq + virtualTokens, training, seed, step, offset: prefixTokens, positions: prefixTokens, virtualRows: virtualTokens, prefixed: prefixTokens, gatedPrefix: 0 };
  }

  /** The index of workspace row `row` among the batch's real tokens, or -1 for a virtual-token row. */
  private realRow(row: number, run: RunState): number {
    const s = row % run.seq;
    if (s < run.virtualRows) return -1;
    return Math.floor(row / run.seq) * (run.seq - run.virtualRows) + s - run.virtualRows;
  }

  /** A KV cache for generation with room for `capacity` tokens (one sequence). */
  createKvCache(capacity: number): KvCache {
    const c = this.config;
    if (capacity > c.maxPositions) throw new InvalidArgumentError(`KV cache of ${capacity} tokens exceeds max_position_embeddings (${c.maxPositions}).`);
    const width = c.numKvHeads * c.headDim;
    const k: GpuTensor[] = [];
    const v: GpuTensor[] = [];
    for (let l = 0; l < c.numLayers; l++) {
      k.push(createTensor(this.ctx, { shape: [capacity, width], dtype: this.base.dtype, label: 'kv cache' }));
      v.push(createTensor(this.ctx, { shape: [capacity, width], dtype: this.base.dtype, label: 'kv cache' }));
    }
    return {
      capacity,
      length: 0,
      k,
      v,
      release() {
        for (const t of [...k, ...v]) t.release();
      },
    };
  }

  /**
   * Runs `ids` (one sequence) through the model after what `cache` holds, appends their keys and
   * values to it, and returns the logits of the last token.
   */
  async decode(ids: Uint32Array, cache: KvCache): Promise<Float32Array> {
    const seq = ids.length;
    if (seq === 0) throw new InvalidArgumentError('decode needs at least one token.');
    this.checkBatch({ ids, batch: 1, seq }, false);
    const runtime = await this.adapterRuntime();
    const { virtualTokens, prefixTokens, gatedPrefix } = this.layout;
    // The first call on an empty cache starts the sequence: prefixes go into the cache (a gated
    // prefix is attended to apart, every call) and the virtual tokens run with the prompt.
    const starting = cache.length === 0;
    const lead = starting ? this.cacheLeadingRows : 0;
    const gated = gatedPrefix ? prefixTokens : 0;
    if (gated + cache.length + lead + seq > this.config.maxPositions) {
      throw new InvalidArgumentError(`${cache.length + seq} tokens after the adapter's ${prefixTokens} prefix tokens exceed the model's context of ${this.config.maxPositions}.`);
    }
    if (cache.length + lead + seq > cache.capacity) {
      throw new InvalidArgumentError(`The KV cache holds ${cache.capacity} tokens; ${cache.length} are used and ${lead + seq} more (the adapter's ${lead} leading tokens included) do not fit.`);
    }
    const rows = seq + (starting ? virtualTokens : 0);
    const ws = this.workspaceFor({ ...this.workspaceShape(1, seq, false), seq: rows, prefixTokens: gated, headChunk: 1 });
    const enc = new Encoder(this.ctx, 'decode');
    this.writeBatch(ws, { ids, batch: 1, seq }, false, starting ? virtualTokens : 0);
    if (starting && prefixTokens > 0 && !gatedPrefix) this.prefix.prefill(enc.r, runtime!, cache);
    const run: RunState = {
      batch: 1, seq: rows, training: false, seed: 0, step: 0, offset: cache.length, positions: gated + cache.length, cache,
      virtualRows: starting ? virtualTokens : 0, prefixed: 0, gatedPrefix: gated,
    };
    // One token per call: a single submit is short, so no per-layer flush.
    this.forwardLayers(enc, ws, run, runtime, false);
    this.finalNorm(enc, ws);
    this.headRows(enc, ws, rows - 1, 1);
    enc.r.submit();
    cache.length += rows;
    const logits = await readF32(this.ctx, ws.buffers['logits']!);
    return logits.slice(0, this.config.vocabSize);
  }

  /** Half copies up to date, embedding, then every layer (each submitted on its own unless told not to). */
  private forwardLayers(enc: Encoder, ws: Workspace, run: RunState, runtime: AdapterRuntime | undefined, flushEachLayer = true): void {
    runtime?.beforeForward(enc.r);
    this.embed(enc, ws, run, runtime);
    for (let l = 0; l < this.config.numLayers; l++) {
      this.forwardLayer(enc, ws, l, run, runtime);
      if (flushEachLayer) enc.flush();
    }
  }

  /** Mean cross-entropy over the `valid` targets, from the per-token losses the head wrote. */
  private async meanLoss(ws: Workspace, valid: number): Promise<number> {
    const losses = await readF32(this.ctx, ws.buffers['losses']!);
    let sum = 0;
    for (let i = 0; i < ws.tokens; i++) sum += losses[i]!;
    return sum / valid;
  }

  private embed(enc: Encoder, ws: Workspace, run: RunState, runtime: AdapterRuntime | undefined): void {
    const pos = this.base.positions;
    const x = ws.io(0).x;
    this.k.embedding.gather(enc.r, {
      table: this.base.embed,
      ids: ws.buffers['ids']!,
      out: x,
      rows: ws.tokens,
      positions: pos ? { table: pos, seqLen: run.seq, offset: run.positions } : undefined,
    });
    if (run.virtualRows === 0) return;
    // Virtual tokens replace the placeholder rows; GPT-2's learned positions are added to them as to any token.
    const hooks = runtime!.virtualTokens!;
    const d = this.config.hiddenSize;
    const rows = { srcCols: d, srcOffset: 0, dstCols: d, dstOffset: 0, rows: run.virtualRows, cols: d };
    for (let b = 0; b < run.batch; b++) {
      this.k.elementwise.copyColumns(enc.r, { ...rows, src: hooks.embeddings, dst: x, dstRowOffset: b * run.seq });
      if (pos) this.k.elementwise.copyColumns(enc.r, { ...rows, src: pos, srcRowOffset: run.positions, dst: x, dstRowOffset: b * run.seq, accumulate: true });
    }
  }

  /** dL/d(virtual token embeddings), summed over the batch from the gradient at the embedding output (gRes after layer 0). */
  private virtualTokensBackward(enc: Encoder, ws: Workspace, run: RunState, runtime: AdapterRuntime): void {
    if (run.virtualRows === 0) return;
    const d = this.config.hiddenSize;
    for (let b = 0; b < run.batch; b++) {
      this.k.elementwise.copyColumns(enc.r, {
        src: ws.buffers['gRes']!, srcCols: d, srcOffset: 0, srcRowOffset: b * run.seq,
        dst: runtime.virtualTokens!.gradient, dstCols: d, dstOffset: 0, rows: run.virtualRows, cols: d, accumulate: true,
      });
    }
  }

  // ---- linear layers ----

  private linearForward(enc: Encoder, ws: Workspace, l: number, name: string, x: GpuTensor, y: GpuTensor, run: RunState, runtime: AdapterRuntime | undefined, strides: RowStrides = {}): void {
    const lin = this.base.layers[l]!.linears.get(name)!;
    const m = ws.tokens;
    if (runtime && this.adapter!.touches(lin.module)) {
      requireDenseRows(lin, strides);
      runtime.linearForward(enc.r, { layer: l, linear: lin, m, x, y, state: ws.layer(l), training: run.training, seed: run.seed, stream: this.dropoutStream(run.step, l, name) });
      return;
    }
    this.frozen(enc.r, lin.weight, 'forward', x, y, m, lin, strides);
    if (lin.bias) this.k.elementwise.addBias(enc.r, { target: y, bias: lin.bias, rows: m, cols: lin.outFeatures, rowStride: strides.output });
  }

  /** dL/dx of a linear (added into gradInput when accumulate) and the adapter's gradients. */
  private linearBackward(
    enc: Encoder, ws: Workspace, l: number, name: string,
    gradOutput: GpuTensor, x: GpuTensor, gradInput: GpuTensor | undefined, accumulate: boolean, run: RunState, runtime: AdapterRuntime, strides: RowStrides = {},
  ): void {
    const lin = this.base.layers[l]!.linears.get(name)!;
    const m = ws.tokens;
    if (this.adapter!.touches(lin.module)) {
      requireDenseRows(lin, strides);
      runtime.linearBackward(enc.r, {
        layer: l, linear: lin, m, x, state: ws.layer(l), training: true, seed: run.seed, stream: this.dropoutStream(run.step, l, name),
        gradOutput, gradInput, accumulate,
      });
    } else if (gradInput) {
      this.frozen(enc.r, lin.weight, accumulate ? 'backwardAcc' : 'backward', gradOutput, gradInput, m, lin, strides);
    }
  }

  /** A distinct dropout stream per (step, layer, linear); backward recomputes the same mask from it. */
  private dropoutStream(step: number, layer: number, name: string): number {
    return ((step * 1024 + layer) * 8 + this.arch.linears.indexOf(name)) >>> 0;
  }

  /**
   * A frozen linear: forward y = x W^T, or the input gradient (= or +=) gradOutput W; `strides`
   * are the row strides of x (and dL/dx) and of y (and dL/dy) where they are padded.
   */
  private frozen(rec: CommandRecorder, weight: FrozenWeight, mode: 'forward' | 'backward' | 'backwardAcc', input: GpuTensor, output: GpuTensor, m: number, lin: FrozenLinear, strides: RowStrides = {}): void {
    if (mode === 'forward') {
      const scratch = this.workspace?.buffers['weightScratch'];
      if (weight.format === 'nf4' && scratch) {
        // Training (the workspace has the scratch): dequantize, then the dense kernel, as
        // bitsandbytes' matmul_4bit does for more than one row (bitsandbytes/autograd/_functions.py,
        // MatMul4Bit). On lavapipe the dense kernel runs 1.6x the fused one's rate at 1 x 256 and
        // the dequantization costs ~3 ms a weight; decoding keeps the fused kernel (one row).
        const { b, ldb } = this.dequantizeIntoScratch(rec, weight, lin, scratch);
        this.k.head.encode(rec, { a: input, lda: strides.input, b, ldb, c: output, ldc: strides.output, m, n: lin.outFeatures, k: lin.inFeatures });
      } else if (weight.format === 'nf4') {
        // Inference only, where the workspace keeps dense rows (mlpRowStride).
        requireDenseRows(lin, strides);
        (this.k.frozenForward as NF4MatmulKernel).encode(rec, { weight: weight.weight, input, output, m });
      } else {
        (this.k.frozenForward as MatmulKernel).encode(rec, { a: input, lda: strides.input, b: weight.weight, c: output, ldc: strides.output, m, n: lin.outFeatures, k: lin.inFeatures });
      }
      return;
    }
    const { b, ldb } = weight.format === 'nf4'
      ? this.dequantizeIntoScratch(rec, weight, lin, this.workspace!.buffers['weightScratch']!)
      : { b: weight.weight, ldb: undefined };
    const kernel = mode === 'backward' ? this.k.frozenBackward : this.k.frozenBackwardAcc;
    kernel.encode(rec, { a: input, lda: strides.output, b, ldb, c: output, ldc: strides.input, m, n: lin.inFeatures, k: lin.outFeatures });
  }

  /** A 4-bit weight dequantized into the training workspace's scratch, rows weightScratchRowStride apart. */
  private dequantizeIntoScratch(rec: CommandRecorder, weight: FrozenWeight & { format: 'nf4' }, lin: FrozenLinear, scratch: GpuTensor): { b: GpuTensor; ldb: number } {
    const ldb = weightScratchRowStride(lin.inFeatures, this.base.dtype);
    this.k.dequantize!.encode(rec, { weight: weight.weight, output: scratch, outputRowStride: ldb });
    return { b: scratch, ldb };
  }

  // ---- blocks ----

  private forwardLayer(enc: Encoder, ws: Workspace, l: number, run: RunState, runtime: AdapterRuntime | undefined): void {
    const c = this.config;
    const L = this.base.layers[l]!;
    const s = ws.layer(l);
    const { x, out } = ws.io(l);
    const m = ws.tokens;
    const d = c.hiddenSize;
    const { attention, mlp } = this.arch;
    const ew = this.k.elementwise;
    const linear = (name: string, input: GpuTensor, output: GpuTensor, strides?: RowStrides) => this.linearForward(enc, ws, l, name, input, output, run, runtime, strides);

    this.k.norm.forward(enc.r, { x, weight: L.norm1.weight, bias: L.norm1.bias, y: s['n1']!, rstd: s['rstd1']!, mean: s['mean1'], rows: m, cols: d });
    if (attention.kind === 'fused') {
      linear(attention.qkv, s['n1']!, s['qkv']!);
      for (const [i, part] of (['q', 'k', 'v'] as const).entries()) {
        ew.copyColumns(enc.r, { src: s['qkv']!, srcCols: 3 * d, srcOffset: i * d, dst: s[part]!, dstCols: d, dstOffset: 0, rows: m, cols: d });
      }
    } else {
      linear(attention.q, s['n1']!, s['q']!);
      linear(attention.k, s['n1']!, s['k']!);
      linear(attention.v, s['n1']!, s['v']!);
    }
    if (this.arch.positions === 'rope') {
      const rope = { cos: this.ropeCos!, sin: this.ropeSin!, rows: m, headDim: c.headDim, seqLen: run.seq, positionOffset: run.positions };
      this.k.rope!.apply(enc.r, { ...rope, x: s['q']!, heads: c.numHeads });
      this.k.rope!.apply(enc.r, { ...rope, x: s['k']!, heads: c.numKvHeads });
    }
    let keys = s['k']!;
    let values = s['v']!;
    let seqKV = run.seq;
    let kvCapacity = run.seq;
    if (run.cache) {
      const width = c.numKvHeads * c.headDim;
      const copy = { srcCols: width, srcOffset: 0, dstCols: width, dstOffset: 0, rows: m, cols: width, dstRowOffset: run.offset };
      ew.copyColumns(enc.r, { ...copy, src: s['k']!, dst: run.cache.k[l]! });
      ew.copyColumns(enc.r, { ...copy, src: s['v']!, dst: run.cache.v[l]! });
      keys = run.cache.k[l]!;
      values = run.cache.v[l]!;
      seqKV = run.offset + run.seq;
      kvCapacity = run.cache.capacity;
    } else if (run.prefixed > 0) {
      ({ keys, values } = this.prefix.inFront(enc.r, ws, l, run, runtime!));
      seqKV = kvCapacity = run.prefixed + run.seq;
    }
    const gated = run.gatedPrefix > 0;
    this.k.attention.forward(enc.r, {
      q: s['q']!, k: keys, v: values, out: gated ? s['attR']! : s['att']!, lse: gated || run.training || ws.shape.training ? s['lse'] : undefined,
      batch: run.batch, seqQ: run.seq, seqKV, kvCapacity, heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim,
      scale: 1 / Math.sqrt(c.headDim), positionOffset: run.offset,
      // Training workspaces lend the matmul path its scratch; KV-cache decoding keeps the flash kernel.
      scratch: kvCapacity === seqKV ? ws.attentionScratch : undefined,
    });
    if (gated) this.prefix.gatedForward(enc.r, ws, l, run, runtime!);
    linear(attention.o, s['att']!, s['x2']!);
    ew.axpy(enc.r, { target: s['x2']!, source: x, size: m * d });
    this.k.norm.forward(enc.r, { x: s['x2']!, weight: L.norm2.weight, bias: L.norm2.bias, y: s['n2']!, rstd: s['rstd2']!, mean: s['mean2'], rows: m, cols: d });
    // The intermediates' rows are ws.shape.mlpRowStride apart; the activations run over the
    // padding too (nothing reads it).
    const ld = ws.shape.mlpRowStride;
    const inner = m * ld;
    const into = { output: ld };
    const from = { input: ld };
    if (mlp.kind === 'gelu') {
      linear(mlp.fc, s['n2']!, s['mlpA']!, into);
      this.k.gelu!.forward(enc.r, { x: s['mlpA']!, y: s['act']!, size: inner });
      linear(mlp.proj, s['act']!, out, from);
    } else {
      linear(mlp.gate, s['n2']!, s['mlpA']!, into);
      linear(mlp.up, s['n2']!, s['mlpB']!, into);
      this.k.swiglu!.forward(enc.r, { gate: s['mlpA']!, up: s['mlpB']!, out: s['act']!, size: inner });
      linear(mlp.down, s['act']!, out, from);
    }
    ew.axpy(enc.r, { target: out, source: s['x2']!, size: m * d });
  }

  /** Expects dL/d(layer output) in gRes; leaves dL/d(layer input) there. */
  private backwardLayer(enc: Encoder, ws: Workspace, l: number, run: RunState, runtime: AdapterRuntime): void {
    const c = this.config;
    const L = this.base.layers[l]!;
    const s: LayerState = ws.layer(l);
    const b = ws.buffers;
    const { x } = ws.io(l);
    const m = ws.tokens;
    const d = c.hiddenSize;
    const { attention, mlp } = this.arch;
    const g = b['gRes']!;
    const ld = ws.shape.mlpRowStride;
    const inner = m * ld;
    const into = { output: ld };
    const from = { input: ld };
    const linear = (name: string, gradOutput: GpuTensor, input: GpuTensor, gradInput: GpuTensor | undefined, accumulate: boolean, strides?: RowStrides) =>
      this.linearBackward(enc, ws, l, name, gradOutput, input, gradInput, accumulate, run, runtime, strides);
    // Below the lowest adapted layer nothing is trained: no gradient is needed under its linears
    // (virtual tokens are trained through layer 0's input gradient).
    const needInput = l > ws.shape.lowestTrainable || run.virtualRows > 0;

    if (mlp.kind === 'gelu') {
      linear(mlp.proj, g, s['act']!, b['dAct']!, false, from);
      this.k.gelu!.backward(enc.r, { x: s['mlpA']!, gradOutput: b['dAct']!, gradInput: b['dGate']!, size: inner });
      linear(mlp.fc, b['dGate']!, s['n2']!, b['dN']!, false, into);
    } else {
      linear(mlp.down, g, s['act']!, b['dAct']!, false, from);
      this.k.swiglu!.backward(enc.r, { gate: s['mlpA']!, up: s['mlpB']!, gradOutput: b['dAct']!, gradGate: b['dGate']!, gradUp: b['dUp']!, size: inner });
      linear(mlp.gate, b['dGate']!, s['n2']!, b['dN']!, false, into);
      linear(mlp.up, b['dUp']!, s['n2']!, b['dN']!, true, into);
    }
    this.k.norm.backward(enc.r, { x: s['x2']!, weight: L.norm2.weight, rstd: s['rstd2']!, mean: s['mean2'], gradOutput: b['dN']!, gradInput: g, rows: m, cols: d, accumulate: true });

    linear(attention.o, g, s['att']!, b['dAtt']!, false);
    const shape = { batch: run.batch, seq: run.seq, heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim, scale: 1 / Math.sqrt(c.headDim) };
    if (run.prefixed > 0) this.prefix.inFrontBackward(enc.r, ws, l, run, runtime, shape);
    else if (run.gatedPrefix > 0) this.prefix.gatedBackward(enc.r, ws, l, run, runtime, shape);
    else {
      this.k.attention.backward(enc.r, {
        q: s['q']!, k: s['k']!, v: s['v']!, out: s['att']!, lse: s['lse']!, gradOutput: b['dAtt']!,
        gradQ: b['dq']!, gradK: b['dk']!, gradV: b['dv']!, delta: b['delta']!, scratch: ws.attentionScratch, ...shape,
      });
    }
    if (this.arch.positions === 'rope') {
      const rope = { cos: this.ropeCos!, sin: this.ropeSin!, rows: m, headDim: c.headDim, seqLen: run.seq, positionOffset: run.positions, inverse: true };
      this.k.rope!.apply(enc.r, { ...rope, x: b['dq']!, heads: c.numHeads });
      this.k.rope!.apply(enc.r, { ...rope, x: b['dk']!, heads: c.numKvHeads });
    }
    const dN = needInput ? b['dN']! : undefined;
    if (attention.kind === 'fused') {
      for (const [i, part] of (['dq', 'dk', 'dv'] as const).entries()) {
        this.k.elementwise.copyColumns(enc.r, { src: b[part]!, srcCols: d, srcOffset: 0, dst: b['dQKV']!, dstCols: 3 * d, dstOffset: i * d, rows: m, cols: d });
      }
      linear(attention.qkv, b['dQKV']!, s['n1']!, dN, false);
    } else {
      linear(attention.q, b['dq']!, s['n1']!, dN, false);
      linear(attention.k, b['dk']!, s['n1']!, dN, true);
      linear(attention.v, b['dv']!, s['n1']!, dN, true);
    }
    // A gated prefix's gate reads the attention input too: its gradients, and its share of dN.
    if (run.gatedPrefix > 0) runtime.prefix!.gate!.backward(enc.r, { layer: l, input: s['n1']!, m, state: s, gradGates: b['dGates']!, gradInput: dN });
    if (needInput) {
      this.k.norm.backward(enc.r, { x, weight: L.norm1.weight, rstd: s['rstd1']!, mean: s['mean1'], gradOutput: b['dN']!, gradInput: g, rows: m, cols: d, accumulate: true });
    }
  }

  // ---- head ----

  private finalNorm(enc: Encoder, ws: Workspace): void {
    const f = this.base.finalNorm;
    const b = ws.buffers;
    this.k.norm.forward(enc.r, { x: ws.last, weight: f.weight, bias: f.bias, y: b['xf']!, rstd: b['rstdF']!, mean: b['meanF'], rows: ws.tokens, cols: this.config.hiddenSize });
  }

  /** logits[0..rows) = xf[r0..r0+rows) E^T, rows ws.logitsRowStride apart. */
  private headRows(enc: Encoder, ws: Workspace, r0: number, rows: number): void {
    const b = ws.buffers;
    const d = this.config.hiddenSize;
    this.k.head.encode(enc.r, { a: b['xf']!, offsetA: r0 * d, b: this.base.lmHead, c: b['logits']!, ldc: ws.logitsRowStride, m: rows, n: this.config.vocabSize, k: d });
  }

  /** Final norm, LM head and cross-entropy in row chunks; with `backward`, leaves dL/d(last layer output) in gRes. */
  private headAndLoss(enc: Encoder, ws: Workspace, gradScale: number, backward = true): void {
    const b = ws.buffers;
    const d = this.config.hiddenSize;
    const v = this.config.vocabSize;
    this.finalNorm(enc, ws);
    const chunk = ws.shape.headChunk;
    for (let r0 = 0; r0 < ws.tokens; r0 += chunk) {
      const rows = Math.min(chunk, ws.tokens - r0);
      this.headRows(enc, ws, r0, rows);
      this.k.crossEntropy.encode(enc.r, { logits: b['logits']!, logitsRowStride: ws.logitsRowStride, targets: b['targets']!, losses: b['losses']!, rows, vocab: v, targetOffset: r0, gradScale });
      if (backward) {
        this.k.headBackward.encode(enc.r, { a: b['logits']!, lda: ws.logitsRowStride, b: this.base.lmHead, c: b['dXf']!, offsetC: r0 * d, m: rows, n: d, k: v });
      }
    }
    if (backward) {
      const f = this.base.finalNorm;
      this.k.norm.backward(enc.r, { x: ws.last, weight: f.weight, rstd: b['rstdF']!, mean: b['meanF'], gradOutput: b['dXf']!, gradInput: b['gRes']!, rows: ws.tokens, cols: d });
    }
  }

  release(): void {
    this.dropWorkspace();
    this.releaseRuntime();
    this.ropeCos?.release();
    this.ropeSin?.release();
  }
}

/** Row strides (elements) of a linear's input and output where they are padded; dense when omitted. */
interface RowStrides {
  /** x and dL/dx. */
  input?: number;
  /** y and dL/dy. */
  output?: number;
}

/**
 * Adapter runtimes read and write dense rows: the workspace pads only what no method touches
 * (mlpRowStride), so a padded stride here is a bug in that rule, not a user error.
 */
function requireDenseRows(lin: FrozenLinear, strides: RowStrides): void {
  if ((strides.input ?? lin.inFeatures) !== lin.inFeatures || (strides.output ?? lin.outFeatures) !== lin.outFeatures) {
    throw new Error(`webtune: ${lin.module} would run with padded rows (${JSON.stringify(strides)}) where it needs dense ones; please report this.`);
  }
}

interface RunState {
  batch: number;
  seq: number;
  training: boolean;
  seed: number;
  step: number;
  /** Index of the first row among the keys attention reads (after a prefix in front, or what a KV cache holds). */
  offset: number;
  /** Position of the first row (RoPE angle, learned position): the offset, plus a gated prefix's length. */
  positions: number;
  cache?: KvCache;
  /** Leading rows of each sequence that are the adapter's virtual tokens. */
  virtualRows: number;
  /** Prefix rows to put in front of each layer's keys and values (0 when a KV cache holds them). */
  prefixed: number;
  /** Rows of a gated prefix, attended to apart and merged (0 without one). */
  gatedPrefix: number;
}

/** Targets that carry a loss (not IGNORE_INDEX). */
function countTargets(targets: Uint32Array): number {
  let valid = 0;
  for (const t of targets) if (t !== IGNORE_INDEX) valid++;
  return valid;
}
