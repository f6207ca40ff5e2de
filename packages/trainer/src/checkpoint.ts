/**
 * Training checkpoints: everything a run needs to continue exactly where it stopped (LoRA
 * adapter, AdamW moments, data cursor, step, configuration), as one safetensors blob plus a small
 * JSON meta that names it and guards it.
 *
 * Record layout (schema 5; schema 4 is 5 without `privacy`; schema 3 has `lora` (a LoraConfig)
 * where 4 has `adapter`; schema 2 is 3 without `evaluation`):
 *   meta:  CheckpointMeta, plain JSON (no typed arrays), small enough to list without the tensors.
 *   bytes: a safetensors file, metadata {"format":"pt"}, F32 tensors:
 *            the adapter under its method's keys (LoRA `base_model.model.<module>.lora_A.weight`,
 *            IA3 `...ia3_l`, BitFit `...bitfit_bias`, as Adapter.read returns) and AdamW's moments under `<key>.exp_avg` and
 *            `<key>.exp_avg_sq` (as AdamW.readState returns).
 *          The bytes are canonical: serializeSafetensors(tensors, {"format":"pt"}), so the same
 *          tensors always give the same bytes and the same `sha256`.
 *   meta.sha256 is the hex SHA-256 of `bytes` and meta.byteLength their length: a truncated,
 *   bit-flipped or swapped blob is refused (CheckpointCorruptError) before any tensor is used.
 *   meta.metaSha256 is the hex SHA-256 of the rest of the meta as canonical JSON (keys sorted at
 *   every level), sha256 included, so it covers the tensors too: a changed step, cursor, learning
 *   rate or step count is refused like a flipped tensor byte.
 *
 * Portable file (export/import): the same safetensors tensors with
 *   __metadata__ = {"format":"pt","webtune.checkpoint": JSON.stringify(meta)}
 * Import rebuilds the canonical bytes from the tensors, so meta.sha256 still checks them.
 *
 * Older schemas are migrated on read (migrateCheckpointMeta):
 *   v3 and older, LoRA only: `lora: LoraConfig` reads as `adapter: { method: 'lora', config: lora }`.
 *     The schema number stays, and metaDigest checks such a meta in its written form (with `lora`).
 *   v2, before the optional `evaluation` (held-out history and early-stopping state): reads as is.
 *     Its `schema` stays 2, as metaSha256 covers it; a webtune that reads only up to schema 2
 *     refuses a v3 checkpoint with "update webtune" instead of dropping `evaluation` and then
 *     calling the checksum damaged.
 *   v1, before metaSha256: loads, with DecodedCheckpoint.metaProtected false (only its tensors
 *     were checked), which the SDK reports as a warning when it resumes from one.
 *   v0, the draft layout before `totalSteps` and `label` existed (and, like v1, without metaSha256):
 *     { schema: 0, id, runId, step, createdAt, model, lora, train, cursor, byteLength, sha256 }
 *     -> v1 with totalSteps = train.steps (the TrainConfig's step count) when it is a positive
 *        integer, else step; no label.
 *   v4, before the optional `privacy` (DP-SGD's sampler state and accountant history): reads as
 *     is, keeping its schema, for the same reason as v2.
 * A schema newer than CHECKPOINT_SCHEMA_VERSION is refused with a message to update webtune.
 *
 * Non-finite numbers in `train` (e.g. adamw.maxGradNorm = Infinity) become null, as JSON has no
 * Infinity; the meta is normalised through JSON at encode time so every store and the portable
 * file hold the same meta.
 */
import { CheckpointCorruptError, CheckpointMismatchError, InvalidArgumentError, ModelFormatError } from '@webtune/errors';
import { adapterMethod, adapterMismatch, adapterSpecProblem, parseSafetensors, serializeSafetensors, toAdapterSpec, type AdapterSpec, type HostTensor, type LoraConfig, type ModelConfig, type SafetensorsFile } from '@webtune/model';
import type { RngState } from '@webtune/model';
import type { DataCursor } from './data/windows.js';
import type { EvaluationState } from './evaluation.js';

