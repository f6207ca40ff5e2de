/**
 * The coordinator protocol, versions 1 and 2: HTTP, JSON for control messages, safetensors for
 * tensors. Shared by the client (this package) and the reference coordinator (packages/coordinator).
 *
 *   POST /v1/register                  {enrolmentSecret, name?} -> RegisterResponse (401 on a bad secret)
 *   GET  /v1/round                     -> RoundInfo of the current round (Bearer token)
 *   GET  /v1/global/:version           -> safetensors of the global adapter (F32, the adapter's trainable keys)
 *   POST /v1/rounds/:roundId/updates   body: an encoded update (codec.ts), headers below -> UploadResponse
 *   GET  /v1/rounds/:roundId           -> RoundStatus
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
 */
import type { AdapterMethod, AdapterSpec, Architecture, LoraConfig } from '@webtune/model';
import type { ProtocolErrorCode } from '@webtune/errors';

/** The newest protocol version: what this package speaks, besides every older one in SUPPORTED_PROTOCOLS. */
export const PROTOCOL_VERSION = 2;

/** The versions this client takes part in (a coordinator's register answer and RoundInfo carry one of them). */
export const SUPPORTED_PROTOCOLS: readonly number[] = [1, 2];

/**
 * The version a coordinator speaks for an adapter of `method`: 1 for LoRA (whose rounds 0.2.0
 * clients train), 2 for every other method (which 0.2.0 clients cannot, and so must refuse).
 */
export function protocolForMethod(method: AdapterMethod): 1 | 2 {
  return method === 'lora' ? 1 : 2;
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
 * leaves the device), 'central' (the coordinator noises the aggregate), or 'none' (updates are only clipped).
 */
export type DpMode = 'none' | 'local' | 'central';

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
  dp: { mode: DpMode; noiseMultiplier: number; delta: number };
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

/** Why a request was rejected (defined beside FederatedError in @webtune/errors). */
export type ErrorCode = ProtocolErrorCode;

/** Body of every 4xx/5xx answer: a machine-readable code and a message for people. */
export interface ErrorResponse {
  error: ErrorCode;
  message: string;
}
