/**
 * IA3 as an adaptation method (PEFT `tuners/ia3/`): adapter_config.json both ways, checkpoint
 * compatibility, buffers, and the merge (ia3/layer.py `merge`: W's rows scaled by l for output
 * scaling, with the bias; W's columns for feed-forward input scaling, bias unchanged).
 */
import { ModelFormatError } from '@webtune/errors';
import { architectureOf } from '../../arch/index.js';
import type { ModelConfig } from '../../config.js';
import { canonicalModule, checkFanInFanOut, peftLayers, peftTargets } from '../lora/method.js';
import type { MethodDefinition } from '../method.js';
import { configProblem, selectModules } from '../targets.js';
import type { AdapterBufferShape, AdapterBuffers, HostTensor } from '../types.js';
import { ia3Key, isFeedforward, resolveIA3Config, type IA3Config } from './config.js';

/**
 * Per layer: the pre-scaling output of each output-scaled target, which its vector's gradient
 * reads. Shared: the scaled input of a feed-forward target (used within its forward only: the
 * gradient reads the unscaled input the model keeps anyway), and one gradient scratch.
 */
export function ia3Buffers(model: ModelConfig, config: IA3Config, shape: AdapterBufferShape): AdapterBuffers {
  const modules = selectModules(model, config.targets, config.layers);
  const outputScaled = new Map<string, number>();
  let widestIn = 0;
  for (const t of modules) {
    if (isFeedforward(config, t.module)) widestIn = Math.max(widestIn, t.inFeatures);
    else outputScaled.set(t.name, t.outFeatures);
  }
  const layer = [...outputScaled].map(([name, width]) => ({ name: `ia3:${name}`, shape: [shape.tokens, width], dtype: shape.dtype, copies: 1 }));
  const widest = Math.max(...modules.map((t) => (isFeedforward(config, t.module) ? t.inFeatures : t.outFeatures)));
  const shared = [
    ...(widestIn > 0 ? [{ name: 'ia3In', shape: [shape.tokens, widestIn], dtype: shape.dtype, copies: 1 }] : []),
    ...(shape.training ? [{ name: 'ia3Grad', shape: [shape.tokens, widest], dtype: shape.dtype, copies: 1 }] : []),
  ];
  return { layer, shared };
}

function mergeIA3Weight(model: ModelConfig, config: IA3Config, name: string, data: Float32Array, tensors: ReadonlyMap<string, HostTensor>): Float32Array | undefined {
  const isBias = name.endsWith('.bias');
  const module = canonicalModule(model, name, isBias ? '.bias' : '.weight');
  const l = module ? tensors.get(ia3Key(module)) : undefined;
  if (!module || !l) return undefined;
  const ff = isFeedforward(config, module);
  if (isBias) {
    if (ff) return undefined;
    return data.map((v, o) => v * l.data[o]!);
  }
  const arch = architectureOf(model);
  const { inFeatures, outFeatures } = arch.linearShape(model, arch.linears.find((n) => module.endsWith(`.${n}`))!);
  const out = new Float32Array(data);
  for (let o = 0; o < outFeatures; o++) {
    for (let i = 0; i < inFeatures; i++) {
      const at = arch.conv1d ? i * outFeatures + o : o * inFeatures + i;
      out[at]! *= ff ? l.data[i]! : l.data[o]!;
    }
  }
  return out;
}

export const ia3Method: MethodDefinition<IA3Config> = {
  method: 'ia3',
  title: 'IA3',
  resolve: (model, options) => resolveIA3Config(model, options as Partial<IA3Config>),
  invalid: (raw) => configProblem(raw, { targets: 'strings', layers: 'layers' }) ?? (Array.isArray(raw['feedforward']) && raw['feedforward'].every((f) => typeof f === 'string') ? undefined : `"feedforward" is ${JSON.stringify(raw['feedforward'])}; expected a list of module names`),
  layerSelective: true,
  modules: (model, config) => selectModules(model, config.targets, config.layers),
  parameterCount: (model, config) => selectModules(model, config.targets, config.layers).reduce((n, t) => n + (isFeedforward(config, t.module) ? t.inFeatures : t.outFeatures), 0),
  describe: (config) => `IA3 on ${config.targets.join(', ')}`,
  mismatch(saved, here) {
    const same = (a: readonly string[], b: readonly string[]) => JSON.stringify([...new Set(a)].sort()) === JSON.stringify([...new Set(b)].sort());
    const out: string[] = [];
    if (!same(saved.targets, here.targets)) out.push(`IA3 targets are ${JSON.stringify(saved.targets)} in the checkpoint but ${JSON.stringify(here.targets)} here`);
    if (!same(saved.feedforward, here.feedforward)) out.push(`IA3 feedforward modules are ${JSON.stringify(saved.feedforward)} in the checkpoint but ${JSON.stringify(here.feedforward)} here`);
    if (JSON.stringify(saved.layers ?? null) !== JSON.stringify(here.layers ?? null)) out.push(`IA3 layers are ${JSON.stringify(saved.layers ?? 'all')} in the checkpoint but ${JSON.stringify(here.layers ?? 'all')} here`);
    return out;
  },
  peftConfig: (model, config, baseModel) => ({
    peft_type: 'IA3',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: baseModel,
    target_modules: [...config.targets],
    feedforward_modules: [...config.feedforward],
    fan_in_fan_out: architectureOf(model.architecture).conv1d,
    init_ia3_weights: true,
    inference_mode: true,
    modules_to_save: null,
    layers_to_transform: config.layers ?? null,
    revision: null,
  }),
  fromPeftConfig(model, raw) {
    checkFanInFanOut(model, raw);
    const targets = peftTargets(raw);
    const ff = raw['feedforward_modules'] === undefined || raw['feedforward_modules'] === null ? [] : peftTargets(raw, 'feedforward_modules');
    const layers = peftLayers(raw);
    if (raw['init_ia3_weights'] !== undefined && typeof raw['init_ia3_weights'] !== 'boolean') throw new ModelFormatError('adapter_config.json', 'init_ia3_weights must be true or false');
    return resolveIA3Config(model, { targets, feedforward: ff, ...(layers ? { layers } : {}) });
  },
  keyPattern: /^base_model\.model\.(.+)\.ia3_l$/,
  normalizeKey: (key) => key.replace(/\.ia3_l\.[^.]+$/, '.ia3_l'),
  mergeWeight: mergeIA3Weight,
  buffers: ia3Buffers,
  halfCopies: false,
};