export const CHECKPOINT_SCHEMA_VERSION = 5;

/** The first schema with the optional `privacy` field. */
const PRIVACY_SCHEMA = 5;

/** Entries of a checkpoint's accountant history (a new entry only where sigma or q changed). */
const MAX_PRIVACY_HISTORY = 1000;

/** The first schema with `adapter: { method, config }` instead of `lora`. */
const ADAPTER_SPEC_SCHEMA = 4;

/** The `__metadata__` key of a portable checkpoint file that holds the meta JSON. */
export const CHECKPOINT_FILE_METADATA_KEY = 'webtune.checkpoint';

const EXP_AVG = '.exp_avg';
const EXP_AVG_SQ = '.exp_avg_sq';

/** JSON data (what the checkpoint meta carries as its TrainConfig). */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/**
 * DP-SGD's state in a checkpoint: the Poisson sampler's RNG (so a resumed run samples the same
 * batches it would have) and the accountant's history (so the privacy spent survives a reload).
 * The noise is not here: it is drawn fresh from crypto.getRandomValues after a resume.
 */
export interface PrivacyCheckpointState {
  /** The Poisson sampler's xoshiro128** state. */
  sampler: RngState;
  /** RDP accountant history: consecutive steps with the same noise multiplier and sampling rate. */
  accountant: { noiseMultiplier: number; sampleRate: number; steps: number }[];
}

/** The parts of a model's configuration that the adapter's and moments' shapes depend on. */
export interface ModelFingerprint {
  modelType: string;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  intermediateSize: number;
  vocabSize: number;
}

const FINGERPRINT_FIELDS = ['modelType', 'hiddenSize', 'numLayers', 'numHeads', 'numKvHeads', 'intermediateSize', 'vocabSize'] as const;

export function modelFingerprint(config: ModelConfig): ModelFingerprint {
  return {
    modelType: config.modelType,
    hiddenSize: config.hiddenSize,
    numLayers: config.numLayers,
    numHeads: config.numHeads,
    numKvHeads: config.numKvHeads,
    intermediateSize: config.intermediateSize,
    vocabSize: config.vocabSize,
  };
}

/**
 * A checkpoint's description, small enough to list without its tensors (listCheckpoints() returns these):
 * its id (`<runId>@<step, 9 digits>`), the run and step, the model and LoRA settings it fits, the training
 * configuration and data position a resume continues from, and the size and checksum its data must match.
 */
export interface CheckpointMeta {
  schema: number;
  id: string;
  runId: string;
  /** Optimizer steps taken. */
  step: number;
  totalSteps: number;
  /** ms since the epoch. */
  createdAt: number;
  model: ModelFingerprint;
  /** The adaptation method and its resolved config. */
  adapter: AdapterSpec;
  /** The TrainConfig as JSON. */
  train: JsonObject;
  cursor: DataCursor;
  /** Held-out evaluations so far and the early-stopping state (runs that evaluate while training). */
  evaluation?: EvaluationState;
  /** DP-SGD runs: sampler state and privacy accounting (schema 5). */
  privacy?: PrivacyCheckpointState;
  /** Optional app/data description. */
  label?: string;
  byteLength: number;
  /** Hex SHA-256 of `bytes`. */
  sha256: string;
  /**
   * Hex SHA-256 of every other field as canonical JSON (see metaDigest). Absent only in a
   * checkpoint written before schema 2, whose metadata was not protected.
   */
  metaSha256?: string;
}

export interface CheckpointRecord {
  meta: CheckpointMeta;
  bytes: Uint8Array;
}

export interface CheckpointInput {
  runId: string;
  step: number;
  totalSteps: number;
  model: ModelFingerprint;
  /** The adapter's `{ method, config }` (Adapter.spec()). */
  spec?: AdapterSpec;
  /** Shorthand for `spec: { method: 'lora', config: lora }`. */
  lora?: LoraConfig;
  train: JsonObject;
  cursor: DataCursor;
  evaluation?: EvaluationState;
  privacy?: PrivacyCheckpointState;
  label?: string;
  adapter: ReadonlyMap<string, HostTensor>;
  optimizer: ReadonlyMap<string, HostTensor>;
  /** Defaults to Date.now(). */
  createdAt?: number;
}

