/**
 * IA3 settings with PEFT's names (`tuners/ia3/config.py`): target_modules, feedforward_modules
 * (the subset scaled at the input) and layers_to_transform.
 */
import { InvalidArgumentError } from '@webtune/errors';
import { architectureOf } from '../../arch/index.js';
import type { ModelConfig } from '../../config.js';
import { checkLayers, checkTargets, peftModuleKey, selectModules } from '../targets.js';

/**
 * IA3: a learned vector per targeted linear that scales its output (`[out, 1]`, attention
 * targets) or its input (`[1, in]`, feed-forward targets), initialised to ones so training starts
 * from the base model. Trains ~0.01% of the parameters; merges exactly into the base weights.
 */
export interface IA3Config {
  /** Module-name suffixes. Default: PEFT's per model type (llama `k_proj, v_proj, down_proj`; qwen2 `q_proj, v_proj, down_proj`; gpt2 `c_attn, mlp.c_proj`). */
  targets: string[];
  /**
   * Targets scaled at the input (PEFT's feedforward_modules); a subset of targets. Default: PEFT's
   * (`down_proj`; gpt2 `mlp.c_proj`), as far as the targets reach them.
   */
  feedforward: string[];
  /** PEFT's layers_to_transform; default every layer. */
  layers?: number[];
}

export function resolveIA3Config(model: ModelConfig, options: Partial<IA3Config> = {}): IA3Config {
  const defaults = architectureOf(model).defaults(model.modelType).ia3;
  const targets = options.targets ?? [...defaults.targets];
  if (!Array.isArray(targets) || targets.length === 0) throw new InvalidArgumentError('IA3 targets must be a non-empty list of module names.');
  checkTargets(model, targets, 'IA3');
  const layers = checkLayers(model, options.layers, 'IA3');
  const modules = selectModules(model, targets, layers);
  let feedforward: string[];
  if (options.feedforward) {
    // PEFT's IA3Config: feedforward_modules must be a subset of target_modules.
    for (const ff of options.feedforward) {
      if (!targets.includes(ff)) {
        throw new InvalidArgumentError(`IA3 feedforward module "${ff}" is not one of the targets ${JSON.stringify(targets)}; feedforward_modules must be a subset of target_modules.`);
      }
    }
    feedforward = [...options.feedforward];
  } else {
    // As PEFT fills feedforward_modules from its table when it is not given: those of the defaults the targets reach.
    feedforward = defaults.feedforward.filter((ff) => modules.some((t) => t.module.endsWith(ff)));
  }
  // One kind of scaling per linear name: the input scaling's buffer is as wide as that linear's input in every layer.
  for (const name of new Set(modules.map((t) => t.name))) {
    const kinds = new Set(modules.filter((t) => t.name === name).map((t) => isFeedforward({ feedforward }, t.module)));
    if (kinds.size > 1) throw new InvalidArgumentError(`IA3 feedforward modules ${JSON.stringify(feedforward)} make ${name} feed-forward in some layers and not in others; name it the same way in every layer (e.g. "${name.split('.').pop()}").`);
  }
  const config: IA3Config = { targets: [...targets], feedforward };
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
