/**
 * DoRA as an adaptation method: PEFT's files (peft_type LORA, use_dora true, the magnitude under
 * `...lora_magnitude_vector`), checkpoint compatibility, buffers, and the merge
 * W' = (m / ||W + s B A||_row) (W + s B A) (dora.py; per column for Conv1D's [in, out] layout).
 */
import { UnsupportedModelError } from '@webtune/errors';
import { architectureOf } from '../../arch/index.js';
import type { ModelConfig } from '../../config.js';
import { loraScale } from '../lora/config.js';
import { adapterPairFor, canonicalModule, loraBuffers, loraMethod } from '../lora/method.js';
import type { MethodDefinition } from '../method.js';
import { selectModules } from '../targets.js';
import type { AdapterBufferShape, AdapterBuffers, HostTensor } from '../types.js';
import { DORA_MAX_RANK, magnitudeKey, resolveDoraConfig, type DoraConfig } from './config.js';

/**
 * LoRA's buffers, plus per layer the normalised output z = (x V^T) / ||V|| that m's gradient
 * reads; shared: the scaled output gradient, and for a 4-bit base one dense copy of a weight
 * for the norm.
 */
export function doraBuffers(model: ModelConfig, config: DoraConfig, shape: AdapterBufferShape): AdapterBuffers {
  const lora = loraBuffers(model, config, shape);
  const modules = selectModules(model, config.targets, config.layers);
  const names = [...new Set(modules.map((t) => t.name))];
  const widest = Math.max(...modules.map((t) => t.outFeatures));
  const largest = Math.max(...modules.map((t) => t.outFeatures * t.inFeatures));
  return {
    layer: [...lora.layer, ...names.map((n) => ({ name: `z:${n}`, shape: [shape.tokens, modules.find((t) => t.name === n)!.outFeatures], dtype: shape.dtype, copies: 1 }))],
    shared: [
      ...lora.shared,
      ...(shape.training ? [{ name: 'doraGrad', shape: [shape.tokens, widest], dtype: shape.dtype, copies: 1 }] : []),
      ...(shape.fourBit ? [{ name: 'doraWeight', shape: [largest], dtype: shape.dtype, copies: 1 }] : []),
    ],
  };
}

/** (m / ||V||) V with V = W + s B A, in the file's layout; undefined where DoRA leaves the weight alone. */
function mergeDoraWeight(model: ModelConfig, config: DoraConfig, name: string, data: Float32Array, tensors: ReadonlyMap<string, HostTensor>): Float32Array | undefined {
  const pair = adapterPairFor(model, name, tensors);
  const module = canonicalModule(model, name);
  const m = module ? tensors.get(magnitudeKey(module)) : undefined;
  if (!pair || !m) return undefined;
  const { a, b } = pair;
  const s = loraScale(config);
  const [r, inF] = a.shape as [number, number];
  const outF = b.shape[0]!;
  const conv1d = architectureOf(model).conv1d;
  const out = new Float32Array(data.length);
  const row = new Float64Array(inF);
  for (let o = 0; o < outF; o++) {
    let sq = 0;
    for (let i = 0; i < inF; i++) {
      let delta = 0;
      for (let k = 0; k < r; k++) delta += b.data[o * r + k]! * a.data[k * inF + i]!;
      const v = data[conv1d ? i * outF + o : o * inF + i]! + s * delta;
      row[i] = v;
      sq += v * v;
    }
    const factor = m.data[o]! / Math.sqrt(sq);
    for (let i = 0; i < inF; i++) out[conv1d ? i * outF + o : o * inF + i] = row[i]! * factor;
  }
  return out;
}

export const doraMethod: MethodDefinition<DoraConfig> = {
  method: 'dora',
  title: 'DoRA',
  resolve: (model, options) => resolveDoraConfig(model, options as Partial<DoraConfig>),
  invalid: (raw) => loraMethod.invalid(raw) ?? (raw['rank'] as number > DORA_MAX_RANK ? `"rank" is ${String(raw['rank'])}; DoRA takes ranks up to ${DORA_MAX_RANK}` : undefined),
  layerSelective: true,
  modules: (model, config) => selectModules(model, config.targets, config.layers),
  parameterCount: (model, config) => selectModules(model, config.targets, config.layers).reduce((n, t) => n + config.rank * (t.inFeatures + t.outFeatures) + t.outFeatures, 0),
  describe: (config) => `DoRA rank ${config.rank}`,
  smaller: (config) => {
    const lora = loraMethod.smaller!(config);
    return lora && { config: lora.config, what: lora.what.replace(/^LoRA/, 'DoRA') };
  },
  mismatch: (saved, here) => loraMethod.mismatch(saved, here).map((m) => m.replace(/^LoRA/, 'DoRA')),
  peftConfig: (model, config, baseModel) => ({ ...loraMethod.peftConfig(model, config, baseModel), use_dora: true }),
  fromPeftConfig(model, raw) {
    if (raw['use_dora'] !== true) throw new UnsupportedModelError('adapter_config.json', 'is not a DoRA adapter (use_dora is not true)');
    const lora = loraMethod.fromPeftConfig(model, { ...raw, use_dora: false });
    return resolveDoraConfig(model, lora);
  },
  keyPattern: /^base_model\.model\.(.+)\.(?:lora_[AB]\.weight|lora_magnitude_vector)$/,
  normalizeKey: (key) => loraMethod.normalizeKey(key).replace(/\.lora_magnitude_vector(?:\.[^.]+)*$/, '.lora_magnitude_vector'),
  mergeWeight: mergeDoraWeight,
  buffers: doraBuffers,
  halfCopies: true,
};