export interface DecodedCheckpoint {
  meta: CheckpointMeta;
  adapter: Map<string, HostTensor>;
  optimizer: Map<string, HostTensor>;
  /** False for a checkpoint written before schema 2: its tensors were verified, its metadata could not be. */
  metaProtected: boolean;
}

export interface CheckpointExpectation {
  model: ModelFingerprint;
  /** The adapter it must continue: another method or config is a CheckpointMismatchError. */
  adapter?: AdapterSpec;
  /** Shorthand for `adapter: { method: 'lora', config: lora }`. */
  lora?: LoraConfig;
}

/** `<runId>@<step, 9 digits>`, so a run's ids sort by step. */
export function checkpointId(runId: string, step: number): string {
  if (typeof runId !== 'string' || runId.length === 0) throw new InvalidArgumentError(`A checkpoint's runId must be a non-empty string, got ${JSON.stringify(runId)}.`);
  if (!Number.isSafeInteger(step) || step < 0) throw new InvalidArgumentError(`A checkpoint's step must be a non-negative integer, got ${step}.`);
  return `${runId}@${String(step).padStart(9, '0')}`;
}

/** Hex SHA-256 (WebCrypto: browsers, workers, Node 20). */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  if (typeof crypto === 'undefined' || !crypto.subtle) {
    throw new InvalidArgumentError(
      'Checkpoints need WebCrypto (crypto.subtle) for their SHA-256 checksums; browsers provide it only to secure contexts (https or localhost), as they do WebGPU.',
    );
  }
  const data = bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : new Uint8Array(bytes);
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', data));
  let hex = '';
  for (const b of digest) hex += b.toString(16).padStart(2, '0');
  return hex;
}

const isOptimizerKey = (key: string) => key.endsWith(EXP_AVG) || key.endsWith(EXP_AVG_SQ);
const momentBase = (key: string) => (key.endsWith(EXP_AVG_SQ) ? key.slice(0, -EXP_AVG_SQ.length) : key.slice(0, -EXP_AVG.length));
const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

function checkTensor(kind: string, key: string, t: HostTensor): void {
  if (!(t?.data instanceof Float32Array) || !Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new InvalidArgumentError(`encodeCheckpoint: ${kind} tensor "${key}" must be { data: Float32Array, shape: number[] }.`);
  }
  const n = t.shape.reduce((a, b) => a * b, 1);
  if (n !== t.data.length) throw new InvalidArgumentError(`encodeCheckpoint: ${kind} tensor "${key}" has shape [${t.shape.join(', ')}] (${n} values) but ${t.data.length} values.`);
}

/**
 * A checkpoint record from host copies of the adapter (LoraAdapter.read) and the optimizer's
 * moments (AdamW.readState). The tensors are copied into `bytes`; the inputs may be reused.
 */
