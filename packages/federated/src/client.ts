/**
 * FederatedClient: takes part in federated rounds of a coordinator that speaks protocol 1, 2, 3 or 4
 * (protocol.ts), with a trainer that has a model loaded and local data prepared.
 *
 * One round (runRound):
 *   1. GET /v1/round. No open round, not selected, or a round that would exceed `privacyBudget`
 *      -> a 'skipped' result (nothing trained, nothing sent).
 *   2. GET /v1/global/:version: the adapter's trainable state. importAdapterState() puts it in the
 *      trainer as the round's adapter spec (`config.adapter`, or `config.lora` from an older
 *      coordinator) on the round's architecture; a spec or architecture the trainer's model cannot
 *      use is FederatedError 'bad_config', a global that does not fit it 'bad_global'. Then train
 *      `config.steps` steps with `startFrom: 'current'` (and FedProx's `proximalMu`); with
 *      `config.localDpSgd`, as DP-SGD (TrainRequest.privacy { noiseMultiplier, maxGradNorm, delta }).
 *   3. delta = local - global over every trainable tensor (exportAdapterState()); clip its global L2 norm to S
 *      (`config.clipNorm`). Local DP: add N(0, (z S)^2) to every entry, z = `config.dp.noiseMultiplier`
 *      (Flower's LocalDpMod; the noise comes from crypto.getRandomValues). Central DP and 'none':
 *      clip only (the coordinator adds the noise to the aggregate).
 *   4. Encode (codec.ts; `compression`), save the payload, then POST it with a fresh X-Update-Id.
 *
 * Secure rounds (`config.secureAggregation`, protocol 4; secureRound) put the SecAgg+ stages around
 * steps 2-3: advertise two fresh public keys, share the secrets with the neighbours the coordinator
 * lists (secagg/participant.ts checks the roster), train, quantize the clipped delta (distributed DP
 * adds its share of the noise first), mask it and send it, then reveal the shares the unmask stage
 * asks for and wait for the aggregate. Each step is stored before its message is sent, so a reload
 * continues the round and repeats a message byte for byte; a refusal that protects a secret
 * (SecureAggregationError) is stored too, and the client takes no further part in that round.
 *
 * X-Example-Count (the FedAvg weight) is the number of training sequences the trainer consumed
 * this round: steps * batchSize. The TrainerApi does not expose the size of the prepared data, and
 * the sequences seen is what the update is an average over (a client with less data than that
 * repeats it, which FedAvg treats like more local epochs).
 *
 * Crash safety. The client's record in the RoundStateStore (one key per coordinator URL and
 * client name, written whole with one set) holds the registration, the privacy accountant and the
 * round in progress:
 *   'training'  written before the download. After a reload this round is ABANDONED: its state is
 *               forgotten and the current round starts fresh. Nothing has left the device yet, so
 *               there is nothing to account for and nothing the coordinator could count; training
 *               again from the global adapter costs only time, while resuming a half-trained
 *               adapter would need the trainer's checkpoints to match the round exactly.
 *   'encoded'   the payload bytes, the update id and the round id, written BEFORE the upload, in
 *               the same write that records the release in the accountant. After a reload, if that
 *               round is still the open one, the SAME bytes go up with the SAME update id (the
 *               coordinator answers duplicate: true when it already had them), so an update is
 *               never counted twice and its noise is never drawn twice. If the round has closed (or
 *               another round is current) the payload is dropped.
 *   'uploaded'  the coordinator accepted it; another runRound in the same round is 'skipped'
 *               (reason 'already_uploaded').
 * Recording the privacy release when the noised payload is fixed (not after the upload answer)
 * means a lost answer or a crash after the upload cannot leave a release uncounted; a payload that
 * is dropped unsent is counted anyway (a conservative over-count, never an under-count).
 *
 * Privacy accounting: local-DP releases go into an RDP accountant (subsampled Gaussian with
 * q = round.sampleRate, z = noiseMultiplier) kept in the store, so the epsilon spent survives
 * reloads. Central-DP rounds add no noise on the client; their epsilon is the coordinator's
 * business (it adds the noise and runs the accountant), so they are counted in
 * `privacySpent().centralRounds` but not in its epsilon. With `privacyBudget` set, a local-DP round
 * that would take epsilon above the budget is refused, and so is a round with dp.mode 'none'
 * (an un-noised update has no finite epsilon); central rounds are taken (the client trusts the
 * coordinator's noise).
 *
 * Two guarantees, two accountants. Update-level (`config.dp`, above): protects the device's whole
 * update in one round, i.e. everything the device contributed to that round. Record-level
 * (`config.localDpSgd`, DP-SGD in local training): protects one training row of this device's
 * data, across every round this device trains, whatever else the update reveals. Its accountant
 * is separate and per device: each DP-SGD round adds the trainer's (sigma, q = batch / rows, steps)
 * (TrainSummary.privacy) at the moment the payload is fixed (as for local DP), and the epsilon at
 * the round's localDpSgd.delta is `recordLevel` in runRound()'s result and in privacySpent(). It
 * assumes the rows are the same data from round to round (a row that joins later has spent less).
 * A round with `localDpSgd` but dp.mode 'none' is still refused under `privacyBudget`, which is an
 * update-level budget.
 */
import { DownloadError, FederatedError, InvalidArgumentError, ModelFormatError, SecureAggregationError, WebtuneError } from '@webtune/errors';
import { adapterSpecProblem, ARCHITECTURES, parseSafetensors, tensorToFloat32, toAdapterSpec, type AdapterSpec, type HostTensor, type LoraConfig } from '@webtune/model';
import type { AdapterRequest, TrainerApi } from '@webtune/sdk';
import { addGaussianNoise, DP_SGD_ORDERS, RdpAccountant, type RdpAccountantJSON } from '@webtune/trainer';
import { decodeUpdate, encodeUpdate, globalNorm } from './codec.js';
import { clipGlobalNorm } from './dp.js';
import {
  localDpSgdProblem, SUPPORTED_PROTOCOLS,
  type DpMode, type LocalDpSgdConfig, type ErrorCode, type ErrorResponse, type RegisterResponse, type RoundConfig, type RoundInfo, type UploadResponse,
} from './protocol.js';
import { defaultRoundStore, type RoundStateStore } from './round-store.js';
import { curveSupported } from './secagg/crypto.js';
import { advertiseRequest, createParticipant, maskInput, receiveShares, shareKeys, unmask, type ParticipantState } from './secagg/participant.js';
import { quantize } from './secagg/quantize.js';
import type { SecAggStage, SecAggStatus, ShareKeysRequest, UnmaskRequest } from './protocol.js';

/**
 * What FederatedClientOptions.onEvent receives as a round goes on: the phase, the round, a readable
 * `detail` (e.g. the step and loss while training), and the bytes moved for 'download' and 'upload'.
 */
export interface FederatedEvent {
  /** 'secagg': a secure round moved to a stage (`detail` names it) or this client sent its message of one. */
  phase: 'register' | 'download' | 'train' | 'upload' | 'secagg' | 'done' | 'skipped';
  roundId?: number;
  detail?: string;
  bytes?: number;
}

