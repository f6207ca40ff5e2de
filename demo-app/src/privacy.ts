/**
 * The settings panel's "Privacy (DP-SGD)" fieldset and what goes with it: a preset or custom
 * epsilon (optionally a fixed noise multiplier), what the budget costs before training (the noise
 * multiplier sigma that noiseMultiplierFor picks for the run's steps, batch size and prepared rows,
 * delta and the sampling rate q, all computed here on the main thread), a live epsilon curve and
 * the clipped share while a private run trains, and the loss of the last run without DP beside the
 * run with DP on the loss chart. main.ts asks for the PrivacyRequest and hands over progress and
 * summaries; the controls are built here, as method.ts builds the method picker.
 */
import uPlot from 'uplot';
import { defaultDelta, estimatePrivacy, noiseMultiplierFor, PRIVACY_PRESETS, type PrivacyPreset, type PrivacyRequest, type ProgressEvent, type TrainSummary } from 'webtune';

/** What the panel needs from the page: the prepared data (undefined until there is some for the mode shown) and the run's length. */
export interface PrivacyContext {
  data: { rows: number; seqLen: number; kind: string; examples: number } | undefined;
  steps: number;
  batchSize: number;
}

type Choice = 'off' | PrivacyPreset | 'custom';

const CHOICES: Array<[Choice, string]> = [
  ['off', 'Off'],
  ['low', `Low privacy (ε ≈ ${PRIVACY_PRESETS.low})`],
  ['medium', `Medium (ε ≈ ${PRIVACY_PRESETS.medium})`],
  ['high', `High (ε ≈ ${PRIVACY_PRESETS.high})`],
  ['veryHigh', `Very high (ε ≈ ${PRIVACY_PRESETS.veryHigh})`],
  ['custom', 'Custom ε'],
];

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

let context: () => PrivacyContext = () => ({ data: undefined, steps: 1, batchSize: 1 });

/** Builds the fieldset above the memory estimate and the live area under the loss chart; `onChange` re-plans. */
export function mountPrivacyControls(onChange: () => void, getContext: () => PrivacyContext): void {
  context = getContext;
  const box = document.createElement('fieldset');
  box.id = 'privacy';
  box.innerHTML = `<legend>Privacy (DP-SGD)</legend>
    <div class="row">
      <label>Privacy <select id="privacy-preset">${CHOICES.map(([v, t]) => `<option value="${v}">${t}</option>`).join('')}</select></label>
      <label id="privacy-epsilon-field">Target ε <input id="privacy-epsilon" type="number" min="0" step="any" value="2" /></label>
      <label id="privacy-sigma-field">Noise σ (empty: chosen for ε) <input id="privacy-sigma" type="number" min="0" step="any" placeholder="auto" /></label>
    </div>
    <p id="privacy-estimate" class="hint"></p>
    <p id="privacy-what" class="hint"></p>`;
  $('memory').before(box);

  const live = document.createElement('div');
  live.id = 'privacy-live';
  live.hidden = true;
  live.innerHTML = `<h3>Privacy spent</h3>
    <svg id="privacy-curve" viewBox="0 0 320 120" role="img" aria-label="epsilon spent per step" data-points="0"></svg>
    <p id="privacy-spent" class="info"></p>
    <p id="privacy-status" class="info"></p>`;
  $('chart-legend').after(live);
  const legend = document.createElement('p');
  legend.id = 'loss-legend';
  legend.className = 'legend';
  legend.hidden = true;
  $('chart').after(legend);

  $('privacy-preset').addEventListener('change', () => {
    showPrivacyEstimate();
    onChange();
  });
  for (const id of ['privacy-epsilon', 'privacy-sigma']) {
    $(id).addEventListener('change', () => {
      showPrivacyEstimate();
      onChange();
    });
  }
  showPrivacyEstimate();
}

function choice(): Choice {
  const v = $<HTMLSelectElement>('privacy-preset').value;
  return CHOICES.some(([c]) => c === v) ? (v as Choice) : 'off';
}

