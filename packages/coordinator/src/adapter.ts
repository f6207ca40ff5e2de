/**
 * The global adapter as the coordinator holds it: F32 tensors under one adaptation method's keys
 * (LoRA, IA3 or BitFit), laid out flat in sorted key order (the layout of the running sums and the
 * server optimizer state). Aggregation only sees the flat vector, so every method federates alike.
 */
import { ADAPTER_METHODS, adapterMethod, adapterSpecProblem, methodOfKeys, parseModulePath, parseSafetensors, serializeSafetensors, tensorToFloat32, type AdapterSpec, type Architecture, type HostTensor, type LoraConfig } from '@webtune/model';
import { ConfigError } from './config.js';

export interface AdapterLayout {
  keys: string[];
  shapes: Map<string, number[]>;
  offsets: Map<string, number>;
  /** Total element count. */
  size: number;
}

const PEFT_KEY = /^base_model\.model\.(.+)\.lora_([AB])\.weight$/;
const KEY_FORMS = Object.values(ADAPTER_METHODS).map((m) => m.keyPattern);

export function layoutOf(tensors: ReadonlyMap<string, HostTensor>): AdapterLayout {
  const keys = [...tensors.keys()].sort();
  if (keys.length === 0) throw new ConfigError('the initial adapter has no tensors');
  const shapes = new Map<string, number[]>();
  const offsets = new Map<string, number>();
  let size = 0;
  for (const key of keys) {
    if (!KEY_FORMS.some((k) => k.test(key))) {
      throw new ConfigError(`initial adapter tensor "${key}" is not an adapter key (base_model.model.<module>.lora_A|B.weight, .ia3_l or .bitfit_bias)`);
    }
    const t = tensors.get(key)!;
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== n) throw new ConfigError(`initial adapter tensor "${key}" has ${t.data.length} values for shape [${t.shape.join(', ')}]`);
    shapes.set(key, [...t.shape]);
    offsets.set(key, size);
    size += n;
  }
  return { keys, shapes, offsets, size };
}

/** Tensors (all of the layout's keys) to one flat array. */
export function flatten(layout: AdapterLayout, tensors: ReadonlyMap<string, Float32Array | HostTensor>): Float32Array {
  const out = new Float32Array(layout.size);
  for (const key of layout.keys) {
    const t = tensors.get(key)!;
    out.set(t instanceof Float32Array ? t : t.data, layout.offsets.get(key)!);
  }
  return out;
}

/** A flat f32 global adapter to PEFT safetensors (F32). */
export function toSafetensors(layout: AdapterLayout, flat: Float32Array, metadata: Record<string, string> = { format: 'pt' }): Uint8Array {
  return serializeSafetensors(
    layout.keys.map((name) => {
      const at = layout.offsets.get(name)!;
      const shape = layout.shapes.get(name)!;
      return { name, dtype: 'F32' as const, shape, data: flat.slice(at, at + shape.reduce((a, b) => a * b, 1)) };
    }),
    metadata,
  );
}

/** PEFT safetensors to PEFT-keyed f32 tensors (adapter-name segments such as `.default` dropped). */
export function readAdapter(bytes: Uint8Array, source = 'adapter'): Map<string, HostTensor> {
  const file = parseSafetensors(bytes, source);
  const out = new Map<string, HostTensor>();
  for (const [name, t] of file.tensors) {
    // Adapter-name segments (lora_A.default.weight, ia3_l.default, lora_magnitude_vector.default.weight) dropped, as each method names its keys.
    let key = name;
    for (const m of Object.values(ADAPTER_METHODS)) key = m.normalizeKey(key);
    out.set(key, { data: tensorToFloat32(t, source), shape: [...t.shape] });
  }
  return out;
}

/** Reads a global version's blob back to a flat array in the layout. */
export function readFlat(layout: AdapterLayout, bytes: Uint8Array): Float32Array {
  return flatten(layout, readAdapter(bytes, 'global adapter'));
}

/**
 * The LoRA settings clients train with: from PEFT's adapter_config.json when given, otherwise
 * inferred from the tensors (rank from lora_A's rows, targets from the module names, alpha = rank).
 */
