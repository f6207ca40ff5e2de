/**
 * Coordinator settings: how rounds are run (client counts, deadline, sampling, what happens at a
 * deadline with too few updates), how updates are combined (weight cap, server optimizer) and the
 * RoundConfig every client receives. Read from `--config round-config.json` (any subset; the rest
 * takes the defaults below) and snapshotted into each round's row when the round opens, so a
 * restart with a changed file affects only rounds opened afterwards.
 */
import type { AdapterSpec, Architecture, LoraConfig } from '@webtune/model';
import { localDpSgdProblem, maxParticipants, quantizationProblem, type RoundConfig, type SecureAggregationConfig } from '@webtune/federated';

export type ServerOptimizer =
  /** global += lr * avg (lr 1: plain FedAvg). */
  | { type: 'fedavg'; lr?: number }
  /** Hsu et al. 2019: v = momentum * v + avg; global += lr * v. */
  | { type: 'fedavgm'; lr?: number; momentum?: number }
  /** Reddi et al. 2021 (Flower FedAdam, no bias correction): m = b1 m + (1-b1) avg; v = b2 v + (1-b2) avg^2; global += lr * m / (sqrt(v) + tau). */
  | { type: 'fedadam'; lr?: number; beta1?: number; beta2?: number; tau?: number }
  /** Reddi et al. 2021 (Flower FedYogi): m as FedAdam; v = v - (1-b2) avg^2 sign(v - avg^2); defaults lr 1e-2, b1 0.9, b2 0.99, tau 1e-3. */
  | { type: 'fedyogi'; lr?: number; beta1?: number; beta2?: number; tau?: number }
  /** Reddi et al. 2021 (Flower FedAdagrad): v = v + avg^2; global += lr * avg / (sqrt(v) + tau); defaults lr 0.1, tau 1e-9. */
  | { type: 'fedadagrad'; lr?: number; tau?: number };

/**
 * How a round's updates are combined before the server optimizer. 'mean' (FedAvg, weighted) is
 * computed from a running sum (memory: one adapter). The robust rules need every update of the
 * round: each is kept in the database until the round closes, and aggregation holds them all in
 * memory (maxClients x adapter size x 4 bytes, capped by maxRobustBytes):
 *   'median'        coordinate-wise median (Flower FedMedian); unweighted
 *   'trimmed-mean'  per coordinate, drop floor(beta n) from each end and average (Flower FedTrimmedAvg); unweighted
 *   'krum'          Krum, or MultiKrum with `keep` > 0 (Flower Krum), assuming at most `byzantine` attackers
 * Not with central DP, whose noise is calibrated to the mean's sensitivity.
 */
export type AggregationRule =
  | { rule: 'mean' }
  | { rule: 'median' }
  | { rule: 'trimmed-mean'; beta: number }
  | { rule: 'krum'; byzantine: number; keep?: number };

