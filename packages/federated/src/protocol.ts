/**
 * The coordinator protocol, versions 1 to 4: HTTP, JSON for control messages, safetensors for
 * tensors. Shared by the client (this package) and the reference coordinator (packages/coordinator).
 *
 *   POST /v1/register                  {enrolmentSecret, name?} -> RegisterResponse (401 on a bad secret)
 *   GET  /v1/round                     -> RoundInfo of the current round (Bearer token)
 *   GET  /v1/global/:version           -> safetensors of the global adapter (F32, the adapter's trainable keys)
 *   POST /v1/rounds/:roundId/updates   body: an encoded update (codec.ts), headers below -> UploadResponse
 *   GET  /v1/rounds/:roundId           -> RoundStatus
 * Secure-aggregation rounds (protocol 4, secagg/ and SECAGG_ROUTES below) replace the upload with four stages.
 *
 * Every request but register carries `Authorization: Bearer <token>`. An upload carries
 * `X-Update-Id` (a client-chosen UUID: the same id twice is accepted once, the second answer says
 * duplicate), `X-Example-Count` (the FedAvg weight) and `Content-Type: application/octet-stream`.
 * Errors are 4xx/5xx with an ErrorResponse body; a rejected upload changes no state.
 *
 * The unit exchanged is the adapter's trainable state: every trainable tensor under its trainable
 * key (TrainerSession.exportAdapterState). For LoRA, DoRA, IA3, BitFit, bottleneck and UniPELT adapters
 * those keys are the adapter files' keys; for prompt tuning, P-tuning and prefix tuning they are not
 * always (P-tuning's encoder, a prefix projection), which is why the files are not the unit.
 *
 * Versions. 1: rounds a 0.2.0 client can train, LoRA only (it reads `config.lora` and nothing
 * else). 2: every method, named by `config.adapter` with `config.architecture`. The messages and the
 * update format are the same in both; the version says which rounds a client must understand. A
 * coordinator speaks the lowest version its adapter needs (protocolForMethod), in the register
 * answer and in every RoundInfo, so a 0.2.0 client meeting a non-LoRA coordinator stops at its own
 * version check (FederatedError 'unsupported_protocol') instead of failing on a round it cannot read.
 * 3: rounds whose config sets `localDpSgd` (each client trains with DP-SGD). A client that ignored
 * that field would train without the record-level privacy the operator promised its users, so a
 * coordinator whose round sets it speaks 3 (protocolForRound), and every client from before it
 * (which supports only 1 and 2) refuses such a round with 'unsupported_protocol'.
 *
 * 4: rounds whose config sets `secureAggregation` (SecAgg+: the coordinator learns only the sum of
 * the updates). A client that ignored the field would upload its update in the clear, so such rounds
 * speak 4 and older clients refuse them. (Issue 20 called this "version 2"; 2 and 3 were taken
 * by then.) Plain rounds keep the lowest version their adapter needs.
 *
 * Unknown fields. Clients ignore RoundConfig fields they do not know; that is safe only because a
 * field that changes what a client must do comes with a new protocol version, as `adapter` (2) and
 * `localDpSgd` (3) did. The reference coordinator refuses a round setting it does not know (a typo
 * in `localDpSgd` is an error at start, not a round trained without DP-SGD).
 */
import type { AdapterMethod, AdapterSpec, Architecture, LoraConfig } from '@webtune/model';
import type { ProtocolErrorCode } from '@webtune/errors';

/** The newest protocol version: what this package speaks, besides every older one in SUPPORTED_PROTOCOLS. */
export const PROTOCOL_VERSION = 4;

/** The versions this client takes part in (a coordinator's register answer and RoundInfo carry one of them). */
export const SUPPORTED_PROTOCOLS: readonly number[] = [1, 2, 3, 4];

/**
 * The version a coordinator speaks for an adapter of `method`: 1 for LoRA (whose rounds 0.2.0
 * clients train), 2 for every other method (which 0.2.0 clients cannot, and so must refuse).
 */
export function protocolForMethod(method: AdapterMethod): 1 | 2 {
  return method === 'lora' ? 1 : 2;
}

/**
 * The version a coordinator speaks for a round of an adapter of `method` with this config: 4 when the
 * round sets `secureAggregation`, 3 when it sets `localDpSgd` (clients from before either would ignore
 * the field: upload in the clear, or train without DP-SGD, so they must refuse the round), else
 * protocolForMethod(method).
 */