export function privacyOn(): boolean {
  return choice() !== 'off';
}

/** The budget and the fixed noise multiplier (custom only), or a readable Error for a bad field. */
function settings(): { target: number; sigma: number | undefined } {
  const c = choice();
  if (c !== 'custom') return { target: PRIVACY_PRESETS[c as PrivacyPreset], sigma: undefined };
  const raw = $<HTMLInputElement>('privacy-epsilon').value.trim();
  const target = Number(raw);
  if (raw === '' || !(target > 0) || !Number.isFinite(target)) throw new Error('“Target ε” takes a number above 0 (e.g. 3; smaller is more private).');
  const rawSigma = $<HTMLInputElement>('privacy-sigma').value.trim();
  if (rawSigma === '') return { target, sigma: undefined };
  const sigma = Number(rawSigma);
  if (!(sigma > 0) || !Number.isFinite(sigma)) throw new Error('“Noise σ” takes a number above 0, or leave it empty to have it chosen for ε.');
  return { target, sigma };
}

interface Estimate {
  target: number;
  sigma: number;
  delta: number;
  q: number;
  /** epsilon after all the steps. */
  epsilon: number;
  /** Steps the budget allows (a fixed sigma can run out before the last step). */
  lastStep: number;
}

/** The estimate for the prepared data, undefined before there is data; throws a readable Error when the run cannot be private as set. */
function estimate(): Estimate | undefined {
  const { target, sigma: fixed } = settings();
  const { data, steps, batchSize } = context();
  if (!data) return undefined;
  if (data.kind === 'text' && data.examples > 1) {
    throw new Error(`DP-SGD protects one training row, but this text packs ${data.examples} documents into windows (a document can span rows, a row can mix documents): ` +
      'use a single text, or Assistant mode with one example per line.');
  }
  if (batchSize > data.rows) throw new Error(`DP-SGD samples each row with probability batch size / rows = ${batchSize} / ${data.rows} > 1: lower the batch size or add data.`);
  const delta = defaultDelta(data.rows);
  const q = batchSize / data.rows;
  let sigma: number;
  try {
    sigma = fixed ?? noiseMultiplierFor({ targetEpsilon: target, delta, sampleRate: q, steps });
  } catch {
    throw new Error(`ε = ${target} is out of reach for ${steps} steps at q = ${fmt(q)} (δ = ${delta.toExponential(1)}): the RDP accountant cannot state a smaller ε ` +
      'with any amount of noise. Choose a larger ε, fewer steps, or more data.');
  }
  const at = (k: number) => estimatePrivacy({ dataSize: data.rows, batchSize, steps: k, noiseMultiplier: sigma, delta }).epsilon;
  const epsilon = at(steps);
  let lastStep = steps;
  if (epsilon > target) {
    // The largest k with epsilon(k) <= target (epsilon grows with k).
    let lo = 0;
    let hi = steps;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (at(mid) <= target) lo = mid;
      else hi = mid;
    }
    lastStep = lo;
    if (lastStep === 0) {
      throw new Error(`With σ = ${fmt(sigma)} the first step alone spends more than ε = ${target} (δ = ${delta.toExponential(1)}): choose a larger ε or more noise.`);
    }
  }
  return { target, sigma, delta, q, epsilon, lastStep };
}

const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 0.01 ? Number(x.toPrecision(3)).toString() : x.toExponential(2));