/**
 * Options of the FederatedClient constructor: the coordinator and the enrolment secret, a trainer ready to
 * train, and optional storage, compression, privacy budget and retry settings. `name` tells apart several
 * clients of one coordinator in the same store (each keeps its own registration and privacy accounting).
 */
export interface FederatedClientOptions {
  /** The coordinator's base URL (e.g. http://127.0.0.1:8080). */
  url: string;
  enrolmentSecret: string;
  /** A trainer with a model loaded and local data prepared (createTrainer(), worker or inline). */
  trainer: TrainerApi;
  /** Default: IndexedDB where it exists, else memory. */
  store?: RoundStateStore;
  /** The fetch every request goes through; default globalThis.fetch (e.g. pass one that adds headers). */
  fetch?: typeof fetch;
  compression?: { encoding?: 'f32' | 'q8'; topK?: number };
  /** Refuse a round that would take the local-DP epsilon (at this delta) above `epsilon`. */
  privacyBudget?: { epsilon: number; delta: number };
  /**
   * Exponential backoff with jitter on network errors, 5xx and 429 (Retry-After is honoured);
   * other 4xx are not retried. `attempts` counts every try (default 5), `baseDelayMs` the first
   * wait (default 500; each wait is 1/2 to 1 times base * 2^n, at most 30 s).
   */
  retry?: { attempts?: number; baseDelayMs?: number };
  name?: string;
  /**
   * Secure rounds (RoundConfig.secureAggregation): how often the client asks whether the round moved
   * to the next stage (default 1000 ms).
   */
  secureAggregation?: { pollIntervalMs?: number };
  /** Called at each phase of a round, for logs or UI; an exception it throws is ignored. Failures reject runRound() instead. */
  onEvent?: (e: FederatedEvent) => void;
}

/**
 * Why runRound() took no part: no current round, the round is not open, this client was not selected,
 * the privacy budget would be exceeded ('privacy_budget'), or the round adds no noise while a budget is set
 * ('no_dp'); the update was already uploaded, training was paused or cancelled, or the coordinator refused
 * the upload because the round had closed or moved on ('round_closed', 'wrong_round'), or a secure round had
 * stopped taking new clients ('stage_passed': it collects keys only at its start).
 */
export type SkipReason =
  | 'no_round' | 'round_not_open' | 'not_selected' | 'privacy_budget' | 'no_dp'
  | 'already_uploaded' | 'training_stopped' | 'round_closed' | 'wrong_round' | 'stage_passed';

/**
 * Record-level privacy spent by this device (DP-SGD in local training, RoundConfig.localDpSgd): the
 * epsilon at `delta` that protects ONE TRAINING ROW of this device's data across every DP-SGD round
 * it has trained and released, the optimizer steps those rounds took and how many rounds they were.
 * Unrelated to the update-level epsilon (which protects the device's whole update per round).
 */
export interface RecordLevelPrivacy {
  /** Epsilon over every DP-SGD step accounted, at `delta` (Infinity if any round had noiseMultiplier 0). */
  epsilon: number;
  /** The delta it is stated at (default: the last DP-SGD round's localDpSgd.delta). */
  delta: number;
  /** DP-SGD steps accounted (each one release of the sampled Gaussian mechanism). */
  steps: number;
  /** Rounds trained with DP-SGD whose update was released (encoded for upload). */
  rounds: number;
}

/**
 * What runRound() resolves to: 'uploaded' with the payload's size, the update's norms, the privacy
 * setting and (local DP) the epsilon spent so far, or 'skipped' with the reason. Failures are thrown
 * (FederatedError, DownloadError), not returned.
 */
export interface RoundResult {
  status: 'uploaded' | 'skipped';
  roundId?: number;
  reason?: SkipReason;
  /** Bytes of the payload sent. */
  uploadBytes?: number;
  /** Bytes the same delta takes as dense f32 (to compare compression against). */
  denseBytes?: number;
  /** L2 norm of the delta after clipping (<= S), before any noise. */
  clippedNorm?: number;
  /** L2 norm of the delta before clipping. */
  norm?: number;
  /** Update-level, local-DP epsilon spent so far, this round included (undefined for central/none rounds). */
  epsilon?: number;
  /** Record-level (DP-SGD) privacy spent so far, this round included; only in rounds with `localDpSgd`. */
  recordLevel?: RecordLevelPrivacy;
  /** The coordinator already had this update (a re-upload after a reload). */
  duplicate?: boolean;
  /** Secure rounds: how the round went (the coordinator never saw this update, only the sum). */
  secureAggregation?: SecureRoundReport;
  /** This result is the re-upload of a payload saved before a reload. */
  resumed?: boolean;
  /** Updates the coordinator has accepted in the round so far. */
  accepted?: number;
  /**
   * The round's privacy setting: who adds the update-level noise, its multiplier z and the clip norm S;
   * `localDpSgd` when local training used DP-SGD (record-level).
   */
  privacy?: { mode: DpMode; noiseMultiplier: number; clipNorm: number; delta: number; localDpSgd?: LocalDpSgdConfig };
}

/** What a secure round reports in RoundResult.secureAggregation. */
export interface SecureRoundReport {
  /** n, k, t and the fewest inputs the coordinator unmasks. */
  participants: number;
  neighbours: number;
  threshold: number;
  minSurvivors: number;
  /** Masked inputs in the sum. */
  survivors: number;
  /** The global version the round produced. */
  resultVersion: number;
  /** Values outside [-clippingRange, clippingRange] clipped before quantization (0 unless the update is unusual). */
  rangeClipped: number;
  /** Per stage: bytes this client sent and received, and milliseconds from its start to its message (waiting included). */
  stages: Partial<Record<SecAggStage, { sentBytes: number; receivedBytes: number; ms: number }>>;
}

/** The clipped delta of a trained round (trainUpdate), before any noise, encoding or mask. */
interface TrainedUpdate {
  delta: Map<string, HostTensor>;
  keys: string[];
  global: Map<string, HostTensor>;
  norm: number;
  clippedNorm: number;
  arrays: Float32Array[];
  summary: { privacy?: { noiseMultiplier: number; sampleRate: number; steps: number } | undefined };
}

/**
 * A secure round in progress, stored after every step so a reload goes on from it: the participant's
 * keys, seed and shares, and each message exactly as sent (a repeat is the same bytes).
 */
interface SecureStoredRound {
  phase: 'secagg';
  roundId: number;
  step: 'created' | 'advertised' | 'shared' | 'masked' | 'unmasked';
  participant: ParticipantState;
  shares?: ShareKeysRequest;
  masked?: { updateId: string; payload: Uint8Array; norm: number; clippedNorm: number; denseBytes: number; rangeClipped: number };
  unmask?: UnmaskRequest;
  stages: SecureRoundReport['stages'];
}