export interface CoordinatorConfig {
  /** Fewest accepted updates a round needs to be aggregated at its deadline. */
  minClients: number;
  /** The round is aggregated as soon as this many updates are accepted. */
  maxClients: number;
  /** A round's deadline is this long after it opens (or is extended). */
  roundDurationMs: number;
  /** Each registered client is selected for a round with this probability (decided per (round, client) from a server secret). */
  sampleRate: number;
  /**
   * Cap on one client's FedAvg weight (the X-Example-Count it claims, which the coordinator cannot
   * check). 'round' (default): the examples one round trains on, round.steps x round.batchSize,
   * which is exactly what the webtune client reports, so an honest client is never capped and a
   * client claiming a billion examples weighs no more than an honest one. A number sets another
   * cap. Ignored under central DP (equal weights).
   */
  maxExampleWeight: number | 'round';
  /** At a deadline with fewer than minClients updates: 'extend' the deadline (at most maxExtensions times, then close) or 'close' at once. */
  deadlineAction: 'extend' | 'close';
  maxExtensions: number;
  /** Stop opening rounds after this many have been aggregated; null: run forever. */
  maxRounds: number | null;
  serverOptimizer: ServerOptimizer;
  /** How updates are combined (default { rule: 'mean' }); see AggregationRule. */
  aggregation: AggregationRule;
  /** The most memory a robust rule may hold for one round's updates (maxClients x adapter bytes); default 1 GiB. */
  maxRobustBytes: number;
  /** Central DP: an update's L2 norm may exceed clipNorm by this relative amount (f32 rounding on the client). */
  normTolerance: number;
  /** A client's bearer token expires this long after it registered (the client then registers again). Default 30 days. */
  tokenTtlMs: number;
  /**
   * Clients the shared enrolment secret may register in all; beyond, registering needs an
   * invitation code (`webtune-coordinator invite`). Default 10000; null: no limit.
   */
  maxRegistrations: number | null;
  /**
   * At most this share of a round's maxClients may be filled by clients registered after the round
   * opened, once at least minClients clients older than the round exist (so a new coordinator, whose
   * clients are all new, still fills its first rounds). A burst of fresh identities then cannot take
   * a round from the established clients. Default 0.5; 1 turns it off.
   */
  freshClientShare: number;
  /**
   * Sent to clients (RoundInfo.config); missing fields take defaults; `adapter` and `architecture`
   * come from the initial adapter (`lora` may adjust a LoRA adapter's alpha, dropout). A field not
   * in RoundConfig is refused. `localDpSgd: { noiseMultiplier, maxGradNorm, delta }` makes every
   * client train with DP-SGD (record-level DP per device, besides `dp`); rounds with it speak
   * protocol 3, which clients from before it refuse (protocolForRound). `secureAggregation: {}` (any
   * subset of SecureAggregationConfig; DEFAULT_SECURE_AGGREGATION for the rest) makes rounds secure
   * (SecAgg+, protocol 4): the coordinator learns only the sum of the updates.
   */
  round: Partial<Omit<RoundConfig, 'secureAggregation'>> & { secureAggregation?: Partial<SecureAggregationConfig> | null };
}

export const DEFAULT_CONFIG: CoordinatorConfig = {
  minClients: 2,
  maxClients: 10,
  roundDurationMs: 10 * 60_000,
  sampleRate: 1,
  maxExampleWeight: 'round',
  deadlineAction: 'extend',
  maxExtensions: 3,
  maxRounds: null,
  serverOptimizer: { type: 'fedavg' },
  aggregation: { rule: 'mean' },
  maxRobustBytes: 1024 ** 3,
  normTolerance: 1e-3,
  tokenTtlMs: 30 * 24 * 3_600_000,
  maxRegistrations: 10_000,
  freshClientShare: 0.5,
  round: {},
};

/** Flower's SecAggPlusWorkflow defaults (clipping range 8, quantization range 2^22; modulus 2^32 is fixed), P-256, classic SecAgg. */
export const DEFAULT_SECURE_AGGREGATION: SecureAggregationConfig = {
  curve: 'P-256',
  neighbours: 'all',
  clippingRange: 8,
  quantizationRange: 2 ** 22,
  stageTimeoutMs: 60_000,
};

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function positiveNumber(v: unknown, what: string, allowZero = false): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || (allowZero ? v < 0 : v <= 0)) throw new ConfigError(`${what} must be a ${allowZero ? 'non-negative' : 'positive'} number, got ${JSON.stringify(v)}`);
  return v;
}

