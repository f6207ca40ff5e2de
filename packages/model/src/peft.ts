/**
 * PEFT interchange: export an adapter as `adapter_config.json` + `adapter_model.safetensors`
 * that `PeftModel.from_pretrained` loads, import one back, and merge it into the base weights
 * (W + s B A, transposed for GPT-2's Conv1D as PEFT's fan_in_fan_out does) as a full safetensors
 * model. REFERENCE.md "LoRA" has the names and formulas. Importing onto the GPU is adapter.ts'
 * importPeftAdapter.
 */
import { ModelFormatError, UnsupportedModelError } from '@webtune/errors';
// Types only: this module stays free of GPU code, so an app that only reads or writes PEFT files
// (the federated client on the page) does not bundle kernels. importPeftAdapter is in adapter.ts.
import type { LoraAdapter, HostTensor } from './adapter.js';
import type { ModelConfig } from './config.js';
import { LINEAR_MODULES, loraScale, peftKey, resolveLoraConfig, type LoraConfig } from './lora-config.js';
import { parseSafetensors, serializeSafetensors, tensorToFloat32, type TensorToWrite } from './safetensors.js';
import type { WeightReader } from './weights.js';

/**
 * A LoRA adapter as the two files Hugging Face PEFT writes (exportAdapter()'s result): saved in one folder,
 * `PeftModel.from_pretrained` loads them. importAdapter() takes them back as `{ config, weights }`.
 */
export interface PeftFiles {
  'adapter_config.json': string;
  'adapter_model.safetensors': Uint8Array;
}

/** adapter_config.json as PEFT writes it for a LoRA on a causal LM. */
export function peftAdapterConfig(model: ModelConfig, lora: LoraConfig, baseModel = ''): Record<string, unknown> {
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: baseModel,
    r: lora.rank,
    lora_alpha: lora.alpha,
    lora_dropout: lora.dropout,
    target_modules: [...lora.targets].map((t) => t.split('.').pop()!),
    bias: 'none',
    fan_in_fan_out: model.architecture === 'gpt2',
    use_rslora: lora.rslora,
    use_dora: false,
    init_lora_weights: true,
    inference_mode: true,
    modules_to_save: null,
    layers_to_transform: null,
    rank_pattern: {},
    alpha_pattern: {},
    revision: null,
  };
}

export async function exportPeftAdapter(adapter: LoraAdapter, options: { baseModel?: string } = {}): Promise<PeftFiles> {
  const tensors = await adapter.read();
  const list: TensorToWrite[] = [...tensors].map(([name, t]) => ({ name, dtype: 'F32', shape: t.shape, data: t.data }));
  return {
    'adapter_config.json': `${JSON.stringify(peftAdapterConfig(adapter.model, adapter.config, options.baseModel), null, 2)}\n`,
    'adapter_model.safetensors': serializeSafetensors(list, { format: 'pt' }),
  };
}

