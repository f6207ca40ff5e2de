/**
 * Round management over the database: registration, client sampling, accepting updates into the
 * running sum, deadlines, aggregation and the server optimizer. Synchronous (better-sqlite3), so
 * nothing interleaves inside one call; every mutation is one transaction.
 *
 * Round lifecycle (checked on start, on a timer and before every request):
 *   open  -> accepted == maxClients                      -> aggregate
 *   open  -> deadline passed, accepted >= minClients      -> aggregate
 *   open  -> deadline passed, accepted <  minClients      -> deadlineAction 'extend': deadline = now + roundDurationMs
 *                                                            (at most maxExtensions times), then / or 'close':
 *                                                            closed with outcome 'abandoned', its updates dropped from
 *                                                            the model, and a new round opens on the same base version
 *   aggregating (only seen after a crash mid-aggregation) -> aggregate again from the committed running sum
 *   aggregate: status 'aggregating' (committed), then ONE transaction writes the new global version, the optimizer
 *              state and closes the round with its result version, and opens the next round (unless maxRounds).
 * After kill -9 the state is what was committed: an open round continues with its accepted updates.
 * Secure rounds (round.secureAggregation) go through their SecAgg+ stages while open
 * (secure-rounds.ts), then 'aggregating' runs an asynchronous unmasking job that publishes through
 * the same step as plain rounds (publish), and is started again after a crash.
 */
import { createHash, createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type Database from 'better-sqlite3';
import { protocolForRound, type RoundConfig, type RoundInfo, type RoundStatus } from '@webtune/federated';
import type { AdapterSpec, Architecture } from '@webtune/model';
import { readFlat, toSafetensors, type AdapterLayout } from './adapter.js';
import { accumulate, addGaussianNoise, cryptoGaussian, resolveOptimizer, robustAggregate, serverStep, type OptimizerState } from './aggregate.js';
import { resolveRoundConfig, type AggregationRule, type CoordinatorConfig, type ServerOptimizer } from './config.js';
import { centralEpsilon } from './dp.js';
import { SecureRounds } from './secure-rounds.js';
import { blobToF32, blobToF64, f64ToBlob, type RoundRow } from './store.js';

/** What a round's `config` column holds. */
export interface RoundSnapshot {
  client: RoundConfig;
  optimizer: Required<ServerOptimizer>;
  /** The resolved cap (older rounds may hold null: no cap). */
  maxExampleWeight: number | null;
  deadlineAction: 'extend' | 'close';
  maxExtensions: number;
  roundDurationMs: number;
  normTolerance: number;
  /** Absent in rounds opened before robust rules existed: 'mean'. */
  aggregation?: AggregationRule;
  /** The round's minClients (recorded from secure aggregation on; distributed DP's noise bound uses it). */
  minClients?: number;
}

export interface Client {
  id: string;
  name: string | null;
  created: number;
}

/** What an enrolment attempt gives: a new client, or why not. */
export type Enrolment = { clientId: string; token: string } | { refused: 'bad_secret' | 'exhausted'; message: string };

/** An authentication: the client, or why its token no longer works. */
export type Authentication = Client | { refused: 'unauthenticated' | 'revoked'; message: string };

export type AcceptResult =
  | { kind: 'accepted'; count: number }
  | { kind: 'duplicate'; count: number }
  | { kind: 'rejected'; status: number; error: 'wrong_round' | 'round_closed' | 'not_selected' | 'bad_request'; message: string };

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/**
 * The largest L2 norm an update of this round may have, in every DP mode: the clip norm S (with
 * the f32 tolerance) for 'none' and 'central'; under local DP the client adds N(0, (zS)^2) to each
 * of the d elements after clipping, and the norm of that noise is at most zS(sqrt(d) + t) except
 * with probability exp(-t^2/2) (the norm is 1-Lipschitz, so Gaussian concentration applies); t = 10.
 * The bound is what keeps one client from moving the global adapter arbitrarily far (or to Inf).
 */
export function maxUpdateNorm(snap: RoundSnapshot, elements: number): number {
  const S = snap.client.clipNorm;
  const clipped = S * (1 + snap.normTolerance) + 1e-6;
  if (snap.client.dp.mode !== 'local') return clipped;
  return clipped + snap.client.dp.noiseMultiplier * S * (Math.sqrt(elements) + 10);
}

/**
 * The std of the DP noise on a round's mean of `count` updates: central, z S / count (the
 * coordinator's); distributed, each of the count survivors added N(0, (zS)^2 / m) with m =
 * minSurvivors <= count, so z S sqrt(count / m) / count, at most z S sqrt(count / minClients) / count.
 */
function noiseOnMean(snap: RoundSnapshot, count: number): number {
  const dp = snap.client.dp;
  const zS = dp.noiseMultiplier * snap.client.clipNorm;
  if (dp.mode === 'central') return zS / count;
  // minSurvivors >= minClients, so count / minClients bounds count / m from above.
  if (dp.mode === 'distributed') return (zS * Math.sqrt(count / Math.max(1, Math.min(count, snap.minClients ?? 1)))) / count;
  return 0;
}

function l2(values: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i]! * values[i]!;
  return Math.sqrt(s);
}

