/**
 * LoRA settings with PEFT's names (REFERENCE.md "LoRA"): rank, alpha, dropout, targets (module-name
 * suffixes, PEFT's suffix rule), rsLoRA and `layers_to_transform`.
 */
import { InvalidArgumentError } from '@webtune/errors';
import { architectureOf } from '../../arch/index.js';
import type { ModelConfig } from '../../config.js';
import { checkLayers, checkTargets, peftModuleKey } from '../targets.js';

/**
 * LoRA settings with PEFT's meanings (r, lora_alpha, lora_dropout, target_modules, use_rslora,
 * layers_to_transform): which linear modules get an adapter and how large it is. The update is
 * scaled by alpha / rank (alpha / sqrt(rank) with rsLoRA). TrainRequest.lora takes any subset; the
 * rest take their defaults.
 */
export interface LoraConfig {
  /** Rank r. Default 8. */
  rank: number;
  /** lora_alpha. Default: the rank. */
  alpha: number;
  /** Dropout on the LoRA branch input. Default 0. */
  dropout: number;
  /** Module-name suffixes. Default: the architecture's (llama `q_proj, v_proj`; gpt2 `c_attn`). */
  targets: string[];
  /** rsLoRA: scale alpha / sqrt(r) instead of alpha / r. */
  rslora: boolean;
  /**
   * PEFT's layers_to_transform: only these layers get adapters (the rest stay frozen; backward
   * stops at the lowest one, so the layers below keep no activations). Default: every layer.
   */
  layers?: number[];
}

export function resolveLoraConfig(model: ModelConfig, options: Partial<LoraConfig> = {}): LoraConfig {
  const config: LoraConfig = {
    rank: options.rank ?? 8,
    alpha: options.alpha ?? options.rank ?? 8,
    dropout: options.dropout ?? 0,
    targets: options.targets ?? [...architectureOf(model).defaults(model.modelType).lora],
    rslora: options.rslora ?? false,
  };
  if (!Number.isInteger(config.rank) || config.rank < 1) throw new InvalidArgumentError(`LoRA rank must be a positive integer, got ${config.rank}.`);
  if (!(config.alpha > 0)) throw new InvalidArgumentError(`LoRA alpha must be positive, got ${config.alpha}.`);
  if (!(config.dropout >= 0 && config.dropout < 1)) throw new InvalidArgumentError(`LoRA dropout must be in [0, 1), got ${config.dropout}.`);
  checkTargets(model, config.targets, 'LoRA');
  const layers = checkLayers(model, options.layers, 'LoRA');
  if (layers) config.layers = layers;
  return config;
}

export function loraScale(config: Pick<LoraConfig, 'alpha' | 'rank' | 'rslora'>): number {
  return config.rslora ? config.alpha / Math.sqrt(config.rank) : config.alpha / config.rank;
}

/** PEFT's key in adapter_model.safetensors (adapter name dropped). */
export function peftKey(module: string, which: 'A' | 'B'): string {
  return peftModuleKey(module, `lora_${which}.weight`);
}
