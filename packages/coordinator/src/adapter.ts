/**
 * The global adapter as the coordinator holds it: F32 tensors under one adaptation method's
 * trainable keys (what TrainerSession.exportAdapterState() writes; for LoRA, DoRA, IA3, BitFit and
 * bottleneck adapters also their files' keys), laid out flat in sorted key order (the layout of the
 * running sums and the server optimizer state). Aggregation only sees the flat vector, so every
 * method federates alike.
 *
 * What the clients train comes from the operator's initial adapter: the method from the key forms,
 * the config from the tensors' shapes and the operator's description of it (adapter_config.json as
 * exportAdapter() writes it, or a webtune adapter spec JSON), the architecture from the module
 * paths. Prompt tuning, P-tuning and prefix tuning keys (`prompt_embeddings`, `prompt_encoder.*`)
 * name no module and no architecture, and `prompt_embeddings` alone fits prompt tuning and prefix
 * tuning: those need the description and the architecture, or the coordinator does not start.
 * UniPELT's keys (webtune's own files) say everything but LoRA's alpha and the adapter's
 * non-linearity, which come from the description or the method's defaults.
 */
import {
  ADAPTER_METHODS, ARCHITECTURES, adapterMethod, adapterSpecProblem, matchesTarget, methodOfKeys, parseModulePath, parseSafetensors, PROMPT_EMBEDDINGS, serializeSafetensors, tensorToFloat32,
  UNIPELT_PREFIX, type AdapterMethod, type AdapterSpec, type Architecture, type ArchitectureDescriptor, type HostTensor, type LoraConfig,
} from '@webtune/model';
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
const KEY_FORMS_TEXT = 'base_model.model.<module>.lora_A|B.weight, .lora_magnitude_vector, .ia3_l or .bitfit_bias; '
  + '<layer>.attention_adapter|output_adapter.adapter_down.0|adapter_up.weight|bias; prompt_embeddings; prompt_encoder.embedding.weight, .mlp_head.0|2|4.* or .transform.0|2.*; '
  + 'UniPELT\'s prefix.embedding.weight, <module>.lora_A|lora_B.weight, .lora_gate.*, <layer>.prefix_gate.* and .output_adapter.adapter_down.0|adapter_up|gate.*';

