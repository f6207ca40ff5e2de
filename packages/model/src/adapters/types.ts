/**
 * The adaptation-method seam. A method (LoRA, IA3, BitFit, ...) is one folder here that provides:
 * config resolution and validation, the trainable tensors (created, imported, read, written), the
 * workspace buffers it needs, how it changes a linear layer's forward and backward on the GPU, its
 * PEFT files, and its merge into base weights. Everything outside `adapters/` (trainer, AdamW,
 * checkpoints, planner, federated rounds, coordinator) sees an `Adapter`: trainable tensors and an
 * `AdapterSpec` `{ method, config }`.
 */
import type { CommandRecorder, ElementType, GpuContext, GpuTensor } from '@webtune/gpu';
import type { ModelConfig } from '../config.js';
import type { BufferPlan } from '../workspace.js';
import type { FrozenLinear } from '../weights.js';

/** A float32 tensor in host memory with its shape (PEFT-keyed adapter tensors, checkpoints, deltas). */
export interface HostTensor {
  data: Float32Array;
  shape: number[];
}

/** The adaptation methods webtune trains. */
export type AdapterMethod = 'lora' | 'dora' | 'ia3' | 'bitfit' | 'prompt-tuning' | 'p-tuning' | 'prefix-tuning' | 'bottleneck' | 'unipelt';

/** JSON data (an adapter spec's config). */
export type AdapterJson = string | number | boolean | null | AdapterJson[] | { [key: string]: AdapterJson };

/** A serializable adapter description: the method and its resolved config (checkpoints, federated rounds). */
export interface AdapterSpec {
  method: AdapterMethod;
  /** The method's resolved config (LoraConfig, IA3Config, BitFitConfig) as JSON. */
  config: { [key: string]: AdapterJson };
}

/** One trainable tensor with its gradient buffer, keyed as the method's saved files key it. */
export interface TrainableTensor {
  key: string;
  param: GpuTensor;
  grad: GpuTensor;
}

/** One targeted linear module of one layer. */
export interface TargetModule {
  /** HF module path, e.g. model.layers.0.self_attn.q_proj */
  module: string;
  layer: number;
  /** Suffix within the layer, e.g. self_attn.q_proj */
  name: string;
  inFeatures: number;
  outFeatures: number;
}

/** What a training step's workspace must hold for the adapter, besides the frozen model's own buffers. */
export interface AdapterBuffers {
  /** Saved per trainable layer (names must be unique, e.g. `h:self_attn.q_proj`). */
  layer: BufferPlan[];
  /** One copy, shared by all layers (backward scratch). */
  shared: BufferPlan[];
}

/** Shapes the buffer plan depends on. */
export interface AdapterBufferShape {
  tokens: number;
  training: boolean;
  dtype: ElementType;
  /** The base's linear weights are 4-bit (a method that reads W whole must dequantize it first). */
  fourBit?: boolean;
}

/**
 * How a method changes the sequence. Virtual tokens are rows of every sequence (they run
 * through the model and take positions 0..virtualTokens-1); prefix tokens exist only as keys and
 * values. Either way a real token t sits at position (virtualTokens + prefixTokens) + t.
 */
export interface SequenceLayout {
  virtualTokens: number;
  prefixTokens: number;
  /**
   * Prefixes behind per-token gates (UniPELT): attention runs over the prefix and over the
   * sequence apart and merges the two by their log-sum-exp, so the prefix never enters the KV cache.
   */
  gatedPrefix?: boolean;
}

export const NO_SEQUENCE_CHANGE: SequenceLayout = Object.freeze({ virtualTokens: 0, prefixTokens: 0 });

/** The frozen operations the transformer lends a method's linear hooks. */
export interface LinearOps {
  /** y = x W^T (no bias). */
  frozenForward(rec: CommandRecorder, lin: FrozenLinear, x: GpuTensor, y: GpuTensor): void;
  /** gradInput (= or +=) gradOutput W. */
  frozenBackward(rec: CommandRecorder, lin: FrozenLinear, gradOutput: GpuTensor, gradInput: GpuTensor, accumulate: boolean): void;
  /** A layer's frozen linear by its suffix. */
  linear(layer: number, name: string): FrozenLinear;
  /** The workspace's shared scratch (the method's `shared` buffers and `weightScratch` for 4-bit bases). */
  scratch(name: string): GpuTensor | undefined;
}

/** One linear call: run state and where to read and write. */
export interface LinearCall {
  layer: number;
  linear: FrozenLinear;
  /** Rows (tokens). */
  m: number;
  x: GpuTensor;
  /** This layer's saved state (the method's `layer` buffers by name). */
  state: Record<string, GpuTensor>;
  training: boolean;
  /** Dropout seed and the stream of this (step, layer, linear). */
  seed: number;
  stream: number;
}

/**
 * The GPU side of an adapter inside one Transformer: forward and backward of the linears it
 * touches (`Adapter.touches`), always over dense rows. `linearForward` writes y including the base
 * bias; `linearBackward` adds the gradients of its trainable tensors and writes (or adds) dL/dx
 * when `gradInput` is given.
 */
