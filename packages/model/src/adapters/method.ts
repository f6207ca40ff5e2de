/**
 * What an adaptation method tells the rest of webtune without a GPU: resolving its config, which
 * modules it touches, its size (planner), checkpoint compatibility, PEFT files and merging. The
 * GPU side is the method's Adapter class (create / fromTensors) and its runtime.
 */
import type { ModelConfig } from '../config.js';
import type { AdapterBufferShape, AdapterBuffers, AdapterMethod, HostTensor, TargetModule } from './types.js';

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
  /** The linear modules it adapts, in layer order. */
  modules(model: ModelConfig, config: C): TargetModule[];
  parameterCount(model: ModelConfig, config: C): number;
  /** One line for messages, e.g. "LoRA rank 8". */
  describe(config: C): string;
  /** A cheaper config for the planner's advice, or undefined. */
  smaller?(config: C): { config: C; what: string } | undefined;
  /** Why a checkpoint saved with `saved` cannot continue with `here` (empty when it can). */
  mismatch(saved: C, here: C): string[];
  /** adapter_config.json (PEFT's where PEFT has the method). */
  peftConfig(model: Pick<ModelConfig, 'architecture'>, config: C, baseModel: string): Record<string, unknown>;
  /** The config from adapter_config.json. */
  fromPeftConfig(model: ModelConfig, raw: Record<string, unknown>): C;
  /** The saved keys of this method; group 1 is the HF module path. */
  keyPattern: RegExp;
  /** A saved key as this method names it (adapter-name segments such as `.default` dropped). */
  normalizeKey(key: string): string;
  /** Base tensor `name` with the adapter merged in (file layout), or undefined when the method leaves it alone. */
  mergeWeight(model: ModelConfig, config: C, name: string, data: Float32Array, tensors: ReadonlyMap<string, HostTensor>): Float32Array | undefined;
  /**
   * Tensors a merged model gains (BitFit's new biases) and config.json fields it must set so
   * transformers loads them; none when the method only changes existing tensors.
   */
  mergedAdditions?(model: ModelConfig, config: C, tensors: ReadonlyMap<string, HostTensor>): { tensors: Map<string, HostTensor>; config: Record<string, unknown> };
  /** Workspace buffers (the planner's estimate and the transformer's allocation use the same plan). */
  buffers(model: ModelConfig, config: C, shape: AdapterBufferShape): AdapterBuffers;
  /** Bytes per trainable element beyond the f32 parameter + gradient (f16 half copies). */
  halfCopies: boolean;
}
