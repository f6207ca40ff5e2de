/**
 * The settings panel's adaptation method: LoRA (default), DoRA, IA3 or BitFit, a one-line explanation
 * with the planner's count of trainable parameters, and "Train only the top N layers" (PEFT's
 * layers_to_transform: the backward pass stops at the lowest trained layer). The controls are
 * built here and put at the top of the settings panel; main.ts asks for the AdapterRequest.
 */
import type { AdapterRequest } from 'webtune';

/** The methods the page offers (the SDK may know more). */
export type Method = Extract<AdapterRequest['method'], 'lora' | 'dora' | 'ia3' | 'bitfit'>;

const TITLES: Record<Method, string> = { lora: 'LoRA', dora: 'DoRA', ia3: 'IA3', bitfit: 'BitFit' };

const WHAT: Record<Method, string> = {
  lora: 'LoRA trains two low-rank matrices (rank r, scaled by alpha / r) beside each chosen projection; the base weights stay frozen.',
  dora: 'DoRA is LoRA plus a learned magnitude per output row of each chosen projection (weight-decomposed, PEFT\'s use_dora); same rank and alpha, a few more parameters.',
  ia3: 'IA3 trains one scaling vector per attention key, value and feed-forward input (PEFT\'s default modules): the fewest parameters, every weight frozen.',
  bitfit: 'BitFit trains only the bias vectors of the linear layers (zero where the model has none, kept by the merged model); every weight stays frozen.',
};

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

/** Builds the Method select, the top-N-layers field and the hint at the top of the settings panel; `onChange` re-plans. */
export function mountMethodControls(onChange: () => void): void {
  const row = document.createElement('div');
  row.className = 'row';
  row.id = 'method-row';
  row.innerHTML = `<label>Method <select id="method">
      ${(Object.keys(TITLES) as Method[]).map((m) => `<option value="${m}">${TITLES[m]}</option>`).join('')}
    </select></label>
    <label>Train only the top N layers <input id="top-layers" type="number" min="1" step="1" placeholder="all" /></label>`;
  const hint = document.createElement('p');
  hint.className = 'hint';
  hint.id = 'method-hint';
  const grid = document.querySelector('#settings-panel .grid')!;
  grid.before(row, hint);
  $('method').addEventListener('change', () => {
    showLoraFields();
    onChange();
  });
  $('top-layers').addEventListener('change', onChange);
  showLoraFields();
}

export function method(): Method {
  const value = $<HTMLSelectElement>('method').value;
  return value === 'dora' || value === 'ia3' || value === 'bitfit' ? value : 'lora';
}

/** Rank, alpha and the target modules are LoRA's (and DoRA's) settings; IA3 and BitFit take PEFT's defaults for the model. */
function showLoraFields() {
  // DoRA takes LoRA's settings.
  const lora = method() === 'lora' || method() === 'dora';
  for (const id of ['rank', 'alpha']) $(id).closest('label')!.hidden = !lora;
  $('targets').hidden = !lora;
  showMethodHint(undefined);
}

/**
 * The layer indices of "top N layers" of a model with `numLayers` layers, or undefined for all
 * (empty field, or N that covers every layer). Throws a readable Error for anything else.
 */
export function layersToTrain(numLayers: number | undefined): number[] | undefined {
  const raw = $<HTMLInputElement>('top-layers').value.trim();
  if (raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error('“Train only the top N layers” takes a whole number of layers of 1 or more (or leave it empty for all).');
  if (numLayers === undefined) return undefined;
  if (n > numLayers) throw new Error(`The model has ${numLayers} layers: train the top 1 to ${numLayers} (or leave it empty for all).`);
  if (n === numLayers) return undefined;
  return Array.from({ length: n }, (_, i) => numLayers - n + i);
}

/** What train() and planTraining() take, from the method controls and (for LoRA) rank, alpha and targets. */
export function adapterRequest(numLayers: number | undefined, lora: { rank: number; alpha: number; targets: string[] }): AdapterRequest {
  const layers = layersToTrain(numLayers);
  const where = layers ? { layers } : {};
  const m = method();
  return m === 'lora' || m === 'dora' ? { method: m, config: { ...lora, ...where } }
    : m === 'ia3' ? { method: 'ia3', config: where }
      : { method: 'bitfit', config: where };
}

/**
 * The method's line under the select; with a plan, its trainable parameters (AdamW keeps two f32
 * moments per trainable parameter, so the planner's optimizer bytes / 8) and the layers they are in.
 */
export function showMethodHint(plan: { optimizerBytes: number; layers: number[] | undefined; numLayers: number } | undefined): void {
  const hint = $('method-hint');
  let text = WHAT[method()];
  if (plan) {
    const params = Math.round(plan.optimizerBytes / 8);
    hint.dataset.params = String(params);
    const n = plan.layers?.length;
    const where = n
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

/** For the saved settings: the method and the top-N field. */
export function methodSettings(): { method: Method; topLayers: string } {
  return { method: method(), topLayers: $<HTMLInputElement>('top-layers').value };
}

export function restoreMethodSettings(s: Record<string, unknown>): void {
  if (s.method === 'lora' || s.method === 'dora' || s.method === 'ia3' || s.method === 'bitfit') $<HTMLSelectElement>('method').value = s.method;
  if (typeof s.topLayers === 'string') $<HTMLInputElement>('top-layers').value = s.topLayers;
  showLoraFields();
}