/** Merges a user config over the defaults and validates it. */
export function resolveConfig(user: unknown = {}): CoordinatorConfig {
  if (!isObject(user)) throw new ConfigError('the coordinator config must be a JSON object');
  const known = new Set(Object.keys(DEFAULT_CONFIG));
  for (const k of Object.keys(user)) if (!known.has(k)) throw new ConfigError(`unknown config field "${k}" (known: ${[...known].join(', ')})`);
  const c = { ...DEFAULT_CONFIG, ...user } as CoordinatorConfig;
  if (!Number.isInteger(c.minClients) || c.minClients < 1) throw new ConfigError(`minClients must be an integer >= 1, got ${c.minClients}`);
  if (!Number.isInteger(c.maxClients) || c.maxClients < c.minClients) throw new ConfigError(`maxClients must be an integer >= minClients, got ${c.maxClients}`);
  positiveNumber(c.roundDurationMs, 'roundDurationMs');
  if (!(typeof c.sampleRate === 'number' && c.sampleRate > 0 && c.sampleRate <= 1)) throw new ConfigError(`sampleRate must be in (0, 1], got ${c.sampleRate}`);
  if (c.maxExampleWeight !== 'round') positiveNumber(c.maxExampleWeight, `maxExampleWeight (a number, or "round" for round.steps x round.batchSize)`);
  if (c.deadlineAction !== 'extend' && c.deadlineAction !== 'close') throw new ConfigError(`deadlineAction must be "extend" or "close"`);
  if (!Number.isInteger(c.maxExtensions) || c.maxExtensions < 0) throw new ConfigError('maxExtensions must be an integer >= 0');
  if (c.maxRounds !== null && !(Number.isInteger(c.maxRounds) && c.maxRounds >= 1)) throw new ConfigError('maxRounds must be null or an integer >= 1');
  positiveNumber(c.normTolerance, 'normTolerance', true);
  const o = c.serverOptimizer;
  if (!isObject(o) || !['fedavg', 'fedavgm', 'fedadam', 'fedyogi', 'fedadagrad'].includes(o.type as string)) {
    throw new ConfigError('serverOptimizer.type must be "fedavg", "fedavgm", "fedadam", "fedyogi" or "fedadagrad"');
  }
  for (const [k, v] of Object.entries(o)) if (k !== 'type') positiveNumber(v, `serverOptimizer.${k}`, true);
  if (!isObject(c.round)) throw new ConfigError('round must be an object (a partial RoundConfig)');
  positiveNumber(c.maxRobustBytes, 'maxRobustBytes');
  positiveNumber(c.tokenTtlMs, 'tokenTtlMs');
  if (c.maxRegistrations !== null && !(Number.isInteger(c.maxRegistrations) && c.maxRegistrations >= 0)) throw new ConfigError('maxRegistrations must be null or an integer >= 0');
  if (!(typeof c.freshClientShare === 'number' && c.freshClientShare > 0 && c.freshClientShare <= 1)) throw new ConfigError('freshClientShare must be in (0, 1]');
  const a = c.aggregation as unknown;
  if (!isObject(a) || !['mean', 'median', 'trimmed-mean', 'krum'].includes(a.rule as string)) {
    throw new ConfigError('aggregation.rule must be "mean", "median", "trimmed-mean" or "krum"');
  }
  if (a.rule === 'trimmed-mean' && !(typeof a.beta === 'number' && a.beta >= 0 && a.beta < 0.5)) throw new ConfigError('aggregation.beta (trimmed-mean) must be in [0, 0.5)');
  if (a.rule === 'krum') {
    if (!(Number.isInteger(a.byzantine) && (a.byzantine as number) >= 0)) throw new ConfigError('aggregation.byzantine (krum) must be an integer >= 0');
    if (a.keep !== undefined && !(Number.isInteger(a.keep) && (a.keep as number) >= 0 && (a.keep as number) <= c.minClients)) {
      throw new ConfigError('aggregation.keep (MultiKrum) must be an integer from 0 to minClients');
    }
  }
  return c;
}

