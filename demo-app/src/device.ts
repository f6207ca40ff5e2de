/**
 * Device adaptation in the demo. The settings panel's "Settings for this device" fieldset runs
 * autoConfigure() at a memory-optimisation level and shows the plan it chose and why, the
 * candidates it measured and the ones it refused, and what the measuring cost; "Use these settings"
 * makes the next run train with the plan's micro-batch, accumulation and recomputation. The train
 * panel's "Battery and heat" fieldset sets the run's power policy and shows the battery and CPU
 * pressure this browser reports, the run's waits and pacing, and the automatic recoveries.
 * main.ts merges deviceRequest() into its train request and hands over progress and summaries;
 * the controls are built here, as privacy.ts builds the privacy fieldset.
 */
import {
  formatBytes, watchDeviceConditions, type AdapterRequest, type AutoConfigureProgress, type AutoPlan, type CalibrationMeasurement, type DeviceConditions,
  type MemoryOptimization, type ModelInfo, type PowerPause, type ProgressEvent, type RecoveryEvent, type TrainRequest, type TrainSummary, type TrainerApi,
} from 'webtune';

/** What a run trains, as the settings panel has it: a plan holds only for the run it was made for. */
export interface RunShape {
  /** Rows per optimizer step (the Batch size field). */
  effectiveBatch: number;
  seqLen: number;
  adapter: AdapterRequest;
  /** The run uses DP-SGD (examples one at a time). */
  privacy: boolean;
}

/** What the fieldsets need from the page. */
export interface DeviceHooks {
  trainer: () => Promise<TrainerApi>;
  /** The run as the settings stand; throws a readable Error for a field that cannot work. */
  shape: () => RunShape;
  /** autoConfigure() is running: the page's other buttons wait for it. */
  busy: (on: boolean) => void;
  /** autoConfigure() ended; `loadedAgain` (the format it left) when it loaded the model again, which lets go of the adapter in place. */
  configured: (loadedAgain: Pick<AutoPlan, 'format' | 'dtype'> | undefined) => void;
  /** "Use these settings": the page takes the plan's sequence length (preparing its data again) and weight format. */
  use: (plan: AutoPlan) => void;
}

const LEVELS: Array<[MemoryOptimization, string, string]> = [
  ['minimal', 'Minimal', 'The largest micro-batch that fits the whole memory budget, recomputation only when nothing else fits.'],
  ['balanced', 'Balanced', 'As minimal within 75% of the budget (room for the page, other tabs and the driver), with recomputation before a micro-batch of 1.'],
  ['maximum', 'Maximum', 'The smallest plan: 4-bit weights (QLoRA), f16 activations where the GPU has shader-f16, recomputation, micro-batch 1. With one setting left, nothing is measured.'],
];

const FORMATS: Record<string, string> = { f32: 'f32 (LoRA)', nf4: 'nf4, 4-bit (QLoRA)', q4: "q4, the file's 4-bit weights" };

const PRESSURE: Record<string, string> = {
  nominal: 'nominal', fair: 'fair', serious: 'serious (a run that paces when hot idles between steps)', critical: 'critical (a run that paces when hot waits)',
};

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

let hooks: DeviceHooks;
/** The weight format and activations of the model the session holds (autoConfigure() may change them). */
let loaded: Pick<ModelInfo, 'format' | 'dtype'> | undefined;
let plan: AutoPlan | undefined;
/** The run the plan was made for (key of its RunShape at the plan's seqLen); set once "Use these settings" is pressed. */
let appliedFor: string | undefined;
/** The page's adapter and privacy setting autoConfigure() planned for (the plan's own adapter is resolved, with every default filled in). */
let planned: Pick<RunShape, 'adapter' | 'privacy'> | undefined;

const shapeKey = (s: RunShape) => JSON.stringify([s.effectiveBatch, s.seqLen, s.adapter, s.privacy]);

