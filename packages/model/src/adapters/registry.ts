/**
 * The adaptation methods by name, and the functions that take an `AdapterSpec` apart. Adding a
 * method: a folder beside lora/ with its config, method definition, Adapter class and runtime,
 * registered here and in create.ts.
 */
import { InvalidArgumentError } from '@webtune/errors';
import { mlpLinears } from '../arch/index.js';
import type { ModelConfig } from '../config.js';
import { bitfitMethod } from './bitfit/method.js';
import { bottleneckMethod } from './bottleneck/method.js';
import { pTuningMethod } from './p-tuning/method.js';
import { prefixTuningMethod } from './prefix-tuning/method.js';
import { promptTuningMethod } from './prompt-tuning/method.js';
import { unipeltMethod } from './unipelt/method.js';
import { doraMethod } from './dora/method.js';
import { ia3Method } from './ia3/method.js';
import { loraMethod } from './lora/method.js';
import type { MethodDefinition } from './method.js';
import { NO_SEQUENCE_CHANGE, type AdapterMethod, type AdapterSpec, type SequenceLayout } from './types.js';

export const ADAPTER_METHODS: Readonly<Record<AdapterMethod, MethodDefinition<unknown>>> = {
  lora: loraMethod as MethodDefinition<unknown>,
  dora: doraMethod as MethodDefinition<unknown>,
  ia3: ia3Method as MethodDefinition<unknown>,
  bitfit: bitfitMethod as MethodDefinition<unknown>,
  'prompt-tuning': promptTuningMethod as MethodDefinition<unknown>,
  'p-tuning': pTuningMethod as MethodDefinition<unknown>,
  'prefix-tuning': prefixTuningMethod as MethodDefinition<unknown>,
  bottleneck: bottleneckMethod as MethodDefinition<unknown>,
  unipelt: unipeltMethod as MethodDefinition<unknown>,
};

/** The definition of a method name, or a clear error listing the ones there are. */
export function adapterMethod(method: string): MethodDefinition<unknown> {
  // Own keys only: "constructor" or "toString" are not methods.
  const found = typeof method === 'string' && Object.hasOwn(ADAPTER_METHODS, method) ? (ADAPTER_METHODS as Record<string, MethodDefinition<unknown>>)[method] : undefined;
  if (!found) throw new InvalidArgumentError(`Adapter method ${JSON.stringify(method)} is not one webtune trains; choose from ${Object.keys(ADAPTER_METHODS).join(', ')}.`);
  return found;
}

/** A resolved spec from a method name and any subset of its config (defaults filled, validated against the model). */
export function resolveAdapterSpec(model: ModelConfig, method: string, config: Record<string, unknown> = {}): AdapterSpec {
  const definition = adapterMethod(method);
  const resolved = definition.resolve(model, config) as AdapterSpec['config'];
  // A setting the method does not have is refused, not ignored (a typo would silently train something
  // else). `layers` is one when the method keeps it (the module methods); the prompt methods and
  // UniPELT train every layer.
  const known = new Set([...Object.keys(resolved), ...(definition.layerSelective ? ['layers'] : [])]);
  const unknown = Object.keys(config).filter((k) => config[k] !== undefined && !known.has(k));
  if (unknown.length > 0) {
    const composing = unknown.includes('bias') ? '; methods do not compose yet (PEFT\'s bias: "all"): train the biases with BitFit as a run of its own' : '';
    throw new InvalidArgumentError(`${definition.title} has no setting ${unknown.map((k) => `"${k}"`).join(', ')}; its settings are ${[...known].join(', ')}${composing}.`);
  }
  return { method: definition.method, config: resolved };
}

/** Why a checkpoint made with `saved` cannot continue as `here` (empty when it can). */
export function adapterMismatch(saved: AdapterSpec, here: AdapterSpec): string[] {
  if (saved.method !== here.method) return [`the checkpoint trained ${adapterMethod(saved.method).title} but this run uses ${adapterMethod(here.method).title}`];
  return adapterMethod(saved.method).mismatch(saved.config, here.config);
}

/** Trainable parameters of a spec on a model. */
export function adapterParameterCount(model: ModelConfig, spec: AdapterSpec): number {
  return adapterMethod(spec.method).parameterCount(model, spec.config);
}

/**
 * Where a spec's adapter sits in the model without building it (the memory planner): the lowest
 * layer backward must reach, the rows it places before each sequence, and whether it changes an
 * MLP linear (Adapter.touches; the MLP intermediates keep dense rows then, see mlpRowStride).
 */