export class CoordinatorCore {
  readonly secret: string;
  private readonly enrolmentHash: Buffer;
  /** The stages of secure rounds. */
  readonly secure: SecureRounds;

  constructor(
    readonly db: Database.Database,
    readonly layout: AdapterLayout,
    readonly adapter: { spec: AdapterSpec; architecture: Architecture },
    public config: CoordinatorConfig,
    enrolmentSecret: string,
    readonly now: () => number,
    readonly log: (line: string) => void,
    readonly gaussian: () => number = cryptoGaussian(),
  ) {
    this.enrolmentHash = createHash('sha256').update(enrolmentSecret).digest();
    let secret = this.meta('sampling_secret');
    if (!secret) {
      secret = randomBytes(32).toString('hex');
      this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run('sampling_secret', secret);
    }
    this.secret = secret;
    this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run('config', JSON.stringify(config));
    this.secure = new SecureRounds(db, now, {
      log,
      failRound: (round, reason) => this.failRound(round, reason),
      publish: (round, mean, count) => this.publish(round, this.snapshot(round), mean, count),
    });
  }

  private meta(key: string): string | undefined {
    return (this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value;
  }

  // ---- clients ----

  /**
   * Registers a client with the shared enrolment secret (at most config.maxRegistrations in all) or
   * with an invitation code (at most its uses, before it expires). One transaction.
   */
  enrol(secret: string, name: string | undefined): Enrolment {
    const digest = createHash('sha256').update(secret).digest();
    return this.db.transaction((): Enrolment => {
      let credential: string;
      if (timingSafeEqual(digest, this.enrolmentHash)) {
        const max = this.config.maxRegistrations;
        const used = (this.db.prepare("SELECT COUNT(*) AS n FROM clients WHERE credential = 'secret' OR credential IS NULL").get() as { n: number }).n;
        if (max !== null && used >= max) {
          return { refused: 'exhausted', message: `the enrolment secret has registered its ${max} clients; ask the operator for an invitation code` };
        }
        credential = 'secret';
      } else {
        const hash = digest.toString('hex');
        const invite = this.db.prepare('SELECT max_uses, uses, expires FROM invites WHERE code_hash = ?').get(hash) as { max_uses: number; uses: number; expires: number | null } | undefined;
        if (!invite) return { refused: 'bad_secret', message: 'the enrolment secret is wrong' };
        if (invite.expires !== null && invite.expires <= this.now()) return { refused: 'exhausted', message: 'this invitation code has expired' };
        if (invite.uses >= invite.max_uses) return { refused: 'exhausted', message: `this invitation code has registered its ${invite.max_uses} clients` };
        this.db.prepare('UPDATE invites SET uses = uses + 1 WHERE code_hash = ?').run(hash);
        credential = `invite:${hash.slice(0, 16)}`;
      }
      const clientId = randomUUID();
      const token = randomBytes(32).toString('base64url');
      this.db.prepare('INSERT INTO clients (id, name, token_hash, created, credential) VALUES (?, ?, ?, ?, ?)').run(clientId, name ?? null, sha256(token), this.now(), credential);
      return { clientId, token };
    }).immediate();
  }

  /** The client a bearer token belongs to, unless it expired (config.tokenTtlMs) or was revoked. */
  authenticate(token: string): Authentication {
    const row = this.db.prepare('SELECT id, name, created, revoked FROM clients WHERE token_hash = ?').get(sha256(token)) as (Client & { revoked: number | null }) | undefined;
    if (!row) return { refused: 'unauthenticated', message: 'unknown token; register again with POST /v1/register' };
    if (row.revoked !== null) return { refused: 'revoked', message: 'this client was revoked by the coordinator\'s operator' };
    if (row.created + this.config.tokenTtlMs <= this.now()) return { refused: 'unauthenticated', message: 'the token has expired; register again with POST /v1/register' };
    return { id: row.id, name: row.name, created: row.created };
  }


  // ---- versions and rounds ----

  latestVersion(): number {
    return (this.db.prepare('SELECT MAX(version) AS v FROM global_versions').get() as { v: number }).v;
  }

  versionBlob(version: number): Buffer | undefined {
    return (this.db.prepare('SELECT weights FROM global_versions WHERE version = ?').get(version) as { weights: Buffer } | undefined)?.weights;
  }

  round(id: number): RoundRow | undefined {
    return this.db.prepare('SELECT * FROM rounds WHERE id = ?').get(id) as RoundRow | undefined;
  }

  currentRound(): RoundRow | undefined {
    return this.db.prepare('SELECT * FROM rounds ORDER BY id DESC LIMIT 1').get() as RoundRow | undefined;
  }

  acceptedCount(roundId: number): number {
    if (this.secure.stageRow(roundId)) return this.secure.maskedCount(roundId);
    return (this.db.prepare('SELECT count FROM round_sums WHERE round_id = ?').get(roundId) as { count: number } | undefined)?.count ?? 0;
  }

  snapshot(round: RoundRow): RoundSnapshot {
    return JSON.parse(round.config) as RoundSnapshot;
  }

  /** Deterministic Bernoulli(q) sampling per (round, client): HMAC-SHA256(secret, round:client) as a uniform in [0, 1). */
  isSelected(round: Pick<RoundRow, 'id' | 'sample_rate'>, clientId: string): boolean {
    if (round.sample_rate >= 1) return true;
    const mac = createHmac('sha256', this.secret).update(`webtune-sample:${round.id}:${clientId}`).digest();
    return mac.readUIntBE(0, 6) / 2 ** 48 < round.sample_rate;
  }

  roundInfo(round: RoundRow, clientId: string): RoundInfo {
    return {
      // Per round: a round snapshotted with localDpSgd speaks 3 even after a restart without it.
      protocol: protocolForRound(this.adapter.spec.method, this.snapshot(round).client),
      roundId: round.id,
      status: round.status,
      globalVersion: round.base_version,
      selected: this.isSelected(round, clientId),
      deadline: round.deadline,
      minClients: round.min_clients,
      maxClients: round.max_clients,
      sampleRate: round.sample_rate,
      config: this.snapshot(round).client,
    };
  }

  roundStatus(round: RoundRow, clientId?: string): RoundStatus {
    const rows = this.db.prepare('SELECT client_id, weight FROM updates WHERE round_id = ? ORDER BY rowid').all(round.id) as { client_id: string; weight: number }[];
    return {
      roundId: round.id,
      status: round.status,
      accepted: this.acceptedCount(round.id),
      minClients: round.min_clients,
      maxClients: round.max_clients,
      deadline: round.deadline,
      resultVersion: round.result_version ?? undefined,
      outcome: (round.outcome as RoundStatus['outcome']) ?? undefined,
      weights: rows.map((r) => r.weight),
      yourWeight: rows.find((r) => r.client_id === clientId)?.weight,
    };
  }

  /** Inserts version 0 (the initial adapter) if the database has none. */
  initialize(initial: Float32Array | undefined): void {
    if (this.versionBlob(0)) return;
    if (!initial) throw new Error('a new database needs the initial adapter (--initial-adapter)');
    this.db.prepare('INSERT INTO global_versions (version, weights, from_round, created) VALUES (0, ?, NULL, ?)').run(toSafetensors(this.layout, initial), this.now());
  }

  private openRoundStmt(baseVersion: number): RoundRow {
    const c = this.config;
    const client = resolveRoundConfig(c.round, this.adapter, this.layout.size);
    const snapshot: RoundSnapshot = {
      client,
      optimizer: resolveOptimizer(c.serverOptimizer),
      maxExampleWeight: c.maxExampleWeight === 'round' ? client.steps * client.batchSize : c.maxExampleWeight,
      deadlineAction: c.deadlineAction,
      maxExtensions: c.maxExtensions,
      roundDurationMs: c.roundDurationMs,
      normTolerance: c.normTolerance,
      aggregation: c.aggregation,
      minClients: c.minClients,
    };
    const now = this.now();
    const selection = JSON.stringify({ rule: 'bernoulli', rate: c.sampleRate, decider: 'HMAC-SHA256(server secret, "webtune-sample:<round>:<client>")[0..6] / 2^48 < rate' });
    const info = this.db
      .prepare(
        `INSERT INTO rounds (base_version, status, min_clients, max_clients, deadline, sample_rate, selection, config, created)
         VALUES (?, 'open', ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(baseVersion, c.minClients, c.maxClients, now + c.roundDurationMs, c.sampleRate, selection, JSON.stringify(snapshot), now);
    const id = Number(info.lastInsertRowid);
    this.db.prepare('INSERT INTO round_sums (round_id, weighted_sum, total_weight, count) VALUES (?, ?, 0, 0)').run(id, f64ToBlob(new Float64Array(this.layout.size)));
    if (client.secureAggregation) this.secure.open(id, now + c.roundDurationMs);
    this.log(`round ${id} open on version ${baseVersion} (deadline ${new Date(now + c.roundDurationMs).toISOString()})`);
    return this.round(id)!;
  }

  private aggregatedRounds(): number {
    return (this.db.prepare("SELECT COUNT(*) AS n FROM rounds WHERE result_version IS NOT NULL").get() as { n: number }).n;
  }

  private openNextIfAllowed(baseVersion: number): void {
    if (this.config.maxRounds !== null && this.aggregatedRounds() >= this.config.maxRounds) {
      this.log(`maxRounds (${this.config.maxRounds}) reached: no new round`);
      return;
    }
    this.openRoundStmt(baseVersion);
  }

  /** Applies deadlines and triggers; opens the first round. Idempotent. */
  maintain(): void {
    for (let guard = 0; guard < 16; guard++) {
      const r = this.currentRound();
      if (!r) {
        this.db.transaction(() => this.openNextIfAllowed(this.latestVersion()))();
        continue;
      }
      const secure = this.snapshot(r).client.secureAggregation;
      if (r.status === 'aggregating') {
        if (secure) {
          this.secure.startUnmask(r, secure); // asynchronous: it publishes (and opens the next round) when done
          return;
        }
        this.aggregate(r);
        continue;
      }
      if (r.status === 'closed') {
        // Closing a round opens the next in the same transaction; a closed latest round means maxRounds
        // was reached (continue if a restart raised it).
        if (this.config.maxRounds !== null && this.aggregatedRounds() >= this.config.maxRounds) return;
        this.db.transaction(() => this.openRoundStmt(this.latestVersion()))();
        continue;
      }
      let count: number;
      if (secure) {
        const step = this.secure.step(r, secure, this.snapshot(r).roundDurationMs);
        if (step === 'changed' || step === 'aggregate') continue;
        if (step === 'wait') return;
        count = this.secure.advertisedCount(r.id); // 'short': too few keys at the deadline, handled below
      } else {
        count = this.acceptedCount(r.id);
        if (count >= r.max_clients) {
          this.aggregate(r);
          continue;
        }
        if (this.now() < r.deadline) return;
        if (count >= r.min_clients) {
          this.aggregate(r);
          continue;
        }
      }
      const snap = this.snapshot(r);
      if (snap.deadlineAction === 'extend' && r.extensions < snap.maxExtensions) {
        const deadline = this.now() + snap.roundDurationMs;
        this.db.prepare('UPDATE rounds SET deadline = ?, extensions = extensions + 1 WHERE id = ?').run(deadline, r.id);
        if (secure) this.secure.extend(r.id, deadline);
        this.log(`round ${r.id}: ${count} of ${r.min_clients} updates at the deadline; extended to ${new Date(deadline).toISOString()}`);
        return;
      }
      this.db.transaction(() => {
        this.db.prepare("UPDATE rounds SET status = 'closed', outcome = 'abandoned', closed = ? WHERE id = ?").run(this.now(), r.id);
        this.db.prepare('DELETE FROM update_deltas WHERE round_id = ?').run(r.id);
        if (secure) this.secure.close(r.id, `${count} of ${r.min_clients} clients advertised keys by the deadline`);
        this.log(`round ${r.id}: ${count} of ${r.min_clients} updates at the deadline; closed without a new version`);
        this.openRoundStmt(r.base_version);
      })();
    }
  }

  /**
   * Accepts a validated update: ONE transaction inserts the update row and adds weight * delta
   * into the round's running sum. Re-checks the round and duplicates inside the transaction.
   */
  accept(client: Client, roundId: number, updateId: string, exampleCount: number, delta: Float32Array, norm: number, encoding: string, bytes: number): AcceptResult {
    const result = this.db.transaction((): AcceptResult => {
      const dup = this.db.prepare('SELECT round_id, client_id FROM updates WHERE update_id = ?').get(updateId) as { round_id: number; client_id: string } | undefined;
      if (dup) {
        if (dup.client_id !== client.id) return { kind: 'rejected', status: 409, error: 'bad_request', message: `X-Update-Id ${updateId} was used by another client` };
        return { kind: 'duplicate', count: this.acceptedCount(dup.round_id) };
      }
      const check = this.checkRound(client, roundId);
      if (check) return check;
      const round = this.round(roundId)!;
      const snap = this.snapshot(round);
      const weight = snap.client.dp.mode === 'central' ? 1 : Math.min(exampleCount, snap.maxExampleWeight ?? Infinity);
      const row = this.db.prepare('SELECT weighted_sum, total_weight, count FROM round_sums WHERE round_id = ?').get(roundId) as { weighted_sum: Buffer; total_weight: number; count: number };
      const sum = blobToF64(row.weighted_sum);
      accumulate(sum, delta, weight);
      this.db
        .prepare('INSERT INTO updates (update_id, round_id, client_id, example_count, weight, norm, encoding, bytes, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
        .run(updateId, roundId, client.id, exampleCount, weight, norm, encoding, bytes, this.now());
      this.db.prepare('UPDATE round_sums SET weighted_sum = ?, total_weight = ?, count = ? WHERE round_id = ?').run(f64ToBlob(sum), row.total_weight + weight, row.count + 1, roundId);
      if ((snap.aggregation?.rule ?? 'mean') !== 'mean') {
        this.db.prepare('INSERT INTO update_deltas (update_id, round_id, data) VALUES (?, ?, ?)').run(updateId, roundId, Buffer.from(delta.buffer, delta.byteOffset, delta.byteLength));
      }
      return { kind: 'accepted', count: row.count + 1 };
    }).immediate();
    if (result.kind === 'accepted') {
      // The update is committed; aggregation problems are logged, not the client's.
      try {
        this.maintain();
      } catch (e) {
        this.log(`maintenance after an upload failed: ${(e as Error).stack}`);
      }
    }
    return result;
  }

  /** The checks an upload must pass before its body is read (repeated inside the accept transaction). */
  checkRound(client: Client, roundId: number): Extract<AcceptResult, { kind: 'rejected' }> | undefined {
    const round = this.round(roundId);
    const current = this.currentRound();
    if (!round) return { kind: 'rejected', status: 409, error: 'wrong_round', message: `there is no round ${roundId}; the current round is ${current?.id}` };
    if (round.status !== 'open') return { kind: 'rejected', status: 409, error: 'round_closed', message: `round ${roundId} is ${round.status}; fetch GET /v1/round for the current one` };
    if (!this.isSelected(round, client.id)) return { kind: 'rejected', status: 403, error: 'not_selected', message: `this client was not selected for round ${roundId}` };
    // Clients registered after the round opened may fill only part of it, once enough clients older
    // than the round exist to complete it: a burst of new identities cannot take the round, and a
    // new coordinator (whose clients are all new) still fills its first rounds.
    const share = this.config.freshClientShare;
    if (share < 1 && client.created > round.created) {
      const older = (this.db.prepare('SELECT COUNT(*) AS n FROM clients WHERE created <= ? AND revoked IS NULL').get(round.created) as { n: number }).n;
      // Secure rounds count participants (they upload no plain update): fresh identities cannot fill them either.
      const fresh = (this.db.prepare(
        this.secure.stageRow(roundId)
          ? 'SELECT COUNT(*) AS n FROM secagg_clients u JOIN clients c ON c.id = u.client_id WHERE u.round_id = ? AND c.created > ? AND u.client_id != ?'
          : 'SELECT COUNT(*) AS n FROM updates u JOIN clients c ON c.id = u.client_id WHERE u.round_id = ? AND c.created > ? AND u.client_id != ?',
      ).get(roundId, round.created, client.id) as { n: number }).n;
      if (older >= round.min_clients && fresh >= Math.floor(share * round.max_clients)) {
        return { kind: 'rejected', status: 403, error: 'not_selected', message: `round ${roundId} has taken as many updates from clients registered after it opened as it allows; this client can take part from the next round` };
      }
    }
    const mine = this.db.prepare('SELECT 1 FROM updates WHERE round_id = ? AND client_id = ?').get(roundId, client.id);
    if (mine) return { kind: 'rejected', status: 409, error: 'bad_request', message: `this client already contributed an update to round ${roundId} (under another X-Update-Id)` };
    return undefined;
  }

  /** A previously accepted update of this client (for replays), or undefined. */
  findUpdate(updateId: string): { round_id: number; client_id: string } | undefined {
    return this.db.prepare('SELECT round_id, client_id FROM updates WHERE update_id = ?').get(updateId) as { round_id: number; client_id: string } | undefined;
  }

  private loadOptimizerState(): OptimizerState {
    const state: OptimizerState = new Map();
    for (const row of this.db.prepare('SELECT name, data FROM optimizer_state').all() as { name: string; data: Buffer }[]) state.set(row.name, blobToF64(row.data));
    return state;
  }

  private aggregate(round: RoundRow): void {
    if (round.status === 'open') this.db.prepare("UPDATE rounds SET status = 'aggregating' WHERE id = ? AND status = 'open'").run(round.id);
    const snap = this.snapshot(round);
    const sums = this.db.prepare('SELECT weighted_sum, total_weight, count FROM round_sums WHERE round_id = ?').get(round.id) as { weighted_sum: Buffer; total_weight: number; count: number };
    const rule = snap.aggregation ?? { rule: 'mean' };
    let avg: Float64Array;
    if (rule.rule === 'mean') {
      avg = blobToF64(sums.weighted_sum);
      for (let i = 0; i < avg.length; i++) avg[i]! /= sums.total_weight;
    } else {
      // Every update of the round, in acceptance order (checked against maxRobustBytes at start).
      const rows = this.db
        .prepare('SELECT d.data AS data, u.weight AS weight FROM update_deltas d JOIN updates u ON u.update_id = d.update_id WHERE d.round_id = ? ORDER BY u.rowid')
        .all(round.id) as { data: Buffer; weight: number }[];
      avg = robustAggregate(rule, rows.map((r) => blobToF32(r.data)), rows.map((r) => r.weight));
    }
    this.publish(round, snap, avg, sums.count);
  }

  /** Closes a round as 'failed' (the previous version stays current) and opens the next; one transaction. */
  private failRound(round: RoundRow, reason: string): void {
    this.db.transaction(() => {
      this.db.prepare("UPDATE rounds SET status = 'closed', outcome = 'failed', closed = ? WHERE id = ?").run(this.now(), round.id);
      this.db.prepare('DELETE FROM update_deltas WHERE round_id = ?').run(round.id);
      if (this.secure.stageRow(round.id)) this.secure.close(round.id, reason);
      this.log(`round ${round.id}: failed: ${reason}; version ${round.base_version} stays current`);
      this.openNextIfAllowed(round.base_version);
    })();
  }

  /**
   * The server's part of a round's aggregation, from the mean of its `count` updates: central DP
   * noise, the server optimizer, the publishability check, then ONE transaction writes the version.
   */
  private publish(round: RoundRow, snap: RoundSnapshot, avg: Float64Array, count: number): void {
    const dp = snap.client.dp;
    let epsilon: number | null = null;
    if (dp.mode === 'central') {
      // Flower DifferentialPrivacyClientSideFixedClipping: N(0, (z S / m)^2) on the mean of the m clipped updates.
      addGaussianNoise(avg, (dp.noiseMultiplier * snap.client.clipNorm) / count, this.gaussian);
    }
    const baseBlob = this.versionBlob(round.base_version)!;
    const global = readFlat(this.layout, baseBlob);
    const state = this.loadOptimizerState();
    const step = serverStep(snap.optimizer, global, avg, state);
    // A weighted mean of updates of norm <= B has norm <= B; central noise adds at most
    // sigma (sqrt(d) + 10). Anything beyond, or any non-finite value, is not published.
    const sigma = noiseOnMean(snap, count);
    const secure = snap.client.secureAggregation;
    // Secure rounds: each value is off by less than one quantization step.
    const quantization = secure ? ((2 * secure.clippingRange) / (secure.quantizationRange - 1)) * Math.sqrt(avg.length) : 0;
    const plausible = (maxUpdateNorm(snap, avg.length) + sigma * (Math.sqrt(avg.length) + 10) + quantization) * (1 + 1e-9);
    const avgNorm = l2(avg);
    if (!(avgNorm <= plausible) || !step.global.every(Number.isFinite)) {
      this.failRound(round, `the aggregate of ${count} updates is not publishable (norm ${avgNorm}, bound ${plausible}, or a non-finite value)${secure ? '; under secure aggregation the coordinator cannot tell which client sent an update above the clip norm' : ''}`);
      return;
    }
    this.db.transaction(() => {
      const version = this.latestVersion() + 1;
      this.db.prepare('INSERT INTO global_versions (version, weights, from_round, created) VALUES (?, ?, ?, ?)').run(version, toSafetensors(this.layout, step.global), round.id, this.now());
      const put = this.db.prepare('INSERT INTO optimizer_state (name, data, version) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET data = excluded.data, version = excluded.version');
      for (const [name, data] of step.state) put.run(name, f64ToBlob(data), version);
      if (dp.mode === 'central' || dp.mode === 'distributed') epsilon = centralEpsilon(this.centralReleases(round), dp.delta, this.log);
      this.db.prepare("UPDATE rounds SET status = 'closed', outcome = 'aggregated', result_version = ?, dp_epsilon = ?, closed = ? WHERE id = ?").run(version, epsilon, this.now(), round.id);
      this.db.prepare('DELETE FROM update_deltas WHERE round_id = ?').run(round.id);
      if (secure) this.secure.close(round.id);
      this.log(`round ${round.id}: ${count} updates aggregated (${snap.optimizer.type}${secure ? ', secure' : ''}) into version ${version}${epsilon !== null ? `, ${dp.mode} DP epsilon ${epsilon.toFixed(3)} at delta ${dp.delta}` : ''}`);
      this.openNextIfAllowed(version);
    })();
  }

  /** Every aggregated central-DP round up to and including this one, as accountant releases. */
  private centralReleases(current: RoundRow): { noiseMultiplier: number; sampleRate: number }[] {
    const rows = this.db.prepare("SELECT id, sample_rate, config FROM rounds WHERE outcome = 'aggregated' OR id = ? ORDER BY id").all(current.id) as Pick<RoundRow, 'id' | 'sample_rate' | 'config'>[];
    const out: { noiseMultiplier: number; sampleRate: number }[] = [];
    for (const r of rows) {
      const dp = (JSON.parse(r.config) as RoundSnapshot).client.dp;
      // Distributed DP: the unmasked sum carries at least N(0, (zS)^2), as the central sum does.
      if (dp.mode === 'central' || dp.mode === 'distributed') out.push({ noiseMultiplier: dp.noiseMultiplier, sampleRate: r.sample_rate });
    }
    return out;
  }
}