export async function encodeCheckpoint(input: CheckpointInput): Promise<CheckpointRecord> {
  const id = checkpointId(input.runId, input.step);
  if (!Number.isSafeInteger(input.totalSteps) || input.totalSteps < 0) throw new InvalidArgumentError(`encodeCheckpoint: totalSteps must be a non-negative integer, got ${input.totalSteps}.`);
  if (input.label !== undefined && typeof input.label !== 'string') throw new InvalidArgumentError('encodeCheckpoint: label must be a string.');
  if (input.adapter.size === 0) throw new InvalidArgumentError('encodeCheckpoint: the adapter has no tensors.');
  const tensors: Array<{ name: string; dtype: 'F32'; shape: number[]; data: Float32Array }> = [];
  for (const [key, t] of input.adapter) {
    if (isOptimizerKey(key)) throw new InvalidArgumentError(`encodeCheckpoint: adapter key "${key}" ends like an optimizer moment; pass moments as \`optimizer\`.`);
    checkTensor('adapter', key, t);
    tensors.push({ name: key, dtype: 'F32', shape: [...t.shape], data: t.data });
  }
  for (const [key, t] of input.optimizer) {
    if (!isOptimizerKey(key)) throw new InvalidArgumentError(`encodeCheckpoint: optimizer key "${key}" must end with ${EXP_AVG} or ${EXP_AVG_SQ} (as AdamW.readState returns).`);
    checkTensor('optimizer', key, t);
    const param = input.adapter.get(momentBase(key));
    if (!param) throw new InvalidArgumentError(`encodeCheckpoint: optimizer moment "${key}" belongs to no adapter tensor.`);
    if (!sameShape(param.shape, t.shape)) throw new InvalidArgumentError(`encodeCheckpoint: optimizer moment "${key}" is [${t.shape.join(', ')}] but its parameter is [${param.shape.join(', ')}].`);
    tensors.push({ name: key, dtype: 'F32', shape: [...t.shape], data: t.data });
  }
  const bytes = serializeSafetensors(tensors, { format: 'pt' });
  const draft = {
    schema: CHECKPOINT_SCHEMA_VERSION,
    id,
    runId: input.runId,
    step: input.step,
    totalSteps: input.totalSteps,
    createdAt: input.createdAt ?? Date.now(),
    model: { ...input.model },
    adapter: inputSpec(input),
    train: input.train,
    cursor: input.cursor,
    ...(input.evaluation !== undefined ? { evaluation: input.evaluation } : {}),
    ...(input.privacy !== undefined ? { privacy: input.privacy } : {}),
    ...(input.label !== undefined ? { label: input.label } : {}),
    byteLength: bytes.byteLength,
    sha256: await sha256Hex(bytes),
  };
  // Normalised through JSON so the meta is the same in every store and in the portable file.
  const meta = validateMeta(JSON.parse(JSON.stringify(draft)) as Json, id);
  meta.metaSha256 = await metaDigest(meta);
  return { meta, bytes };
}

/** JSON with object keys sorted at every level: the same meta always gives the same text. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (isObject(value)) {
    const keys = Object.keys(value).filter((k) => value[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * The hex SHA-256 a meta's `metaSha256` must equal: of the canonical JSON of every field but
 * metaSha256 itself (so it covers `sha256`, and through it the tensors).
 */
export async function metaDigest(meta: CheckpointMeta): Promise<string> {
  const { metaSha256: _ignored, adapter, ...rest } = meta;
  // Before schema 4 the adapter was written as `lora`, and the checksum covers the written form.
  const written = meta.schema < ADAPTER_SPEC_SCHEMA ? { ...rest, lora: adapter.config } : { ...rest, adapter };
  return sha256Hex(new TextEncoder().encode(canonicalJson(written)));
}

function inputSpec(input: CheckpointInput): AdapterSpec {
  const spec = input.spec ?? (input.lora ? toAdapterSpec(input.lora) : undefined);
  if (!spec) throw new InvalidArgumentError('encodeCheckpoint needs the adapter spec ({ method, config }, Adapter.spec()).');
  adapterMethod(spec.method);
  return JSON.parse(JSON.stringify(spec)) as AdapterSpec;
}

// ---------------------------------------------------------------------------------------------
// Meta validation and schema migration

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * A meta of any known schema as the current one, validated field by field. `id` names the
 * checkpoint in errors when the meta's own id is unreadable. Throws CheckpointCorruptError.
 */