export function protocolForRound(method: AdapterMethod, config: Pick<RoundConfig, 'localDpSgd' | 'secureAggregation'>): 1 | 2 | 3 | 4 {
  if (config.secureAggregation != null) return 4;
  return config.localDpSgd != null ? 3 : protocolForMethod(method);
}

/** Body of POST /v1/register: the enrolment secret the coordinator was started with, and an optional client name. */
export interface RegisterRequest {
  enrolmentSecret: string;
  name?: string;
}

/** Answer to a registration: the protocol version, the client's id, and the bearer token for every later request. */
export interface RegisterResponse {
  protocol: number;
  clientId: string;
  token: string;
}

/**
 * Who adds differential-privacy noise in a round: 'local' (each client noises its clipped update before it
 * leaves the device), 'central' (the coordinator noises the aggregate), 'distributed' (secure rounds only:
 * each client adds N(0, (zS)^2 / m) before masking, m = SecAggStatus.minSurvivors, so the sum of the
 * at least m unmasked inputs carries N(0, (zS)^2) and the coordinator never sees less noise), or 'none'
 * (updates are only clipped).
 */
export type DpMode = 'none' | 'local' | 'central' | 'distributed';

/**
 * DP-SGD for each client's local training (RoundConfig.localDpSgd): every local step clips each
 * example's gradient to L2 norm `maxGradNorm` (C), adds N(0, (noiseMultiplier C)^2) to the sum and
 * samples examples by Poisson sampling at q = batchSize / (the client's training rows), as Opacus.
 *
 * What it protects: ONE TRAINING ROW of one device's data (record-level DP), against anyone who
 * sees everything the device releases, across every round that device trains with it: the client
 * keeps this accountant per device (FederatedClient.privacySpent().recordLevel). Independent of
 * `dp` (update-level: the device's whole update per round), which still clips, and may noise, the
 * uploaded delta. delta should be well below 1 / (the smallest client's row count).
 */
export interface LocalDpSgdConfig {
  /** sigma: the noise std as a multiple of maxGradNorm (finite, >= 0; 0 clips without noise, epsilon Infinity). */
  noiseMultiplier: number;
  /** C: each example's gradient is clipped to this L2 norm (> 0). */
  maxGradNorm: number;
  /** The delta the client reports its record-level epsilon at, in (0, 1). */
  delta: number;
}

/**
 * Why a localDpSgd setting is not valid (a phrase that follows "localDpSgd "), or undefined: sigma
 * finite and >= 0, C finite and > 0, delta in (0, 1), and no other fields (a field not known here
 * might be a promise a client would break). Shared by the client (which refuses such a round,
 * 'bad_config') and the coordinator (which refuses such a config, ConfigError).
 */
export function localDpSgdProblem(c: unknown): string | undefined {
  if (typeof c !== 'object' || c === null || Array.isArray(c)) return `must be an object { noiseMultiplier, maxGradNorm, delta }, got ${JSON.stringify(c)}`;
  const o = c as Record<string, unknown>;
  const extra = Object.keys(o).filter((k) => k !== 'noiseMultiplier' && k !== 'maxGradNorm' && k !== 'delta');
  if (extra.length) return `has fields this client does not know (${extra.join(', ')}); it knows noiseMultiplier, maxGradNorm and delta`;
  const { noiseMultiplier: z, maxGradNorm: C, delta } = o;
  if (typeof z !== 'number' || !Number.isFinite(z) || z < 0) return `noiseMultiplier must be a finite number >= 0, got ${JSON.stringify(z)}`;
  if (typeof C !== 'number' || !Number.isFinite(C) || C <= 0) return `maxGradNorm must be a finite number > 0, got ${JSON.stringify(C)}`;
  if (typeof delta !== 'number' || !(delta > 0 && delta < 1)) return `delta must be a number in (0, 1), got ${JSON.stringify(delta)}`;
  return undefined;
}

/** The ECDH curve of a secure round: P-256 everywhere WebCrypto is, X25519 where the runtime has it. */
export type SecAggCurveName = 'P-256' | 'X25519';

