/**
 * The settings panel's adaptation method: LoRA (default), DoRA, IA3, BitFit, prompt tuning,
 * P-tuning, prefix tuning, bottleneck adapters or UniPELT, a one-line explanation with the planner's count
 * of trainable parameters, the method's own few settings, and "Train only the top N layers" (PEFT's
 * layers_to_transform: the backward pass stops at the lowest trained layer) for the methods that
 * live in layers. The controls are built here and put at the top of the settings panel; main.ts
 * asks for the AdapterRequest, and for why an adapter cannot be merged (its ONNX export).
 */
import { adapterMethodInfo, type AdapterRequest } from 'webtune';

/** The methods the page offers (the SDK may know more). */
export type Method = Extract<AdapterRequest['method'], 'lora' | 'dora' | 'ia3' | 'bitfit' | 'prompt-tuning' | 'p-tuning' | 'prefix-tuning' | 'bottleneck' | 'unipelt'>;

const TITLES: Record<Method, string> = {
  lora: 'LoRA', dora: 'DoRA', ia3: 'IA3', bitfit: 'BitFit',
  'prompt-tuning': 'Prompt tuning', 'p-tuning': 'P-tuning', 'prefix-tuning': 'Prefix tuning', bottleneck: 'Bottleneck', unipelt: 'UniPELT',
};

/** The select's words where the title alone says less (the memory table says "<title> adapter"). */
const OPTION_LABELS: Partial<Record<Method, string>> = { bottleneck: 'Bottleneck adapters' };

const WHAT: Record<Method, string> = {
  lora: 'LoRA trains two low-rank matrices (rank r, scaled by alpha / r) beside each chosen projection; the base weights stay frozen.',
  dora: 'DoRA is LoRA plus a learned magnitude per output row of each chosen projection (weight-decomposed, PEFT\'s use_dora); same rank and alpha, a few more parameters.',
  ia3: 'IA3 trains one scaling vector per attention key, value and feed-forward input (PEFT\'s default modules): the fewest parameters, every weight frozen.',
  bitfit: 'BitFit trains only the bias vectors of the linear layers (zero where the model has none, kept by the merged model); every weight stays frozen.',
  'prompt-tuning': 'Prompt tuning trains a few "virtual token" embeddings in front of every sequence (PEFT\'s PROMPT_TUNING), started from the embeddings of the init text (empty: random); the model is untouched. It likes a higher learning rate (about 3e-2).',
  'p-tuning': 'P-tuning makes its virtual tokens with a small trained MLP encoder (PEFT\'s P_TUNING); the adapter file keeps only the encoder\'s output, which loads back as prompt tuning. It likes a higher learning rate (about 3e-2).',
  'prefix-tuning': 'Prefix tuning trains key and value rows that every layer\'s attention sees in front of the text (PEFT\'s PREFIX_TUNING), here optionally through an MLP projection, which trains more stably; the file keeps only the prefixes.',
  bottleneck: 'Bottleneck adapters add a small residual MLP (down, nonlinearity, up) after each attention and feed-forward block (Houlsby) or after the feed-forward block only (Pfeiffer); the base is frozen, the files are webtune\'s own.',
  unipelt: 'UniPELT combines LoRA (alpha = 2 x rank, on LoRA\'s default projections), prefix rows in every layer\'s attention and a bottleneck adapter (relu) after each feed-forward block, each behind a learned per-token gate; the files are webtune\'s own.',
};

/**
 * The methods whose files are webtune's own ("webtune_method"), read back by “Import adapter”; PEFT
 * loads the others. (Which methods merge, and why not, the SDK says: adapterMethodInfo.)
 */
const OWN_FILES: ReadonlySet<string> = new Set(['bitfit', 'bottleneck', 'unipelt']);

/**
 * Methods whose adapters sit in layers, so "Train only the top N layers" applies (prompt methods
 * sit before or beside every layer; UniPELT's prefix spans every layer, so it trains them all).
 */
const LAYERED: ReadonlySet<Method> = new Set<Method>(['lora', 'dora', 'ia3', 'bitfit', 'bottleneck']);

