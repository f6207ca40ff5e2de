/**
 * BitFit (Ben Zaken et al., 2022; TinyTL's "bias gradients are cheap"): train only the biases of
 * the targeted linears. The trainable tensor is an offset added to the base bias (zero-initialised,
 * so training starts from the base model); for a linear without a bias it is a new bias.
 */
import { InvalidArgumentError } from '@webtune/errors';
import { architectureOf } from '../../arch/index.js';
import type { ModelConfig } from '../../config.js';
import { checkLayers, checkTargets, peftModuleKey, selectModules } from '../targets.js';

/**
 * BitFit's settings: which linears' biases train, on which layers, and how much faster than the
 * run's learning rate.
 */
export interface BitFitConfig {
  /**
   * Module-name suffixes whose biases train. Default: every linear whose bias a merged model can
   * carry (every linear for llama and gpt2; the biased q/k/v for qwen2).
   */
  targets: string[];
  /** PEFT's layers_to_transform; default every layer. */
  layers?: number[];
  /**
   * Multiplies the run's learning rate for these biases (the on-device guide's
   * learning_rate_scale; BitFit usually wants a larger rate than LoRA). Default 1.
   */
  learningRateScale: number;
}

/** Whether a merged model of this type can carry a bias on `linear` (existing, or switched on by a config flag). */
export function biasExpressible(model: ModelConfig, linear: string): boolean {
  const arch = architectureOf(model);
  if (arch.linearHasBias(model, linear)) return true;
  return arch.biasFlags?.(model.modelType, new Set([linear])) !== undefined;
}

export function resolveBitFitConfig(model: ModelConfig, options: Partial<BitFitConfig> = {}): BitFitConfig {
  const arch = architectureOf(model);
  const targets = options.targets ?? [...new Set(arch.linears.filter((n) => biasExpressible(model, n)).map((n) => n.split('.').pop()!))];
  if (targets.length === 0) throw new InvalidArgumentError(`BitFit needs biases, and a ${model.modelType} model has none that a merged model could keep; use LoRA or IA3.`);
  checkTargets(model, targets, 'BitFit');
  const learningRateScale = options.learningRateScale ?? 1;
  if (!(learningRateScale > 0) || !Number.isFinite(learningRateScale)) throw new InvalidArgumentError(`BitFit learningRateScale must be a positive number, got ${learningRateScale}.`);
  const config: BitFitConfig = { targets: [...targets], learningRateScale };
  const layers = checkLayers(model, options.layers, 'BitFit');
  if (layers) config.layers = layers;
  for (const t of selectModules(model, config.targets, config.layers)) {
    if (!biasExpressible(model, t.name)) {
      throw new InvalidArgumentError(`BitFit on ${t.name}: a ${model.modelType} model cannot carry a bias there (its config has no switch for it), so the trained bias could not be exported; target ${arch.linears.filter((n) => biasExpressible(model, n)).map((n) => n.split('.').pop()).join(', ')}.`);
    }
  }
  return config;
}

/** The saved key of a bias offset: `base_model.model.<module>.bitfit_bias`. */
export function bitfitKey(module: string): string {
  return peftModuleKey(module, 'bitfit_bias');
}
