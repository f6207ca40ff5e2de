/**
 * LoRA as an adaptation method: config, PEFT's adapter_config.json both ways, checkpoint
 * compatibility, and the merge W + s B A (transposed for Conv1D, as PEFT's fan_in_fan_out does).
 * No GPU code here, so apps that only read or write PEFT files do not bundle kernels.
 */
import { ModelFormatError, UnsupportedModelError } from '@webtune/errors';
import { architectureOf } from '../../arch/index.js';
import type { ModelConfig } from '../../config.js';
import { configProblem, selectModules } from '../targets.js';
import type { AdapterBufferShape, AdapterBuffers, HostTensor } from '../types.js';
import type { MethodDefinition } from '../method.js';
import { loraScale, peftKey, resolveLoraConfig, type LoraConfig } from './config.js';

/** adapter_config.json as PEFT writes it for a LoRA on a causal LM. */
export function peftAdapterConfig(model: Pick<ModelConfig, 'architecture'>, lora: LoraConfig, baseModel = ''): Record<string, unknown> {
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: baseModel,
    r: lora.rank,
    lora_alpha: lora.alpha,
    lora_dropout: lora.dropout,
    // As given: a bare suffix such as GPT-2's c_proj would also match attn.c_proj where mlp.c_proj was meant.
    target_modules: [...lora.targets],
    bias: 'none',
    fan_in_fan_out: architectureOf(model.architecture).conv1d,
    use_rslora: lora.rslora,
    use_dora: false,
    init_lora_weights: true,
    inference_mode: true,
    modules_to_save: null,
    layers_to_transform: lora.layers ?? null,
    rank_pattern: {},
    alpha_pattern: {},
    revision: null,
  };
}

/** The string-list target_modules every PEFT reader here accepts. */
export function peftTargets(raw: Record<string, unknown>, field = 'target_modules'): string[] {
  const targets = raw[field];
  if (!Array.isArray(targets) || !targets.every((t) => typeof t === 'string')) {
    throw new UnsupportedModelError('adapter_config.json', `${field} must be a list of module names (a regex string is not supported)`);
  }
  return targets as string[];
}

/** PEFT's layers_to_transform: null, one index or a list. */
export function peftLayers(raw: Record<string, unknown>): number[] | undefined {
  const v = raw['layers_to_transform'];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number') return [v];
  if (Array.isArray(v) && v.every((l) => typeof l === 'number')) return v as number[];
  throw new ModelFormatError('adapter_config.json', `layers_to_transform must be null, a layer index or a list of them, got ${JSON.stringify(v)}`);
}

/** Checks fan_in_fan_out against the architecture (a Conv1D adapter on a Linear model would be transposed). */
export function checkFanInFanOut(model: ModelConfig, raw: Record<string, unknown>): void {
  const fanInFanOut = raw['fan_in_fan_out'] === true;
  const conv1d = architectureOf(model).conv1d;
  if (fanInFanOut !== conv1d) throw new ModelFormatError('adapter_config.json', `fan_in_fan_out is ${fanInFanOut} but a ${model.modelType} model needs ${conv1d}`);
}

/** A LoRA config from PEFT's adapter_config.json. */
export function loraFromPeftConfig(model: ModelConfig, raw: Record<string, unknown>): LoraConfig {
  if (raw['use_dora'] === true) throw new UnsupportedModelError('adapter_config.json', 'DoRA adapters are not supported');
  for (const key of ['rank_pattern', 'alpha_pattern'] as const) {
    const v = raw[key];
    if (v && typeof v === 'object' && Object.keys(v).length > 0) throw new UnsupportedModelError('adapter_config.json', `${key} (per-module ranks) is not supported`);
  }
  if (raw['bias'] !== undefined && raw['bias'] !== 'none') throw new UnsupportedModelError('adapter_config.json', `bias "${String(raw['bias'])}" is not supported (only "none")`);
  const targets = peftTargets(raw);
  const r = raw['r'];
  const alpha = raw['lora_alpha'];
  if (typeof r !== 'number' || typeof alpha !== 'number') throw new ModelFormatError('adapter_config.json', 'needs numeric "r" and "lora_alpha"');
  checkFanInFanOut(model, raw);
  const layers = peftLayers(raw);
  return resolveLoraConfig(model, {
    rank: r,
    alpha,
    dropout: typeof raw['lora_dropout'] === 'number' ? raw['lora_dropout'] : 0,
    targets,
    rslora: raw['use_rslora'] === true,
    ...(layers ? { layers } : {}),
  });
}

/** The module path a base weight name belongs to (GPT-2 files may drop `transformer.`; PEFT keys always have it). */
export function canonicalModule(model: ModelConfig, name: string, suffix = '.weight'): string | undefined {
  if (!name.endsWith(suffix)) return undefined;
  const module = name.slice(0, -suffix.length);
  const arch = architectureOf(model);
  const full = arch.canonicalName(module);
  return arch.linears.some((l) => full.endsWith(`.${l}`)) ? full : undefined;
}

/**
 * The adapter's A and B for base weight `name` (the checkpoint's naming), or undefined when the
 * adapter does not touch it; lets an exporter skip reading the weights it leaves alone.
 */
