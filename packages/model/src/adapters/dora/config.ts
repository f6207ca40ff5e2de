/**
 * DoRA (Liu et al., 2024; PEFT `LoraConfig(use_dora=True)`, `tuners/lora/dora.py`): LoRA's
 * settings plus a learned magnitude per output row. Same fields as LoraConfig.
 */
import { InvalidArgumentError } from '@webtune/errors';
import type { ModelConfig } from '../../config.js';
import { resolveLoraConfig, type LoraConfig } from '../lora/config.js';
import { peftModuleKey } from '../targets.js';

/** The largest rank the DoRA norm kernel takes (it keeps a row of B in workgroup memory). */
export const DORA_MAX_RANK = 64;

/** DoRA's settings: LoRA's (rank, alpha, targets, rslora, layers); lora_dropout must be 0, rank at most 64. */
export type DoraConfig = LoraConfig;

export function resolveDoraConfig(model: ModelConfig, options: Partial<DoraConfig> = {}): DoraConfig {
  const config = resolveLoraConfig(model, options);
  // PEFT's DoRA with dropout recomputes the base output from the dropped-out input; not done here.
  if (config.rank > DORA_MAX_RANK) throw new InvalidArgumentError(`DoRA rank ${config.rank} is above ${DORA_MAX_RANK}, the largest its norm kernel takes; use a lower rank or LoRA.`);
  if (config.dropout !== 0) throw new InvalidArgumentError(`DoRA with lora_dropout ${config.dropout} is not supported; use dropout 0 (PEFT's default) or LoRA.`);
  return config;
}

/** PEFT's saved key of the magnitude: `base_model.model.<module>.lora_magnitude_vector` ([out]). */
export function magnitudeKey(module: string): string {
  return peftModuleKey(module, 'lora_magnitude_vector');
}
