/**
 * UniPELT (Mao et al., 2022, arXiv 2110.07577, section 3): LoRA, prefix tuning and a bottleneck
 * adapter in every layer, each behind a learned gate, so training finds out which to use where.
 * The gates are per token, as the paper writes them: the AdapterHub implementation (`adapters`,
 * UniPELTConfig; methods/lora.py, methods/prefix_tuning.py, methods/bottleneck.py) averages each
 * gate over the sequence, which a causal LM cannot do (a token's gate would depend on later tokens,
 * and generation could not reproduce training).
 *   LoRA    y = x W^T + b + g_L s (x A^T) B^T,    g_L = sigmoid(x w_L^T + c_L)
 *   prefix  query i scores prefix keys scaled by gk_i and reads prefix values scaled by gv_i,
 *           (gk, gv) = sigmoid(n1 W_P^T + c_P) from the attention's input n1
 *   adapter y' = y + g_A up(act(down(y))),        g_A = sigmoid(y w_A^T + c_A), after the MLP
 */
import { InvalidArgumentError } from '@webtune/errors';
import { architectureOf } from '../../arch/index.js';
import type { ModelConfig } from '../../config.js';
import type { TensorShape } from '../module-adapter.js';
import { checkVirtualTokens } from '../prompt-learning.js';
import { prefixTokenDim } from '../prefix-tuning/config.js';
import { checkTargets, selectModules } from '../targets.js';
import type { TargetModule } from '../types.js';

/** UniPELT's settings: its LoRA, its prefix and its adapter (each gated per token). */
export interface UniPeltConfig {
  /** LoRA rank and alpha (scale alpha / rank). Default 8 and 16. */
  rank: number;
  alpha: number;
  /** LoRA's targets (suffixes). Default LoRA's per architecture (q_proj, v_proj; GPT-2 c_attn). */
  targets: string[];
  /** Prefix rows per layer. Default 10 (AdapterHub's UniPELTConfig). */
  numVirtualTokens: number;
  /** The adapter's width. Default hidden / 16. */
  bottleneckSize: number;
  /** The adapter's nonlinearity. Default 'relu'. */
  nonLinearity: 'relu' | 'swish' | 'gelu_new';
}

export const UNIPELT_PREFIX = 'prefix.embedding.weight';

export function resolveUniPeltConfig(model: ModelConfig, options: Partial<UniPeltConfig> = {}): UniPeltConfig {
  const rank = options.rank ?? 8;
  if (!Number.isSafeInteger(rank) || rank < 1 || rank > 256) throw new InvalidArgumentError(`UniPELT rank must be an integer from 1 to 256, got ${JSON.stringify(rank)}.`);
  const alpha = options.alpha ?? 2 * rank;
  if (typeof alpha !== 'number' || !(alpha > 0) || !Number.isFinite(alpha)) throw new InvalidArgumentError(`UniPELT alpha must be a positive number, got ${JSON.stringify(alpha)}.`);
  const targets = options.targets ?? [...architectureOf(model).defaults(model.modelType).lora];
  if (!Array.isArray(targets) || targets.length === 0) throw new InvalidArgumentError('UniPELT targets must be a non-empty list of module names.');
  checkTargets(model, targets, 'UniPELT');
  const numVirtualTokens = checkVirtualTokens(model, options.numVirtualTokens ?? 10, 'UniPELT');
  const bottleneckSize = options.bottleneckSize ?? Math.max(1, Math.floor(model.hiddenSize / 16));
  if (!Number.isSafeInteger(bottleneckSize) || bottleneckSize < 1 || bottleneckSize > model.hiddenSize) {
    throw new InvalidArgumentError(`UniPELT bottleneckSize must be an integer from 1 to the hidden size (${model.hiddenSize}), got ${JSON.stringify(bottleneckSize)}.`);
  }
  const nonLinearity = options.nonLinearity ?? 'relu';
  if (!['relu', 'swish', 'gelu_new'].includes(nonLinearity)) throw new InvalidArgumentError(`UniPELT nonLinearity must be 'relu', 'swish' or 'gelu_new', got ${JSON.stringify(nonLinearity)}.`);
  if (model.hiddenSize !== model.numHeads * model.headDim) {
    throw new InvalidArgumentError(`UniPELT's prefixes need hidden size = heads x head dim; this ${model.modelType} model has ${model.hiddenSize} vs ${model.numHeads} x ${model.headDim}.`);
  }
  // The adapter sits on the MLP's output linear; LoRA there too would need two hooks on one linear.
  const site = adapterSite(model);
  if (selectModules(model, targets).some((t) => t.name === site)) {
    throw new InvalidArgumentError(`UniPELT's adapter sits on ${site}, so LoRA cannot target it too; choose LoRA targets among the attention and the other MLP linears.`);
  }
  return { rank, alpha, targets: [...targets], numVirtualTokens, bottleneckSize, nonLinearity };
}

export function unipeltLoraModules(model: ModelConfig, config: UniPeltConfig): TargetModule[] {
  return selectModules(model, config.targets, undefined);
}

/** The MLP's output linear of a layer (the adapter's site). */
export function adapterSite(model: ModelConfig): string {
  const mlp = architectureOf(model).mlp;
  return mlp.kind === 'swiglu' ? mlp.down : mlp.proj;
}

export const loraKeys = (module: string) => ({ a: `${module}.lora_A.weight`, b: `${module}.lora_B.weight`, gate: `${module}.lora_gate.weight`, gateBias: `${module}.lora_gate.bias` });
export const prefixGateKeys = (layerPrefix: string) => ({ weight: `${layerPrefix}.prefix_gate.weight`, bias: `${layerPrefix}.prefix_gate.bias` });
export const adapterKeys = (layerPrefix: string) => {
  const p = `${layerPrefix}.output_adapter`;
  return { down: `${p}.adapter_down.0.weight`, downBias: `${p}.adapter_down.0.bias`, up: `${p}.adapter_up.weight`, upBias: `${p}.adapter_up.bias`, gate: `${p}.gate.weight`, gateBias: `${p}.gate.bias` };
};

/** Every tensor in the optimizer's and checkpoints' order: the prefix table, then per layer its LoRA modules, prefix gate and adapter. */
export function unipeltShapes(model: ModelConfig, config: UniPeltConfig): TensorShape[] {
  const arch = architectureOf(model);
  const d = model.hiddenSize;
  const r = config.rank;
  const rb = config.bottleneckSize;
  const out: TensorShape[] = [{ key: UNIPELT_PREFIX, shape: [config.numVirtualTokens, model.numLayers * 2 * prefixTokenDim(model)] }];
  const lora = unipeltLoraModules(model, config);
  for (let layer = 0; layer < model.numLayers; layer++) {
    for (const t of lora.filter((m) => m.layer === layer)) {
      const k = loraKeys(t.module);
      out.push({ key: k.a, shape: [r, t.inFeatures] }, { key: k.b, shape: [t.outFeatures, r] }, { key: k.gate, shape: [1, t.inFeatures] }, { key: k.gateBias, shape: [1] });
    }
    const g = prefixGateKeys(arch.layerPrefix(layer));
    out.push({ key: g.weight, shape: [2, d] }, { key: g.bias, shape: [2] });
    const a = adapterKeys(arch.layerPrefix(layer));
    out.push({ key: a.down, shape: [rb, d] }, { key: a.downBias, shape: [rb] }, { key: a.up, shape: [d, rb] }, { key: a.upBias, shape: [d] }, { key: a.gate, shape: [1, d] }, { key: a.gateBias, shape: [1] });
  }
  return out;
}