export function adapterPairFor(model: ModelConfig, name: string, tensors: ReadonlyMap<string, HostTensor>): { a: HostTensor; b: HostTensor } | undefined {
  const module = canonicalModule(model, name);
  const a = module ? tensors.get(peftKey(module, 'A')) : undefined;
  const b = module ? tensors.get(peftKey(module, 'B')) : undefined;
  return a && b ? { a, b } : undefined;
}

/** W + s B A for base weight `name` in the file's layout, or undefined when LoRA leaves it alone. */
function mergeLoraWeight(model: ModelConfig, config: LoraConfig, name: string, data: Float32Array, tensors: ReadonlyMap<string, HostTensor>): Float32Array | undefined {
  const pair = adapterPairFor(model, name, tensors);
  if (!pair) return undefined;
  const { a, b } = pair;
  const scale = loraScale(config);
  const merged = new Float32Array(data);
  const [r, inF] = a.shape as [number, number];
  const outF = b.shape[0]!;
  const conv1d = architectureOf(model).conv1d;
  // delta[o][i] = s * sum_k B[o][k] A[k][i]; Conv1D stores W[i][o].
  for (let o = 0; o < outF; o++) {
    for (let i = 0; i < inF; i++) {
      let sum = 0;
      for (let k = 0; k < r; k++) sum += b.data[o * r + k]! * a.data[k * inF + i]!;
      merged[conv1d ? i * outF + o : o * inF + i]! += scale * sum;
    }
  }
  return merged;
}

/** Per layer: h = x A^T [tokens, r] per targeted linear (and the dropped-out input with dropout); shared: backward's gB and dropout's input gradient. */
export function loraBuffers(model: ModelConfig, config: LoraConfig, shape: AdapterBufferShape): AdapterBuffers {
  const modules = selectModules(model, config.targets, config.layers);
  const names = [...new Set(modules.map((p) => p.name))];
  const inOf = (n: string) => modules.find((p) => p.name === n)!.inFeatures;
  const dropout = shape.training && config.dropout > 0;
  const layer = names.flatMap((n) => [
    { name: `h:${n}`, shape: [shape.tokens, config.rank], dtype: shape.dtype, copies: 1 },
    ...(dropout ? [{ name: `xd:${n}`, shape: [shape.tokens, inOf(n)], dtype: shape.dtype, copies: 1 }] : []),
  ]);
  const shared = shape.training
    ? [
        { name: 'gB', shape: [shape.tokens, config.rank], dtype: shape.dtype, copies: 1 },
        ...(dropout ? [{ name: 'loraDx', shape: [shape.tokens, Math.max(...names.map(inOf))], dtype: shape.dtype, copies: 1 }] : []),
      ]
    : [];
  return { layer, shared };
}
export const loraMethod: MethodDefinition<LoraConfig> = {
  method: 'lora',
  title: 'LoRA',
  resolve: (model, options) => resolveLoraConfig(model, options as Partial<LoraConfig>),
  invalid: (raw) => configProblem(raw, { rank: 'count', alpha: 'positive', dropout: 'fraction', targets: 'strings', rslora: 'boolean', layers: 'layers' }),
  layerSelective: true,
  modules: (model, config) => selectModules(model, config.targets, config.layers),
  parameterCount: (model, config) => selectModules(model, config.targets, config.layers).reduce((n, t) => n + config.rank * (t.inFeatures + t.outFeatures), 0),
  describe: (config) => `LoRA rank ${config.rank}`,
  smaller: (config) => (config.rank > 1 ? { config: { ...config, rank: Math.max(1, config.rank >> 1) }, what: `LoRA rank (${config.rank} -> ${Math.max(1, config.rank >> 1)})` } : undefined),
  mismatch(saved, here) {
    const out: string[] = [];
    if (saved.rank !== here.rank) out.push(`LoRA rank is ${saved.rank} in the checkpoint but ${here.rank} here`);
    if (saved.alpha !== here.alpha) out.push(`LoRA alpha is ${saved.alpha} in the checkpoint but ${here.alpha} here`);
    if (saved.rslora !== here.rslora) out.push(`LoRA rslora is ${saved.rslora} in the checkpoint but ${here.rslora} here`);
    const a = [...new Set(saved.targets)].sort();
    const b = [...new Set(here.targets)].sort();
    if (a.length !== b.length || a.some((t, i) => t !== b[i])) {
      out.push(`LoRA targets are ${JSON.stringify(saved.targets)} in the checkpoint but ${JSON.stringify(here.targets)} here`);
    }
    if (JSON.stringify(saved.layers ?? null) !== JSON.stringify(here.layers ?? null)) {
      out.push(`LoRA layers are ${JSON.stringify(saved.layers ?? 'all')} in the checkpoint but ${JSON.stringify(here.layers ?? 'all')} here`);
    }
    return out;
  },
  peftConfig: (model, config, baseModel) => peftAdapterConfig(model, config, baseModel),
  fromPeftConfig: loraFromPeftConfig,
  keyPattern: /^base_model\.model\.(.+)\.lora_[AB]\.weight$/,
  normalizeKey: (key) => key.replace(/\.lora_([AB])\.[^.]+\.weight$/, '.lora_$1.weight'),
  mergeWeight: mergeLoraWeight,
  buffers: loraBuffers,
  halfCopies: true,
};