/** Builds "Settings for this device" above the memory estimate and "Battery and heat" above the Train buttons. */
export function mountDeviceControls(pageHooks: DeviceHooks): void {
  hooks = pageHooks;
  const box = document.createElement('fieldset');
  box.id = 'device';
  box.innerHTML = `<legend>Settings for this device</legend>
    <p class="hint">Plans the weight format, activations, micro-batch and recomputation that fit this GPU for the batch size, sequence length and adapter above,
      times a few training passes of each, and keeps the fastest (or a smaller one within 10% of it). It loads the model in each weight format it measures:
      an adapter trained in this tab is let go, so export it first.</p>
    <div class="row">
      <label>Memory optimisation <select id="device-level">${LEVELS.map(([v, t]) => `<option value="${v}"${v === 'balanced' ? ' selected' : ''}>${t}</option>`).join('')}</select></label>
      <button id="device-choose" disabled>Choose settings for this device</button>
    </div>
    <p id="device-level-hint" class="hint"></p>
    <p id="device-status" class="info" aria-live="polite"></p>
    <div id="device-plan" hidden>
      <table id="device-chosen" class="two-col" aria-label="The chosen settings"></table>
      <h3>Why</h3>
      <ul id="device-reasons"></ul>
      <h3>Measured</h3>
      <table id="device-measured">
        <thead><tr><th>Weights</th><th>Activations</th><th>Micro-batch</th><th>Recompute</th><th>ms / pass</th><th>Tokens/s</th><th>Memory (estimate)</th><th></th></tr></thead>
        <tbody></tbody>
      </table>
      <p id="device-unmeasured" class="hint" hidden></p>
      <details id="device-rejected"><summary></summary>
        <table id="device-rejected-table"><thead><tr><th>Setting</th><th>Why it was refused</th></tr></thead><tbody></tbody></table>
      </details>
      <div class="row"><button id="device-use" disabled>Use these settings</button></div>
      <p id="device-applied" class="hint"></p>
    </div>
    <p class="msg" id="device-msg" role="alert"></p>`;
  $('memory').before(box);

  const power = document.createElement('fieldset');
  power.id = 'power';
  power.innerHTML = `<legend>Battery and heat</legend>
    <label class="check"><input id="power-battery" type="checkbox" /> Wait on low battery (below 20% and not charging; a checkpoint first)</label>
    <label class="check"><input id="power-thermal" type="checkbox" /> Pace when hot (idle between steps at serious CPU pressure, wait at critical)</label>
    <p id="device-conditions" class="hint" aria-live="polite">Reading the battery and CPU pressure…</p>
    <p id="power-state" class="info" aria-live="polite"></p>
    <p id="recovery-hint" class="hint">Automatic recovery is on: if the GPU runs out of memory or is lost, training goes on from its newest checkpoint with half the micro-batch (twice at most).</p>
    <ol id="recovery-log" hidden></ol>`;
  $('train-panel').querySelector('.row')!.before(power);

  $('device-level').addEventListener('change', showLevel);
  $('device-choose').addEventListener('click', () => void choose());
  $('device-use').addEventListener('click', use);
  showLevel();
  void watchConditions();
}

function level(): MemoryOptimization {
  const v = $<HTMLSelectElement>('device-level').value;
  return LEVELS.some(([l]) => l === v) ? (v as MemoryOptimization) : 'balanced';
}

function showLevel(): void {
  $('device-level-hint').textContent = LEVELS.find(([l]) => l === level())![2];
}

/** Choose is off without a model and while the page is busy (a paused run would be let go with the model). */
export function updateDeviceButtons(page: { modelLoaded: boolean; running: boolean; paused: boolean }): void {
  const idle = page.modelLoaded && !page.running && !page.paused;
  $<HTMLButtonElement>('device-choose').disabled = !idle;
  $<HTMLButtonElement>('device-use').disabled = !idle || !plan;
  // A run's power policy is fixed when it starts.
  for (const id of ['power-battery', 'power-thermal']) $<HTMLInputElement>(id).disabled = page.running || page.paused;
}

/** A model was loaded: plans made for the one before no longer apply. */
export function deviceModelLoaded(info: Pick<ModelInfo, 'format' | 'dtype'>): void {
  loaded = { format: info.format, dtype: info.dtype };
  if (!plan) return;
  plan = undefined;
  appliedFor = undefined;
  $('device-plan').hidden = true;
  $('device-status').textContent = 'The model changed: choose settings for it again.';
}