/** Checks that a robust rule fits the round: not with central DP, and its updates within maxRobustBytes. */
export function checkAggregation(c: CoordinatorConfig, round: RoundConfig, adapterElements: number): void {
  if (round.secureAggregation) {
    if (c.aggregation.rule !== 'mean') throw new ConfigError(`aggregation "${c.aggregation.rule}" needs every update; under secure aggregation the coordinator sees only their sum (use "mean")`);
    if (c.minClients < 3) throw new ConfigError('secure aggregation needs minClients >= 3 (with two, each client could subtract its own update from the sum)');
    const most = maxParticipants(round.secureAggregation.quantizationRange);
    if (c.maxClients > most) {
      throw new ConfigError(`secure aggregation with quantizationRange ${round.secureAggregation.quantizationRange} sums at most ${most} clients without overflow mod 2^32 (n (Q - 1) < 2^32); maxClients is ${c.maxClients}: lower it or the quantizationRange`);
    }
  }
  if (c.aggregation.rule === 'mean') return;
  if (round.dp.mode === 'central') throw new ConfigError(`aggregation "${c.aggregation.rule}" cannot be combined with central DP, whose noise is calibrated to the mean`);
  const bytes = c.maxClients * adapterElements * 4;
  if (bytes > c.maxRobustBytes) {
    throw new ConfigError(`aggregation "${c.aggregation.rule}" keeps every update: ${c.maxClients} clients x ${adapterElements * 4} bytes = ${bytes} bytes, above maxRobustBytes ${c.maxRobustBytes}; lower maxClients or raise the limit`);
  }
}

/** Every RoundConfig field an operator may name in `round` (the rest is refused: a typo must not pass silently). */
const ROUND_FIELDS: ReadonlySet<string> = new Set<keyof RoundConfig>([
  'steps', 'batchSize', 'learningRate', 'seqLen', 'adapter', 'architecture', 'lora', 'clipNorm', 'dp', 'localDpSgd', 'secureAggregation', 'proximalMu', 'maxUploadBytes',
]);

/** secureAggregation's fields over DEFAULT_SECURE_AGGREGATION, validated (ConfigError). */
function resolveSecureAggregation(partial: unknown): SecureAggregationConfig {
  if (!isObject(partial)) throw new ConfigError('round.secureAggregation must be an object (a partial SecureAggregationConfig)');
  const known = Object.keys(DEFAULT_SECURE_AGGREGATION).concat('threshold');
  for (const k of Object.keys(partial)) if (!known.includes(k)) throw new ConfigError(`unknown round.secureAggregation field "${k}" (known: ${known.join(', ')})`);
  const r = { ...DEFAULT_SECURE_AGGREGATION, ...partial } as SecureAggregationConfig;
  if (r.curve !== 'P-256' && r.curve !== 'X25519') throw new ConfigError('round.secureAggregation.curve must be "P-256" or "X25519"');
  if (r.neighbours !== 'all' && !(Number.isInteger(r.neighbours) && r.neighbours >= 2)) throw new ConfigError('round.secureAggregation.neighbours must be "all" or an integer >= 2');
  if (r.threshold !== undefined && !(typeof r.threshold === 'number' && r.threshold > 0 && r.threshold <= 1)) {
    throw new ConfigError('round.secureAggregation.threshold must be a share in (0, 1] of each neighbourhood (it is raised to a majority if lower)');
  }
  const problem = quantizationProblem(r.clippingRange, r.quantizationRange);
  if (problem) throw new ConfigError(`round.secureAggregation.${problem}`);
  positiveNumber(r.stageTimeoutMs, 'round.secureAggregation.stageTimeoutMs');
  return r;
}

/**
 * The RoundConfig sent to clients: the user's fields over defaults sized to the adapter. Refuses
 * (ConfigError) unknown fields and invalid values, localDpSgd's included (sigma finite >= 0, C > 0,
 * delta in (0, 1)); `localDpSgd: null` is the same as leaving it out.
 */
