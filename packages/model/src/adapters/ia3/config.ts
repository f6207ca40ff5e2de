/**
 * IA3 settings with PEFT's names (`tuners/ia3/config.py`): target_modules, feedforward_modules
 * (the subset scaled at the input) and layers_to_transform.
 */
import { InvalidArgumentError } from '@webtune/errors';
import { architectureOf } from '../../arch/index.js';
import type { ModelConfig } from '../../config.js';
import { checkLayers, checkTargets, peftModuleKey } from '../targets.js';

/**
 * IA3: a learned vector per targeted linear that scales its output (`[out, 1]`, attention
 * targets) or its input (`[1, in]`, feed-forward targets), initialised to ones so training starts
 * from the base model. Trains ~0.01% of the parameters; merges exactly into the base weights.
 */
export interface IA3Config {
  /** Module-name suffixes. Default: PEFT's per model type (llama `k_proj, v_proj, down_proj`; qwen2 `q_proj, v_proj, down_proj`; gpt2 `c_attn, mlp.c_proj`). */
  targets: string[];
  /** Targets scaled at the input (PEFT's feedforward_modules); a subset of targets. Default: PEFT's (`down_proj`; gpt2 `mlp.c_proj`). */
  feedforward: string[];
  /** PEFT's layers_to_transform; default every layer. */
  layers?: number[];
}

export function resolveIA3Config(model: ModelConfig, options: Partial<IA3Config> = {}): IA3Config {
  const defaults = architectureOf(model).defaults(model.modelType).ia3;
  const targets = options.targets ?? [...defaults.targets];
  const feedforward = options.feedforward ?? (options.targets ? [] : [...defaults.feedforward]);
  if (!Array.isArray(targets) || targets.length === 0) throw new InvalidArgumentError('IA3 targets must be a non-empty list of module names.');
  checkTargets(model, targets, 'IA3');
  // PEFT (ia3/model.py) refuses feedforward modules that are not targets.
  for (const ff of feedforward) {
    if (!targets.some((t) => t === ff || t.endsWith(ff) || ff.endsWith(t))) {
      throw new InvalidArgumentError(`IA3 feedforward module "${ff}" is not one of the targets ${JSON.stringify(targets)}; feedforward_modules must be a subset of target_modules.`);
    }
  }
  const config: IA3Config = { targets: [...targets], feedforward: [...feedforward] };
  const layers = checkLayers(model, options.layers, 'IA3');
  if (layers) config.layers = layers;
  return config;
}

/** PEFT's feed-forward test (ia3/model.py): a plain suffix match, no `.` boundary. */
export function isFeedforward(config: Pick<IA3Config, 'feedforward'>, module: string): boolean {
  return config.feedforward.some((ff) => module.endsWith(ff));
}

/** PEFT's saved key: `base_model.model.<module>.ia3_l`. */
export function ia3Key(module: string): string {
  return peftModuleKey(module, 'ia3_l');
}