type StoredRound =
  | SecureStoredRound
  /** A secure round this client refused (SecureAggregationError): it sends nothing more in it. */
  | { phase: 'refused'; roundId: number; reason: string }
  | { phase: 'training'; roundId: number; startedAt: number }
  | {
    phase: 'encoded'; roundId: number; updateId: string; payload: Uint8Array; exampleCount: number; mode: DpMode;
    denseBytes: number; clippedNorm: number; norm: number;
  }
  | { phase: 'uploaded'; roundId: number; updateId: string; uploadBytes: number };

interface StoredClient {
  schema: 1;
  clientId?: string;
  token?: string;
  /** RdpAccountant.toJSON() of the local-DP releases. */
  accountant?: RdpAccountantJSON;
  localRounds: number;
  centralRounds: number;
  /** Secure rounds with distributed DP whose masked input was released (their epsilon is the coordinator's, as central). */
  distributedRounds?: number;
  /** The delta of the last local-DP round (privacySpent's default). */
  lastDelta?: number;
  /** RdpAccountant.toJSON() of the DP-SGD steps of local training (record-level; separate from `accountant`). */
  recordAccountant?: RdpAccountantJSON;
  /** Rounds and steps the record-level accountant holds, and the last DP-SGD round's delta. */
  recordRounds?: number;
  recordSteps?: number;
  recordDelta?: number;
  round?: StoredRound;
}

const DEFAULT_ATTEMPTS = 5;
const DEFAULT_BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 30_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** "1, 2, 3 and 4": the versions this client speaks, for messages. */
function speaks(): string {
  const v = SUPPORTED_PROTOCOLS.map(String);
  return v.length < 2 ? v.join('') : `${v.slice(0, -1).join(', ')} and ${v.at(-1)}`;
}

function epsilonOf(accountant: RdpAccountant, delta: number): number {
  return accountant.epsilon(delta).epsilon;
}

function toTensors(bytes: Uint8Array, what: string): Map<string, HostTensor> {
  let file;
  try {
    file = parseSafetensors(bytes, what);
  } catch (cause) {
    throw new FederatedError('MODEL_FORMAT', 'bad_global', `${what} is not a readable safetensors file: ${(cause as Error).message}`, { cause });
  }
  const out = new Map<string, HostTensor>();
  for (const [name, t] of file.tensors) {
    const data = tensorToFloat32(t, what);
    // A poisoned or corrupt global would turn every local step into NaN: refuse it before training.
    const bad = data.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) throw new FederatedError('MODEL_FORMAT', 'bad_global', `${what} has a non-finite value (${data[bad]}) in ${name}; it is not trained on. The coordinator should not have published it.`);
    out.set(name, { data, shape: [...t.shape] });
  }
  return out;
}

/**
 * Takes part in federated rounds of a webtune coordinator with a trainer that has a model loaded and local
 * data prepared. Each runRound() downloads the global adapter, trains on the local data, clips the change
 * to the adapter (adding noise for local DP) and uploads it: the training data never leaves the device.
 * Its state (registration, privacy accounting, an update saved before its upload) survives reloads, so an
 * update is never counted twice.
 *
 * @example
 * ```ts
 * const client = new FederatedClient({ url: 'https://coordinator.example.com', enrolmentSecret, trainer });
 * const result = await client.runRound(); // { status: 'uploaded', ... } or { status: 'skipped', reason }
 * ```
 */
export class FederatedClient {
  private readonly o: FederatedClientOptions;
  private readonly store: RoundStateStore;
  private readonly fetchFn: typeof fetch;
  private readonly baseUrl: string;
  private readonly key: string;
  private record: StoredClient | undefined;
  private accountant = new RdpAccountant();
  /** Record-level: at the orders the trainer accounts DP-SGD at, so a round's epsilon here is the trainer's. */
  private recordAccountant = new RdpAccountant(DP_SGD_ORDERS);
  private busy = false;
  /** Bytes sent and received by http() so far (secure rounds report them per stage). */
  private traffic = { sent: 0, received: 0 };

  constructor(options: FederatedClientOptions) {
    if (!options || typeof options.url !== 'string' || !/^https?:\/\//.test(options.url)) {
      throw new InvalidArgumentError(`FederatedClient needs the coordinator's http(s) URL, got ${JSON.stringify(options?.url)}.`);
    }
    if (typeof options.enrolmentSecret !== 'string') throw new InvalidArgumentError('FederatedClient needs enrolmentSecret (a string).');
    if (!options.trainer) throw new InvalidArgumentError('FederatedClient needs a trainer with a model loaded and data prepared (createTrainer()).');
    const { encoding, topK } = options.compression ?? {};
    if (encoding !== undefined && encoding !== 'f32' && encoding !== 'q8') throw new InvalidArgumentError(`compression.encoding must be 'f32' or 'q8', got ${String(encoding)}.`);
    if (topK !== undefined && !(topK > 0 && topK <= 1)) throw new InvalidArgumentError(`compression.topK must be in (0, 1], got ${topK}.`);
    const budget = options.privacyBudget;
    if (budget && !(budget.epsilon > 0 && budget.delta > 0 && budget.delta < 1)) {
      throw new InvalidArgumentError(`privacyBudget needs epsilon > 0 and delta in (0, 1), got ${JSON.stringify(budget)}.`);
    }
    const attempts = options.retry?.attempts;
    if (attempts !== undefined && !(Number.isInteger(attempts) && attempts >= 1)) throw new InvalidArgumentError(`retry.attempts must be an integer >= 1, got ${attempts}.`);
    this.o = options;
    this.store = options.store ?? defaultRoundStore();
    const f = options.fetch ?? globalThis.fetch;
    if (typeof f !== 'function') throw new InvalidArgumentError('There is no fetch here: pass options.fetch.');
    this.fetchFn = (input, init) => f(input, init);
    this.baseUrl = options.url.replace(/\/+$/, '');
    this.key = `client:${this.baseUrl}#${options.name ?? ''}`;
  }

  private emit(e: FederatedEvent): void {
    try {
      this.o.onEvent?.(e);
    } catch {
      // A throwing listener must not break a round.
    }
  }

  private async load(): Promise<StoredClient> {
    if (this.record) return this.record;
    const raw = (await this.store.get(this.key)) as StoredClient | undefined;
    const record: StoredClient = raw && raw.schema === 1 ? raw : { schema: 1, localRounds: 0, centralRounds: 0 };
    this.accountant = record.accountant !== undefined ? RdpAccountant.fromJSON(record.accountant) : new RdpAccountant();
    this.recordAccountant = record.recordAccountant !== undefined ? RdpAccountant.fromJSON(record.recordAccountant) : new RdpAccountant(DP_SGD_ORDERS);
    this.record = record;
    return record;
  }

  private async save(record: StoredClient): Promise<void> {
    await this.store.set(this.key, record);
    this.record = record;
  }

  /** Registers with the coordinator unless the store already holds this client's id and token (a reload does not register again). */
  async register(): Promise<void> {
    const record = await this.load();
    if (record.clientId && record.token) return;
    await this.registerNow(record);
  }