export function adapterLayout(model: ModelConfig, spec: AdapterSpec): { lowestLayer: number; sequence: SequenceLayout; touchesMlp: boolean } {
  const method = adapterMethod(spec.method);
  const sequence = method.sequence?.(model, spec.config) ?? NO_SEQUENCE_CHANGE;
  const modules = method.modules(model, spec.config);
  const layers = modules.map((t) => t.layer);
  // Virtual tokens and prefixes are trained through layer 0.
  const lowestLayer = layers.length === 0 || sequence.virtualTokens + sequence.prefixTokens > 0 ? 0 : Math.min(...layers);
  const mlp = mlpLinears(model);
  return { lowestLayer, sequence, touchesMlp: modules.some((t) => mlp.includes(t.name)) };
}

/**
 * Key forms every adapter of a method has and the methods sharing its other key forms lack: LoRA's
 * keys are also DoRA's and UniPELT's (whose `.+.lora_A.weight` takes any path), a bottleneck's
 * `output_adapter` keys also UniPELT's, prefix tuning's `prompt_encoder.embedding.weight` also P-tuning's.
 */
const SIGNATURE_KEYS: Partial<Record<AdapterMethod, RegExp>> = {
  dora: /\.lora_magnitude_vector$/,
  unipelt: /^prefix\.embedding\.weight$/,
  'p-tuning': /^prompt_encoder\.mlp_head\./,
};

/**
 * The one method whose keys (trainable or saved, adapter-name segments dropped) these are: a
 * federated global adapter, a checkpoint. The methods whose key forms fit every key, narrowed to
 * those whose signature key is present when several fit (LoRA keys alone are LoRA, not DoRA or
 * UniPELT; `prompt_encoder.embedding.weight` alone is prefix tuning, as P-tuning always has its
 * MLP). Undefined when none fits, or when the keys cannot tell: `prompt_embeddings` alone is prompt
 * tuning's table and also a PEFT prefix-tuning file's prefixes, so the caller needs the adapter's
 * config for it.
 */
export function methodOfKeys(keys: Iterable<string>): AdapterMethod | undefined {
  const list = [...keys];
  if (list.length === 0) return undefined;
  let fits = Object.keys(ADAPTER_METHODS) as AdapterMethod[];
  for (const key of list) {
    fits = fits.filter((m) => ADAPTER_METHODS[m].keyPattern.test(key));
    if (fits.length === 0) return undefined;
  }
  if (fits.length === 1) return fits[0];
  const signed = fits.filter((m) => {
    const signature = SIGNATURE_KEYS[m];
    return signature === undefined || list.some((k) => signature.test(k));
  });
  return signed.length === 1 ? signed[0] : undefined;
}

/** What an app may show about a method without a model or a GPU. */
export interface AdapterMethodInfo {
  method: AdapterMethod;
  /** Its name in messages ("LoRA", "Prefix tuning", "UniPELT"). */
  title: string;
  /** Whether its adapter merges into the base weights (so a merged model and an ONNX export exist). */
  mergeable: boolean;
  /** Why it cannot be merged, when it cannot. */
  reason?: string;
}

/**
 * A method's title and whether it merges, so apps need not list which methods have a merged form.
 * Throws InvalidArgumentError for a name that is not a method.
 *
 * @example
 * ```ts
 * const info = adapterMethodInfo('prefix-tuning');
 * if (!info.mergeable) exportOnnxButton.title = `${info.title}: ${info.reason}`;
 * ```
 */
export function adapterMethodInfo(method: string): AdapterMethodInfo {
  const definition = adapterMethod(method);
  return definition.unmergeable === undefined
    ? { method: definition.method, title: definition.title, mergeable: true }
    : { method: definition.method, title: definition.title, mergeable: false, reason: definition.unmergeable };
}

/** Why `raw` is not an adapter spec webtune can use (unknown method, malformed config), or undefined. Model-free. */
export function adapterSpecProblem(raw: unknown): string | undefined {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'the adapter spec is not an object { method, config }';
  const { method, config } = raw as { method?: unknown; config?: unknown };
  if (typeof method !== 'string' || !Object.hasOwn(ADAPTER_METHODS, method)) return `adapter method ${JSON.stringify(method)} is not one of ${Object.keys(ADAPTER_METHODS).join(', ')}`;
  if (typeof config !== 'object' || config === null || Array.isArray(config)) return `the ${method} config is not an object`;
  const problem = adapterMethod(method).invalid(config as Record<string, unknown>);
  return problem ? `the ${adapterMethod(method).title} config's ${problem}` : undefined;
}