/** Reads PEFT files into a LoRA config and PEFT-keyed float32 tensors (adapter name segments dropped). */
export function readPeftAdapter(model: ModelConfig, files: { config: string; weights: Uint8Array }): { lora: LoraConfig; tensors: Map<string, HostTensor> } {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(files.config) as Record<string, unknown>;
  } catch (cause) {
    throw new ModelFormatError('adapter_config.json', `not valid JSON (${(cause as Error).message})`, { cause });
  }
  if (raw['peft_type'] !== undefined && raw['peft_type'] !== 'LORA') {
    throw new UnsupportedModelError('adapter_config.json', `peft_type "${String(raw['peft_type'])}" is not supported (only LORA)`);
  }
  if (raw['use_dora'] === true) throw new UnsupportedModelError('adapter_config.json', 'DoRA adapters are not supported');
  for (const key of ['rank_pattern', 'alpha_pattern'] as const) {
    const v = raw[key];
    if (v && typeof v === 'object' && Object.keys(v).length > 0) throw new UnsupportedModelError('adapter_config.json', `${key} (per-module ranks) is not supported`);
  }
  if (raw['bias'] !== undefined && raw['bias'] !== 'none') throw new UnsupportedModelError('adapter_config.json', `bias "${String(raw['bias'])}" is not supported (only "none")`);
  const targets = raw['target_modules'];
  if (!Array.isArray(targets) || !targets.every((t) => typeof t === 'string')) {
    throw new UnsupportedModelError('adapter_config.json', 'target_modules must be a list of module names (a regex string is not supported)');
  }
  const r = raw['r'];
  const alpha = raw['lora_alpha'];
  if (typeof r !== 'number' || typeof alpha !== 'number') throw new ModelFormatError('adapter_config.json', 'needs numeric "r" and "lora_alpha"');
  const fanInFanOut = raw['fan_in_fan_out'] === true;
  if (fanInFanOut !== (model.architecture === 'gpt2')) {
    throw new ModelFormatError('adapter_config.json', `fan_in_fan_out is ${fanInFanOut} but a ${model.modelType} model needs ${model.architecture === 'gpt2'}`);
  }
  const lora = resolveLoraConfig(model, {
    rank: r,
    alpha,
    dropout: typeof raw['lora_dropout'] === 'number' ? raw['lora_dropout'] : 0,
    targets: targets as string[],
    rslora: raw['use_rslora'] === true,
  });
  const file = parseSafetensors(files.weights, 'adapter_model.safetensors');
  const tensors = new Map<string, HostTensor>();
  for (const [name, t] of file.tensors) {
    // PEFT saves without the adapter name; some tools keep it (lora_A.default.weight).
    const key = name.replace(/\.lora_([AB])\.[^.]+\.weight$/, '.lora_$1.weight');
    tensors.set(key, { data: tensorToFloat32(t, 'adapter_model.safetensors'), shape: [...t.shape] });
  }
  return { lora, tensors };
}

/**
 * The adapter's A and B for base weight `name` (the checkpoint's naming), or undefined when the
 * adapter does not touch it; lets an exporter skip reading the weights it leaves alone.
 */
export function adapterPairFor(
  model: ModelConfig,
  name: string,
  tensors: ReadonlyMap<string, HostTensor>,
): { a: HostTensor; b: HostTensor } | undefined {
  const module = name.endsWith('.weight') ? name.slice(0, -'.weight'.length) : undefined;
  // GPT-2 files may drop the `transformer.` prefix; PEFT keys always have it.
  const canonical = module && model.architecture === 'gpt2' && !module.startsWith('transformer.') ? `transformer.${module}` : module;
  const a = canonical ? tensors.get(peftKey(canonical, 'A')) : undefined;
  const b = canonical ? tensors.get(peftKey(canonical, 'B')) : undefined;
  return a && b && LINEAR_MODULES[model.architecture].some((l) => canonical!.endsWith(`.${l}`)) ? { a, b } : undefined;
}

/**
 * One base weight with the adapter merged in, `W + s * B @ A`, in the checkpoint's own layout
 * (GPT-2's Conv1D stays [in, out]); undefined when the adapter does not touch `name`. Shared by
 * the safetensors and the ONNX merged exports.
 */
export function mergedWeight(
  model: ModelConfig,
  name: string,
  data: Float32Array,
  lora: LoraConfig,
  tensors: ReadonlyMap<string, HostTensor>,
): Float32Array | undefined {
  const pair = adapterPairFor(model, name, tensors);
  if (!pair) return undefined;
  const { a, b } = pair;
  const scale = loraScale(lora);
  const merged = new Float32Array(data);
  const [r, inF] = a.shape as [number, number];
  const outF = b.shape[0]!;
  const conv1d = model.architecture === 'gpt2';
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

/**
 * The base model with the adapter merged in, as a float32 safetensors file in the checkpoint's
 * own layout and names (GPT-2's Conv1D stays [in, out]), loadable by `from_pretrained`.
 */
export function mergeAdapter(
  model: ModelConfig,
  reader: WeightReader & { names(): Iterable<string> },
  lora: LoraConfig,
  tensors: ReadonlyMap<string, HostTensor>,
): Uint8Array {
  const out: TensorToWrite[] = [];
  for (const name of reader.names()) {
    const { data, shape } = reader.read(name);
    out.push({ name, dtype: 'F32', shape: [...shape], data: mergedWeight(model, name, data, lora, tensors) ?? new Float32Array(data) });
  }
  return serializeSafetensors(out, { format: 'pt' });
}