export function migrateCheckpointMeta(raw: unknown, id = 'checkpoint'): CheckpointMeta {
  if (!isObject(raw)) throw new CheckpointCorruptError(id, 'its metadata is not a JSON object');
  const name = typeof raw.id === 'string' && raw.id.length > 0 ? raw.id : id;
  const schema = raw.schema;
  if (!isCount(schema)) throw new CheckpointCorruptError(name, `its metadata has schema ${JSON.stringify(schema)}, not a schema version`);
  if (schema > CHECKPOINT_SCHEMA_VERSION) {
    throw new CheckpointCorruptError(
      name,
      `it was written by a newer webtune (checkpoint schema ${schema}; this version reads schemas up to ${CHECKPOINT_SCHEMA_VERSION}); update webtune to load it`,
    );
  }
  // From schema 2 on the metadata checksum is part of the format: a schema-2 meta without one was
  // changed; an older schema cannot have one.
  if (schema >= 2 && raw.metaSha256 === undefined) throw new CheckpointCorruptError(name, `its metadata has no checksum (metaSha256), which every checkpoint of schema 2 and later has (it says ${schema})`);
  if (schema < 3 && raw.evaluation !== undefined) throw new CheckpointCorruptError(name, `its metadata has an evaluation history but says schema ${schema}, which had none`);
  if (schema < PRIVACY_SCHEMA && raw.privacy !== undefined) throw new CheckpointCorruptError(name, `its metadata has DP-SGD state ("privacy") but says schema ${schema}, which had none`);
  if (schema < 2 && raw.metaSha256 !== undefined) throw new CheckpointCorruptError(name, `its metadata has a checksum but says schema ${schema}, which had none`);
  if (raw.adapter !== undefined && raw.lora !== undefined) throw new CheckpointCorruptError(name, 'its metadata has both LoRA settings ("lora") and an adapter spec ("adapter")');
  if (schema >= ADAPTER_SPEC_SCHEMA && raw.lora !== undefined) throw new CheckpointCorruptError(name, `its metadata has LoRA settings in the old place ("lora") but says schema ${schema}`);
  let m: Json = { ...raw };
  if (schema === 0) m = migrateV0(m);
  return validateMeta(m, name);
}

/** v0 -> v1: adds totalSteps (from the TrainConfig's `steps`, else the step reached). */
function migrateV0(m: Json): Json {
  const train = isObject(m.train) ? m.train : undefined;
  const steps = train?.steps;
  const totalSteps = typeof steps === 'number' && Number.isSafeInteger(steps) && steps > 0 ? steps : m.step;
  return { ...m, totalSteps };
}

