/**
 * What an adaptation method tells the rest of webtune without a GPU: resolving its config, which
 * modules it touches, its size (planner), checkpoint compatibility, PEFT files and merging. The
 * GPU side is the method's Adapter class (create / fromTensors) and its runtime.
 */
import type { ModelConfig } from '../config.js';
import type { TensorShape } from './module-adapter.js';
import type { AdapterBufferShape, AdapterBuffers, AdapterMethod, HostTensor, SequenceLayout, TargetModule } from './types.js';

/** What adapter_config.json needs of the model: the architecture, and for prompt methods its shape. */
export type PeftConfigModel = Pick<ModelConfig, 'architecture'> & Partial<ModelConfig>;

export interface MethodDefinition<C> {
  method: AdapterMethod;
  /** Name in messages ("LoRA", "IA3", "BitFit"). */
  title: string;
  /** The full config from any subset of its fields (defaults filled, validated). */
  resolve(model: ModelConfig, options: Record<string, unknown>): C;
  /**
   * Why `raw` is not a config of this method (a model-free check of types and ranges, for
   * configs that arrive in files and requests: checkpoints, federated rounds), or undefined.
   */
  invalid(raw: Record<string, unknown>): string | undefined;
  /** Whether `layers` (PEFT's layers_to_transform) restricts it to some layers. */
  layerSelective: boolean;
  /** The linear modules it adapts, in layer order (none for methods that change the sequence). */
  modules(model: ModelConfig, config: C): TargetModule[];
  /** Virtual tokens and key/value prefixes it places before each sequence; none when omitted. */
  sequence?(model: ModelConfig, config: C): SequenceLayout;
  /** The keys and shapes of its trainable tensors, for methods whose tensors are not per module. */
  tensorShapes?(model: ModelConfig, config: C): TensorShape[];
  parameterCount(model: ModelConfig, config: C): number;
  /** One line for messages, e.g. "LoRA rank 8". */
  describe(config: C): string;
  /** A cheaper config for the planner's advice, or undefined. */
  smaller?(config: C): { config: C; what: string } | undefined;
  /** Why a checkpoint saved with `saved` cannot continue with `here` (empty when it can). */
  mismatch(saved: C, here: C): string[];
  /** adapter_config.json (PEFT's where PEFT has the method). */
  peftConfig(model: PeftConfigModel, config: C, baseModel: string): Record<string, unknown>;
  /** The config from adapter_config.json. */
  fromPeftConfig(model: ModelConfig, raw: Record<string, unknown>): C;
  /**
   * The tensors its adapter file holds, from the trainable ones (P-tuning and prefix projection
   * save the encoder's output, as PEFT does); the trainable tensors themselves when omitted.
   */
  savedTensors?(model: ModelConfig, config: C, trainable: ReadonlyMap<string, HostTensor>): Map<string, HostTensor>;
  /** The trainable tensors from a file's (the inverse key mapping of savedTensors); the file's when omitted. */
  fromSaved?(model: ModelConfig, config: C, saved: ReadonlyMap<string, HostTensor>): Map<string, HostTensor>;
  /** The saved keys of this method; group 1 is the HF module path (or, for prompt methods, the key). */
  keyPattern: RegExp;
  /** A saved key as this method names it (adapter-name segments such as `.default` dropped). */
  normalizeKey(key: string): string;
  /** Why the method cannot be merged into the base weights (virtual tokens, prefixes, added modules); undefined when it can. */
  unmergeable?: string;
  /** Base tensor `name` with the adapter merged in (file layout), or undefined when the method leaves it alone. */
  mergeWeight(model: ModelConfig, config: C, name: string, data: Float32Array, tensors: ReadonlyMap<string, HostTensor>): Float32Array | undefined;
  /**
   * Tensors a merged model gains (BitFit's new biases) and config.json fields it must set so
   * transformers loads them; none when the method only changes existing tensors.
   */
  mergedAdditions?(model: ModelConfig, config: C, tensors: ReadonlyMap<string, HostTensor>): { tensors: Map<string, HostTensor>; config: Record<string, unknown> };
  /** Workspace buffers (the planner's estimate and the transformer's allocation use the same plan). */
  buffers(model: ModelConfig, config: C, shape: AdapterBufferShape): AdapterBuffers;
  /** GPU bytes its runtime keeps outside the workspace and the trainable tensors (the prompt table's copies, an encoder's activations), for the planner. */
  runtimeBytes?(model: ModelConfig, config: C, dtype: 'f32' | 'f16'): number;
  /** Bytes per trainable element beyond the f32 parameter + gradient (f16 half copies). */
  halfCopies: boolean;
}