export function layoutOf(tensors: ReadonlyMap<string, HostTensor>): AdapterLayout {
  const keys = [...tensors.keys()].sort();
  if (keys.length === 0) throw new ConfigError('the initial adapter has no tensors');
  const shapes = new Map<string, number[]>();
  const offsets = new Map<string, number>();
  let size = 0;
  for (const key of keys) {
    if (!KEY_FORMS.some((k) => k.test(key))) {
      throw new ConfigError(`initial adapter tensor "${key}" is not an adapter key (${KEY_FORMS_TEXT})`);
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

/** A flat f32 global adapter to safetensors (F32, the layout's keys). */
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

/** Adapter safetensors to f32 tensors under the methods' keys (adapter-name segments such as `.default` dropped). */
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

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Keys of prompt tuning, P-tuning and prefix tuning: no module, no architecture in them. */
const PROMPT_KEY = /^(?:prompt_embeddings|prompt_encoder\..+)$/;
const PROMPT_METHODS: ReadonlySet<AdapterMethod> = new Set(['prompt-tuning', 'p-tuning', 'prefix-tuning']);
const ENCODER_EMBEDDING = 'prompt_encoder.embedding.weight';
const P_TUNING_KEYS = [ENCODER_EMBEDDING, ...[0, 2, 4].flatMap((i) => [`prompt_encoder.mlp_head.${i}.weight`, `prompt_encoder.mlp_head.${i}.bias`])];
const PROJECTION_KEYS = [0, 2].flatMap((i) => [`prompt_encoder.transform.${i}.weight`, `prompt_encoder.transform.${i}.bias`]);
const BOTTLENECK_KEY = /^(.+)\.(attention|output)_adapter\.adapter_(down\.0|up)\.(weight|bias)$/;

/** How an operator describes the initial adapter: `--adapter-config` and `--architecture`. */
const HOW = 'give its spec (--adapter-config with adapter_config.json as exportAdapter() writes it, or a webtune spec JSON { "method", "config", "architecture" } from exportAdapterState()) and its architecture (--architecture, or "architecture" in the spec JSON)';

/** What the operator's description says: the method, config fields in webtune's names, and for adapter_config.json its raw fields. */
interface Described {
  method: AdapterMethod;
  config: Record<string, unknown>;
  architecture: Architecture | undefined;
  /** adapter_config.json's fields (PEFT's, or webtune's for BitFit and bottleneck); undefined for a spec JSON. */
  peft: Record<string, unknown> | undefined;
  /** Where it came from, for messages. */
  source: string;
}

function knownArchitecture(value: unknown, what: string): Architecture {
  if (!ARCHITECTURES.some((a) => a.name === value)) throw new ConfigError(`${what} ${JSON.stringify(value)} is not one of ${ARCHITECTURES.map((a) => a.name).join(', ')}`);
  return value as Architecture;
}

/** The method an adapter_config.json describes (webtune reads P_TUNING files as prompt tuning; here the tensors decide, see promptAdapter). */
function methodOfPeftConfig(raw: Record<string, unknown>): AdapterMethod {
  const own = raw['webtune_method'];
  if (own !== undefined) {
    if (own === 'bitfit' || own === 'bottleneck' || own === 'unipelt') return own;
    throw new ConfigError(`adapter_config.json "webtune_method" is ${JSON.stringify(own)}; expected "bitfit", "bottleneck" or "unipelt"`);
  }
  const type = raw['peft_type'];
  if (type === undefined || type === 'LORA') return raw['use_dora'] === true ? 'dora' : 'lora';
  const byType: Record<string, AdapterMethod> = { IA3: 'ia3', PROMPT_TUNING: 'prompt-tuning', P_TUNING: 'p-tuning', PREFIX_TUNING: 'prefix-tuning' };
  if (typeof type === 'string' && Object.hasOwn(byType, type)) return byType[type]!;
  throw new ConfigError(`adapter_config.json "peft_type" is ${JSON.stringify(type)}; the coordinator takes LORA, IA3, PROMPT_TUNING, P_TUNING and PREFIX_TUNING (BitFit, bottleneck and UniPELT files carry "webtune_method")`);
}

/** The config fields of a prompt-learning, bottleneck or UniPELT adapter_config.json, in webtune's names (LoRA, DoRA, IA3, BitFit read `peft` directly). */
function configOfPeft(method: AdapterMethod, raw: Record<string, unknown>): Record<string, unknown> {
  const number = (field: string): number | undefined => (typeof raw[field] === 'number' ? (raw[field] as number) : undefined);
  if (PROMPT_METHODS.has(method)) {
    const n = raw['num_virtual_tokens'];
    if (!Number.isSafeInteger(n) || (n as number) < 1) throw new ConfigError(`adapter_config.json "num_virtual_tokens" is ${JSON.stringify(n)}; expected a positive integer`);
    const submodules = raw['num_transformer_submodules'];
    if (submodules !== undefined && submodules !== null && submodules !== 1) throw new ConfigError(`adapter_config.json "num_transformer_submodules" is ${JSON.stringify(submodules)}; a decoder-only model has 1`);
    if (method === 'prompt-tuning') {
      const init = raw['prompt_tuning_init'];
      if (init !== undefined && init !== null && !['TEXT', 'RANDOM', 'SAMPLE_VOCAB'].includes(init as string)) throw new ConfigError(`adapter_config.json "prompt_tuning_init" is ${JSON.stringify(init)}; PEFT writes TEXT, RANDOM or SAMPLE_VOCAB`);
      const text = raw['prompt_tuning_init_text'];
      return init === 'TEXT' && typeof text === 'string' && text.length > 0 ? { numVirtualTokens: n, init: 'text', initText: text } : { numVirtualTokens: n, init: 'random' };
    }
    if (method === 'p-tuning') {
      const type = raw['encoder_reparameterization_type'];
      if (type !== undefined && type !== null && type !== 'MLP') throw new ConfigError(`adapter_config.json "encoder_reparameterization_type" is ${JSON.stringify(type)}; webtune trains P-tuning's MLP encoder only`);
      return { numVirtualTokens: n, encoderReparameterizationType: 'MLP', ...(number('encoder_hidden_size') !== undefined ? { encoderHiddenSize: number('encoder_hidden_size') } : {}) };
    }
    return { numVirtualTokens: n, prefixProjection: raw['prefix_projection'] === true, ...(number('encoder_hidden_size') !== undefined ? { encoderHiddenSize: number('encoder_hidden_size') } : {}) };
  }
  if (method === 'bottleneck') {
    const layers = layersOf(raw);
    return {
      ...(raw['variant'] !== undefined ? { variant: raw['variant'] } : {}),
      ...(raw['bottleneck_size'] !== undefined ? { bottleneckSize: raw['bottleneck_size'] } : {}),
      ...(raw['non_linearity'] !== undefined ? { nonLinearity: raw['non_linearity'] } : {}),
      ...(layers ? { layers } : {}),
    };
  }
  if (method === 'unipelt') {
    const fields: Array<[string, string]> = [['r', 'rank'], ['lora_alpha', 'alpha'], ['target_modules', 'targets'], ['num_virtual_tokens', 'numVirtualTokens'], ['bottleneck_size', 'bottleneckSize'], ['non_linearity', 'nonLinearity']];
    const layers = layersOf(raw);
    return Object.fromEntries([...fields.filter(([peft]) => raw[peft] !== undefined && raw[peft] !== null).map(([peft, own]) => [own, raw[peft]]), ...(layers ? [['layers', layers]] : [])]);
  }
  return {};
}

function layersOf(raw: Record<string, unknown>): number[] | undefined {
  const v = raw['layers_to_transform'];
  if (Array.isArray(v)) return [...(v as number[])].sort((a, b) => a - b);
  return typeof v === 'number' ? [v] : undefined;
}

/** The operator's description: adapter_config.json, or a webtune spec JSON ({ method, config, architecture? } or { spec, architecture? }). */
function describe(text: string | undefined): Described | undefined {
  if (text === undefined) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (cause) {
    throw new ConfigError(`adapter_config.json is not valid JSON (${(cause as Error).message})`);
  }
  if (!isObject(raw)) throw new ConfigError('the adapter config is not a JSON object (adapter_config.json, or a webtune spec JSON { "method", "config", "architecture" })');
  const spec = isObject(raw['spec']) ? raw['spec'] : typeof raw['method'] === 'string' ? raw : undefined;
  if (spec) {
    const method = spec['method'];
    if (typeof method !== 'string' || !Object.hasOwn(ADAPTER_METHODS, method)) throw new ConfigError(`the adapter spec's method ${JSON.stringify(method)} is not one of ${Object.keys(ADAPTER_METHODS).join(', ')}`);
    const config = spec['config'] ?? {};
    if (!isObject(config)) throw new ConfigError(`the adapter spec's config is not an object, got ${JSON.stringify(config)}`);
    const architecture = raw['architecture'] === undefined ? undefined : knownArchitecture(raw['architecture'], 'the adapter spec\'s architecture');
    return { method: method as AdapterMethod, config: { ...config }, architecture, peft: undefined, source: 'the adapter spec' };
  }
  for (const field of ['target_modules', 'feedforward_modules'] as const) {
    const v = raw[field];
    if (v !== undefined && v !== null && !(Array.isArray(v) && v.every((x) => typeof x === 'string'))) {
      throw new ConfigError(`adapter_config.json "${field}" must be a list of module names (a regex string is not supported), got ${JSON.stringify(v)}`);
    }
  }
  const method = methodOfPeftConfig(raw);
  return { method, config: configOfPeft(method, raw), architecture: undefined, peft: raw, source: 'adapter_config.json' };
}

/**
 * The initial tensors under the keys rounds exchange. A PEFT prefix-tuning file holds the prefixes
 * themselves as `prompt_embeddings`, which is prefix tuning's trainable `prompt_encoder.embedding.weight`
 * when there is no projection; the other tensors are kept as they are (inferAdapter checks them).
 */
export function trainableTensors(tensors: ReadonlyMap<string, HostTensor>, adapterConfigJson?: string): Map<string, HostTensor> {
  const out = new Map(tensors);
  const described = describe(adapterConfigJson);
  if (described?.method === 'prefix-tuning' && described.config['prefixProjection'] !== true && out.size === 1 && out.has(PROMPT_EMBEDDINGS)) {
    out.set(ENCODER_EMBEDDING, out.get(PROMPT_EMBEDDINGS)!);
    out.delete(PROMPT_EMBEDDINGS);
  }
  return out;
}

/** The layout's keys must be exactly `keys`. */
function expectKeys(layout: AdapterLayout, keys: readonly string[], title: string): void {
  const want = new Set(keys);
  const missing = keys.filter((k) => !layout.shapes.has(k));
  const extra = layout.keys.filter((k) => !want.has(k));
  if (missing.length > 0 || extra.length > 0) {
    throw new ConfigError(`a ${title} adapter's trainable tensors are ${keys.join(', ')}; the initial adapter ${missing.length > 0 ? `lacks ${missing.join(', ')}` : ''}${missing.length > 0 && extra.length > 0 ? ' and ' : ''}${extra.length > 0 ? `has ${extra.join(', ')}` : ''}`);
  }
}

/** The shape of `key`, checked against `want` (numbers fixed; a string names a dimension whose first sighting sets it). */
function shapes(layout: AdapterLayout, want: Record<string, Array<number | string>>): Record<string, number> {
  const dims: Record<string, number> = {};
  for (const [key, pattern] of Object.entries(want)) {
    const shape = layout.shapes.get(key)!;
    const ok = shape.length === pattern.length && pattern.every((p, i) => {
      if (typeof p === 'number') return shape[i] === p;
      dims[p] ??= shape[i]!;
      return shape[i] === dims[p];
    });
    if (!ok) {
      const expected = pattern.map((p) => (typeof p === 'number' ? p : dims[p] ?? p)).join(', ');
      throw new ConfigError(`initial adapter tensor "${key}" is [${shape.join(', ')}]; its other tensors make it [${expected}]`);
    }
  }
  return dims;
}

/** A field the description gives must agree with what the tensors say. */
function agree(config: Record<string, unknown>, field: string, fromTensors: unknown, source: string): void {
  if (config[field] !== undefined && config[field] !== fromTensors) {
    throw new ConfigError(`${source} says ${field} ${JSON.stringify(config[field])}, but the initial adapter's tensors have ${JSON.stringify(fromTensors)}`);
  }
}

/** Prompt tuning, P-tuning, prefix tuning: the method and architecture from the description, the rest checked against the tensors. */
function promptAdapter(layout: AdapterLayout, described: Described | undefined, architecture: Architecture | undefined): { spec: AdapterSpec; architecture: Architecture } {
  const keys = layout.keys.join(', ');
  if (!described) {
    throw new ConfigError(`the initial adapter's tensors (${keys}) name no module and no architecture, and "${PROMPT_EMBEDDINGS}" alone fits prompt tuning and prefix tuning alike: ${HOW}`);
  }
  const { method, source } = described;
  if (!PROMPT_METHODS.has(method)) throw new ConfigError(`${source} describes ${adapterMethod(method).title}, but the initial adapter's tensors (${keys}) are a prompt-learning adapter's`);
  const arch = architecture ?? described.architecture;
  if (!arch) throw new ConfigError(`a ${adapterMethod(method).title} adapter's tensors name no architecture: ${HOW}`);
  const given = described.config;
  const tokenDim = described.peft?.['token_dim'];
  const numLayers = described.peft?.['num_layers'];
  const peftWidth = (width: number, what: string) => {
    if (typeof tokenDim === 'number' && tokenDim !== width) throw new ConfigError(`adapter_config.json says token_dim ${tokenDim}, but ${what} is ${width} wide`);
  };
  let config: Record<string, unknown>;
  if (method === 'prompt-tuning') {
    expectKeys(layout, [PROMPT_EMBEDDINGS], 'prompt tuning');
    const { n, d } = shapes(layout, { [PROMPT_EMBEDDINGS]: ['n', 'd'] }) as { n: number; d: number };
    peftWidth(d, PROMPT_EMBEDDINGS);
    config = { numVirtualTokens: n, init: 'random', ...given };
    agree(given, 'numVirtualTokens', n, source);
  } else if (method === 'p-tuning') {
    if (layout.keys.length === 1 && layout.keys[0] === PROMPT_EMBEDDINGS) {
      throw new ConfigError(`a P-tuning adapter file holds only its encoder's output ("${PROMPT_EMBEDDINGS}"), and rounds train the encoder: give the adapter's trainable state (exportAdapterState(): its weights and its spec), or federate these embeddings as prompt tuning (a PROMPT_TUNING config or a prompt-tuning spec)`);
    }
    expectKeys(layout, P_TUNING_KEYS, 'P-tuning');
    const { n, d, h } = shapes(layout, {
      [ENCODER_EMBEDDING]: ['n', 'd'],
      'prompt_encoder.mlp_head.0.weight': ['h', 'd'], 'prompt_encoder.mlp_head.0.bias': ['h'],
      'prompt_encoder.mlp_head.2.weight': ['h', 'h'], 'prompt_encoder.mlp_head.2.bias': ['h'],
      'prompt_encoder.mlp_head.4.weight': ['d', 'h'], 'prompt_encoder.mlp_head.4.bias': ['d'],
    }) as { n: number; d: number; h: number };
    peftWidth(d, ENCODER_EMBEDDING);
    config = { numVirtualTokens: n, encoderHiddenSize: h, encoderReparameterizationType: 'MLP', ...given };
    agree(given, 'numVirtualTokens', n, source);
    agree(given, 'encoderHiddenSize', h, source);
  } else {
    const projection = given['prefixProjection'] ?? layout.keys.some((k) => k.startsWith('prompt_encoder.transform.'));
    if (projection === true && layout.keys.length === 1 && layout.keys[0] === PROMPT_EMBEDDINGS) {
      throw new ConfigError(`a prefix-tuning adapter file with prefix_projection holds only the projection's output ("${PROMPT_EMBEDDINGS}"), and rounds train the projection: give the adapter's trainable state (exportAdapterState(): its weights and its spec), or federate these prefixes without projection (prefix_projection false)`);
    }
    if (projection === true) {
      expectKeys(layout, [ENCODER_EMBEDDING, ...PROJECTION_KEYS], 'prefix tuning (with projection)');
      const { n, td, h, all } = shapes(layout, {
        [ENCODER_EMBEDDING]: ['n', 'td'],
        'prompt_encoder.transform.0.weight': ['h', 'td'], 'prompt_encoder.transform.0.bias': ['h'],
        'prompt_encoder.transform.2.weight': ['all', 'h'], 'prompt_encoder.transform.2.bias': ['all'],
      }) as { n: number; td: number; h: number; all: number };
      if (all % (2 * td) !== 0) throw new ConfigError(`prefix tuning's projection gives ${all} values a prefix token, not keys and values of ${td} per layer`);
      peftWidth(td, ENCODER_EMBEDDING);
      if (typeof numLayers === 'number' && numLayers * 2 * td !== all) throw new ConfigError(`adapter_config.json says num_layers ${numLayers}, but the projection serves ${all / (2 * td)} layers`);
      config = { numVirtualTokens: n, prefixProjection: true, encoderHiddenSize: h, ...given };
      agree(given, 'numVirtualTokens', n, source);
      agree(given, 'encoderHiddenSize', h, source);
    } else {
      expectKeys(layout, [ENCODER_EMBEDDING], 'prefix tuning');
      const { n, all } = shapes(layout, { [ENCODER_EMBEDDING]: ['n', 'all'] }) as { n: number; all: number };
      if (all % 2 !== 0) throw new ConfigError(`prefix tuning's table is ${all} wide, not keys and values of every layer`);
      if (typeof tokenDim === 'number' && typeof numLayers === 'number' && numLayers * 2 * tokenDim !== all) {
        throw new ConfigError(`adapter_config.json says num_layers ${numLayers} and token_dim ${tokenDim}, but the prefixes are ${all} wide (not ${numLayers * 2 * tokenDim})`);
      }
      // Without a projection the encoder width is unused; the spec still carries it (PEFT's default is token_dim).
      const width = given['encoderHiddenSize'] ?? (typeof tokenDim === 'number' ? tokenDim : typeof numLayers === 'number' && numLayers > 0 ? all / (2 * numLayers) : undefined);
      if (width === undefined) throw new ConfigError(`${source} leaves encoderHiddenSize open, and prefix tuning's tensors do not say it: give it (the model's key width, kv heads x head dim)`);
      config = { numVirtualTokens: n, ...given, prefixProjection: false, encoderHiddenSize: width };
      agree(given, 'numVirtualTokens', n, source);
    }
  }
  return { spec: { method, config: config as AdapterSpec['config'] }, architecture: knownArchitecture(arch, 'the architecture') };
}

/** Layer indices beyond this are refused: no model webtune trains has as many, and a typo'd or hostile index must not size what the server allocates. */
const MAX_LAYERS = 1024;

/** The architecture and layer of a layer's path (`model.layers.3` -> llama, 3), or undefined; an index past MAX_LAYERS is a ConfigError. */
function parseLayerPath(path: string): { architecture: Architecture; layer: number } | undefined {
  for (const arch of ARCHITECTURES) {
    const [head, tail] = arch.layerPrefix(0x7fffffff).split(String(0x7fffffff)) as [string, string];
    const match = path.startsWith(head) ? /^(\d+)(.*)$/.exec(path.slice(head.length)) : null;
    if (match && match[2] === tail && arch.layerPrefix(Number(match[1])) === path) {
      const layer = Number(match[1]);
      if (layer >= MAX_LAYERS) throw new ConfigError(`initial adapter tensor path "${path}" names layer ${layer}; layers go up to ${MAX_LAYERS - 1}`);
      return { architecture: arch.name, layer };
    }
  }
  return undefined;
}

/** Bottleneck adapters: architecture, layers, variant and width from the keys and shapes; the non-linearity from the description (else the variant's default). */
function bottleneckAdapter(layout: AdapterLayout, described: Described | undefined): { spec: AdapterSpec; architecture: Architecture } {
  const sites = new Map<number, Set<string>>();
  const architectures = new Set<Architecture>();
  const want: Record<string, Array<number | string>> = {};
  for (const key of layout.keys) {
    const m = BOTTLENECK_KEY.exec(key)!;
    const parsed = parseLayerPath(m[1]!);
    if (!parsed) throw new ConfigError(`initial adapter tensor "${key}" is under no layer of a known architecture`);
    architectures.add(parsed.architecture);
    const site = sites.get(parsed.layer) ?? new Set<string>();
    site.add(m[2]!);
    sites.set(parsed.layer, site);
    const prefix = `${m[1]}.${m[2]}_adapter`;
    for (const [k, shape] of [[`${prefix}.adapter_down.0.weight`, ['r', 'd']], [`${prefix}.adapter_down.0.bias`, ['r']], [`${prefix}.adapter_up.weight`, ['d', 'r']], [`${prefix}.adapter_up.bias`, ['d']]] as const) {
      if (!layout.shapes.has(k)) throw new ConfigError(`the initial adapter has "${key}" but not "${k}": a bottleneck adapter has down and up weights and biases`);
      want[k] = [...shape];
    }
  }
  if (architectures.size !== 1) throw new ConfigError(`the initial adapter's layers belong to several architectures (${[...architectures].join(', ')})`);
  const { r } = shapes(layout, want) as { r: number };
  const houlsby = [...sites.values()].some((s) => s.has('attention'));
  for (const [layer, s] of sites) {
    if (!s.has('output') || (houlsby && !s.has('attention'))) throw new ConfigError(`layer ${layer} of the bottleneck adapter has ${[...s].join(' and ')} adapters only; Houlsby adapters sit after attention and the MLP, Pfeiffer adapters after the MLP`);
  }
  const variant = houlsby ? 'houlsby' : 'pfeiffer';
  const given = described?.config ?? {};
  const source = described?.source ?? '';
  agree(given, 'variant', variant, source);
  agree(given, 'bottleneckSize', r, source);
  const present = [...sites.keys()].sort((a, b) => a - b);
  const config: Record<string, unknown> = { variant, bottleneckSize: r, nonLinearity: variant === 'houlsby' ? 'swish' : 'relu', ...given };
  if (config['layers'] !== undefined) {
    if (JSON.stringify(config['layers']) !== JSON.stringify(present)) throw new ConfigError(`${source} says layers ${JSON.stringify(config['layers'])}, but the initial adapter has bottleneck adapters in layers ${JSON.stringify(present)}`);
  } else if (present[0] !== 0 || present.some((l, i) => l !== i)) {
    config['layers'] = present;
  }
  return { spec: { method: 'bottleneck', config: config as AdapterSpec['config'] }, architecture: [...architectures][0]! };
}

/** UniPELT's per-module LoRA keys and per-layer keys (prefix gate, gated adapter after the MLP). */
const UNIPELT_LORA_KEY = /^(.+)\.(lora_A\.weight|lora_B\.weight|lora_gate\.weight|lora_gate\.bias)$/;
const UNIPELT_LAYER_KEY = /^(.+)\.(prefix_gate\.(?:weight|bias)|output_adapter\.(?:adapter_down\.0|adapter_up|gate)\.(?:weight|bias))$/;
const UNIPELT_FIELDS = ['rank', 'alpha', 'targets', 'numVirtualTokens', 'bottleneckSize', 'nonLinearity'];

/** The MLP's output linear, where UniPELT's adapter sits (LoRA cannot target it too). */
const adapterSiteOf = (arch: ArchitectureDescriptor): string => (arch.mlp.kind === 'swiglu' ? arch.mlp.down : arch.mlp.proj);

/**
 * [in, out] of a linear UniPELT's LoRA may target, from the hidden size `d` and the key/value width
 * `kv` (UniPELT's prefixes need heads x head dim = hidden); a string names a width the keys alone
 * fix (the MLP's inner width). Every such linear reads the hidden state.
 */
function unipeltLinear(arch: ArchitectureDescriptor, name: string, d: number, kv: number): [number | string, number | string] {
  const a = arch.attention;
  if (a.kind === 'separate') {
    if (name === a.q || name === a.o) return [d, d];
    if (name === a.k || name === a.v) return [d, kv];
  } else {
    if (name === a.qkv) return [d, d + 2 * kv];
    if (name === a.o) return [d, d];
  }
  return [d, 'inner'];
}

/** The shortest target suffix that selects only `name` among the architecture's linears (`q_proj`; GPT-2's `attn.c_proj`, as `c_proj` is also the MLP's). */
function targetOf(arch: ArchitectureDescriptor, name: string): string {
  const parts = name.split('.');
  for (let i = parts.length - 1; i >= 0; i--) {
    const suffix = parts.slice(i).join('.');
    if (arch.linears.filter((l) => matchesTarget(l, suffix)).length === 1) return suffix;
  }
  return name;
}

/**
 * UniPELT: the architecture from the module and layer paths, rank from lora_A, targets from the
 * modules, bottleneck size from the adapters, prefix tokens from the table's rows; alpha and the
 * non-linearity from the description, else UniPELT's defaults (2 x rank, relu). Without a model,
 * every shape is checked against the others: the hidden size (gates, adapters), the key/value width
 * (the prefix table over every layer, the LoRA targets' outputs) and the rank.
 */
function unipeltAdapter(layout: AdapterLayout, described: Described | undefined): { spec: AdapterSpec; architecture: Architecture } {
  if (!layout.shapes.has(UNIPELT_PREFIX)) {
    throw new ConfigError(`the initial adapter has UniPELT's keys (${layout.keys.slice(0, 3).join(', ')}${layout.keys.length > 3 ? ', ...' : ''}) but not its prefix table "${UNIPELT_PREFIX}"; a LoRA adapter's keys start base_model.model.`);
  }
  const architectures = new Set<Architecture>();
  const loraModules = new Map<string, { layer: number; name: string }>();
  const layerPaths = new Map<number, string>();
  for (const key of layout.keys) {
    if (key === UNIPELT_PREFIX) continue;
    const lora = UNIPELT_LORA_KEY.exec(key);
    if (lora) {
      const parsed = parseModulePath(lora[1]!);
      if (!parsed) throw new ConfigError(`initial adapter tensor "${key}" names no linear module of a known architecture`);
      architectures.add(parsed.architecture);
      loraModules.set(lora[1]!, parsed);
      continue;
    }
    const site = UNIPELT_LAYER_KEY.exec(key);
    const parsed = site ? parseLayerPath(site[1]!) : undefined;
    if (!parsed) throw new ConfigError(`initial adapter tensor "${key}" is under no layer of a known architecture`);
    architectures.add(parsed.architecture);
    layerPaths.set(parsed.layer, site![1]!);
  }
  if (architectures.size > 1) throw new ConfigError(`the initial adapter's modules belong to several architectures (${[...architectures].join(', ')})`);
  if (layerPaths.size === 0) throw new ConfigError(`the initial UniPELT adapter has no prefix gates and no adapters: UniPELT has both in every layer (<layer>.prefix_gate.*, <layer>.output_adapter.*)`);
  const architecture = [...architectures][0]!;
  const arch = ARCHITECTURES.find((a) => a.name === architecture)!;
  const numLayers = Math.max(...layerPaths.keys()) + 1;
  const missingLayers = Array.from({ length: numLayers }, (_, l) => l).filter((l) => !layerPaths.has(l));
  if (missingLayers.length > 0) {
    const listed = missingLayers.slice(0, 5).join(', ') + (missingLayers.length > 5 ? `, ... (${missingLayers.length} in all)` : '');
    throw new ConfigError(`the initial UniPELT adapter has no prefix gate or adapter in layer${missingLayers.length > 1 ? 's' : ''} ${listed}; UniPELT adapts every layer`);
  }

  // The prefix table, then every layer's prefix gate and gated adapter: [2, d] gates, [rb, d] down, [d, rb] up.
  const perLayer: Record<string, Array<number | string>> = { [UNIPELT_PREFIX]: ['n', 'width'] };
  for (let layer = 0; layer < numLayers; layer++) {
    const p = layerPaths.get(layer)!;
    const want: Array<[string, Array<number | string>]> = [
      [`${p}.prefix_gate.weight`, [2, 'd']], [`${p}.prefix_gate.bias`, [2]],
      [`${p}.output_adapter.adapter_down.0.weight`, ['rb', 'd']], [`${p}.output_adapter.adapter_down.0.bias`, ['rb']],
      [`${p}.output_adapter.adapter_up.weight`, ['d', 'rb']], [`${p}.output_adapter.adapter_up.bias`, ['d']],
      [`${p}.output_adapter.gate.weight`, [1, 'd']], [`${p}.output_adapter.gate.bias`, [1]],
    ];
    const missing = want.filter(([k]) => !layout.shapes.has(k)).map(([k]) => k);
    if (missing.length > 0) throw new ConfigError(`the initial UniPELT adapter lacks ${missing.join(', ')}: every layer has a prefix gate and a gated adapter (weights and biases)`);
    for (const [k, shape] of want) perLayer[k] = shape;
  }
  const { n, width, d, rb } = shapes(layout, perLayer) as { n: number; width: number; d: number; rb: number };
  const kv = width / (2 * numLayers);
  if (!Number.isInteger(kv) || d % kv !== 0) {
    throw new ConfigError(`UniPELT's prefix table "${UNIPELT_PREFIX}" is ${width} wide, not keys and values of ${numLayers} layers of a model ${d} wide (2 x ${numLayers} x a key/value width that divides ${d})`);
  }

  // LoRA: A [r, in], B [out, r], the gate [1, in] and its bias, on the same linears of every layer.
  if (loraModules.size === 0) throw new ConfigError('the initial UniPELT adapter has no LoRA tensors (<module>.lora_A.weight, .lora_B.weight, .lora_gate.weight|bias); UniPELT\'s LoRA has at least one target');
  const site = adapterSiteOf(arch);
  const names = [...new Set([...loraModules.values()].map((m) => m.name))];
  if (names.includes(site)) throw new ConfigError(`the initial UniPELT adapter has LoRA on ${site}, where UniPELT's adapter sits; LoRA cannot target it too`);
  const perModule: Record<string, Array<number | string>> = {};
  for (const name of arch.linears.filter((l) => names.includes(l))) {
    const [inFeatures, outFeatures] = unipeltLinear(arch, name, d, kv);
    for (let layer = 0; layer < numLayers; layer++) {
      const m = `${arch.layerPrefix(layer)}.${name}`;
      const want: Array<[string, Array<number | string>]> = [[`${m}.lora_A.weight`, ['r', inFeatures]], [`${m}.lora_B.weight`, [outFeatures, 'r']], [`${m}.lora_gate.weight`, [1, inFeatures]], [`${m}.lora_gate.bias`, [1]]];
      const missing = want.filter(([k]) => !layout.shapes.has(k)).map(([k]) => k);
      if (missing.length > 0) throw new ConfigError(`the initial UniPELT adapter lacks ${missing.join(', ')}: its LoRA targets ${name} in every layer, each with A, B and a gate (weight and bias)`);
      for (const [k, shape] of want) perModule[k] = shape;
    }
  }
  const { r } = shapes(layout, perModule) as { r: number };
  const stray = layout.keys.filter((k) => k !== UNIPELT_PREFIX && !(k in perLayer) && !(k in perModule));
  if (stray.length > 0) throw new ConfigError(`the initial UniPELT adapter has ${stray.join(', ')}, outside its ${numLayers} layers' prefix gates, adapters and LoRA targets (${names.join(', ')})`);

  const given = described?.config ?? {};
  const source = described?.source ?? '';
  const unknown = Object.keys(given).filter((k) => given[k] !== undefined && !UNIPELT_FIELDS.includes(k));
  if (unknown.length > 0) throw new ConfigError(`${source} gives ${unknown.map((k) => `"${k}"`).join(', ')}, which UniPELT has not (it adapts every layer); its settings are ${UNIPELT_FIELDS.join(', ')}`);
  agree(given, 'rank', r, source);
  agree(given, 'numVirtualTokens', n, source);
  agree(given, 'bottleneckSize', rb, source);
  let targets = arch.linears.filter((l) => names.includes(l)).map((l) => targetOf(arch, l));
  if (given['targets'] !== undefined) {
    if (!Array.isArray(given['targets']) || !given['targets'].every((t) => typeof t === 'string')) throw new ConfigError(`${source} says targets ${JSON.stringify(given['targets'])}; expected a list of module names`);
    targets = given['targets'] as string[];
    // The targets must select, in every layer, exactly the linears the tensors adapt (PEFT's suffix rule, as clients apply it).
    const adapted = JSON.stringify(arch.linears.filter((l) => names.includes(l)));
    for (let layer = 0; layer < numLayers; layer++) {
      const selected = arch.linears.filter((l) => targets.some((t) => matchesTarget(`${arch.layerPrefix(layer)}.${l}`, t)));
      if (JSON.stringify(selected) !== adapted) {
        throw new ConfigError(`${source} says targets ${JSON.stringify(targets)}, which select ${selected.join(', ') || 'no linear'} in layer ${layer}; the initial adapter's LoRA tensors are on ${names.join(', ')} in every layer`);
      }
    }
  }
  // In resolveUniPeltConfig's order; alpha and the non-linearity as given, else its defaults.
  const config = { rank: r, alpha: given['alpha'] ?? 2 * r, targets, numVirtualTokens: n, bottleneckSize: rb, nonLinearity: given['nonLinearity'] ?? 'relu' };
  return { spec: { method: 'unipelt', config: config as unknown as AdapterSpec['config'] }, architecture };
}

/** LoRA, DoRA, IA3 and BitFit: everything from the module paths and shapes, adjusted by the description. */
function moduleAdapter(layout: AdapterLayout, method: AdapterMethod, described: Described | undefined, adapterConfigJson: string | undefined): { spec: AdapterSpec; architecture: Architecture } {
  const modules = layout.keys.map((k) => {
    const module = adapterMethod(method).keyPattern.exec(k)![1]!;
    const parsed = parseModulePath(module);
    if (!parsed) throw new ConfigError(`initial adapter tensor "${k}" names no linear module of a known architecture`);
    return { key: k, ...parsed };
  });
  const architectures = new Set(modules.map((m) => m.architecture));
  if (architectures.size !== 1) throw new ConfigError(`the initial adapter's modules belong to several architectures (${[...architectures].join(', ')})`);
  const architecture = [...architectures][0]!;
  const raw = described?.peft ?? {};
  const layers = layersOf(raw);
  const names = [...new Set(modules.map((m) => m.name))].sort();
  let config: Record<string, unknown>;
  if (method === 'lora' || method === 'dora') {
    config = { ...inferLora(layout, described?.peft ? adapterConfigJson : undefined) };
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
    config['layers'] = layers;
  } else if (described?.config['layers'] === undefined) {
    // Without a description of the layers: an adapter that skips layers (the top ones only, or a
    // gap) is layer-selective. One over layers 0..k cannot be told from a full one; its config must say.
    const present = [...new Set(modules.map((m) => m.layer))].sort((a, b) => a - b);
    if (present[0] !== 0 || present.some((l, i) => l !== i)) config['layers'] = present;
  }
  if (described && !described.peft) {
    // A spec JSON names the settings in webtune's terms: they win, the rank must match the tensors.
    if (method === 'lora' || method === 'dora') agree(described.config, 'rank', config['rank'], described.source);
    config = { ...config, ...described.config };
  }
  return { spec: { method, config: config as AdapterSpec['config'] }, architecture };
}

/**
 * The adapter clients train, from the operator's initial adapter (trusted, server-side): its
 * method from the key forms (one method per adapter) or, for prompt-learning keys, from its
 * description; its config from the tensors and the description (`adapterConfigJson`:
 * adapter_config.json as exportAdapter() writes it, or a webtune spec JSON `{ method, config,
 * architecture? }`); the architecture from the module paths, or for prompt-learning adapters from
 * `architecture` (or the spec JSON's). Clients take both from the round instead of guessing. Every
 * disagreement between the tensors, the description and the architecture is a ConfigError.
 */
export function inferAdapter(layout: AdapterLayout, adapterConfigJson?: string, architecture?: Architecture): { spec: AdapterSpec; architecture: Architecture } {
  const described = describe(adapterConfigJson);
  if (architecture !== undefined) knownArchitecture(architecture, 'the architecture');
  if (architecture !== undefined && described?.architecture !== undefined && architecture !== described.architecture) {
    throw new ConfigError(`the architecture is ${architecture}, but the adapter spec says ${described.architecture}`);
  }
  let result: { spec: AdapterSpec; architecture: Architecture };
  if (layout.keys.some((k) => PROMPT_KEY.test(k))) {
    result = promptAdapter(layout, described, architecture);
  } else {
    const method = methodOfKeys(layout.keys);
    if (!method) throw new ConfigError('the initial adapter mixes key forms of several methods (or none): one method per adapter (LoRA lora_A/lora_B, DoRA with lora_magnitude_vector, IA3 ia3_l, BitFit bitfit_bias, bottleneck adapter_down/adapter_up, UniPELT prefix.embedding.weight with gated LoRA, prefix gates and gated adapters)');
    if (described && described.method !== method) {
      throw new ConfigError(`${described.source} describes ${adapterMethod(described.method).title}, but the initial adapter's tensors are ${adapterMethod(method).title}'s`);
    }
    result = method === 'bottleneck' ? bottleneckAdapter(layout, described) : method === 'unipelt' ? unipeltAdapter(layout, described) : moduleAdapter(layout, method, described, adapterConfigJson);
    const claimed = architecture ?? described?.architecture;
    if (claimed !== undefined && claimed !== result.architecture) throw new ConfigError(`the architecture is given as ${claimed}, but the initial adapter's modules are ${result.architecture}'s`);
  }
  const problem = adapterSpecProblem(result.spec);
  if (problem) throw new ConfigError(`the initial adapter and its description give ${problem}`);
  return result;
}