function validateMeta(m: Json, name: string): CheckpointMeta {
  const bad = (field: string, want: string) => new CheckpointCorruptError(name, `its metadata field "${field}" is ${JSON.stringify(m[field])}; expected ${want}`);
  if (typeof m.id !== 'string' || m.id.length === 0) throw bad('id', 'a non-empty string');
  if (typeof m.runId !== 'string' || m.runId.length === 0) throw bad('runId', 'a non-empty string');
  if (!isCount(m.step)) throw bad('step', 'a non-negative integer');
  if (!isCount(m.totalSteps)) throw bad('totalSteps', 'a non-negative integer');
  if (typeof m.createdAt !== 'number' || !Number.isFinite(m.createdAt)) throw bad('createdAt', 'a time in ms');
  if (!isCount(m.byteLength)) throw bad('byteLength', 'a non-negative integer');
  if (typeof m.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(m.sha256)) throw bad('sha256', '64 lowercase hex digits');
  if (m.label !== undefined && typeof m.label !== 'string') throw bad('label', 'a string');
  if (m.metaSha256 !== undefined && (typeof m.metaSha256 !== 'string' || !/^[0-9a-f]{64}$/.test(m.metaSha256))) throw bad('metaSha256', '64 lowercase hex digits');
  if (!isObject(m.train)) throw bad('train', 'an object');

  const model = m.model;
  if (!isObject(model) || typeof model.modelType !== 'string' || !FINGERPRINT_FIELDS.slice(1).every((f) => isCount(model[f]))) {
    throw bad('model', `{ ${FINGERPRINT_FIELDS.join(', ')} }`);
  }
  // Schema 4 writes `adapter`; older schemas wrote `lora`, which reads as a LoRA spec (a meta
  // migrated once, as stores and files hand it back, already has that spec).
  const schema = isCount(m.schema) ? m.schema : 0;
  const field = m.adapter !== undefined ? 'adapter' : 'lora';
  const spec = m.adapter !== undefined ? m.adapter : { method: 'lora', config: m.lora };
  const problem = adapterSpecProblem(spec);
  if (problem) throw bad(field, `a valid adapter spec (${problem})`);
  if (schema < ADAPTER_SPEC_SCHEMA && (spec as AdapterSpec).method !== 'lora') throw bad(field, `LoRA settings, as every checkpoint of schema ${schema} has`);
  const cursor = m.cursor;
  if (
    !isObject(cursor) || !isCount(cursor.epoch) || !isCount(cursor.index) || !Array.isArray(cursor.epochRng) || cursor.epochRng.length !== 4 ||
    !cursor.epochRng.every((w) => isCount(w) && w <= 0xffffffff)
  ) {
    throw bad('cursor', '{ epoch, index, epochRng: four u32 words }');
  }
  const meta: CheckpointMeta = {
    // The schema it was written in from 2 on (the metadata checksum covers it); older ones are migrated to the current.
    schema: isCount(m.schema) && m.schema >= 2 ? m.schema : CHECKPOINT_SCHEMA_VERSION,
    id: m.id,
    runId: m.runId,
    step: m.step,
    totalSteps: m.totalSteps,
    createdAt: m.createdAt,
    model: Object.fromEntries(FINGERPRINT_FIELDS.map((f) => [f, model[f]])) as unknown as ModelFingerprint,
    adapter: JSON.parse(JSON.stringify(spec)) as AdapterSpec,
    train: m.train as JsonObject,
    cursor: { epoch: cursor.epoch, index: cursor.index, epochRng: [...cursor.epochRng] as DataCursor['epochRng'] },
    byteLength: m.byteLength,
    sha256: m.sha256,
  };
  if (m.evaluation !== undefined) {
    const e = m.evaluation;
    const isEval = (v: unknown): v is { step: number; loss: number } => isObject(v) && isCount(v.step) && typeof v.loss === 'number' && Number.isFinite(v.loss);
    if (!isObject(e) || !Array.isArray(e.history) || !e.history.every(isEval) || !isCount(e.sinceImprovement) || (e.best !== undefined && !isEval(e.best))) {
      throw bad('evaluation', '{ history: [{ step, loss }], best?: { step, loss }, sinceImprovement }');
    }
    meta.evaluation = {
      history: e.history.map((h) => ({ step: h.step, loss: h.loss })), sinceImprovement: e.sinceImprovement,
      ...(e.best !== undefined ? { best: { step: e.best.step, loss: e.best.loss } } : {}),
    };
  }
  if (m.privacy !== undefined) {
    const p = m.privacy;
    const isEntry = (v: unknown): boolean => isObject(v) && typeof v.noiseMultiplier === 'number' && v.noiseMultiplier >= 0 && Number.isFinite(v.noiseMultiplier)
      && typeof v.sampleRate === 'number' && v.sampleRate > 0 && v.sampleRate <= 1 && isCount(v.steps) && v.steps >= 1;
    // Consecutive steps with the same settings share one entry, so a real history is short; a long one only costs the accountant time.
    if (!isObject(p) || !Array.isArray(p.sampler) || p.sampler.length !== 4 || !p.sampler.every((w) => isCount(w) && w <= 0xffffffff) || p.sampler.every((w) => w === 0)
      || !Array.isArray(p.accountant) || p.accountant.length > MAX_PRIVACY_HISTORY || !p.accountant.every(isEntry)) {
      throw bad('privacy', `{ sampler: four u32 words, not all 0, accountant: at most ${MAX_PRIVACY_HISTORY} [{ noiseMultiplier, sampleRate, steps }] }`);
    }
    meta.privacy = {
      sampler: [...p.sampler] as RngState,
      accountant: (p.accountant as Array<{ noiseMultiplier: number; sampleRate: number; steps: number }>).map((h) => ({ noiseMultiplier: h.noiseMultiplier, sampleRate: h.sampleRate, steps: h.steps })),
    };
  }
  if (typeof m.label === 'string') meta.label = m.label;
  if (typeof m.metaSha256 === 'string') meta.metaSha256 = m.metaSha256;
  return meta;
}

// ---------------------------------------------------------------------------------------------
// Decoding