export function resolveRoundConfig(partial: CoordinatorConfig['round'], adapter: { spec: AdapterSpec; architecture: Architecture }, adapterElements: number): RoundConfig {
  for (const k of Object.keys(partial)) if (!ROUND_FIELDS.has(k)) throw new ConfigError(`unknown round field "${k}" (known: ${[...ROUND_FIELDS].join(', ')})`);
  const { localDpSgd: dpSgd, secureAggregation: secure, ...rest } = partial as Partial<RoundConfig> & { localDpSgd?: RoundConfig['localDpSgd'] | null; secureAggregation?: unknown };
  if (dpSgd != null) {
    const problem = localDpSgdProblem(dpSgd);
    if (problem) throw new ConfigError(`round.localDpSgd ${problem}`);
  }
  const fields: Partial<Omit<RoundConfig, 'localDpSgd' | 'secureAggregation'>> = rest;
  if (fields.adapter !== undefined || fields.architecture !== undefined) {
    throw new ConfigError('round.adapter and round.architecture come from the initial adapter (and its adapter_config.json); set them there');
  }
  if (fields.lora !== undefined && adapter.spec.method !== 'lora') throw new ConfigError(`round.lora sets LoRA settings, but the initial adapter is ${adapter.spec.method}`);
  const initialLora = adapter.spec.method === 'lora' ? (adapter.spec.config as unknown as LoraConfig) : undefined;
  const lora = initialLora ? { ...initialLora, ...(fields.lora ?? {}) } : undefined;
  const r: RoundConfig = {
    steps: 20,
    batchSize: 4,
    learningRate: 2e-4,
    seqLen: 128,
    clipNorm: 1,
    proximalMu: 0,
    // Dense f32 is 4 bytes an element; top-k adds 4 more for the index; plus the JSON header.
    maxUploadBytes: 8 * adapterElements + 65536,
    ...fields,
    adapter: lora ? { method: 'lora', config: lora as unknown as AdapterSpec['config'] } : adapter.spec,
    architecture: adapter.architecture,
    // Clients from before the adapter spec read `lora`; LoRA rounds keep sending it.
    ...(lora ? { lora } : {}),
    dp: { mode: 'none', noiseMultiplier: 0, delta: 1e-5, ...(fields.dp ?? {}) },
    ...(dpSgd != null ? { localDpSgd: { noiseMultiplier: dpSgd.noiseMultiplier, maxGradNorm: dpSgd.maxGradNorm, delta: dpSgd.delta } } : {}),
    ...(secure != null ? { secureAggregation: resolveSecureAggregation(secure) } : {}),
  };
  for (const k of ['steps', 'batchSize', 'seqLen', 'maxUploadBytes'] as const) {
    if (!Number.isInteger(r[k]) || r[k] < 1) throw new ConfigError(`round.${k} must be a positive integer, got ${r[k]}`);
  }
  positiveNumber(r.learningRate, 'round.learningRate');
  positiveNumber(r.clipNorm, 'round.clipNorm');
  positiveNumber(r.proximalMu, 'round.proximalMu', true);
  if (!['none', 'local', 'central', 'distributed'].includes(r.dp.mode)) throw new ConfigError('round.dp.mode must be "none", "local", "central" or "distributed"');
  if (r.dp.mode === 'distributed' && !r.secureAggregation) throw new ConfigError('round.dp.mode "distributed" needs round.secureAggregation (each client adds part of the noise, which only a masked sum keeps hidden)');
  if (r.dp.mode === 'distributed' && !(r.dp.noiseMultiplier > 0)) throw new ConfigError('distributed DP needs round.dp.noiseMultiplier > 0');
  if (r.dp.mode === 'local' && r.secureAggregation) throw new ConfigError('round.dp.mode "local" noises each update for a coordinator that sees it; under secure aggregation use "distributed" (the same total noise, spread over the clients)');
  positiveNumber(r.dp.noiseMultiplier, 'round.dp.noiseMultiplier', true);
  if (!(r.dp.delta > 0 && r.dp.delta < 1)) throw new ConfigError('round.dp.delta must be in (0, 1)');
  if (r.dp.mode === 'central' && !(r.dp.noiseMultiplier > 0)) throw new ConfigError('central DP needs round.dp.noiseMultiplier > 0');
  if (lora && initialLora && lora.rank !== initialLora.rank) throw new ConfigError(`round.lora.rank ${lora.rank} does not match the initial adapter's rank ${initialLora.rank}`);
  return r;
}
