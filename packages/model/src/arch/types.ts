/**
 * What webtune needs to know about one transformer architecture, in one object: how to read its
 * config.json, its Hugging Face tensor names, its linear layers (shapes, biases, Conv1D storage),
 * the block's choices (norm, positions, attention and MLP wiring) and each adaptation method's
 * default targets. The transformer, the loader, the planner, the exporters and the federated
 * client read these fields; none of them branches on an architecture's name.
 */
import type { Architecture, ModelConfig } from '../config.js';
import type { RawConfig } from './config-fields.js';

/** Attention projections: separate q/k/v (Llama) or one fused qkv (GPT-2's c_attn); each a linear name. */
export type AttentionLinears = { kind: 'separate'; q: string; k: string; v: string; o: string } | { kind: 'fused'; qkv: string; o: string };

/** MLP linears: SwiGLU (gate, up, down) or a GELU MLP (fc, proj). */
export type MlpLinears = { kind: 'swiglu'; gate: string; up: string; down: string } | { kind: 'gelu'; fc: string; proj: string };

/** Tensor names (without `.weight` / `.bias`) of the non-linear parts. */
export interface ArchitectureNames {
  embed: string;
  /** Learned position table, when the architecture has one. */
  positions?: string;
  norm1(layer: number): string;
  norm2(layer: number): string;
  finalNorm: string;
  /** Untied LM head. */
  lmHead: string;
}

/** Default target module suffixes per adaptation method (PEFT's defaults where PEFT has them). */
export interface DefaultTargets {
  lora: readonly string[];
  /** IA3 targets and the subset scaled at the input (PEFT's feedforward_modules). */
  ia3: { targets: readonly string[]; feedforward: readonly string[] };
}

export interface ArchitectureDescriptor {
  name: Architecture;
  /** config.json `model_type` values this descriptor reads. */
  modelTypes: readonly string[];
  /** The normalized config from config.json (errors name `source`). */
  parseConfig(raw: RawConfig, modelType: string, source: string): ModelConfig;
  /** HF module path prefix of layer l, e.g. `model.layers.3`. */
  layerPrefix(layer: number): string;
  /** Linear suffixes within a layer, in the order the layer runs them. */
  linears: readonly string[];
  /** [in, out] of a linear. */
  linearShape(config: ModelConfig, name: string): { inFeatures: number; outFeatures: number };
  linearHasBias(config: ModelConfig, name: string): boolean;
  /** Linear weights stored [in, out] (GPT-2's Conv1D; PEFT's fan_in_fan_out). */
  conv1d: boolean;
  norm: 'rms' | 'layer';
  positions: 'rope' | 'learned';
  attention: AttentionLinears;
  mlp: MlpLinears;
  names: ArchitectureNames;
  /**
   * Another name the same tensor may have in older files (GPT-2 exports without the
   * `transformer.` prefix), or undefined.
   */
  alternateName(name: string): string | undefined;
  /** The HF name of a tensor or module that a file may spell the alternate way (inverse of alternateName). */
  canonicalName(name: string): string;
  /** Default targets per method; PEFT's defaults differ between model types of one family (qwen2's IA3). */
  defaults(modelType: string): DefaultTargets;
  /**
   * config.json fields a merged export sets when an adapter adds biases the base lacked (Llama's
   * attention_bias / mlp_bias), or undefined when the architecture cannot express them.
   */
  biasFlags?(modelType: string, linears: ReadonlySet<string>): { config: RawConfig; linears: string[] } | undefined;
}