/** What differs between a checkpoint and the model/adapter it would be loaded into; empty when they agree. */
export function checkpointDifferences(meta: Pick<CheckpointMeta, 'model' | 'adapter'>, expect: CheckpointExpectation): string[] {
  const out: string[] = [];
  for (const f of FINGERPRINT_FIELDS) {
    if (meta.model[f] !== expect.model[f]) out.push(`model ${f} is ${JSON.stringify(meta.model[f])} in the checkpoint but ${JSON.stringify(expect.model[f])} here`);
  }
  const here = expect.adapter ?? (expect.lora ? toAdapterSpec(expect.lora) : undefined);
  if (here) out.push(...adapterMismatch(meta.adapter, here));
  return out;
}

function toF32(bytes: Uint8Array): Float32Array {
  // A copy into a fresh buffer: aligned, bit-exact (NaN payloads included), and independent of the record.
  return new Float32Array(bytes.slice().buffer);
}

/**
 * Verifies a record and returns its tensors (copies, not views into `record.bytes`): the meta's
 * schema (older ones migrated), byte length and SHA-256, the safetensors structure, and that the
 * tensors agree with the meta (every moment has its parameter, LoRA shapes have the meta's rank).
 * Any failure is a CheckpointCorruptError naming the checkpoint. With `expect`, a checkpoint of
 * another model, another adaptation method, or another configuration of it (LoRA: rank, alpha,
 * targets, rslora, layers; dropout may differ) is a CheckpointMismatchError listing what differs.
 */
export async function decodeCheckpoint(record: CheckpointRecord, expect?: CheckpointExpectation): Promise<DecodedCheckpoint> {
  const meta = migrateCheckpointMeta(record?.meta);
  const id = meta.id;
  const bytes = record.bytes;
  if (!(bytes instanceof Uint8Array)) throw new CheckpointCorruptError(id, 'its data is missing or not bytes');
  if (bytes.byteLength !== meta.byteLength) {
    throw new CheckpointCorruptError(
      id,
      bytes.byteLength < meta.byteLength
        ? `its data is ${bytes.byteLength} bytes but ${meta.byteLength} were written; it is truncated`
        : `its data is ${bytes.byteLength} bytes but ${meta.byteLength} were written; it has extra bytes`,
    );
  }
  if (meta.metaSha256 !== undefined) {
    const digest = await metaDigest(meta);
    if (digest !== meta.metaSha256) {
      throw new CheckpointCorruptError(id, `its metadata (step, data position, settings) does not match its SHA-256 checksum (stored ${meta.metaSha256.slice(0, 16)}..., computed ${digest.slice(0, 16)}...); it was changed or damaged in storage or transfer`);
    }
  }
  const hash = await sha256Hex(bytes);
  if (hash !== meta.sha256) throw new CheckpointCorruptError(id, `its data does not match its SHA-256 checksum (stored ${meta.sha256.slice(0, 16)}..., computed ${hash.slice(0, 16)}...); it was damaged in storage or transfer`);

  let file: SafetensorsFile;
  try {
    file = parseSafetensors(bytes, `checkpoint ${id}`);
  } catch (cause) {
    throw new CheckpointCorruptError(id, `its data is not a readable safetensors file (${(cause as Error).message})`);
  }
  const adapter = new Map<string, HostTensor>();
  const optimizer = new Map<string, HostTensor>();
  for (const [key, t] of file.tensors) {
    if (t.dtype !== 'F32') throw new CheckpointCorruptError(id, `tensor "${key}" is ${t.dtype}; checkpoints hold F32 tensors`);
    (isOptimizerKey(key) ? optimizer : adapter).set(key, { data: toF32(t.bytes), shape: [...t.shape] });
  }
  if (adapter.size === 0) throw new CheckpointCorruptError(id, 'it holds no adapter tensors');
  for (const [key, t] of optimizer) {
    const param = adapter.get(momentBase(key));
    if (!param) throw new CheckpointCorruptError(id, `optimizer moment "${key}" belongs to no adapter tensor`);
    if (!sameShape(param.shape, t.shape)) throw new CheckpointCorruptError(id, `optimizer moment "${key}" is [${t.shape.join(', ')}] but its parameter is [${param.shape.join(', ')}]`);
  }
  if (optimizer.size > 0) {
    for (const key of adapter.keys()) {
      if (!optimizer.has(key + EXP_AVG) || !optimizer.has(key + EXP_AVG_SQ)) throw new CheckpointCorruptError(id, `adapter tensor "${key}" has no optimizer moments while others do`);
    }
  }
  // The methods with LoRA factors (LoRA, DoRA, UniPELT's gated LoRA) name their rank `rank`.
  const configRank = (meta.adapter.config as { rank?: unknown }).rank;
  const rank = typeof configRank === 'number' ? configRank : undefined;
  for (const [key, t] of adapter) {
    const rankDim = key.endsWith('.lora_A.weight') ? 0 : key.endsWith('.lora_B.weight') ? 1 : -1;
    if (rankDim >= 0 && (rank === undefined || t.shape.length !== 2 || t.shape[rankDim] !== rank)) {
      throw new CheckpointCorruptError(id, `"${key}" is [${t.shape.join(', ')}], which does not have the checkpoint's LoRA rank ${rank ?? '(it is not a LoRA checkpoint)'}`);
    }
  }
  if (expect) {
    const diff = checkpointDifferences(meta, expect);
    if (diff.length > 0) throw new CheckpointMismatchError(id, `it belongs to another model or adapter configuration: ${diff.join('; ')}`);
  }
  return { meta, adapter, optimizer, metaProtected: meta.metaSha256 !== undefined };
}

