/**
 * UniPELT as an adaptation method. Neither PEFT nor a merged model can hold it: the files are
 * webtune's own (`"webtune_method": "unipelt"`, the trainable tensors under their keys; see the
 * README), which scripts/check_method_adapter.py loads in PyTorch.
 */
import { ModelFormatError } from '@webtune/errors';
import { architectureOf } from '../../arch/index.js';
import type { ModelConfig } from '../../config.js';
import { peftTargets } from '../lora/method.js';
import type { MethodDefinition } from '../method.js';
import { promptRuntimeBytes } from '../prompt-learning.js';
import { configProblem } from '../targets.js';
import type { AdapterBufferShape, AdapterBuffers, TargetModule } from '../types.js';
import { adapterSite, resolveUniPeltConfig, unipeltLoraModules, unipeltShapes, type UniPeltConfig } from './config.js';

function buffers(model: ModelConfig, config: UniPeltConfig, shape: AdapterBufferShape): AdapterBuffers {
  const t = shape.tokens;
  const d = model.hiddenSize;
  const r = config.rank;
  const rb = config.bottleneckSize;
  const b = (name: string, cols: number, dtype: 'f32' | 'f16' = shape.dtype) => ({ name, shape: [t, cols], dtype, copies: 1 });
  const lora = unipeltLoraModules(model, config).filter((m) => m.layer === 0);
  const widest = Math.max(d, ...lora.map((m) => m.outFeatures));
  const site = adapterSite(model);
  return {
    layer: [
      // Gated LoRA: the low-rank activation and the gate (pre-sigmoid and value) per targeted linear.
      ...lora.flatMap((m) => [b(`ul:${m.name}:h`, r), b(`ul:${m.name}:z`, 1, 'f32'), b(`ul:${m.name}:g`, 1, 'f32')]),
      // The prefix gates (key, value), pre-sigmoid and value.
      b('pg:z', 2, 'f32'), b('pg:gates', 2, 'f32'),
      // The adapter's input, pre-activation and gate.
      b(`ua:${site}:in`, d), b(`ua:${site}:pre`, rb), b(`ua:${site}:z`, 1, 'f32'), b(`ua:${site}:g`, 1, 'f32'),
    ],
    shared: [
      b('u:branch', widest), b('u:h', Math.max(r, rb)), b('u:gateOut', 2),
      ...(shape.training ? [b('u:gradBranch', widest), b('u:dh', Math.max(r, rb)), b('u:dpre', rb), b('u:g', d), b('u:dGate', 2, 'f32'), b('u:dz', 2, 'f32'), b('u:dz16', 2)] : []),
    ],
  };
}

export const unipeltMethod: MethodDefinition<UniPeltConfig> = {
  method: 'unipelt',
  title: 'UniPELT',
  resolve: (model, options) => resolveUniPeltConfig(model, options as Partial<UniPeltConfig>),
  invalid(raw) {
    const problem = configProblem(raw, { rank: 'count', alpha: 'positive', targets: 'strings', numVirtualTokens: 'count', bottleneckSize: 'count' });
    if (problem) return problem;
    if (!['relu', 'swish', 'gelu_new'].includes(raw['nonLinearity'] as string)) return `"nonLinearity" is ${JSON.stringify(raw['nonLinearity'])}; expected "relu", "swish" or "gelu_new"`;
    return undefined;
  },
  layerSelective: false,
  // The gated LoRA's targets and every layer's adapter site (UniPeltAdapter.touches).
  modules: (model, config) => {
    const arch = architectureOf(model);
    const site = adapterSite(model);
    const sites = Array.from({ length: model.numLayers }, (_, layer): TargetModule => ({ module: `${arch.layerPrefix(layer)}.${site}`, layer, name: site, ...arch.linearShape(model, site) }));
    return [...unipeltLoraModules(model, config), ...sites].sort((a, b) => a.layer - b.layer);
  },
  sequence: (_model, config) => ({ virtualTokens: 0, prefixTokens: config.numVirtualTokens, gatedPrefix: true }),
  tensorShapes: unipeltShapes,
  parameterCount: (model, config) => unipeltShapes(model, config).reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0),
  describe: (config) => `UniPELT (LoRA rank ${config.rank}, ${config.numVirtualTokens} prefix tokens, adapters ${config.bottleneckSize} wide)`,
  smaller: (config) => (config.rank > 2 ? { config: { ...config, rank: Math.ceil(config.rank / 2), alpha: config.alpha / 2 }, what: `a lower LoRA rank in UniPELT (${config.rank} -> ${Math.ceil(config.rank / 2)})` } : undefined),
  mismatch(saved, here) {
    const out: string[] = [];
    for (const field of ['rank', 'alpha', 'numVirtualTokens', 'bottleneckSize', 'nonLinearity'] as const) {
      if (saved[field] !== here[field]) out.push(`UniPELT's ${field} is ${JSON.stringify(saved[field])} in the checkpoint but ${JSON.stringify(here[field])} here`);
    }
    if (JSON.stringify([...saved.targets].sort()) !== JSON.stringify([...here.targets].sort())) out.push(`UniPELT's LoRA targets are ${JSON.stringify(saved.targets)} in the checkpoint but ${JSON.stringify(here.targets)} here`);
    return out;
  },
  peftConfig: (_model, config, baseModel) => ({
    webtune_method: 'unipelt',
    peft_type: null,
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: baseModel,
    r: config.rank,
    lora_alpha: config.alpha,
    target_modules: [...config.targets],
    num_virtual_tokens: config.numVirtualTokens,
    bottleneck_size: config.bottleneckSize,
    non_linearity: config.nonLinearity,
  }),
  fromPeftConfig(model, raw) {
    for (const field of ['r', 'lora_alpha', 'num_virtual_tokens', 'bottleneck_size']) {
      if (typeof raw[field] !== 'number') throw new ModelFormatError('adapter_config.json', `UniPELT: ${field} is ${JSON.stringify(raw[field])}, not a number`);
    }
    return resolveUniPeltConfig(model, {
      rank: raw['r'] as number, alpha: raw['lora_alpha'] as number, targets: peftTargets(raw),
      numVirtualTokens: raw['num_virtual_tokens'] as number, bottleneckSize: raw['bottleneck_size'] as number,
      nonLinearity: raw['non_linearity'] as UniPeltConfig['nonLinearity'],
    });
  },
  keyPattern: /^(prefix\.embedding\.weight|.+\.(?:lora_A\.weight|lora_B\.weight|lora_gate\.(?:weight|bias)|prefix_gate\.(?:weight|bias)|output_adapter\.(?:adapter_down\.0|adapter_up|gate)\.(?:weight|bias)))$/,
  normalizeKey: (key) => key,
  mergeWeight: () => undefined,
  unmergeable: 'UniPELT adds gated prefixes and adapters, which a merged model has no place for',
  runtimeBytes: (model, config, dtype) => promptRuntimeBytes(config.numVirtualTokens, model.numLayers * 2 * model.numKvHeads * model.headDim, dtype),
  buffers,
  halfCopies: true,
};