export interface AdapterRuntime {
  /** Before a forward pass: refresh half copies and the like. */
  beforeForward(rec: CommandRecorder): void;
  /** After a backward pass: fold half gradients into the f32 ones, and the like. */
  afterBackward(rec: CommandRecorder): void;
  linearForward(rec: CommandRecorder, call: LinearCall & { y: GpuTensor }): void;
  linearBackward(rec: CommandRecorder, call: LinearCall & { gradOutput: GpuTensor; gradInput: GpuTensor | undefined; accumulate: boolean }): void;
  /** Virtual tokens prepended to every sequence (prompt tuning, P-tuning). */
  virtualTokens?: VirtualTokenHooks;
  /** Key/value prefixes every query attends to (prefix tuning). */
  prefix?: PrefixHooks;
  release(): void;
}

/**
 * The embeddings of the adapter's virtual tokens, read by the transformer into the first rows of
 * every sequence (before the learned positions are added); their gradient is summed over the batch
 * into `gradient`, which the runtime folds into its trainable tensors in afterBackward.
 */
export interface VirtualTokenHooks {
  count: number;
  /** [count, hidden] in the compute dtype, valid after beforeForward. */
  embeddings: GpuTensor;
  /** [count, hidden] in the compute dtype; the transformer adds into it, afterBackward consumes and clears it. */
  gradient: GpuTensor;
}

/**
 * Per-layer key and value rows placed before a sequence's own keys and values (a "past" every
 * position attends to, without RoPE), as PEFT lays them out: one table [count, columns] with layer
 * l's keys and values in column blocks. The transformer adds dL/d(table), summed over the batch,
 * into `gradient`; afterBackward consumes and clears it.
 */
export interface PrefixHooks {
  count: number;
  /** [count, columns] in the compute dtype, valid after beforeForward. */
  table: GpuTensor;
  gradient: GpuTensor;
  columns: number;
  /** First column of layer l's keys (kvHeads * headDim wide). */
  keyOffset(layer: number): number;
  valueOffset(layer: number): number;
  /** Per-token gates on the prefix (SequenceLayout.gatedPrefix). */
  gate?: PrefixGateHooks;
}

/**
 * UniPELT's prefix gate: two scalars per token (key gate, value gate) from the attention's input.
 * Query i's scores against the prefix keys are scaled by the key gate, the prefix values by the
 * value gate.
 */
export interface PrefixGateHooks {
  /** Computes [tokens, 2] f32 gates (key gate, value gate) from the attention's input, kept in `state` for backward. */
  forward(rec: CommandRecorder, call: { layer: number; input: GpuTensor; m: number; state: Record<string, GpuTensor> }): GpuTensor;
  /** The gates forward computed into this layer's state. */
  gates(state: Record<string, GpuTensor>): GpuTensor;
  /** Adds the gate's parameter gradients from dL/d(gates) [tokens, 2] f32, and dL/d(input) into `gradInput` when given. */
  backward(rec: CommandRecorder, call: { layer: number; input: GpuTensor; m: number; state: Record<string, GpuTensor>; gradGates: GpuTensor; gradInput: GpuTensor | undefined }): void;
}

/** What a runtime is built from. */
export interface RuntimeContext {
  ctx: GpuContext;
  dtype: ElementType;
  /** The base's 4-bit kernel variant, when its linear weights are 4-bit. */
  nf4: { blockSize: number; doubleQuant: boolean; codebook: 'nf4' | 'int4' } | undefined;
  ops: LinearOps;
}

/** An adapter on the GPU: trainable tensors, their gradients, and the hooks that apply them. */
export interface Adapter {
  readonly method: AdapterMethod;
  readonly model: ModelConfig;
  /** The method's resolved config. */
  readonly config: unknown;
  /** Bumped whenever a trainable tensor changes (optimizer step, write); runtimes keeping copies re-sync. */
  version: number;
  /** Number of trainable parameters. */
  readonly parameterCount: number;
  /** Multiplies the optimizer's learning rate for this adapter's tensors (1 unless the method says otherwise). */
  readonly learningRateScale: number;
  /** The lowest layer with a trainable tensor: backward stops there. */
  readonly lowestLayer: number;
  /** Rows the adapter places before each sequence: virtual tokens (prompt methods) and key/value prefixes. */
  readonly sequence: SequenceLayout;
  /**
   * Whether the method changes this linear module (HF path, e.g. model.layers.0.mlp.down_proj):
   * the transformer hands it to the runtime's linearForward/linearBackward, and runs the others
   * frozen itself (with the workspace's own layout; see WorkspaceShape.mlpRowStride).
   */
  touches(module: string): boolean;
  /** `{ method, config }`, for checkpoints and federated rounds. */
  spec(): AdapterSpec;
  /** Every trainable tensor with its gradient, in a fixed order (the optimizer's and checkpoints' order). */
  trainable(): Generator<TrainableTensor>;
  /** The trainable tensors under their saved keys. */
  read(): Promise<Map<string, HostTensor>>;
  /** The accumulated gradients under the parameters' keys. */
  readGradients(): Promise<Map<string, HostTensor>>;
  /** Overwrites every trainable tensor (same keys and shapes as `read()` returns). */
  write(tensors: ReadonlyMap<string, HostTensor>): void;
  zeroGradients(): void;
  /** The workspace buffers the runtime uses. */
  buffers(shape: AdapterBufferShape): AdapterBuffers;
  /** The GPU hooks, built once per Transformer that runs this adapter. */
  createRuntime(context: RuntimeContext): Promise<AdapterRuntime>;
  release(): void;
}
