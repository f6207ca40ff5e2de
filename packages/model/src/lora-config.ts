/**
 * LoRA settings and where adapters go, with PEFT's names (REFERENCE.md "LoRA"): a target is a
 * module-name suffix, matched as PEFT does (`name == target` or `name.endsWith('.' + target)`).
 */
import { InvalidArgumentError } from '@webtune/errors';
import type { Architecture, ModelConfig } from './config.js';

/**
 * LoRA settings with PEFT's meanings (r, lora_alpha, lora_dropout, target_modules, use_rslora): which linear
 * modules get an adapter and how large it is. The update is scaled by alpha / rank (alpha / sqrt(rank) with
 * rsLoRA). TrainRequest.lora takes any subset; the rest take their defaults.
 */
export interface LoraConfig {
  /** Rank r. Default 8. */
  rank: number;
  /** lora_alpha. Default: the rank. */
  alpha: number;
  /** Dropout on the LoRA branch input. Default 0. */
  dropout: number;
  /** Module-name suffixes. Default: llama `q_proj, v_proj`; gpt2 `c_attn`. */
  targets: string[];
  /** rsLoRA: scale alpha / sqrt(r) instead of alpha / r. */
  rslora: boolean;
}

export const DEFAULT_TARGETS: Record<Architecture, string[]> = {
  llama: ['q_proj', 'v_proj'],
  gpt2: ['c_attn'],
};

/** Every linear module suffix each architecture has, in the order the layer runs them. */
export const LINEAR_MODULES: Record<Architecture, string[]> = {
  llama: ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'],
  gpt2: ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'],
};

export function resolveLoraConfig(model: ModelConfig, options: Partial<LoraConfig> = {}): LoraConfig {
  const config: LoraConfig = {
    rank: options.rank ?? 8,
    alpha: options.alpha ?? options.rank ?? 8,
    dropout: options.dropout ?? 0,
    targets: options.targets ?? DEFAULT_TARGETS[model.architecture],
    rslora: options.rslora ?? false,
  };
  if (!Number.isInteger(config.rank) || config.rank < 1) throw new InvalidArgumentError(`LoRA rank must be a positive integer, got ${config.rank}.`);
  if (!(config.alpha > 0)) throw new InvalidArgumentError(`LoRA alpha must be positive, got ${config.alpha}.`);
  if (!(config.dropout >= 0 && config.dropout < 1)) throw new InvalidArgumentError(`LoRA dropout must be in [0, 1), got ${config.dropout}.`);
  const known = LINEAR_MODULES[model.architecture];
  for (const target of config.targets) {
    if (!known.some((m) => matchesTarget(m, target))) {
      throw new InvalidArgumentError(
        `LoRA target "${target}" matches no linear module of a ${model.modelType} model; choose from ${known.map((m) => m.split('.').pop()).join(', ')}.`,
      );
    }
  }
  return config;
}

export function loraScale(config: LoraConfig): number {
  return config.rslora ? config.alpha / Math.sqrt(config.rank) : config.alpha / config.rank;
}

/** PEFT's suffix rule. */
export function matchesTarget(moduleName: string, target: string): boolean {
  return moduleName === target || moduleName.endsWith(`.${target}`);
}

/** The HF module path of a linear layer, e.g. `model.layers.3.self_attn.q_proj` or `transformer.h.0.attn.c_attn`. */
export function modulePath(arch: Architecture, layer: number, linear: string): string {
  return arch === 'llama' ? `model.layers.${layer}.${linear}` : `transformer.h.${layer}.${linear}`;
}

/** PEFT's key in adapter_model.safetensors (adapter name dropped). */
export function peftKey(module: string, which: 'A' | 'B'): string {
  return `base_model.model.${module}.lora_${which}.weight`;
}