export function inferLora(layout: AdapterLayout, peftConfigJson?: string): LoraConfig {
  let rank = 0;
  const targets = new Set<string>();
  for (const key of layout.keys) {
    // DoRA's magnitude vectors sit beside A and B; their modules are A's and B's.
    const m = PEFT_KEY.exec(key);
    if (!m) continue;
    targets.add(m[1]!.split('.').pop()!);
    if (m[2] === 'A') {
      const r = layout.shapes.get(key)![0]!;
      if (rank && r !== rank) throw new ConfigError(`lora_A tensors have different ranks (${rank} and ${r}); per-module ranks are not supported`);
      rank = r;
    }
  }
  if (!rank) throw new ConfigError('the initial adapter has no lora_A tensor');
  const lora: LoraConfig = { rank, alpha: rank, dropout: 0, targets: [...targets].sort(), rslora: false };
  if (peftConfigJson !== undefined) {
    const raw = JSON.parse(peftConfigJson) as Record<string, unknown>;
    if (typeof raw['r'] === 'number' && raw['r'] !== rank) throw new ConfigError(`adapter_config.json says r=${raw['r']} but the tensors have rank ${rank}`);
    if (typeof raw['lora_alpha'] === 'number') lora.alpha = raw['lora_alpha'];
    if (typeof raw['lora_dropout'] === 'number') lora.dropout = raw['lora_dropout'];
    if (Array.isArray(raw['target_modules'])) lora.targets = raw['target_modules'] as string[];
    lora.rslora = raw['use_rslora'] === true;
  }
  return lora;
}

/**
 * The adapter clients train, from the operator's initial adapter (trusted, server-side): its
 * method from the key form (one method per adapter), its config from adapter_config.json when
 * given or else from the tensors, and the architecture from the module paths, so clients take
 * both from the round instead of guessing.
 */
export function inferAdapter(layout: AdapterLayout, adapterConfigJson?: string): { spec: AdapterSpec; architecture: Architecture } {
  const method = methodOfKeys(layout.keys);
  if (!method) throw new ConfigError('the initial adapter mixes key forms of several methods (or none): one method per adapter (LoRA lora_A/lora_B, IA3 ia3_l, BitFit bitfit_bias)');
  const modules = layout.keys.map((k) => {
    const module = adapterMethod(method).keyPattern.exec(k)![1]!;
    const parsed = parseModulePath(module);
    if (!parsed) throw new ConfigError(`initial adapter tensor "${k}" names no linear module of a known architecture`);
    return { key: k, ...parsed };
  });
  const architectures = new Set(modules.map((m) => m.architecture));
  if (architectures.size !== 1) throw new ConfigError(`the initial adapter's modules belong to several architectures (${[...architectures].join(', ')})`);
  const architecture = [...architectures][0]!;
  let raw: Record<string, unknown> = {};
  if (adapterConfigJson !== undefined) {
    try {
      raw = JSON.parse(adapterConfigJson) as Record<string, unknown>;
    } catch (cause) {
      throw new ConfigError(`adapter_config.json is not valid JSON (${(cause as Error).message})`);
    }
  }
  for (const field of ['target_modules', 'feedforward_modules'] as const) {
    const v = raw[field];
    if (v !== undefined && v !== null && !(Array.isArray(v) && v.every((x) => typeof x === 'string'))) {
      throw new ConfigError(`adapter_config.json "${field}" must be a list of module names (a regex string is not supported), got ${JSON.stringify(v)}`);
    }
  }
  const layers = Array.isArray(raw['layers_to_transform']) ? (raw['layers_to_transform'] as number[]) : typeof raw['layers_to_transform'] === 'number' ? [raw['layers_to_transform']] : undefined;
  const names = [...new Set(modules.map((m) => m.name))].sort();
  let config: Record<string, unknown>;
  if (method === 'lora' || method === 'dora') {
    config = { ...inferLora(layout, adapterConfigJson) };
  } else if (method === 'ia3') {
    // Feed-forward targets scale the input: their vectors are [1, in].
    const feedforward = Array.isArray(raw['feedforward_modules'])
      ? (raw['feedforward_modules'] as string[])
      : [...new Set(modules.filter((m) => layout.shapes.get(m.key)![0] === 1).map((m) => m.name))].sort();
    config = { targets: Array.isArray(raw['target_modules']) ? raw['target_modules'] : names, feedforward };
  } else {
    config = { targets: Array.isArray(raw['target_modules']) ? raw['target_modules'] : names, learningRateScale: typeof raw['learning_rate_scale'] === 'number' ? raw['learning_rate_scale'] : 1 };
  }
  if (layers) {
    config['layers'] = [...layers].sort((a, b) => a - b);
  } else {
    // Without adapter_config.json: an adapter that skips layers (the top ones only, or a gap) is
    // layer-selective. One over layers 0..k cannot be told from a full one; its config must say.
    const present = [...new Set(modules.map((m) => m.layer))].sort((a, b) => a - b);
    if (present[0] !== 0 || present.some((l, i) => l !== i)) config['layers'] = present;
  }
  const spec = { method, config: config as AdapterSpec['config'] };
  const problem = adapterSpecProblem(spec);
  if (problem) throw new ConfigError(`the initial adapter and its adapter_config.json give ${problem}`);
  return { spec, architecture };
}