// ---------------------------------------------------------------------------------------------
// Portable file

/** One safetensors file holding the checkpoint: its tensors, and its meta under `__metadata__`. */
export function checkpointToFile(record: CheckpointRecord): Uint8Array {
  const meta = migrateCheckpointMeta(record.meta);
  let file: SafetensorsFile;
  try {
    file = parseSafetensors(record.bytes, `checkpoint ${meta.id}`);
  } catch (cause) {
    throw new CheckpointCorruptError(meta.id, `its data is not a readable safetensors file (${(cause as Error).message})`);
  }
  const tensors = [...file.tensors.values()].map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: t.bytes }));
  return serializeSafetensors(tensors, { ...file.metadata, format: 'pt', [CHECKPOINT_FILE_METADATA_KEY]: JSON.stringify(meta) });
}

/**
 * A record from a file checkpointToFile wrote. Checks the structure here (a safetensors file with
 * a valid checkpoint meta whose byte length matches the tensors); the SHA-256 is checked by
 * decodeCheckpoint (WebCrypto hashing is asynchronous), so decode the record before trusting it.
 * Not safetensors, or safetensors without checkpoint metadata: ModelFormatError naming `source`.
 */
export function checkpointFromFile(bytes: Uint8Array, source = 'checkpoint file'): CheckpointRecord {
  const file = parseSafetensors(bytes, source);
  const text = file.metadata[CHECKPOINT_FILE_METADATA_KEY];
  if (text === undefined) {
    throw new ModelFormatError(source, `is a safetensors file but not a webtune checkpoint (no "${CHECKPOINT_FILE_METADATA_KEY}" metadata); export checkpoints with checkpointToFile, and load PEFT adapters with importPeftAdapter`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (cause) {
    throw new CheckpointCorruptError(source, `its "${CHECKPOINT_FILE_METADATA_KEY}" metadata is not valid JSON (${(cause as Error).message})`);
  }
  const meta = migrateCheckpointMeta(raw, source);
  const { [CHECKPOINT_FILE_METADATA_KEY]: _meta, ...metadata } = file.metadata;
  const tensors = [...file.tensors.values()].map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: t.bytes }));
  const canonical = serializeSafetensors(tensors, metadata);
  if (canonical.byteLength !== meta.byteLength) {
    throw new CheckpointCorruptError(meta.id, `${source} holds ${canonical.byteLength} bytes of checkpoint data but its metadata says ${meta.byteLength}`);
  }
  return { meta, bytes: canonical };
}