  private async registerNow(record: StoredClient): Promise<void> {
    const body = JSON.stringify({ enrolmentSecret: this.o.enrolmentSecret, ...(this.o.name !== undefined ? { name: this.o.name } : {}) });
    const res = (await this.http('/v1/register', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body }, 'json')) as RegisterResponse;
    if (!SUPPORTED_PROTOCOLS.includes(res?.protocol)) {
      throw new FederatedError('INVALID_ARGUMENT', 'unsupported_protocol', `The coordinator speaks protocol ${String(res?.protocol)}; this client speaks ${speaks()}: update webtune.`);
    }
    if (typeof res.clientId !== 'string' || typeof res.token !== 'string') throw new FederatedError('DOWNLOAD_FAILED', 'bad_response', 'The register answer has no clientId/token.');
    await this.save({ ...record, clientId: res.clientId, token: res.token });
    this.emit({ phase: 'register', detail: res.clientId });
  }

  /** The client id the coordinator gave (after register()). */
  get clientId(): string | undefined {
    return this.record?.clientId;
  }

  /**
   * Privacy spent so far, two guarantees apart. `epsilon`: the update-level local-DP epsilon at
   * `delta` (default: privacyBudget.delta, else the last round's dp.delta, else 1e-5), protecting
   * the device's whole update per round, over `rounds` releases; central-DP rounds are counted apart
   * (`centralRounds`), and so are secure rounds with distributed DP (`distributedRounds`): their epsilon is the coordinator's. `recordLevel`, once a round trained with
   * DP-SGD (RoundConfig.localDpSgd) was released: the record-level epsilon at `recordDelta`
   * (default: the last DP-SGD round's localDpSgd.delta), protecting one training row of this device
   * across every DP-SGD round. Reads the state loaded by register() or runRound().
   */
  privacySpent(delta?: number, recordDelta?: number): { epsilon: number; rounds: number; centralRounds: number; distributedRounds: number; recordLevel?: RecordLevelPrivacy } {
    const r = this.record;
    const rounds = r?.localRounds ?? 0;
    const d = delta ?? this.o.privacyBudget?.delta ?? r?.lastDelta ?? 1e-5;
    const recordLevel = this.recordLevel(recordDelta);
    return {
      epsilon: rounds === 0 ? 0 : epsilonOf(this.accountant, d), rounds, centralRounds: r?.centralRounds ?? 0, distributedRounds: r?.distributedRounds ?? 0,
      ...(recordLevel ? { recordLevel } : {}),
    };
  }

  private recordLevel(delta?: number): RecordLevelPrivacy | undefined {
    const r = this.record;
    if (!r?.recordRounds) return undefined;
    const d = delta ?? r.recordDelta ?? 1e-5;
    return { epsilon: epsilonOf(this.recordAccountant, d), delta: d, steps: r.recordSteps ?? 0, rounds: r.recordRounds };
  }

  /** One round; see the file comment. */
  async runRound(): Promise<RoundResult> {
    if (this.busy) throw new FederatedError('INVALID_ARGUMENT', 'busy', 'A round is already running on this client; await it first.');
    this.busy = true;
    try {
      return await this.round();
    } finally {
      this.busy = false;
    }
  }

  private skip(reason: SkipReason, roundId?: number, detail?: string): RoundResult {
    this.emit({ phase: 'skipped', ...(roundId !== undefined ? { roundId } : {}), detail: detail ? `${reason}: ${detail}` : reason });
    return { status: 'skipped', reason, ...(roundId !== undefined ? { roundId } : {}) };
  }

  private async round(): Promise<RoundResult> {
    await this.register();
    let info: RoundInfo;
    try {
      info = (await this.authed('/v1/round', { method: 'GET' }, 'json')) as RoundInfo;
    } catch (error) {
      if (error instanceof FederatedError && error.status === 404) return this.skip('no_round', undefined, error.message);
      throw error;
    }
    if (!SUPPORTED_PROTOCOLS.includes(info?.protocol)) {
      throw new FederatedError('INVALID_ARGUMENT', 'unsupported_protocol', `The coordinator's round speaks protocol ${String(info?.protocol)}; this client speaks ${speaks()}: update webtune.`);
    }
    let record = this.record!;
    const pending = record.round;
    if (pending) {
      const sameOpen = pending.roundId === info.roundId && info.status === 'open';
      if (pending.phase === 'encoded' && sameOpen) return this.uploadSaved(pending, info);
      if (pending.phase === 'uploaded' && pending.roundId === info.roundId) return this.skip('already_uploaded', info.roundId);
      if (pending.phase === 'secagg' && pending.roundId === info.roundId && info.status !== 'closed') return this.secureRoundOnce(info, pending);
      if (pending.phase === 'refused' && pending.roundId === info.roundId) return this.skip('stage_passed', info.roundId, `this client refused the round earlier: ${pending.reason}`);
      // 'training' (abandoned after a reload), an 'encoded' payload whose round closed, or an old 'uploaded': forget it.
      const { round: _dropped, ...rest } = record;
      record = { ...rest };
      await this.save(record);
    }
    if (info.status !== 'open') return this.skip('round_not_open', info.roundId, info.status);
    if (!info.selected) return this.skip('not_selected', info.roundId);
    // No client-side deadline check: the device clock may be off; a late upload is the coordinator's to refuse (round_closed).
    const config = info.config;
    const mode = config.dp.mode;
    if (!(config.clipNorm > 0)) throw new FederatedError('INVALID_ARGUMENT', 'bad_config', `The round's clipNorm must be positive, got ${config.clipNorm}.`);
    if (mode === 'local' && !(config.dp.noiseMultiplier > 0)) {
      throw new FederatedError('INVALID_ARGUMENT', 'bad_config', `A local-DP round needs noiseMultiplier > 0, got ${config.dp.noiseMultiplier}.`);
    }
    const dpSgd = config.localDpSgd ?? undefined;
    const dpSgdProblem = dpSgd === undefined ? undefined : localDpSgdProblem(dpSgd);
    if (dpSgdProblem) throw new FederatedError('INVALID_ARGUMENT', 'bad_config', `Round ${info.roundId}'s localDpSgd ${dpSgdProblem}.`);
    const budget = this.o.privacyBudget;
    if (budget && mode === 'none') return this.skip('no_dp', info.roundId, 'the round adds no noise and a privacyBudget is set');
    if (budget && mode === 'local') {
      const projected = RdpAccountant.fromJSON(this.accountant.toJSON());
      projected.step({ noiseMultiplier: config.dp.noiseMultiplier, sampleRate: info.sampleRate });
      const eps = epsilonOf(projected, budget.delta);
      if (!(eps <= budget.epsilon)) {
        return this.skip('privacy_budget', info.roundId, `epsilon would reach ${eps.toFixed(3)} > ${budget.epsilon} at delta ${budget.delta}`);
      }
    }

    // Who adds the noise must fit the round: local DP would noise an update nobody sees (and its
    // accounting would count noise never added); distributed DP needs the masks to hide each share.
    if (config.secureAggregation && mode === 'local') throw new FederatedError('INVALID_ARGUMENT', 'bad_config', `Round ${info.roundId} is secure with dp.mode 'local'; secure rounds use 'distributed' (or 'central').`);
    if (!config.secureAggregation && mode === 'distributed') throw new FederatedError('INVALID_ARGUMENT', 'bad_config', `Round ${info.roundId} has dp.mode 'distributed' without secureAggregation: the update would go up unmasked and un-noised.`);
    if (config.secureAggregation) return this.secureRoundOnce(info, undefined);
    await this.save({ ...record, round: { phase: 'training', roundId: info.roundId, startedAt: Date.now() } });

    const trained = await this.trainUpdate(info, dpSgd);
    if ('status' in trained) return trained;
    const { delta, keys, global, norm, clippedNorm, arrays, summary } = trained;
    const S = config.clipNorm;
    if (mode === 'local') addGaussianNoise(arrays, config.dp.noiseMultiplier * S);
    const expected = new Map(keys.map((k) => [k, global.get(k)!.shape] as const));
    let payload = this.encode(delta, expected, info.globalVersion, mode === 'local' ? undefined : S);
    // Stored as is: a view on a larger buffer would be stored (structured-cloned) whole.
    if (payload.byteOffset !== 0 || payload.byteLength !== payload.buffer.byteLength) payload = payload.slice();
    const denseBytes = this.o.compression?.encoding === 'q8' || (this.o.compression?.topK ?? 1) < 1
      ? encodeUpdate(delta, { encoding: 'f32', baseVersion: info.globalVersion }).byteLength
      : payload.byteLength;
    if (payload.byteLength > config.maxUploadBytes) {
      const { round: _r, ...rest } = this.record!;
      await this.save({ ...rest });
      throw new FederatedError('INVALID_ARGUMENT', 'too_large', `The update is ${payload.byteLength} bytes and the round accepts at most ${config.maxUploadBytes}; use compression ({ encoding: 'q8' } and/or topK).`);
    }

    // The payload is fixed: save it (and account for its release) before it leaves.
    const encoded: StoredRound = {
      phase: 'encoded', roundId: info.roundId, updateId: crypto.randomUUID(), payload, exampleCount: config.steps * config.batchSize, mode,
      denseBytes, clippedNorm, norm,
    };
    await this.save(this.accountRelease({ ...this.record!, round: encoded }, info, summary));
    return this.uploadSaved(encoded, info, false);
  }

  /**
   * `next` with this round's release accounted: local DP in the update-level accountant, central and
   * distributed rounds counted, DP-SGD steps in the record-level accountant. Called with the record
   * that fixes the payload, so a release is never left uncounted.
   */
  private accountRelease(next: StoredClient, info: RoundInfo, summary: TrainedUpdate['summary']): StoredClient {
    const config = info.config;
    const mode = config.dp.mode;
    if (mode === 'local') {
      this.accountant.step({ noiseMultiplier: config.dp.noiseMultiplier, sampleRate: info.sampleRate });
      next.accountant = this.accountant.toJSON();
      next.localRounds = (next.localRounds ?? 0) + 1;
      next.lastDelta = config.dp.delta;
    } else if (mode === 'central') {
      next.centralRounds = (next.centralRounds ?? 0) + 1;
    } else if (mode === 'distributed') {
      next.distributedRounds = (next.distributedRounds ?? 0) + 1;
    }
    const dpSgd = config.localDpSgd ?? undefined;
    if (dpSgd && summary.privacy) {
      // Record-level: the DP-SGD steps this update is made of, released with it.
      const p = summary.privacy;
      if (p.steps > 0) this.recordAccountant.step({ noiseMultiplier: p.noiseMultiplier, sampleRate: p.sampleRate, steps: p.steps });
      next.recordAccountant = this.recordAccountant.toJSON();
      next.recordRounds = (next.recordRounds ?? 0) + 1;
      next.recordSteps = (next.recordSteps ?? 0) + p.steps;
      next.recordDelta = dpSgd.delta;
    }
    return next;
  }

  /** GET the secure round's status for this client. */
  private async secaggStatus(roundId: number): Promise<SecAggStatus> {
    return (await this.authed(`/v1/rounds/${roundId}/secagg`, { method: 'GET' }, 'json')) as SecAggStatus;
  }

  /** Polls the secure round's status until `done` holds for it (the coordinator moves stages on its own clock). */
  private async waitForStage(roundId: number, done: (s: SecAggStatus) => boolean): Promise<SecAggStatus> {
    const every = this.o.secureAggregation?.pollIntervalMs ?? 1000;
    for (;;) {
      const status = await this.secaggStatus(roundId);
      if (done(status) || status.stage === 'closed') return status;
      await sleep(every);
    }
  }

  /** secureRound, recording a refusal that protects a secret, so this client sends nothing more in that round, also after a reload. */
  private async secureRoundOnce(info: RoundInfo, pending: SecureStoredRound | undefined): Promise<RoundResult> {
    try {
      return await this.secureRound(info, pending);
    } catch (error) {
      if (error instanceof SecureAggregationError && error.reason !== 'round_failed' && this.record?.round?.roundId === info.roundId) {
        const { round: _r, ...rest } = this.record;
        await this.save({ ...rest, round: { phase: 'refused', roundId: info.roundId, reason: error.reason } });
      }
      throw error;
    }
  }

  /**
   * One secure round (SecAgg+, protocol 4), from its first stage or from a stored step after a
   * reload: advertise keys, share keys, train, mask and send the input, reveal shares, wait for the
   * aggregate. Every message is stored before it is sent and sent again unchanged after a reload. A
   * refusal that protects a secret (SecureAggregationError) stops the round for this client.
   */
  private async secureRound(info: RoundInfo, pending: SecureStoredRound | undefined): Promise<RoundResult> {
    const config = info.config;
    const sa = config.secureAggregation!;
    const id = info.roundId;
    const path = `/v1/rounds/${id}/secagg`;
    let st = pending;
    let stageStart = performance.now();
    let traffic = { ...this.traffic };
    const save = async (next: SecureStoredRound, account?: TrainedUpdate['summary']) => {
      const record: StoredClient = { ...this.record!, round: next };
      await this.save(account ? this.accountRelease(record, info, account) : record);
      st = next;
    };
    /** Records the stage's bytes and time (from the previous mark) and starts the next. */
    const mark = (stage: SecAggStage): SecureRoundReport['stages'] => {
      const out = { ...st!.stages, [stage]: { sentBytes: this.traffic.sent - traffic.sent, receivedBytes: this.traffic.received - traffic.received, ms: performance.now() - stageStart } };
      traffic = { ...this.traffic };
      stageStart = performance.now();
      this.emit({ phase: 'secagg', roundId: id, detail: `${stage} done` });
      return out;
    };
    /**
     * Sends a stage's message. A 409 (the round moved on or closed) after a retry may mean the first
     * try arrived and its answer was lost: the status's `you` flag decides (true: it was taken).
     */
    const send = async (route: 'shares' | 'masked' | 'unmask', init: RequestInit, flag: keyof SecAggStatus['you']): Promise<SecAggStatus | undefined> => {
      try {
        await this.authed(`${path}/${route}`, { method: 'POST', ...init }, 'json');
        return undefined;
      } catch (error) {
        if (!(error instanceof FederatedError && error.status === 409 && (error.reason === 'round_closed' || error.reason === 'wrong_stage'))) throw error;
        const status = await this.secaggStatus(id);
        if (status.you[flag]) return undefined;
        return status;
      }
    };
    const json = (body: unknown): RequestInit => ({ headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    const post = (route: string, body: unknown) => this.authed(`${path}/${route}`, { method: 'POST', ...json(body) }, 'json');
    const late = (status: SecAggStatus, what: string): RoundResult => {
      if (status.stage === 'closed') return this.skip('round_closed', id, `the round closed (${status.outcome ?? 'closed'}${status.failure ? `: ${status.failure}` : ''}) before ${what}`);
      throw new SecureAggregationError('stage_passed', id, `the round moved to ${status.stage} before ${what}; this client drops out of it (the others' sum is still recovered)`);
    };

    if (!st) {
      const status = await this.secaggStatus(id);
      if (status.stage !== 'advertise-keys') return this.skip('stage_passed', id, `the round is in stage ${status.stage}; it takes clients only while it collects keys`);
      if (!(await curveSupported(sa.curve))) {
        throw new SecureAggregationError('unsupported_curve', id, `the round uses ${sa.curve}, which this runtime's WebCrypto does not have; use a current browser or Node >= 20, or ask the operator for P-256`);
      }
      st = { phase: 'secagg', roundId: id, step: 'created', participant: await createParticipant(id, sa.curve), stages: {} };
      await save(st);
    }
    if (st.step === 'created') {
      try {
        await post('keys', advertiseRequest(st.participant));
      } catch (error) {
        if (error instanceof FederatedError && error.reason === 'wrong_stage') return this.skip('stage_passed', id, error.message);
        throw error;
      }
      await save({ ...st, step: 'advertised', stages: mark('advertise-keys') });
    }
    if (st.step === 'advertised') {
      const status = await this.waitForStage(id, (s) => s.stage !== 'advertise-keys');
      if (!status.you.shared && (status.stage !== 'share-keys' || status.index === undefined)) return late(status, 'this client shared its keys');
      if (!st.shares) {
        const r = await shareKeys(st.participant, status);
        await save({ ...st, participant: r.state, shares: r.request });
      }
      const missed = await send('shares', json(st.shares), 'shared');
      if (missed) return late(missed, 'this client shared its keys');
      await save({ ...st, step: 'shared', stages: mark('share-keys') });
    }
    if (st.step === 'shared') {
      if (!st.masked) {
        const trained = await this.trainUpdate(info, config.localDpSgd ?? undefined);
        if ('status' in trained) return trained; // training stopped: this client drops out; the round recovers without it
        const status = await this.waitForStage(id, (s) => s.stage !== 'share-keys');
        if (status.stage !== 'masked-input') return late(status, 'this client sent its masked input');
        const participant = await receiveShares(st.participant, status);
        // The adapter's tensors in ascending key order, row-major: the coordinator's layout.
        const flat = new Float32Array(trained.arrays.reduce((n, a) => n + a.length, 0));
        let at = 0;
        for (const key of [...trained.keys].sort()) {
          flat.set(trained.delta.get(key)!.data, at);
          at += trained.delta.get(key)!.data.length;
        }
        // Distributed DP: this client's share of the noise; the sum of >= minSurvivors inputs carries N(0, (zS)^2).
        // minSurvivors as checked with the roster (the status could say otherwise now).
        if (config.dp.mode === 'distributed') addGaussianNoise([flat], (config.dp.noiseMultiplier * config.clipNorm) / Math.sqrt(st.participant.minSurvivors!));
        const { quantized, clipped } = quantize(flat, sa.clippingRange, sa.quantizationRange);
        const payload = await maskInput(participant, quantized, info.globalVersion);
        const masked = { updateId: crypto.randomUUID(), payload, norm: trained.norm, clippedNorm: trained.clippedNorm, denseBytes: flat.byteLength, rangeClipped: clipped };
        await save({ ...st, participant, masked }, trained.summary);
      }
      const missed = await send('masked', { headers: { 'Content-Type': 'application/octet-stream', 'X-Update-Id': st.masked!.updateId }, body: st.masked!.payload as unknown as BodyInit }, 'masked');
      if (missed) return late(missed, 'this client sent its masked input');
      this.emit({ phase: 'upload', roundId: id, bytes: st.masked!.payload.byteLength, detail: 'masked input' });
      await save({ ...st, step: 'masked', stages: mark('masked-input') });
    }
    if (st.step === 'masked') {
      const status = await this.waitForStage(id, (s) => s.stage !== 'masked-input');
      if (status.stage === 'closed' && status.outcome !== 'aggregated') {
        throw new SecureAggregationError('round_failed', id, `${status.failure ?? 'the round failed'}; this client revealed nothing`);
      }
      if (status.stage === 'unmask' && !status.you.unmasked) {
        if (!st.unmask) {
          const r = unmask(st.participant, status); // throws (and sends nothing) when a secret would be at risk
          await save({ ...st, participant: r.state, unmask: r.request });
        }
        await send('unmask', json(st.unmask), 'unmasked'); // if it did not arrive in time, the round recovers without it (or fails)
      }
      await save({ ...st, step: 'unmasked', stages: mark('unmask') });
    }
    const final = await this.waitForStage(id, (s) => s.stage === 'closed');
    const done = st!;
    const { round: _r, ...rest } = this.record!;
    await this.save({ ...rest, round: { phase: 'uploaded', roundId: id, updateId: done.masked!.updateId, uploadBytes: done.masked!.payload.byteLength } });
    if (final.outcome !== 'aggregated' || final.resultVersion === undefined) {
      throw new SecureAggregationError('round_failed', id, `${final.failure ?? `the round ended ${final.outcome ?? 'without an aggregate'}`}`);
    }
    const report: SecureRoundReport = {
      participants: final.participants!, neighbours: final.neighbours!, threshold: final.threshold!, minSurvivors: final.minSurvivors!,
      survivors: final.survivorCount!, resultVersion: final.resultVersion, rangeClipped: done.masked!.rangeClipped, stages: done.stages,
    };
    const dpSgd = config.localDpSgd ?? undefined;
    const recordLevel = dpSgd ? this.recordLevel(dpSgd.delta) : undefined;
    this.emit({ phase: 'done', roundId: id, detail: `secure: version ${final.resultVersion} from ${report.survivors} masked inputs` });
    return {
      status: 'uploaded', roundId: id, uploadBytes: done.masked!.payload.byteLength, denseBytes: done.masked!.denseBytes,
      clippedNorm: done.masked!.clippedNorm, norm: done.masked!.norm, ...(recordLevel ? { recordLevel } : {}),
      duplicate: false, resumed: pending !== undefined, accepted: report.survivors, secureAggregation: report,
      privacy: { ...config.dp, clipNorm: config.clipNorm, ...(dpSgd ? { localDpSgd: { ...dpSgd } } : {}) },
    };
  }

  /**
   * Downloads the round's global adapter, imports it, trains the round's local steps and returns the
   * clipped delta = local - global (or a 'skipped' result when training stopped). Shared by plain and
   * secure rounds; the caller noises, encodes or masks it.
   */
  private async trainUpdate(info: RoundInfo, dpSgd: LocalDpSgdConfig | undefined): Promise<TrainedUpdate | RoundResult> {
    const config = info.config;
    // Download and import the global adapter.
    const globalBytes = (await this.authed(`/v1/global/${info.globalVersion}`, { method: 'GET' }, 'bytes')) as Uint8Array;
    this.emit({ phase: 'download', roundId: info.roundId, bytes: globalBytes.byteLength, detail: `global version ${info.globalVersion}` });
    const global = toTensors(globalBytes, `global adapter version ${info.globalVersion}`);
    if (global.size === 0) throw new FederatedError('MODEL_FORMAT', 'bad_global', `Global adapter version ${info.globalVersion} has no tensors.`);
    // The server's adapter spec and architecture are checked before anything is built from them.
    const spec = roundAdapter(config);
    const problem = spec ? adapterSpecProblem(spec) : 'the round names no adapter (neither "adapter" nor "lora" in its config)';
    if (problem || !spec) throw new FederatedError('INVALID_ARGUMENT', 'bad_config', `Round ${info.roundId}: ${problem}.`);
    if (config.architecture !== undefined && !ARCHITECTURES.some((a) => a.name === config.architecture)) {
      throw new FederatedError('INVALID_ARGUMENT', 'bad_config', `Round ${info.roundId} names architecture ${JSON.stringify(config.architecture)}, which this client does not know.`);
    }
    const keys = [...global.keys()];
    const trainer = this.o.trainer;
    try {
      // The copy: a worker trainer takes the buffer (transferred, not copied).
      await trainer.importAdapterState({ spec, weights: globalBytes.slice(), ...(config.architecture !== undefined ? { architecture: config.architecture } : {}) });
    } catch (cause) {
      // The trainer checks the spec against its model (InvalidArgumentError) and every tensor against the spec (ModelFormatError).
      if (cause instanceof InvalidArgumentError) {
        throw new FederatedError('INVALID_ARGUMENT', 'bad_config', `Round ${info.roundId} trains ${spec.method}, which this trainer's model cannot use: ${(cause as Error).message}`, { cause });
      }
      if (cause instanceof ModelFormatError) {
        throw new FederatedError('MODEL_FORMAT', 'bad_global', `Global adapter version ${info.globalVersion} does not fit the round's ${spec.method} adapter on this trainer's model: ${(cause as Error).message}`, { cause });
      }
      throw cause;
    }

    // Train locally from the global adapter.
    const runId = `federated-round-${info.roundId}`;
    let summary;
    try {
      summary = await trainer.train(
        {
          steps: config.steps, batchSize: config.batchSize, learningRate: config.learningRate,
          ...(spec.method === 'lora' ? { lora: spec.config as unknown as LoraConfig } : { adapter: { method: spec.method, config: spec.config } as AdapterRequest }),
          startFrom: 'current', proximalMu: config.proximalMu, runId, checkpointEvery: 0, keepLast: 1,
          // Record-level DP: a fixed sigma, no budget (the client's accountant composes the rounds).
          ...(dpSgd ? { privacy: { noiseMultiplier: dpSgd.noiseMultiplier, maxGradNorm: dpSgd.maxGradNorm, delta: dpSgd.delta } } : {}),
        },
        (p) => this.emit({ phase: 'train', roundId: info.roundId, detail: `step ${p.step}/${p.totalSteps} loss ${p.loss.toFixed(4)}` }),
      );
    } catch (cause) {
      // DP-SGD refuses data it cannot protect row by row (packed documents, fewer rows than a batch).
      if (dpSgd && cause instanceof InvalidArgumentError) {
        throw new FederatedError('INVALID_ARGUMENT', 'bad_config', `Round ${info.roundId} trains with DP-SGD (localDpSgd), which this device's data or trainer cannot: ${cause.message}`, { cause });
      }
      throw cause;
    }
    await this.dropCheckpoints(runId);
    if (summary.stopped !== 'completed') {
      const { round: _r, ...rest } = this.record!;
      await this.save({ ...rest });
      return this.skip('training_stopped', info.roundId, `training ${summary.stopped} at step ${summary.step}`);
    }
    if (dpSgd && !summary.privacy) {
      const { round: _r, ...rest } = this.record!;
      await this.save({ ...rest });
      throw new FederatedError('INVALID_ARGUMENT', 'bad_config', `Round ${info.roundId} trains with DP-SGD (localDpSgd), but the trainer reported no privacy for its run; the update is not sent.`);
    }
    const local = toTensors((await trainer.exportAdapterState()).weights, 'trained adapter');

    // delta = local - global, clipped to S; local DP adds N(0, (z S)^2).
    const delta = new Map<string, HostTensor>();
    for (const key of keys) {
      const g = global.get(key)!;
      const l = local.get(key);
      if (!l || l.data.length !== g.data.length) {
        throw new FederatedError('INVALID_ARGUMENT', 'wrong_tensors', `The trained adapter has no tensor "${key}" of the global's shape [${g.shape.join(', ')}]; the round's adapter settings and the global adapter disagree.`);
      }
      const d = new Float32Array(g.data.length);
      for (let i = 0; i < d.length; i++) d[i] = l.data[i]! - g.data[i]!;
      delta.set(key, { data: d, shape: g.shape });
    }
    if (local.size !== global.size) throw new FederatedError('INVALID_ARGUMENT', 'wrong_tensors', `The trained adapter has ${local.size} tensors, the global ${global.size}.`);
    const S = config.clipNorm;
    const arrays = [...delta.values()].map((t) => t.data);
    const { norm } = clipGlobalNorm(arrays, S);
    const clippedNorm = globalNorm(arrays);
    return { delta, keys, global, norm, clippedNorm, arrays, summary };
  }

  /**
   * Encodes the delta; when the coordinator checks the norm (not local DP), verifies the decoded
   * norm is within S (q8's stochastic rounding or f32 rounding can push it just over) and shrinks
   * and re-encodes if not.
   */
  private encode(delta: Map<string, HostTensor>, expected: Map<string, readonly number[]>, baseVersion: number, maxNorm: number | undefined): Uint8Array {
    const options = { encoding: this.o.compression?.encoding ?? 'f32', topK: this.o.compression?.topK ?? 1, baseVersion } as const;
    let payload = encodeUpdate(delta, options);
    if (maxNorm === undefined) return payload;
    for (let attempt = 0; attempt < 8; attempt++) {
      const decodedNorm = globalNorm(decodeUpdate(payload, expected).tensors.values());
      if (decodedNorm <= maxNorm) return payload;
      const factor = (maxNorm / decodedNorm) * (1 - 1e-5 * 4 ** attempt);
      for (const t of delta.values()) for (let i = 0; i < t.data.length; i++) t.data[i]! *= factor;
      payload = encodeUpdate(delta, options);
    }
    return payload;
  }

  private async uploadSaved(saved: Extract<StoredRound, { phase: 'encoded' }>, info: RoundInfo, resumed = true): Promise<RoundResult> {
    let res: UploadResponse;
    try {
      res = (await this.authed(
        `/v1/rounds/${saved.roundId}/updates`,
        {
          method: 'POST',
          headers: { 'Content-Type': 'application/octet-stream', 'X-Update-Id': saved.updateId, 'X-Example-Count': String(saved.exampleCount) },
          body: saved.payload as unknown as BodyInit,
        },
        'json',
      )) as UploadResponse;
    } catch (error) {
      if (error instanceof FederatedError && error.status !== undefined && error.status < 500) {
        // Rejected: these bytes will never be accepted; forget them (their release stays counted).
        const { round: _r, ...rest } = this.record!;
        await this.save({ ...rest });
        if (error.reason === 'round_closed' || error.reason === 'wrong_round') return this.skip(error.reason, saved.roundId, error.message);
      }
      throw error;
    }
    if (res?.accepted !== true) throw new FederatedError('DOWNLOAD_FAILED', 'bad_response', `The coordinator's upload answer is not an acceptance: ${JSON.stringify(res)}.`);
    await this.save({ ...this.record!, round: { phase: 'uploaded', roundId: saved.roundId, updateId: saved.updateId, uploadBytes: saved.payload.byteLength } });
    this.emit({ phase: 'upload', roundId: saved.roundId, bytes: saved.payload.byteLength, detail: res.duplicate ? 'duplicate' : `accepted (${res.count} so far)` });
    const epsilon = saved.mode === 'local' ? this.privacySpent(this.o.privacyBudget?.delta ?? info.config.dp.delta).epsilon : undefined;
    const dpSgd = info.config.localDpSgd ?? undefined;
    const recordLevel = dpSgd ? this.recordLevel(dpSgd.delta) : undefined;
    const details = [epsilon !== undefined ? `epsilon ${epsilon.toFixed(3)}` : saved.mode, ...(recordLevel ? [`record-level epsilon ${recordLevel.epsilon.toFixed(3)}`] : [])];
    this.emit({ phase: 'done', roundId: saved.roundId, detail: details.join(', ') });
    return {
      status: 'uploaded', roundId: saved.roundId, uploadBytes: saved.payload.byteLength, denseBytes: saved.denseBytes,
      clippedNorm: saved.clippedNorm, norm: saved.norm, ...(epsilon !== undefined ? { epsilon } : {}), ...(recordLevel ? { recordLevel } : {}),
      duplicate: res.duplicate, resumed, accepted: res.count,
      privacy: { ...info.config.dp, clipNorm: info.config.clipNorm, ...(dpSgd ? { localDpSgd: { ...dpSgd } } : {}) },
    };
  }

  private async dropCheckpoints(runId: string): Promise<void> {
    try {
      for (const c of await this.o.trainer.listCheckpoints(runId)) await this.o.trainer.deleteCheckpoint(c.id);
    } catch {
      // Best effort: a leftover checkpoint costs space, not correctness.
    }
  }

  /** An authenticated request; a coordinator that forgot the token (401 unauthenticated) gets one new registration and the request again. */
  private async authed(path: string, init: RequestInit, expect: 'json' | 'bytes'): Promise<unknown> {
    for (let again = true; ; again = false) {
      const headers = { ...(init.headers as Record<string, string> | undefined), Authorization: `Bearer ${this.record!.token}` };
      try {
        return await this.http(path, { ...init, headers }, expect);
      } catch (error) {
        if (again && error instanceof FederatedError && error.status === 401 && error.reason === 'unauthenticated') {
          await this.registerNow(this.record!);
          continue;
        }
        throw error;
      }
    }
  }

  /**
   * fetch with retries: network errors, 5xx and 429 back off exponentially with jitter (honouring
   * Retry-After) and end in a DownloadError; any other non-2xx is a FederatedError carrying the
   * coordinator's error code, not retried.
   */
  private async http(path: string, init: RequestInit, expect: 'json' | 'bytes'): Promise<unknown> {
    const url = `${this.baseUrl}${path}`;
    const attempts = this.o.retry?.attempts ?? DEFAULT_ATTEMPTS;
    const base = this.o.retry?.baseDelayMs ?? DEFAULT_BASE_DELAY_MS;
    for (let attempt = 1; ; attempt++) {
      let failure: { detail: string; status?: number; cause?: unknown; retryAfterMs?: number };
      try {
        const body = init.body;
        this.traffic.sent += typeof body === 'string' ? body.length : body instanceof Uint8Array ? body.byteLength : 0;
        const response = await this.fetchFn(url, init);
        if (response.ok) {
          if (expect === 'bytes') {
            const bytes = new Uint8Array(await response.arrayBuffer());
            this.traffic.received += bytes.byteLength;
            return bytes;
          }
          const text = await response.text();
          this.traffic.received += text.length;
          try {
            return JSON.parse(text) as unknown;
          } catch (cause) {
            throw new FederatedError('DOWNLOAD_FAILED', 'bad_response', `${init.method ?? 'GET'} ${url} answered ${response.status} with a body that is not JSON.`, { status: response.status, cause });
          }
        }
        const text = await response.text().catch(() => '');
        if (response.status >= 500 || response.status === 429) {
          const ra = Number(response.headers.get('Retry-After'));
          failure = { detail: `HTTP ${response.status}${text ? ` (${text.slice(0, 200)})` : ''}`, status: response.status, ...(ra > 0 ? { retryAfterMs: ra * 1000 } : {}) };
        } else {
          let body: Partial<ErrorResponse> = {};
          try {
            body = JSON.parse(text) as ErrorResponse;
          } catch {
            // Not an ErrorResponse: keep the status.
          }
          const reason = (typeof body.error === 'string' ? body.error : response.status === 404 ? 'not_found' : 'bad_request') as ErrorCode;
          throw new FederatedError(
            'INVALID_ARGUMENT', reason,
            `The coordinator refused ${init.method ?? 'GET'} ${path} (HTTP ${response.status} ${reason}): ${typeof body.message === 'string' ? body.message : text.slice(0, 200) || 'no message'}`,
            { status: response.status },
          );
        }
      } catch (error) {
        if (error instanceof WebtuneError) throw error;
        // fetch (or reading the body) failed: the network, not the coordinator.
        failure = { detail: `network error: ${(error as Error)?.message ?? String(error)}`, cause: error };
      }
      if (attempt >= attempts) {
        throw new DownloadError(url, `${failure.detail}, after ${attempt} attempt${attempt === 1 ? '' : 's'}`, failure.status, failure.cause === undefined ? undefined : { cause: failure.cause });
      }
      const exp = Math.min(MAX_DELAY_MS, base * 2 ** (attempt - 1));
      const wait = Math.max(exp * (0.5 + 0.5 * Math.random()), Math.min(failure.retryAfterMs ?? 0, 2 * MAX_DELAY_MS));
      await sleep(wait);
    }
  }
}

/** The adapter a round trains: `adapter`, or a LoRA round from a coordinator that sends only `lora`. */
function roundAdapter(config: RoundConfig): AdapterSpec | undefined {
  return config.adapter ?? (config.lora ? toAdapterSpec(config.lora) : undefined);
}