/**
 * Secure aggregation of a round (SecAgg+, Bell et al. 2020; Flower's `SecAggPlusWorkflow` names in
 * brackets). Each client clips its update to the round's clipNorm S, quantizes it to [0, Q - 1]
 * after clipping each value to [-c, c], and masks it mod 2^32; the coordinator learns only the sum.
 */
export interface SecureAggregationConfig {
  /** The ECDH curve every client of the round uses. */
  curve: SecAggCurveName;
  /** k, the neighbours each client shares its secrets with ('num_shares'); 'all' (n - 1) is classic SecAgg. */
  neighbours: number | 'all';
  /**
   * The Shamir threshold t as a share of the k + 1 holders of each secret (its k neighbours and the
   * client; 'reconstruction_threshold'); t is always more than half of them, so that no two disjoint
   * sets of holders can each reconstruct a secret, and at most k; undefined: the majority.
   */
  threshold?: number;
  /** c: each value is clipped to [-c, c] before quantization ('clipping_range', 8). */
  clippingRange: number;
  /** Q: values are quantized to Q levels ('quantization_range', 2^22); maxClients <= floor((2^32 - 1) / (Q - 1)). */
  quantizationRange: number;
  /** How long the key-sharing and unmasking stages wait for clients (ms); the masked-input stage (training) takes roundDurationMs. */
  stageTimeoutMs: number;
}

/** What the coordinator sets for a round: the local training run, the adapter, clipping, privacy and upload size. */
export interface RoundConfig {
  /** Local optimizer steps per round. */
  steps: number;
  batchSize: number;
  learningRate: number;
  seqLen: number;
  /**
   * The adaptation method and its config every client trains (from the coordinator's initial
   * adapter and its spec); always sent by a coordinator of protocol 2.
   */
  adapter?: AdapterSpec;
  /** The model family the adapter was made for; a client with a model of another family refuses the round (bad_config). */
  architecture?: Architecture;
  /**
   * LoRA settings, sent in LoRA rounds for clients from before `adapter`; a coordinator from before
   * `adapter` sends only this.
   */
  lora?: LoraConfig;
  /** Clip the update's global L2 norm to this (S). */
  clipNorm: number;
  /** Update-level DP: who noises the clipped update (of the whole device, per round); see DpMode. */
  dp: { mode: DpMode; noiseMultiplier: number; delta: number };
  /**
   * Record-level DP: each client trains its local steps with DP-SGD (see LocalDpSgdConfig), in
   * addition to `dp`. Only in rounds of protocol 3 (protocolForRound); absent: plain local training.
   */
  localDpSgd?: LocalDpSgdConfig;
  /**
   * Secure aggregation (protocol 4): clients upload masked updates through the four SecAgg+ stages
   * (SECAGG_ROUTES) instead of POST /updates; absent: updates in the clear.
   */
  secureAggregation?: SecureAggregationConfig;
  /** FedProx proximal term weight (0: plain FedAvg local training). */
  proximalMu: number;
  /** Largest accepted upload in bytes. */
  maxUploadBytes: number;
}

/** Answer to GET /v1/round: the current round, whether this client was selected, and the round's configuration. */
export interface RoundInfo {
  protocol: number;
  roundId: number;
  status: 'open' | 'aggregating' | 'closed';
  /** The global adapter version this round trains from. */
  globalVersion: number;
  /** Whether this client was sampled for the round. */
  selected: boolean;
  /** Milliseconds since the epoch. */
  deadline: number;
  minClients: number;
  maxClients: number;
  /** Expected participation rate q (for the client's accountant). */
  sampleRate: number;
  config: RoundConfig;
}

/** Answer to an accepted upload; `duplicate` when the coordinator already had this X-Update-Id (counted once). */
export interface UploadResponse {
  accepted: true;
  duplicate: boolean;
  /** Updates accepted in this round so far. */
  count: number;
}

/** Answer to GET /v1/rounds/:roundId: the round's state, updates accepted so far and its deadline (ms since the epoch). */
export interface RoundStatus {
  roundId: number;
  status: 'open' | 'aggregating' | 'closed';
  accepted: number;
  minClients: number;
  maxClients: number;
  deadline: number;
  /** Set once the round is aggregated. */
  resultVersion: number | undefined;
  /**
   * How a closed round ended: 'aggregated' (resultVersion is set), 'abandoned' (too few updates by
   * the deadline) or 'failed' (the aggregate was not finite or larger than any accepted update
   * allows; the previous version stays current). Undefined while open.
   */
  outcome?: 'aggregated' | 'abandoned' | 'failed' | undefined;
  /** The FedAvg weight of each accepted update, in acceptance order (no client ids). */
  weights?: number[];
  /** This client's own weight, when it has an accepted update in the round. */
  yourWeight?: number | undefined;
}