/** The line under the select: off, the estimate, or why not yet / not at all; and what epsilon means here. */
export function showPrivacyEstimate(): void {
  const on = privacyOn();
  const custom = choice() === 'custom';
  $('privacy-epsilon-field').hidden = !custom;
  $('privacy-sigma-field').hidden = !custom;
  const el = $('privacy-estimate');
  const what = $('privacy-what');
  for (const k of ['sigma', 'epsilon', 'delta', 'q', 'target', 'lastStep']) delete el.dataset[k];
  el.classList.remove('refusal');
  if (!on) {
    el.textContent = 'Off: training sees the data as it is. Turn it on to train with DP-SGD (each example’s gradient clipped, Gaussian noise added) under a privacy budget ε.';
    what.hidden = true;
    return;
  }
  const { data, steps, batchSize } = context();
  what.hidden = false;
  const unit = data ? (data.kind === 'text' ? `one window of ${data.seqLen} tokens of the text` : `one example (${data.seqLen} tokens at most)`) : 'one training row';
  what.textContent = `What ε means: whatever the adapter is used for, it can tell apart a run with and without any one training row only by a factor of about e^ε ` +
    `(and with probability δ, more). Smaller ε: stronger privacy, more noise, a higher loss; ε ≈ 1 is strong, ε ≈ 10 weak. The privacy unit is one training row: here ${unit}.`;
  let e: Estimate | undefined;
  try {
    e = estimate();
  } catch (error) {
    el.textContent = (error as Error).message;
    el.classList.add('refusal');
    return;
  }
  if (!e) {
    el.textContent = `Target ε = ${fmt(settings().target)}. Prepare the data to see the noise it needs: σ depends on the number of training rows, the batch size (${batchSize}) and the steps (${steps}).`;
    return;
  }
  Object.assign(el.dataset, { sigma: String(e.sigma), epsilon: String(e.epsilon), delta: String(e.delta), q: String(e.q), target: String(e.target), lastStep: String(e.lastStep) });
  const rows = data!.rows;
  const noise = `σ = ${fmt(e.sigma)}${settings().sigma === undefined ? ' (chosen for the target)' : ' (fixed)'}: each step adds Gaussian noise of std σ × C = ${fmt(e.sigma)} (C = 1, the clipping norm of each example’s gradient) to the summed gradient`;
  const sampling = `q = ${batchSize} / ${rows.toLocaleString('en')} rows = ${fmt(e.q)} (each row joins a step with probability q), δ = ${e.delta.toExponential(1)} (1 / (10 × rows))`;
  const spend = e.lastStep < steps
    ? `The budget ε = ${fmt(e.target)} runs out after ${e.lastStep} of ${steps} steps: training will stop there (with a checkpoint).`
    : `Estimated ε after ${steps} steps: ${fmt(e.epsilon)} (budget ${fmt(e.target)}).`;
  el.textContent = `${noise}; ${sampling}. ${spend}`;
}

/** TrainRequest.privacy, or undefined when off; throws a readable Error (the settings panel shows it, Train stays off) when the run cannot be private as set. */
export function privacyRequest(): PrivacyRequest | undefined {
  const c = choice();
  if (c === 'off') return undefined;
  estimate();
  if (c !== 'custom') return { preset: c };
  const { target, sigma } = settings();
  return sigma === undefined ? { targetEpsilon: target } : { targetEpsilon: target, noiseMultiplier: sigma };
}

// ---------- during training ----------
const curve: Array<[number, number]> = [];
let runTarget: number | undefined;

/** A new run: clears the epsilon curve (a private run shows the live area, a plain run hides it). */
export function privacyRunStarted(request: PrivacyRequest | undefined): void {
  curve.length = 0;
  runTarget = request ? (request.preset ? PRIVACY_PRESETS[request.preset] : request.targetEpsilon) : undefined;
  $('privacy-live').hidden = !request;
  $('privacy-spent').textContent = request ? 'Waiting for the first step…' : '';
  $('privacy-status').textContent = '';
  $('privacy-status').className = 'info';
  drawCurve();
}

export function privacyProgress(p: ProgressEvent): void {
  const dp = p.privacy;
  if (!dp) return;
  while (curve.length && curve[curve.length - 1]![0] >= p.step) curve.pop();
  curve.push([p.step, dp.epsilon]);
  const spent = $('privacy-spent');
  spent.dataset.epsilon = String(dp.epsilon);
  spent.dataset.clipped = String(dp.clippedFraction);
  spent.textContent = `ε spent: ${fmt(dp.epsilon)}${runTarget !== undefined ? ` of ${fmt(runTarget)}` : ''} (δ = ${dp.delta.toExponential(1)}) · σ = ${fmt(dp.noiseMultiplier)} · ` +
    `this step: ${dp.batchSize} example${dp.batchSize === 1 ? '' : 's'} (Poisson sampling, q = ${fmt(dp.sampleRate)}), ${Math.round(100 * dp.clippedFraction)}% clipped to norm C`;
  drawCurve(p.totalSteps);
}