/** Each method's own settings: the ids of the labels (below) that it shows. */
const FIELDS: Record<Method, string[]> = {
  lora: [], dora: [], ia3: [], bitfit: [],
  'prompt-tuning': ['virtual-tokens', 'init-text'],
  'p-tuning': ['virtual-tokens', 'encoder-width'],
  'prefix-tuning': ['virtual-tokens', 'prefix-projection', 'encoder-width'],
  bottleneck: ['bottleneck-variant', 'bottleneck-size'],
  unipelt: ['unipelt-rank', 'unipelt-prefix', 'unipelt-adapter'],
};

/** The demo's defaults, sized for the bundled model (hidden 256, 4 layers, 4 key/value heads of 32). */
const DEFAULTS = {
  virtualTokens: '16',
  // PEFT's TEXT init reads best as a description of the task; the sample text is Moby-Dick.
  initText: 'A sailor tells of the whale, the ship and the sea:',
  encoderWidth: '128',
  bottleneckSize: '16',
  // UniPELT's three parts, smaller than the SDK's defaults (rank 8, 10 prefix rows, hidden / 16 = 16 wide here).
  unipeltRank: '4',
  unipeltPrefix: '8',
  unipeltAdapter: '16',
};

const METHODS = Object.keys(TITLES) as Method[];

/** The method fields' inputs and selects (the saved settings keep them; a change re-plans). */
const FIELD_IDS = ['virtual-tokens', 'init-text', 'encoder-width', 'bottleneck-size', 'bottleneck-variant', 'unipelt-rank', 'unipelt-prefix', 'unipelt-adapter'] as const;

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

/** Builds the Method select, the method's own fields, the top-N-layers field and the hint at the top of the settings panel; `onChange` re-plans. */
export function mountMethodControls(onChange: () => void): void {
  const row = document.createElement('div');
  row.className = 'row';
  row.id = 'method-row';
  row.innerHTML = `<label>Method <select id="method">
      ${METHODS.map((m) => `<option value="${m}">${OPTION_LABELS[m] ?? TITLES[m]}</option>`).join('')}
    </select></label>
    <label>Train only the top N layers <input id="top-layers" type="number" min="1" step="1" placeholder="all" /></label>`;
  const fields = document.createElement('div');
  fields.className = 'row';
  fields.id = 'method-fields';
  fields.innerHTML = `<label id="virtual-tokens-field">Virtual tokens <input id="virtual-tokens" type="number" min="1" step="1" value="${DEFAULTS.virtualTokens}" /></label>
    <label id="init-text-field" class="grow">Init text (empty: random) <input id="init-text" type="text" value="${DEFAULTS.initText}" /></label>
    <label id="prefix-projection-field" class="check"><input id="prefix-projection" type="checkbox" checked /> Through an MLP projection</label>
    <label id="encoder-width-field">Encoder width <input id="encoder-width" type="number" min="1" step="1" value="${DEFAULTS.encoderWidth}" /></label>
    <label id="bottleneck-variant-field">Placement <select id="bottleneck-variant">
        <option value="houlsby">Houlsby (attention + feed-forward)</option>
        <option value="pfeiffer">Pfeiffer (feed-forward only)</option>
      </select></label>
    <label id="bottleneck-size-field">Bottleneck width <input id="bottleneck-size" type="number" min="1" step="1" value="${DEFAULTS.bottleneckSize}" /></label>
    <label id="unipelt-rank-field">LoRA rank <input id="unipelt-rank" type="number" min="1" max="256" step="1" value="${DEFAULTS.unipeltRank}" /></label>
    <label id="unipelt-prefix-field">Prefix rows <input id="unipelt-prefix" type="number" min="1" step="1" value="${DEFAULTS.unipeltPrefix}" /></label>
    <label id="unipelt-adapter-field">Adapter width <input id="unipelt-adapter" type="number" min="1" step="1" value="${DEFAULTS.unipeltAdapter}" /></label>`;
  const hint = document.createElement('p');
  hint.className = 'hint';
  hint.id = 'method-hint';
  const grid = document.querySelector('#settings-panel .grid')!;
  grid.before(row, fields, hint);
  $('method').addEventListener('change', () => {
    showMethodFields();
    onChange();
  });
  for (const id of ['top-layers', 'prefix-projection', ...FIELD_IDS]) {
    $(id).addEventListener('change', () => {
      if (id === 'prefix-projection') showMethodFields();
      onChange();
    });
  }
  showMethodFields();
}

export function method(): Method {
  const value = $<HTMLSelectElement>('method').value;
  return isMethod(value) ? value : 'lora';
}

function isMethod(value: unknown): value is Method {
  return typeof value === 'string' && (METHODS as string[]).includes(value);
}