/**
 * The stages of a secure round (Flower's names: setup, share keys, collect masked vectors, unmask),
 * then 'aggregating' (the coordinator removes the masks) and 'closed'.
 */
export type SecAggStage = 'advertise-keys' | 'share-keys' | 'masked-input' | 'unmask' | 'aggregating' | 'closed';

/**
 * The routes of a secure round (Bearer token as every route; JSON bodies except the masked input).
 *   GET  /v1/rounds/:id/secagg           -> SecAggStatus (this client's view of the stage)
 *   POST /v1/rounds/:id/secagg/keys      AdvertiseKeysRequest        (stage advertise-keys)
 *   POST /v1/rounds/:id/secagg/shares    ShareKeysRequest            (stage share-keys)
 *   POST /v1/rounds/:id/secagg/masked    the masked input (secagg/masks.ts encodeMaskedInput), X-Update-Id (stage masked-input)
 *   POST /v1/rounds/:id/secagg/unmask    UnmaskRequest               (stage unmask)
 * A message of another stage is 409 'wrong_stage'; each client sends each message once (the same
 * message again is answered as before, a different one is 409 'bad_request'). Nothing is accepted
 * from a client outside the stage's participants.
 */
export const SECAGG_ROUTES = { status: 'secagg', keys: 'secagg/keys', shares: 'secagg/shares', masked: 'secagg/masked', unmask: 'secagg/unmask' } as const;

/** Stage advertise-keys: the client's two fresh public keys for the round (raw, base64): one to encrypt shares, one for pairwise masks. */
export interface AdvertiseKeysRequest {
  encryptionKey: string;
  maskKey: string;
}

/** Stage share-keys: one AES-GCM ciphertext (base64) per neighbour, addressed by its index. */
export interface ShareKeysRequest {
  shares: { to: number; ciphertext: string }[];
}

/** Stage unmask: the self-mask seed shares of surviving neighbours and the mask-key shares of dropped ones (base64 share values). */
export interface UnmaskRequest {
  seedShares: { of: number; share: string }[];
  keyShares: { of: number; share: string }[];
}

/** Answer to a secure-round message: accepted (or the same message again: duplicate). */
export interface SecAggAck {
  accepted: true;
  duplicate: boolean;
  stage: SecAggStage;
}

/**
 * Answer to GET /v1/rounds/:id/secagg: the stage and what this client needs of it. Indexes (1..n) name
 * participants; client ids are never shown to other clients.
 */
export interface SecAggStatus {
  roundId: number;
  stage: SecAggStage;
  /** When the current stage ends at the latest (ms since the epoch). */
  stageDeadline: number;
  /** From share-keys on: n, k, t, and the fewest masked inputs the coordinator unmasks (max(t, minClients)). */
  participants?: number;
  neighbours?: number;
  threshold?: number;
  minSurvivors?: number;
  /** This client's index, once the roster is fixed and it is on it. */
  index?: number;
  /** From share-keys on: this client's neighbours and their public keys. */
  peers?: { index: number; encryptionKey: string; maskKey: string }[];
  /** From masked-input on: the shares addressed to this client by neighbours that completed share-keys. */
  inbox?: { from: number; ciphertext: string }[];
  /** From unmask on: this client's neighbours that sent a masked input (survivors) and those that shared keys but did not (dropped), and how many survived in all. */
  survivors?: number[];
  dropped?: number[];
  survivorCount?: number;
  /** What this client has sent. */
  you: { advertised: boolean; shared: boolean; masked: boolean; unmasked: boolean };
  /** Once closed: how the round ended, why if it failed, and the version it produced. */
  outcome?: 'aggregated' | 'abandoned' | 'failed';
  failure?: string;
  resultVersion?: number;
}

/** Why a request was rejected (defined beside FederatedError in @webtune/errors). */
export type ErrorCode = ProtocolErrorCode;

/** Body of every 4xx/5xx answer: a machine-readable code and a message for people. */
export interface ErrorResponse {
  error: ErrorCode;
  message: string;
}