async function choose(): Promise<void> {
  const msg = $('device-msg');
  msg.textContent = '';
  msg.className = 'msg';
  let shape: RunShape;
  try {
    shape = hooks.shape();
  } catch (error) {
    msg.textContent = (error as Error).message;
    msg.className = 'msg error';
    return;
  }
  const status = $('device-status');
  status.textContent = 'Planning…';
  hooks.busy(true);
  let loadedAgain: Pick<AutoPlan, 'format' | 'dtype'> | undefined;
  try {
    const before = loaded;
    const chosen = await (await hooks.trainer()).autoConfigure({
      memoryOptimization: level(), batchSize: shape.effectiveBatch, maxSeqLen: shape.seqLen, adapter: shape.adapter, privacy: shape.privacy, onProgress: showProgress,
    });
    loaded = { format: chosen.format, dtype: chosen.dtype };
    // Loading another format lets go of the adapter in place.
    if (chosen.reloaded || !before) loadedAgain = loaded;
    plan = chosen;
    planned = { adapter: shape.adapter, privacy: shape.privacy };
    appliedFor = undefined;
    status.textContent = `Chose ${FORMATS[chosen.format] ?? chosen.format} weights and ${chosen.dtype} activations; the model is loaded that way now.` +
      (loadedAgain ? ' It was loaded again, so any adapter trained before is gone.' : '');
    showPlan(chosen);
  } catch (error) {
    status.textContent = '';
    msg.textContent = (error as Error).message;
    msg.className = 'msg error';
  } finally {
    hooks.busy(false);
    hooks.configured(loadedAgain);
  }
}