/**
 * Rank, alpha and the target modules are LoRA's (and DoRA's) settings; IA3 and BitFit take PEFT's
 * defaults for the model; the prompt methods, bottleneck adapters and UniPELT show their own few
 * fields (UniPELT's LoRA takes its own rank, alpha = 2 x rank, and LoRA's default targets).
 */
function showMethodFields() {
  const m = method();
  // DoRA takes LoRA's settings.
  const lora = m === 'lora' || m === 'dora';
  for (const id of ['rank', 'alpha']) $(id).closest('label')!.hidden = !lora;
  $('targets').hidden = !lora;
  $('top-layers').closest('label')!.hidden = !LAYERED.has(m);
  const shown = new Set(FIELDS[m]);
  // The encoder's width is prefix tuning's only with the projection.
  if (m === 'prefix-tuning' && !$<HTMLInputElement>('prefix-projection').checked) shown.delete('encoder-width');
  for (const label of $('method-fields').querySelectorAll<HTMLElement>('label')) label.hidden = !shown.has(label.id.replace(/-field$/, ''));
  $('method-fields').hidden = shown.size === 0;
  showMethodHint(undefined);
}

/**
 * The layer indices of "top N layers" of a model with `numLayers` layers, or undefined for all
 * (empty field, N that covers every layer, or a method that does not live in layers). Throws a
 * readable Error for anything else.
 */
