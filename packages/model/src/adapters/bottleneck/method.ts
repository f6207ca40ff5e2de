/**
 * Bottleneck adapters as an adaptation method. webtune's own files (PEFT has no such method):
 * adapter_config.json `{ "webtune_method": "bottleneck", variant, bottleneck_size, non_linearity,
 * mh_adapter, output_adapter, layers_to_transform }` and tensors `<layer>.<site>_adapter.adapter_down.0.weight`
 * etc.; scripts/check_method_adapter.py loads them in PyTorch. They add modules, so they cannot be merged.
 */
import { ModelFormatError } from '@webtune/errors';
import type { MethodDefinition } from '../method.js';
import { peftLayers } from '../lora/method.js';
import { configProblem } from '../targets.js';
import type { AdapterBufferShape, AdapterBuffers } from '../types.js';
import { bottleneckModules, bottleneckTensors, resolveBottleneckConfig, type BottleneckConfig } from './config.js';

function buffers(model: Parameters<typeof bottleneckModules>[0], config: BottleneckConfig, shape: AdapterBufferShape): AdapterBuffers {
  const r = config.bottleneckSize;
  const d = model.hiddenSize;
  const t = shape.tokens;
  const names = [...new Set(bottleneckModules(model, config).map((m) => m.name))];
  const b = (name: string, cols: number) => ({ name, shape: [t, cols], dtype: shape.dtype, copies: 1 });
  return {
    // Per layer and site: the adapter's input (the sublayer output) and its pre-activation, for backward.
    layer: names.flatMap((n) => [b(`bn:${n}:in`, d), b(`bn:${n}:pre`, r)]),
    shared: shape.training ? [b('bn:h', r), b('bn:dh', r), b('bn:dpre', r), b('bn:g', d)] : [b('bn:h', r)],
  };
}

export const bottleneckMethod: MethodDefinition<BottleneckConfig> = {
  method: 'bottleneck',
  title: 'Bottleneck adapter',
  resolve: (model, options) => resolveBottleneckConfig(model, options as Partial<BottleneckConfig>),
  invalid(raw) {
    const problem = configProblem(raw, { bottleneckSize: 'count', layers: 'layers' });
    if (problem) return problem;
    if (raw['variant'] !== 'houlsby' && raw['variant'] !== 'pfeiffer') return `"variant" is ${JSON.stringify(raw['variant'])}; expected "houlsby" or "pfeiffer"`;
    if (!['relu', 'swish', 'gelu_new'].includes(raw['nonLinearity'] as string)) return `"nonLinearity" is ${JSON.stringify(raw['nonLinearity'])}; expected "relu", "swish" or "gelu_new"`;
    return undefined;
  },
  layerSelective: true,
  modules: bottleneckModules,
  tensorShapes: (model, config) => bottleneckModules(model, config).flatMap((m) => bottleneckTensors(model, config, m)),
  parameterCount: (model, config) => bottleneckModules(model, config).length * (2 * config.bottleneckSize * model.hiddenSize + config.bottleneckSize + model.hiddenSize),
  describe: (config) => `${config.variant === 'houlsby' ? 'Houlsby' : 'Pfeiffer'} bottleneck adapters (${config.bottleneckSize} wide, ${config.nonLinearity})`,
  smaller: (config) => (config.bottleneckSize > 4 ? { config: { ...config, bottleneckSize: Math.ceil(config.bottleneckSize / 2) }, what: `a narrower bottleneck (${config.bottleneckSize} -> ${Math.ceil(config.bottleneckSize / 2)})` } : undefined),
  mismatch(saved, here) {
    const out: string[] = [];
    for (const field of ['variant', 'bottleneckSize', 'nonLinearity'] as const) {
      if (saved[field] !== here[field]) out.push(`the bottleneck adapters' ${field} is ${JSON.stringify(saved[field])} in the checkpoint but ${JSON.stringify(here[field])} here`);
    }
    if (JSON.stringify(saved.layers ?? null) !== JSON.stringify(here.layers ?? null)) out.push(`bottleneck adapter layers are ${JSON.stringify(saved.layers ?? 'all')} in the checkpoint but ${JSON.stringify(here.layers ?? 'all')} here`);
    return out;
  },
  peftConfig: (_model, config, baseModel) => ({
    webtune_method: 'bottleneck',
    peft_type: null,
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: baseModel,
    variant: config.variant,
    bottleneck_size: config.bottleneckSize,
    non_linearity: config.nonLinearity,
    mh_adapter: config.variant === 'houlsby',
    output_adapter: true,
    layers_to_transform: config.layers ?? null,
  }),
  fromPeftConfig(model, raw) {
    const variant = raw['variant'];
    if (variant !== 'houlsby' && variant !== 'pfeiffer') throw new ModelFormatError('adapter_config.json', `bottleneck variant is ${JSON.stringify(variant)}; expected "houlsby" or "pfeiffer"`);
    const layers = peftLayers(raw);
    return resolveBottleneckConfig(model, {
      variant,
      bottleneckSize: raw['bottleneck_size'] as number,
      nonLinearity: raw['non_linearity'] as BottleneckConfig['nonLinearity'],
      ...(layers ? { layers } : {}),
    });
  },
  keyPattern: /^(.+\.(?:attention|output)_adapter)\.adapter_(?:down\.0|up)\.(?:weight|bias)$/,
  normalizeKey: (key) => key,
  mergeWeight: () => undefined,
  unmergeable: 'bottleneck adapters add layers to every block, which a merged model of the same architecture has no place for',
  buffers,
  halfCopies: true,
};
