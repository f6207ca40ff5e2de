/**
 * Adapter files: export an adapter as `adapter_config.json` + `adapter_model.safetensors` (PEFT's
 * layout, which `PeftModel.from_pretrained` loads for the methods PEFT has), read them back, and
 * merge an adapter into the base weights as a full safetensors model. Each method's own part is
 * its `adapters/<method>/method.ts`; importing onto the GPU is `importPeftAdapter`.
 */
import { ModelFormatError, UnsupportedModelError } from '@webtune/errors';
// Types only for the GPU side: this module stays free of GPU code, so an app that only reads or
// writes adapter files (the federated client on the page) does not bundle kernels.
import type { Adapter, AdapterSpec, HostTensor } from './adapters/types.js';
import { adapterMethod } from './adapters/registry.js';
import type { MethodDefinition } from './adapters/method.js';
import type { LoraConfig } from './adapters/lora/config.js';
import type { ModelConfig } from './config.js';
import { parseSafetensors, serializeSafetensors, tensorToFloat32, type TensorToWrite } from './safetensors.js';
import type { WeightReader } from './weights.js';

export { peftAdapterConfig, adapterPairFor } from './adapters/lora/method.js';

/**
 * An adapter as the two files Hugging Face PEFT writes (exportAdapter()'s result): saved in one folder,
 * `PeftModel.from_pretrained` loads them. importAdapter() takes them back as `{ config, weights }`.
 */
export interface PeftFiles {
  'adapter_config.json': string;
  'adapter_model.safetensors': Uint8Array;
}

/** A LoraConfig stands for `{ method: 'lora', config }` where an AdapterSpec is expected. */
export type AdapterSpecLike = AdapterSpec | LoraConfig;

export function toAdapterSpec(spec: AdapterSpecLike): AdapterSpec {
  return 'method' in spec ? spec : { method: 'lora', config: spec as unknown as AdapterSpec['config'] };
}

/** adapter_config.json for a spec (PEFT's fields for LoRA and IA3; webtune's own for BitFit). */
export function adapterConfigJson(model: Pick<ModelConfig, 'architecture'>, spec: AdapterSpecLike, baseModel = ''): Record<string, unknown> {
  const s = toAdapterSpec(spec);
  return adapterMethod(s.method).peftConfig(model, s.config, baseModel);
}

/**
 * The adapter's PEFT files. `extraConfig` adds keys to adapter_config.json (webtune's own, e.g.
 * `webtune_privacy`; PEFT ignores keys its config class does not have).
 */
export async function exportPeftAdapter(adapter: Adapter, options: { baseModel?: string; extraConfig?: Record<string, unknown> } = {}): Promise<PeftFiles> {
  const trainable = await adapter.read();
  // P-tuning and prefix projection save the encoder's output, as PEFT does.
  const tensors = adapterMethod(adapter.method).savedTensors?.(adapter.model, adapter.config, trainable) ?? trainable;
  const list: TensorToWrite[] = [...tensors].map(([name, t]) => ({ name, dtype: 'F32', shape: t.shape, data: t.data }));
  return {
    'adapter_config.json': `${JSON.stringify({ ...adapterConfigJson(adapter.model, adapter.spec(), options.baseModel), ...options.extraConfig }, null, 2)}\n`,
    'adapter_model.safetensors': serializeSafetensors(list, { format: 'pt' }),
  };
}

/** Which method an adapter_config.json describes. */
function methodOfConfig(raw: Record<string, unknown>): AdapterSpec['method'] {
  if (raw['webtune_method'] !== undefined) {
    if (raw['webtune_method'] === 'bitfit' || raw['webtune_method'] === 'bottleneck' || raw['webtune_method'] === 'unipelt') return raw['webtune_method'];
    throw new UnsupportedModelError('adapter_config.json', `webtune_method "${String(raw['webtune_method'])}" is not one this version reads (bitfit, bottleneck, unipelt)`);
  }
  const type = raw['peft_type'];
  if (type === undefined || type === 'LORA') return raw['use_dora'] === true ? 'dora' : 'lora';
  if (type === 'IA3') return 'ia3';
  // A P-tuning file holds the encoder's output only: the virtual tokens themselves, i.e. prompt tuning (PEFT's inference mode reads it so too).
  if (type === 'PROMPT_TUNING' || type === 'P_TUNING') return 'prompt-tuning';
  if (type === 'PREFIX_TUNING') return 'prefix-tuning';
  throw new UnsupportedModelError('adapter_config.json', `peft_type "${String(type)}" is not supported (LORA with or without use_dora, IA3, PROMPT_TUNING, P_TUNING, PREFIX_TUNING; BitFit and bottleneck files carry "webtune_method")`);
}

