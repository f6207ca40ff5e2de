/**
 * Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2020): a small residual MLP
 * (down-projection, nonlinearity, up-projection) on a sublayer's output, before the block's own
 * residual add:  y' = y + up(act(down(y))).  Houlsby places one after the attention output
 * projection and one after the MLP's; Pfeiffer only after the MLP's. PEFT has no such method:
 * the names follow the AdapterHub `adapters` library (DoubleSeqBnConfig / SeqBnConfig,
 * adapter_down.0 / adapter_up), and the files are webtune's own (see the README).
 */
import { InvalidArgumentError } from '@webtune/errors';
import { architectureOf } from '../../arch/index.js';
import type { ModelConfig } from '../../config.js';
import { checkLayers } from '../targets.js';
import type { TargetModule } from '../types.js';

export type BottleneckSite = 'attention' | 'output';
export type BottleneckActivation = 'relu' | 'swish' | 'gelu_new';

/** Bottleneck adapters' settings: where they sit, how wide, which nonlinearity, which layers. */
export interface BottleneckConfig {
  /** 'houlsby': after attention and MLP (AdapterHub's default "swish"); 'pfeiffer': after the MLP only ("relu"). Default 'houlsby'. */
  variant: 'houlsby' | 'pfeiffer';
  /** Width of the bottleneck. Default hidden / 16 (AdapterHub's reduction_factor 16). */
  bottleneckSize: number;
  /** The nonlinearity between the projections. Default per variant. */
  nonLinearity: BottleneckActivation;
  /** Layers that get adapters (PEFT's layers_to_transform); default every layer. */
  layers?: number[];
}

export function resolveBottleneckConfig(model: ModelConfig, options: Partial<BottleneckConfig> = {}): BottleneckConfig {
  const variant = options.variant ?? 'houlsby';
  if (variant !== 'houlsby' && variant !== 'pfeiffer') throw new InvalidArgumentError(`Bottleneck adapter variant must be 'houlsby' or 'pfeiffer', got ${JSON.stringify(variant)}.`);
  const bottleneckSize = options.bottleneckSize ?? Math.max(1, Math.floor(model.hiddenSize / 16));
  if (!Number.isSafeInteger(bottleneckSize) || bottleneckSize < 1 || bottleneckSize > model.hiddenSize) {
    throw new InvalidArgumentError(`Bottleneck adapter bottleneckSize must be an integer from 1 to the hidden size (${model.hiddenSize}), got ${JSON.stringify(bottleneckSize)}.`);
  }
  const nonLinearity = options.nonLinearity ?? (variant === 'houlsby' ? 'swish' : 'relu');
  if (!['relu', 'swish', 'gelu_new'].includes(nonLinearity)) throw new InvalidArgumentError(`Bottleneck adapter nonLinearity must be 'relu', 'swish' or 'gelu_new', got ${JSON.stringify(nonLinearity)}.`);
  const config: BottleneckConfig = { variant, bottleneckSize, nonLinearity };
  const layers = checkLayers(model, options.layers, 'Bottleneck adapter');
  if (layers) config.layers = layers;
  return config;
}

export function bottleneckSites(config: Pick<BottleneckConfig, 'variant'>): BottleneckSite[] {
  return config.variant === 'houlsby' ? ['attention', 'output'] : ['output'];
}

/** The linear whose output a site adapts: the attention output projection, or the MLP's last linear. */
export function siteLinear(model: ModelConfig, site: BottleneckSite): string {
  const arch = architectureOf(model);
  if (site === 'attention') return arch.attention.o;
  return arch.mlp.kind === 'swiglu' ? arch.mlp.down : arch.mlp.proj;
}

export interface BottleneckModule extends TargetModule {
  site: BottleneckSite;
  /** Key prefix: `<layer path>.<site>_adapter`. */
  prefix: string;
}

/** The adapted sublayer outputs, in layer order. */
export function bottleneckModules(model: ModelConfig, config: BottleneckConfig): BottleneckModule[] {
  const arch = architectureOf(model);
  const out: BottleneckModule[] = [];
  for (let layer = 0; layer < model.numLayers; layer++) {
    if (config.layers && !config.layers.includes(layer)) continue;
    for (const site of bottleneckSites(config)) {
      const name = siteLinear(model, site);
      out.push({ module: `${arch.layerPrefix(layer)}.${name}`, layer, name, site, prefix: `${arch.layerPrefix(layer)}.${site}_adapter`, ...arch.linearShape(model, name) });
    }
  }
  return out;
}

/** The four tensors of one adapter, with their shapes (PyTorch Linear layout [out, in]). */
export function bottleneckTensors(model: ModelConfig, config: BottleneckConfig, m: BottleneckModule): Array<{ key: string; shape: number[] }> {
  const d = m.outFeatures;
  const r = config.bottleneckSize;
  return [
    { key: `${m.prefix}.adapter_down.0.weight`, shape: [r, d] },
    { key: `${m.prefix}.adapter_down.0.bias`, shape: [r] },
    { key: `${m.prefix}.adapter_up.weight`, shape: [d, r] },
    { key: `${m.prefix}.adapter_up.bias`, shape: [d] },
  ];
}
