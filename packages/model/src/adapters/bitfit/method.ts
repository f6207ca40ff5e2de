/**
 * BitFit as an adaptation method. PEFT has no BitFit type, so its files are webtune's own
 * (`"webtune_method": "bitfit"`, offsets under `...<module>.bitfit_bias`); the merged model is
 * the portable form: biases added into the base, and for a bias-free Llama the new biases plus
 * `attention_bias` / `mlp_bias` in config.json so transformers loads them.
 */
import { ModelFormatError } from '@webtune/errors';
import { architectureOf } from '../../arch/index.js';
import type { ModelConfig } from '../../config.js';
import { canonicalModule, peftLayers, peftTargets } from '../lora/method.js';
import type { MethodDefinition } from '../method.js';
import { configProblem, selectModules } from '../targets.js';
import type { AdapterBuffers, HostTensor } from '../types.js';
import { bitfitKey, resolveBitFitConfig, type BitFitConfig } from './config.js';

function mergeBitFitWeight(model: ModelConfig, _config: BitFitConfig, name: string, data: Float32Array, tensors: ReadonlyMap<string, HostTensor>): Float32Array | undefined {
  const module = canonicalModule(model, name, '.bias');
  const delta = module ? tensors.get(bitfitKey(module)) : undefined;
  if (!delta) return undefined;
  return data.map((v, i) => v + delta.data[i]!);
}

/** New biases for a base without them, and the config flags that make transformers create (and load) them. */
function mergedAdditions(model: ModelConfig, config: BitFitConfig, tensors: ReadonlyMap<string, HostTensor>): { tensors: Map<string, HostTensor>; config: Record<string, unknown> } {
  const arch = architectureOf(model);
  const missing = new Set(selectModules(model, config.targets, config.layers).filter((t) => !arch.linearHasBias(model, t.name)).map((t) => t.name));
  const out = new Map<string, HostTensor>();
  if (missing.size === 0) return { tensors: out, config: {} };
  const flags = arch.biasFlags?.(model.modelType, missing);
  if (!flags) throw new ModelFormatError('merge', `a ${model.modelType} model cannot carry biases on ${[...missing].join(', ')}`);
  // A flag switches biases on for a whole group (attention_bias: q, k, v, o): those not trained are zero.
  for (let layer = 0; layer < model.numLayers; layer++) {
    for (const name of flags.linears) {
      if (arch.linearHasBias(model, name)) continue;
      const module = `${arch.layerPrefix(layer)}.${name}`;
      const { outFeatures } = arch.linearShape(model, name);
      const delta = tensors.get(bitfitKey(module));
      out.set(`${module}.bias`, { data: delta ? new Float32Array(delta.data) : new Float32Array(outFeatures), shape: [outFeatures] });
    }
  }
  return { tensors: out, config: flags.config };
}

export const bitfitMethod: MethodDefinition<BitFitConfig> = {
  method: 'bitfit',
  title: 'BitFit',
  resolve: (model, options) => resolveBitFitConfig(model, options as Partial<BitFitConfig>),
  invalid: (raw) => configProblem(raw, { targets: 'strings', learningRateScale: 'positive', layers: 'layers' }),
  layerSelective: true,
  modules: (model, config) => selectModules(model, config.targets, config.layers),
  parameterCount: (model, config) => selectModules(model, config.targets, config.layers).reduce((n, t) => n + t.outFeatures, 0),
  describe: (config) => `BitFit on ${config.targets.join(', ')}`,
  mismatch(saved, here) {
    const out: string[] = [];
    if (JSON.stringify([...new Set(saved.targets)].sort()) !== JSON.stringify([...new Set(here.targets)].sort())) {
      out.push(`BitFit targets are ${JSON.stringify(saved.targets)} in the checkpoint but ${JSON.stringify(here.targets)} here`);
    }
    if (JSON.stringify(saved.layers ?? null) !== JSON.stringify(here.layers ?? null)) out.push(`BitFit layers are ${JSON.stringify(saved.layers ?? 'all')} in the checkpoint but ${JSON.stringify(here.layers ?? 'all')} here`);
    return out;
  },
  peftConfig: (_model, config, baseModel) => ({
    webtune_method: 'bitfit',
    peft_type: null,
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: baseModel,
    target_modules: [...config.targets],
    layers_to_transform: config.layers ?? null,
    learning_rate_scale: config.learningRateScale,
  }),
  fromPeftConfig(model, raw) {
    const layers = peftLayers(raw);
    const scale = raw['learning_rate_scale'];
    return resolveBitFitConfig(model, { targets: peftTargets(raw), ...(layers ? { layers } : {}), ...(typeof scale === 'number' ? { learningRateScale: scale } : {}) });
  },
  keyPattern: /^base_model\.model\.(.+)\.bitfit_bias$/,
  normalizeKey: (key) => key,
  mergeWeight: mergeBitFitWeight,
  mergedAdditions,
  buffers: (): AdapterBuffers => ({ layer: [], shared: [] }),
  halfCopies: false,
};