/**
 * Reads adapter files into a spec (`{ method, config }`) and float32 tensors under the method's
 * keys (adapter-name segments such as `.default` dropped). `lora` is the config when the method is LoRA.
 */
export function readPeftAdapter(model: ModelConfig, files: { config: string; weights: Uint8Array }): { spec: AdapterSpec; lora: LoraConfig; tensors: Map<string, HostTensor> } {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(files.config) as Record<string, unknown>;
  } catch (cause) {
    throw new ModelFormatError('adapter_config.json', `not valid JSON (${(cause as Error).message})`, { cause });
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ModelFormatError('adapter_config.json', 'is not a JSON object');
  const method = adapterMethod(methodOfConfig(raw));
  const config = method.fromPeftConfig(model, raw) as AdapterSpec['config'];
  const file = parseSafetensors(files.weights, 'adapter_model.safetensors');
  const tensors = new Map<string, HostTensor>();
  for (const [name, t] of file.tensors) {
    const key = method.normalizeKey(name);
    if (!method.keyPattern.test(key)) {
      throw new ModelFormatError('adapter_model.safetensors', `holds "${name}", which is not a ${method.title} tensor (adapter_config.json says ${method.title}); the two files do not belong together`);
    }
    tensors.set(key, { data: tensorToFloat32(t, 'adapter_model.safetensors'), shape: [...t.shape] });
  }
  const spec: AdapterSpec = { method: method.method, config };
  return { spec, lora: config as unknown as LoraConfig, tensors: method.fromSaved?.(model, config, tensors) ?? tensors };
}

/**
 * One base tensor with the adapter merged in, in the checkpoint's own layout (GPT-2's Conv1D
 * stays [in, out]); undefined when the adapter does not touch `name`. Shared by the safetensors
 * and the ONNX merged exports.
 */
export function mergedWeight(model: ModelConfig, name: string, data: Float32Array, spec: AdapterSpecLike, tensors: ReadonlyMap<string, HostTensor>): Float32Array | undefined {
  const s = toAdapterSpec(spec);
  return mergeableMethod(s).mergeWeight(model, s.config, name, data, tensors);
}

/** The spec's method, or a typed error when a merged model cannot express it (virtual tokens, prefixes, added modules). */
export function mergeableMethod(spec: AdapterSpec): MethodDefinition<unknown> {
  const method = adapterMethod(spec.method);
  if (method.unmergeable) {
    throw new UnsupportedModelError('merge', `${method.unmergeable}; export the adapter files instead (exportAdapter), which ${spec.method === 'bottleneck' ? 'scripts/check_method_adapter.py loads in PyTorch' : 'PEFT loads with PeftModel.from_pretrained'}`);
  }
  return method;
}

/**
 * The base model with the adapter merged in, as a float32 safetensors file in the checkpoint's
 * own layout and names (GPT-2's Conv1D stays [in, out]), loadable by `from_pretrained`; tensors a
 * method adds (BitFit's new biases) are appended, and `config` is the config.json fields to set
 * for them (empty when none).
 */
export function mergeAdapterFiles(
  model: ModelConfig,
  reader: WeightReader & { names(): Iterable<string> },
  spec: AdapterSpecLike,
  tensors: ReadonlyMap<string, HostTensor>,
): { weights: Uint8Array; config: Record<string, unknown> } {
  const s = toAdapterSpec(spec);
  const method = mergeableMethod(s);
  const out: TensorToWrite[] = [];
  for (const name of reader.names()) {
    const { data, shape } = reader.read(name);
    out.push({ name, dtype: 'F32', shape: [...shape], data: method.mergeWeight(model, s.config, name, data, tensors) ?? new Float32Array(data) });
  }
  const added = method.mergedAdditions?.(model, s.config, tensors);
  for (const [name, t] of added?.tensors ?? []) out.push({ name, dtype: 'F32', shape: t.shape, data: t.data });
  return { weights: serializeSafetensors(out, { format: 'pt' }), config: added?.config ?? {} };
}

/** mergeAdapterFiles' weights alone, for methods that add no tensors (LoRA, IA3). */
export function mergeAdapter(
  model: ModelConfig,
  reader: WeightReader & { names(): Iterable<string> },
  spec: AdapterSpecLike,
  tensors: ReadonlyMap<string, HostTensor>,
): Uint8Array {
  return mergeAdapterFiles(model, reader, spec, tensors).weights;
}