/** The run's end: what it spent, and a clear line when the budget stopped it. */
export function privacyRunFinished(s: TrainSummary): void {
  const status = $('privacy-status');
  if (!s.privacy) return;
  status.dataset.epsilon = String(s.privacy.epsilon);
  if (s.stopped === 'budget-exhausted') {
    status.className = 'info budget-exhausted';
    status.textContent = `The privacy budget is spent: one more step would take ε above ${fmt(s.privacy.targetEpsilon ?? runTarget ?? 0)}, so training stopped at step ${s.step} of ${s.totalSteps} ` +
      `(a checkpoint was saved). The adapter is (ε = ${fmt(s.privacy.epsilon)}, δ = ${s.privacy.delta.toExponential(1)})-private; for more steps choose a larger ε or more noise.`;
  } else {
    status.className = 'info';
    status.textContent = `This adapter is (ε = ${fmt(s.privacy.epsilon)}, δ = ${s.privacy.delta.toExponential(1)})-differentially private for one training row, over ${s.privacy.steps} steps ` +
      `(σ = ${fmt(s.privacy.noiseMultiplier)}, C = ${s.privacy.maxGradNorm}, RDP accountant); “Export adapter” records it in adapter_config.json.`;
  }
}

/** A summary line's part for a private run, or '' for a plain one. */
export function privacySummaryText(s: TrainSummary): string {
  if (!s.privacy) return '';
  return `ε = ${fmt(s.privacy.epsilon)}${s.privacy.targetEpsilon !== undefined ? ` of ${fmt(s.privacy.targetEpsilon)}` : ''} spent (DP-SGD)`;
}

/** epsilon against step as an SVG line, with the budget as a dashed line. */
function drawCurve(totalSteps?: number): void {
  const svg = $('privacy-curve') as unknown as SVGSVGElement;
  const W = 320;
  const H = 120;
  const left = 34;
  const bottom = 18;
  const top = 8;
  const right = 8;
  const maxX = Math.max(1, totalSteps ?? curve.at(-1)?.[0] ?? 1);
  const maxY = Math.max(runTarget ?? 0, ...curve.map((c) => c[1]), 1e-9) * 1.1;
  const x = (s: number) => left + ((W - left - right) * s) / maxX;
  const y = (e: number) => H - bottom - ((H - bottom - top) * e) / maxY;
  const points = [[0, 0] as [number, number], ...curve].map(([s, e]) => `${x(s).toFixed(1)},${y(e).toFixed(1)}`).join(' ');
  const budget = runTarget !== undefined
    ? `<line class="budget" x1="${left}" x2="${W - right}" y1="${y(runTarget).toFixed(1)}" y2="${y(runTarget).toFixed(1)}"/><text class="budget-label" x="${W - right}" y="${(y(runTarget) - 3).toFixed(1)}" text-anchor="end">budget ε = ${fmt(runTarget)}</text>`
    : '';
  svg.innerHTML = `<line class="axis" x1="${left}" x2="${W - right}" y1="${H - bottom}" y2="${H - bottom}"/><line class="axis" x1="${left}" x2="${left}" y1="${top}" y2="${H - bottom}"/>
    <text x="${left - 4}" y="${top + 8}" text-anchor="end">${fmt(maxY)}</text><text x="${left - 4}" y="${H - bottom}" text-anchor="end">0</text>
    <text x="${left}" y="${H - 4}">step 0</text><text x="${W - right}" y="${H - 4}" text-anchor="end">${maxX}</text><text x="${(W + left) / 2}" y="${H - 4}" text-anchor="middle">ε spent</text>
    ${budget}${curve.length ? `<polyline class="epsilon" points="${points}"/>` : ''}`;
  svg.dataset.points = String(curve.length);
  svg.dataset.epsilons = curve.map((c) => c[1]).join(',');
  if (curve.length) svg.dataset.epsilon = String(curve.at(-1)![1]);
  else delete svg.dataset.epsilon;
  if (runTarget !== undefined) svg.dataset.target = String(runTarget);
  else delete svg.dataset.target;
}