function showProgress(p: AutoConfigureProgress): void {
  const status = $('device-status');
  if (p.phase === 'plan') status.textContent = 'Planning the settings that fit…';
  else if (p.phase === 'calibrate') status.textContent = p.candidate ? `Measuring ${p.done + 1} of ${p.total}: ${p.candidate}…` : `Measured ${p.total}.`;
  else status.textContent = 'Loading the model in the chosen format…';
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
const yesNo = (b: boolean) => (b ? 'yes' : 'no');

function showPlan(p: AutoPlan): void {
  const rows: Array<[string, string]> = [
    ['Weights', FORMATS[p.format] ?? p.format],
    ['Activations', p.dtype],
    ['Batch', `micro-batch ${p.microBatchSize} × ${p.gradientAccumulation} accumulated = ${p.effectiveBatchSize} rows per step`],
    ['Sequence length', `${p.seqLen}${p.reprepare ? ' (the prepared data has another length: “Use these settings” prepares it again)' : ''}`],
    ['Recompute activations', yesNo(p.recompute)],
    ['Rank', p.rank === undefined ? '– (the method has none)' : String(p.rank)],
    ['Memory estimate', `${formatBytes(p.estimate.total)} of a ${formatBytes(p.budgetBytes)} budget`],
    ['Calibration', `${p.calibration.passes} training passes in ${seconds(p.calibration.milliseconds)} (model loads included)`],
    ['GPU', `${p.device.adapter || 'unnamed'}${p.device.isSoftware ? ' (software renderer)' : ''}; shader-f16 ${yesNo(p.device.features.shaderF16)}; ` +
      `device memory ${p.device.deviceMemoryGiB === undefined ? 'not reported' : `${p.device.deviceMemoryGiB} GiB`}`],
  ];
  $('device-chosen').innerHTML = rows.map(([k, v]) => `<tr><td>${k}</td><td>${escapeHtml(v)}</td></tr>`).join('');
  Object.assign($('device-plan').dataset, {
    format: p.format, dtype: p.dtype, microBatch: String(p.microBatchSize), accumulation: String(p.gradientAccumulation), seqLen: String(p.seqLen), recompute: String(p.recompute),
  });

  $('device-reasons').innerHTML = p.reasons.map((r) => `<li>${escapeHtml(r)}</li>`).join('');

  const isChosen = (m: CalibrationMeasurement) => m.format === p.format && m.dtype === p.dtype && m.microBatchSize === p.microBatchSize && m.recompute === p.recompute;
  $('device-measured').querySelector('tbody')!.innerHTML = p.measured.map((m) => {
    const timing = m.failed
      ? `<td colspan="2" class="failed">failed: ${escapeHtml(m.failed)}</td>`
      : `<td>${m.msPerPass.toFixed(0)}</td><td>${m.tokensPerSecond.toFixed(1)}</td>`;
    return `<tr data-format="${m.format}" data-dtype="${m.dtype}"${isChosen(m) ? ' class="chosen"' : ''}><td>${m.format}</td><td>${m.dtype}</td><td>${m.microBatchSize}</td>` +
      `<td>${yesNo(m.recompute)}</td>${timing}<td>${formatBytes(m.estimateBytes)}</td><td>${isChosen(m) ? 'chosen' : ''}</td></tr>`;
  }).join('');
  $('device-measured').hidden = p.measured.length === 0;
  const unmeasured = $('device-unmeasured');
  unmeasured.hidden = p.measured.length > 0;
  unmeasured.textContent = 'Nothing was measured: one setting fit the level, or calibration was off.';

  const refused = $('device-rejected');
  refused.querySelector('summary')!.textContent = p.rejected.length === 0 ? 'No setting was refused.' : `${p.rejected.length} setting${p.rejected.length === 1 ? '' : 's'} refused`;
  $('device-rejected-table').hidden = p.rejected.length === 0;
  refused.querySelector('tbody')!.innerHTML = p.rejected.map((r) => `<tr><td>${escapeHtml(r.what)}</td><td>${escapeHtml(r.reason)}</td></tr>`).join('');
  $('device-applied').textContent = '';
  $('device-plan').hidden = false;
}

/** "Use these settings": the page takes the plan's sequence length and format; the next run takes its micro-batch, accumulation and recomputation. */
function use(): void {
  if (!plan || !planned) return;
  appliedFor = shapeKey({ effectiveBatch: plan.effectiveBatchSize, seqLen: plan.seqLen, ...planned });
  hooks.use(plan);
}

/**
 * What the device fieldsets add to a train request: the power policy, and the applied plan's
 * fields while the run is the one it was made for (the line under "Use these settings" says which).
 */
export function deviceRequest(shape: RunShape): Pick<TrainRequest, 'power' | 'batchSize' | 'gradientAccumulation' | 'recompute' | 'memoryBudgetBytes' | 'adapter'> {
  const battery = $<HTMLInputElement>('power-battery').checked;
  const thermal = $<HTMLInputElement>('power-thermal').checked;
  const power = battery || thermal ? { power: { battery, thermal } } : {};
  const applied = $('device-applied');
  if (!plan || appliedFor === undefined) return power;
  if (appliedFor !== shapeKey(shape)) {
    applied.textContent = 'The batch size, sequence length or adapter changed since: the next run uses the settings above as they are. Choose settings again for this run.';
    applied.dataset.applied = 'false';
    return power;
  }
  applied.textContent = `The next run uses this plan: micro-batch ${plan.microBatchSize} × ${plan.gradientAccumulation} accumulated` +
    `${plan.recompute ? ', activations recomputed' : ''}, ${formatBytes(plan.budgetBytes)} memory budget.`;
  applied.dataset.applied = 'true';
  // plan.train.adapter is the page's adapter with every default resolved, and the rank lowered if nothing fit at the page's.
  const { batchSize, gradientAccumulation, recompute, memoryBudgetBytes, adapter } = plan.train;
  return { ...power, batchSize, gradientAccumulation, recompute, memoryBudgetBytes, adapter };
}

// ---------- battery and heat ----------
let conditionsAvailable = { battery: false, pressure: false };

/** The state line: this page watches for itself (display only); train() with a power policy starts the watch that feeds the session. */
async function watchConditions(): Promise<void> {
  const watch = await watchDeviceConditions(undefined, { onChange: showConditions });
  conditionsAvailable = { battery: watch.battery, pressure: watch.pressure };
  showConditions(watch.current);
}

function showConditions(c: DeviceConditions): void {
  const battery = c.battery ? `${Math.round(c.battery.level * 100)}%, ${c.battery.charging ? 'charging' : 'not charging'}`
    : conditionsAvailable.battery ? 'reading…' : 'not available in this browser';
  const pressure = c.pressure ? PRESSURE[c.pressure] ?? c.pressure : conditionsAvailable.pressure ? 'waiting for the first reading' : 'not available in this browser';
  const el = $('device-conditions');
  el.textContent = `This device: battery ${battery} · CPU pressure ${pressure}.`;
  el.dataset.battery = c.battery ? String(c.battery.level) : '';
  el.dataset.pressure = c.pressure ?? '';
}

const recoveries: RecoveryEvent[] = [];
let watching = false;

export function deviceRunStarted(request: TrainRequest): void {
  recoveries.length = 0;
  showRecoveries();
  watching = request.power !== undefined;
  setPowerState(watching ? 'Watching the battery and CPU pressure before each step.' : '', watching ? 'running' : '');
}

function setPowerState(text: string, state: string): void {
  const el = $('power-state');
  el.textContent = text;
  el.dataset.state = state;
}

export function deviceProgress(p: ProgressEvent): void {
  if (p.conditions) showConditions(p.conditions);
  if (p.recovery) {
    recoveries.push(p.recovery);
    showRecoveries();
  }
  if (!watching) return;
  if (p.paused === 'battery') setPowerState(`Waiting at step ${p.step}: the battery is low and not charging (a checkpoint was saved). Training goes on when it charges.`, 'paused-battery');
  else if (p.paused === 'thermal') setPowerState(`Waiting at step ${p.step}: the CPU is at critical pressure (a checkpoint was saved). Training goes on when it cools down.`, 'paused-thermal');
  else if (p.pacingMs !== undefined) setPowerState(`Pacing: ${p.pacingMs} ms idle between steps while the CPU is at serious pressure.`, 'pacing');
  else setPowerState('Full speed: the battery and CPU pressure allow it.', 'running');
}

export function deviceRunFinished(s: TrainSummary): void {
  const same = (a: RecoveryEvent, b: RecoveryEvent) => a.attempt === b.attempt && a.failedAtStep === b.failedAtStep;
  for (const r of s.recoveries) if (!recoveries.some((known) => same(known, r))) recoveries.push(r);
  showRecoveries();
  $('recovery-log').dataset.microBatch = String(s.microBatchSize);
  if (!watching) return;
  setPowerState(s.pauses.length === 0 ? 'The run did not wait for the battery or heat.' : `The run waited ${s.pauses.length === 1 ? 'once' : `${s.pauses.length} times`}: ${s.pauses.map(describePause).join('; ')}.`, 'finished');
}

const describePause = (w: PowerPause) => `${w.reason === 'battery' ? 'low battery' : 'heat'} at step ${w.step}, ${seconds(w.milliseconds)}`;

function showRecoveries(): void {
  const log = $('recovery-log');
  log.hidden = recoveries.length === 0;
  log.dataset.count = String(recoveries.length);
  log.innerHTML = '';
  for (const r of recoveries) {
    const li = document.createElement('li');
    li.textContent = `${r.error} at step ${r.failedAtStep}: went on from step ${r.resumedFrom} with micro-batch ${r.microBatchSize} ` +
      `(${r.passesPerStep} pass${r.passesPerStep === 1 ? '' : 'es'} per step). ${r.message}`;
    log.append(li);
  }
}

// ---------- saved settings ----------
export function deviceSettings(): Record<string, unknown> {
  return { 'device-level': level(), 'power-battery': $<HTMLInputElement>('power-battery').checked, 'power-thermal': $<HTMLInputElement>('power-thermal').checked };
}

export function restoreDeviceSettings(s: Record<string, unknown>): void {
  if (typeof s['device-level'] === 'string' && LEVELS.some(([l]) => l === s['device-level'])) $<HTMLSelectElement>('device-level').value = s['device-level'];
  for (const id of ['power-battery', 'power-thermal']) if (typeof s[id] === 'boolean') $<HTMLInputElement>(id).checked = s[id];
  showLevel();
}