export function layersToTrain(numLayers: number | undefined): number[] | undefined {
  if (!LAYERED.has(method())) return undefined;
  const raw = $<HTMLInputElement>('top-layers').value.trim();
  if (raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error('“Train only the top N layers” takes a whole number of layers of 1 or more (or leave it empty for all).');
  if (numLayers === undefined) return undefined;
  if (n > numLayers) throw new Error(`The model has ${numLayers} layers: train the top 1 to ${numLayers} (or leave it empty for all).`);
  if (n === numLayers) return undefined;
  return Array.from({ length: n }, (_, i) => numLayers - n + i);
}

/** A whole number of 1 or more from the field `id`; a readable Error naming the field otherwise. */
function count(id: string, title: string): number {
  const raw = $<HTMLInputElement>(id).value.trim();
  const n = Number(raw);
  if (raw === '' || !Number.isInteger(n) || n < 1) throw new Error(`“${title}” takes a whole number of 1 or more.`);
  return n;
}

/** What train() and planTraining() take, from the method controls and (for LoRA) rank, alpha and targets. */
export function adapterRequest(numLayers: number | undefined, lora: { rank: number; alpha: number; targets: string[] }): AdapterRequest {
  const layers = layersToTrain(numLayers);
  const where = layers ? { layers } : {};
  const m = method();
  switch (m) {
    case 'lora':
    case 'dora':
      return { method: m, config: { ...lora, ...where } };
    case 'ia3':
      return { method: 'ia3', config: where };
    case 'bitfit':
      return { method: 'bitfit', config: where };
    case 'prompt-tuning': {
      const initText = $<HTMLInputElement>('init-text').value.trim();
      const numVirtualTokens = count('virtual-tokens', 'Virtual tokens');
      return { method: 'prompt-tuning', config: initText ? { numVirtualTokens, init: 'text', initText } : { numVirtualTokens, init: 'random' } };
    }
    case 'p-tuning':
      return { method: 'p-tuning', config: { numVirtualTokens: count('virtual-tokens', 'Virtual tokens'), encoderHiddenSize: count('encoder-width', 'Encoder width') } };
    case 'prefix-tuning': {
      const numVirtualTokens = count('virtual-tokens', 'Virtual tokens');
      return $<HTMLInputElement>('prefix-projection').checked
        ? { method: 'prefix-tuning', config: { numVirtualTokens, prefixProjection: true, encoderHiddenSize: count('encoder-width', 'Encoder width') } }
        : { method: 'prefix-tuning', config: { numVirtualTokens, prefixProjection: false } };
    }
    case 'bottleneck':
      return {
        method: 'bottleneck',
        config: { variant: $<HTMLSelectElement>('bottleneck-variant').value === 'pfeiffer' ? 'pfeiffer' : 'houlsby', bottleneckSize: count('bottleneck-size', 'Bottleneck width'), ...where },
      };
    case 'unipelt':
      return {
        method: 'unipelt',
        config: { rank: count('unipelt-rank', 'LoRA rank'), numVirtualTokens: count('unipelt-prefix', 'Prefix rows'), bottleneckSize: count('unipelt-adapter', 'Adapter width') },
      };
  }
}

/**
 * The method's line under the select; with a plan, its trainable parameters (AdamW keeps two f32
 * moments per trainable parameter, so the planner's optimizer bytes / 8) and the layers they are in.
 */
export function showMethodHint(plan: { optimizerBytes: number; layers: number[] | undefined; numLayers: number } | undefined): void {
  const hint = $('method-hint');
  const m = method();
  let text = WHAT[m];
  if (plan) {
    const params = Math.round(plan.optimizerBytes / 8);
    hint.dataset.params = String(params);
    const n = plan.layers?.length;
    const where = m === 'prompt-tuning' || m === 'p-tuning'
      ? `in front of the first layer (the backward pass runs through all ${plan.numLayers} layers to reach them)`
      : n
        ? `in the top ${n} of ${plan.numLayers} layers (${n === 1 ? `layer ${plan.layers![0]}` : `layers ${plan.layers![0]}–${plan.layers![n - 1]}`}; the backward pass stops there, which saves activation memory)`
        : `in all ${plan.numLayers} layers`;
    text += ` Here: ${params.toLocaleString('en')} trainable parameters ${where}.`;
  } else {
    delete hint.dataset.params;
  }
  hint.textContent = text;
}

export function methodTitle(): string {
  return TITLES[method()];
}

/**
 * Why the adapter of `adapterMethod` (the one the trainer holds: trained, restored or imported)
 * cannot be merged into the model, as a sentence that points at the adapter files; undefined for
 * the methods that merge.
 */
export function mergeRefusal(adapterMethod: string | undefined): string | undefined {
  if (adapterMethod === undefined) return undefined;
  let info: ReturnType<typeof adapterMethodInfo>;
  try {
    info = adapterMethodInfo(adapterMethod);
  } catch {
    // A method this SDK does not know (an adapter file from a newer webtune) refuses itself on use.
    return undefined;
  }
  if (info.mergeable) return undefined;
  return `This adapter has no merged form (so no ONNX export): ${info.reason ?? `${info.title} cannot be merged`}. Use “Export adapter” for its files (${OWN_FILES.has(adapterMethod) ? 'webtune’s own, which “Import adapter” reads back' : 'PEFT’s, which PeftModel.from_pretrained loads'}).`;
}

/**
 * The method of an adapter's adapter_config.json, as the page names methods: PEFT's peft_type (LoRA
 * with use_dora is DoRA), or webtune's own "webtune_method" (BitFit, bottleneck, UniPELT).
 */
export function methodOfAdapterConfig(config: string): string | undefined {
  try {
    const c = JSON.parse(config) as { peft_type?: unknown; webtune_method?: unknown; use_dora?: unknown };
    if (typeof c.webtune_method === 'string') return c.webtune_method;
    const peft: Record<string, string> = { LORA: c.use_dora === true ? 'dora' : 'lora', IA3: 'ia3', PROMPT_TUNING: 'prompt-tuning', P_TUNING: 'p-tuning', PREFIX_TUNING: 'prefix-tuning' };
    return typeof c.peft_type === 'string' ? peft[c.peft_type] : undefined;
  } catch {
    return undefined;
  }
}

/** For the saved settings: the method, the top-N field and the method's own fields. */
export function methodSettings(): Record<string, unknown> {
  const s: Record<string, unknown> = { method: method(), topLayers: $<HTMLInputElement>('top-layers').value };
  for (const id of FIELD_IDS) s[id] = $<HTMLInputElement | HTMLSelectElement>(id).value;
  s['prefix-projection'] = $<HTMLInputElement>('prefix-projection').checked;
  return s;
}

export function restoreMethodSettings(s: Record<string, unknown>): void {
  if (isMethod(s.method)) $<HTMLSelectElement>('method').value = s.method;
  if (typeof s.topLayers === 'string') $<HTMLInputElement>('top-layers').value = s.topLayers;
  for (const id of FIELD_IDS) if (typeof s[id] === 'string') $<HTMLInputElement | HTMLSelectElement>(id).value = s[id];
  if (typeof s['prefix-projection'] === 'boolean') $<HTMLInputElement>('prefix-projection').checked = s['prefix-projection'];
  showMethodFields();
}