// ---------- the loss with and without DP ----------
/** The loss of the last run of each kind (kept when the next run starts), for the chart's side by side. */
const kept: { plain?: { x: number[]; y: number[] }; private?: { x: number[]; y: number[] } } = {};

/** Keeps a finished run's loss curve as the last one of its kind (call before the chart is cleared for the next run). */
export function keepRunLoss(isPrivate: boolean, x: readonly number[], y: readonly number[]): void {
  if (x.length) kept[isPrivate ? 'private' : 'plain'] = { x: [...x], y: [...y] };
}

/**
 * The chart's data: [steps, loss without DP, held-out loss, loss with DP]. The current run fills its
 * kind's series, the last run of the other kind the other; steps are the union of both runs'.
 * Updates the labels under the chart and #chart's data-plain-points / data-dp-points.
 */
export function lossChartData(current: { x: readonly number[]; loss: readonly number[]; heldOut: ReadonlyArray<number | null> }, currentPrivate: boolean): uPlot.AlignedData {
  const other = currentPrivate ? kept.plain : kept.private;
  const steps = [...new Set([...current.x, ...(other?.x ?? [])])].sort((a, b) => a - b);
  const align = (xs: readonly number[] | undefined, ys: ReadonlyArray<number | null> | undefined) => {
    const at = new Map<number, number | null>();
    xs?.forEach((s, i) => at.set(s, ys![i] ?? null));
    return steps.map((s) => at.get(s) ?? null);
  };
  const mine = align(current.x, current.loss);
  const theirs = align(other?.x, other?.y);
  const plain = currentPrivate ? theirs : mine;
  const dp = currentPrivate ? mine : theirs;
  const chart = $('chart');
  const count = (a: Array<number | null>) => String(a.filter((v) => v !== null).length);
  chart.dataset.plainPoints = count(plain);
  chart.dataset.dpPoints = count(dp);
  const legend = $('loss-legend');
  const hasDp = dp.some((v) => v !== null);
  legend.hidden = !hasDp;
  if (hasDp) {
    const plainWhat = plain.some((v) => v !== null) ? (currentPrivate ? 'the last run' : 'this run') : 'none yet: train once with privacy off to compare';
    legend.innerHTML = `<span class="swatch train"></span><span>loss without DP (<span id="loss-legend-plain"></span>)</span><span class="swatch dp"></span><span>loss with DP (<span id="loss-legend-dp"></span>)</span>`;
    $('loss-legend-plain').textContent = plainWhat;
    $('loss-legend-dp').textContent = currentPrivate ? 'this run' : 'the last private run';
  }
  return [steps, plain, [...align(current.x, current.heldOut)], dp];
}

/** uPlot's series for lossChartData's fourth column. */
export const DP_LOSS_SERIES: uPlot.Series = { label: 'loss with DP', stroke: '#9333ea', width: 2, spanGaps: true, points: { show: false } };

// ---------- saved settings ----------
export function privacySettings(): Record<string, unknown> {
  return { privacy: choice(), 'privacy-epsilon': $<HTMLInputElement>('privacy-epsilon').value, 'privacy-sigma': $<HTMLInputElement>('privacy-sigma').value };
}

export function restorePrivacySettings(s: Record<string, unknown>): void {
  if (typeof s.privacy === 'string' && CHOICES.some(([c]) => c === s.privacy)) $<HTMLSelectElement>('privacy-preset').value = s.privacy;
  for (const id of ['privacy-epsilon', 'privacy-sigma']) if (typeof s[id] === 'string') $<HTMLInputElement>(id).value = s[id];
  showPrivacyEstimate();
}
