/**
 * The coordinator's side of secure rounds (SecAgg+; packages/federated/src/secagg for the client and
 * the shared math). A secure round is 'open' through four stages, each ended by all its expected
 * clients answering or by its deadline:
 *
 *   advertise-keys  selected clients post two public keys. Ends at maxClients keys, or at the round
 *                   deadline with >= minClients (fewer: the round's deadlineAction, as plain rounds).
 *                   The roster is fixed: indexes 1..n in a random order, k, t, minSurvivors.
 *   share-keys      each client posts one ciphertext per neighbour (stageTimeoutMs). U2 = senders;
 *                   fewer than minSurvivors: the round fails.
 *   masked-input    each client of U2 trains, then posts its masked input (roundDurationMs), added at
 *                   once to the running sum mod 2^32. U3 = senders. The round fails here, before anything
 *                   is revealed, unless >= minSurvivors sent and every secret the unmasking will need
 *                   still has >= t holders in U3.
 *   unmask          each client of U3 posts its own seed share and its shares of its neighbours' seeds
 *                   (survivors) or mask keys (dropped) (stageTimeoutMs). Enough shares: 'aggregating'.
 *   aggregating     an asynchronous job removes the masks from the sum (unmaskSum) and publishes the
 *                   mean through the same step as plain rounds; after a crash it runs again.
 * Every message is one transaction; the same message twice is answered 'duplicate', a different one
 * refused. What the coordinator holds: public keys, ciphertexts it cannot open, the sum of masked
 * inputs, and in unmask the shares that remove exactly the masks of that sum: never one client's input.
 * Shares and the masked sum are deleted when the round closes.
 */
import { createPublicKey, diffieHellman, ECDH, generateKeyPairSync, randomInt } from 'node:crypto';
import type Database from 'better-sqlite3';
import {
  decodeShareValue, dequantizeSum, fromBase64, neighboursOf, publicKeyBytes, resolveNeighbours, resolveThreshold, SHARE_BYTES, unmaskSum,
  type AdvertiseKeysRequest, type SecAggAck, type SecAggStage, type SecAggStatus, type SecureAggregationConfig, type ShareKeysRequest, type UnmaskRequest,
} from '@webtune/federated';
import type { RoundRow } from './store.js';

/** A refused secure-round message: HTTP status, protocol error code, message. */
export interface SecAggRejection {
  status: number;
  error: 'wrong_stage' | 'bad_request' | 'malformed' | 'not_selected' | 'too_large';
  message: string;
}

interface StageRow {
  round_id: number;
  stage: SecAggStage;
  stage_deadline: number;
  participants: number | null;
  neighbours: number | null;
  threshold: number | null;
  min_survivors: number | null;
  masked_count: number;
  failure: string | null;
}

interface ParticipantRow {
  client_id: string;
  idx: number | null;
  encryption_key: Buffer;
  mask_key: Buffer;
  shared: number;
  masked_update_id: string | null;
  unmasked: number;
}

/** What the core does for this module: fail a round (close it, open the next) and publish an aggregate. */
export interface SecureRoundHost {
  failRound(round: RoundRow, reason: string): void;
  publish(round: RoundRow, mean: Float64Array, count: number): void;
  log(line: string): void;
}

/** Bytes of one share ciphertext: nonce, the plaintext (from, to, round, two share values), tag. */
const CIPHERTEXT_BYTES = 12 + 12 + 2 * SHARE_BYTES + 16;

const reject = (status: number, error: SecAggRejection['error'], message: string): SecAggRejection => ({ status, error, message });

/** A key of our own to test X25519 keys against: an agreement with a small-order point fails (all-zero secret). */
let x25519Probe: ReturnType<typeof generateKeyPairSync> | undefined;

/**
 * Why a client's public key cannot be used by its neighbours, or undefined: its size, a P-256 key
 * that is not a point of the curve, an X25519 key of small order (every neighbour's ECDH would fail,
 * and the round with it).
 */
function keyProblem(curve: SecureAggregationConfig['curve'], key: Uint8Array): string | undefined {
  if (key.length !== publicKeyBytes(curve)) return `is ${key.length} bytes; a raw ${curve} public key is ${publicKeyBytes(curve)}`;
  try {
    if (curve === 'P-256') ECDH.convertKey(key, 'prime256v1', undefined, undefined, 'uncompressed'); // throws unless a point of the curve
    else {
      x25519Probe ??= generateKeyPairSync('x25519');
      const publicKey = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(key).toString('base64url') }, format: 'jwk' });
      diffieHellman({ privateKey: x25519Probe.privateKey, publicKey });
    }
  } catch {
    return curve === 'P-256' ? 'is not a point of P-256' : 'is an X25519 point no agreement can use (small order)';
  }
  return undefined;
}

export class SecureRounds {
  private readonly jobs = new Map<number, Promise<void>>();

  constructor(
    private readonly db: Database.Database,
    private readonly now: () => number,
    private readonly host: SecureRoundHost,
  ) {}

  stageRow(roundId: number): StageRow | undefined {
    return this.db.prepare('SELECT round_id, stage, stage_deadline, participants, neighbours, threshold, min_survivors, masked_count, failure FROM secagg_rounds WHERE round_id = ?').get(roundId) as StageRow | undefined;
  }

  private participants(roundId: number): ParticipantRow[] {
    return this.db.prepare('SELECT client_id, idx, encryption_key, mask_key, shared, masked_update_id, unmasked FROM secagg_clients WHERE round_id = ? ORDER BY idx').all(roundId) as ParticipantRow[];
  }

  private participant(roundId: number, clientId: string): ParticipantRow | undefined {
    return this.db.prepare('SELECT client_id, idx, encryption_key, mask_key, shared, masked_update_id, unmasked FROM secagg_clients WHERE round_id = ? AND client_id = ?').get(roundId, clientId) as ParticipantRow | undefined;
  }

  /** A new secure round starts in advertise-keys until the round's deadline (called inside the opening transaction). */
  open(roundId: number, deadline: number): void {
    this.db.prepare("INSERT INTO secagg_rounds (round_id, stage, stage_deadline) VALUES (?, 'advertise-keys', ?)").run(roundId, deadline);
  }

  /** The round's deadline moved (deadlineAction 'extend' in advertise-keys). */
  extend(roundId: number, deadline: number): void {
    this.db.prepare('UPDATE secagg_rounds SET stage_deadline = ? WHERE round_id = ?').run(deadline, roundId);
  }

  /** The round closed (any outcome): forget the shares and the masked sum (inside the closing transaction). */
  close(roundId: number, failure?: string): void {
    this.db.prepare("UPDATE secagg_rounds SET stage = 'closed', masked_sum = NULL, failure = COALESCE(?, failure) WHERE round_id = ?").run(failure ?? null, roundId);
    this.db.prepare('DELETE FROM secagg_shares WHERE round_id = ?').run(roundId);
    this.db.prepare('DELETE FROM secagg_reveals WHERE round_id = ?').run(roundId);
  }

  /** Masked inputs accepted (RoundStatus.accepted of a secure round). */
  maskedCount(roundId: number): number {
    return this.stageRow(roundId)?.masked_count ?? 0;
  }

  /** Whether the core's deadline logic applies: the round is in advertise-keys with too few keys at its deadline. */
  advertisedCount(roundId: number): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM secagg_clients WHERE round_id = ?').get(roundId) as { n: number }).n;
  }

  /**
   * Moves an open secure round on where its stage is complete or past its deadline. Returns
   * 'changed' (call again), 'wait', 'short' (advertise-keys ended with fewer than minClients keys:
   * the core extends or closes the round) or 'aggregate' (status is now 'aggregating').
   */
  step(round: RoundRow, config: SecureAggregationConfig, roundDurationMs: number): 'changed' | 'wait' | 'short' | 'aggregate' {
    const sa = this.stageRow(round.id)!;
    const now = this.now();
    const people = this.participants(round.id);
    switch (sa.stage) {
      case 'advertise-keys': {
        const count = people.length;
        if (count >= round.max_clients || (now >= round.deadline && count >= round.min_clients)) {
          this.fixRoster(round, config, people);
          return 'changed';
        }
        return now < round.deadline ? 'wait' : 'short';
      }
      case 'share-keys': {
        const shared = people.filter((p) => p.shared);
        if (shared.length < people.length && now < sa.stage_deadline) return 'wait';
        if (shared.length < sa.min_survivors!) {
          this.host.failRound(round, `only ${shared.length} of ${people.length} clients shared their keys; the round needs at least ${sa.min_survivors}`);
          return 'changed';
        }
        this.db.prepare("UPDATE secagg_rounds SET stage = 'masked-input', stage_deadline = ? WHERE round_id = ?").run(now + roundDurationMs, round.id);
        this.host.log(`round ${round.id} (secure): ${shared.length} of ${people.length} clients shared keys; collecting masked inputs`);
        return 'changed';
      }
      case 'masked-input': {
        const shared = people.filter((p) => p.shared);
        const masked = new Set(shared.filter((p) => p.masked_update_id !== null).map((p) => p.idx!));
        if (masked.size < shared.length && now < sa.stage_deadline) return 'wait';
        const problem = this.unmaskable(sa, new Set(shared.map((p) => p.idx!)), masked, masked);
        if (problem) {
          this.host.failRound(round, `${masked.size} of ${shared.length} clients sent a masked input: ${problem}; nothing was unmasked`);
          return 'changed';
        }
        this.db.prepare("UPDATE secagg_rounds SET stage = 'unmask', stage_deadline = ? WHERE round_id = ?").run(now + config.stageTimeoutMs, round.id);
        this.host.log(`round ${round.id} (secure): ${masked.size} masked inputs; unmasking`);
        return 'changed';
      }
      case 'unmask': {
        const survivors = people.filter((p) => p.masked_update_id !== null);
        const answered = survivors.filter((p) => p.unmasked);
        if (answered.length < survivors.length && now < sa.stage_deadline) return 'wait';
        const problem = this.unmaskable(sa, new Set(people.filter((p) => p.shared).map((p) => p.idx!)), new Set(survivors.map((p) => p.idx!)), new Set(answered.map((p) => p.idx!)));
        if (problem) {
          this.host.failRound(round, `${answered.length} of ${survivors.length} surviving clients answered the unmask stage: ${problem}`);
          return 'changed';
        }
        this.db.transaction(() => {
          this.db.prepare("UPDATE secagg_rounds SET stage = 'aggregating' WHERE round_id = ?").run(round.id);
          this.db.prepare("UPDATE rounds SET status = 'aggregating' WHERE id = ? AND status = 'open'").run(round.id);
        })();
        return 'aggregate';
      }
      default:
        return 'wait';
    }
  }

  /**
   * Why the sum of `survivors` cannot be unmasked with shares from `holders` (a subset of survivors),
   * or undefined: at least minSurvivors survivors; each survivor's seed and each dropped client's
   * mask key (those with a surviving neighbour) held by >= t holders.
   */
  private unmaskable(sa: StageRow, shared: Set<number>, survivors: Set<number>, holders: Set<number>): string | undefined {
    const n = sa.participants!;
    const k = sa.neighbours!;
    const t = sa.threshold!;
    if (survivors.size < sa.min_survivors!) return `fewer than the ${sa.min_survivors} the round needs survived`;
    for (const i of survivors) {
      const have = [i, ...neighboursOf(i, n, k)].filter((j) => holders.has(j)).length;
      if (have < t) return `client ${i}'s self-mask seed has ${have} share holders left, ${t} needed`;
    }
    for (const d of shared) {
      if (survivors.has(d)) continue;
      const around = neighboursOf(d, n, k);
      if (!around.some((j) => survivors.has(j))) continue;
      const have = around.filter((j) => holders.has(j)).length;
      if (have < t) return `dropped client ${d}'s mask key has ${have} share holders left, ${t} needed`;
    }
    return undefined;
  }

  private fixRoster(round: RoundRow, config: SecureAggregationConfig, people: ParticipantRow[]): void {
    const n = people.length;
    const k = resolveNeighbours(config.neighbours, n);
    const t = resolveThreshold(k, config.threshold);
    const minSurvivors = Math.max(t, round.min_clients);
    // Indexes in a uniformly random order (Fisher-Yates), so neighbourhoods are random.
    const order = people.map((p) => p.client_id);
    for (let i = order.length - 1; i > 0; i--) {
      const j = randomInt(i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    this.db.transaction(() => {
      const set = this.db.prepare('UPDATE secagg_clients SET idx = ? WHERE round_id = ? AND client_id = ?');
      order.forEach((id, i) => set.run(i + 1, round.id, id));
      this.db.prepare(
        "UPDATE secagg_rounds SET stage = 'share-keys', stage_deadline = ?, participants = ?, neighbours = ?, threshold = ?, min_survivors = ?, masked_sum = ? WHERE round_id = ?",
      ).run(this.now() + config.stageTimeoutMs, n, k, t, minSurvivors, null, round.id);
    })();
    this.host.log(`round ${round.id} (secure): ${n} clients advertised keys; sharing keys (k = ${k}, t = ${t}, at least ${minSurvivors} survivors)`);
  }

  /** This client's view of the round's stage (SecAggStatus). */
  status(round: RoundRow, clientId: string): SecAggStatus {
    const sa = this.stageRow(round.id)!;
    const me = this.participant(round.id, clientId);
    const out: SecAggStatus = {
      roundId: round.id, stage: sa.stage, stageDeadline: sa.stage === 'advertise-keys' ? round.deadline : sa.stage_deadline,
      you: { advertised: !!me, shared: !!me?.shared, masked: me?.masked_update_id != null, unmasked: !!me?.unmasked },
    };
    if (round.status === 'closed') {
      out.outcome = (round.outcome as SecAggStatus['outcome']) ?? undefined;
      if (sa.failure) out.failure = sa.failure;
      if (round.result_version !== null) out.resultVersion = round.result_version;
    }
    if (!me || me.idx === null || sa.participants === null) return out;
    const n = sa.participants;
    const k = sa.neighbours!;
    Object.assign(out, { participants: n, neighbours: k, threshold: sa.threshold!, minSurvivors: sa.min_survivors!, index: me.idx });
    const byIdx = new Map(this.participants(round.id).map((p) => [p.idx!, p] as const));
    const around = neighboursOf(me.idx, n, k).map((j) => byIdx.get(j)!);
    // Each list only in the stage that needs it (status answers stay small when many clients poll).
    if (sa.stage === 'share-keys') out.peers = around.map((p) => ({ index: p.idx!, encryptionKey: p.encryption_key.toString('base64'), maskKey: p.mask_key.toString('base64') }));
    if (sa.stage === 'masked-input' && me.shared && me.masked_update_id === null) {
      const rows = this.db.prepare('SELECT from_idx, ciphertext FROM secagg_shares WHERE round_id = ? AND to_idx = ? ORDER BY from_idx').all(round.id, me.idx) as { from_idx: number; ciphertext: Buffer }[];
      const sharedIdx = new Set(around.filter((p) => p.shared).map((p) => p.idx!));
      out.inbox = rows.filter((r) => sharedIdx.has(r.from_idx)).map((r) => ({ from: r.from_idx, ciphertext: r.ciphertext.toString('base64') }));
    }
    if (sa.stage === 'unmask' || sa.stage === 'aggregating' || sa.stage === 'closed') {
      out.survivors = around.filter((p) => p.masked_update_id !== null).map((p) => p.idx!);
      out.dropped = around.filter((p) => p.shared && p.masked_update_id === null).map((p) => p.idx!);
      out.survivorCount = sa.masked_count;
    }
    return out;
  }

  private inStage(round: RoundRow, stage: SecAggStage): SecAggRejection | undefined {
    const sa = this.stageRow(round.id)!;
    if (sa.stage !== stage) return reject(409, 'wrong_stage', `round ${round.id} is in stage ${sa.stage}, not ${stage}`);
    return undefined;
  }

  /** Stage advertise-keys: the client's two public keys (the caller checked the round is open and the client selected). */
  advertise(round: RoundRow, clientId: string, config: SecureAggregationConfig, body: AdvertiseKeysRequest): SecAggAck | SecAggRejection {
    let enc: Uint8Array;
    let mask: Uint8Array;
    try {
      enc = fromBase64(body?.encryptionKey, 'encryptionKey');
      mask = fromBase64(body?.maskKey, 'maskKey');
    } catch (e) {
      return reject(400, 'malformed', `${(e as Error).message}: the body is {"encryptionKey": base64, "maskKey": base64}`);
    }
    for (const [name, key] of [['encryptionKey', enc], ['maskKey', mask]] as const) {
      const problem = keyProblem(config.curve, key);
      if (problem) return reject(400, 'malformed', `${name} ${problem}`);
    }
    return this.db.transaction((): SecAggAck | SecAggRejection => {
      const mine = this.participant(round.id, clientId);
      if (mine) {
        if (Buffer.compare(mine.encryption_key, enc) === 0 && Buffer.compare(mine.mask_key, mask) === 0) return { accepted: true, duplicate: true, stage: this.stageRow(round.id)!.stage };
        return reject(409, 'bad_request', `this client already advertised other keys for round ${round.id}`);
      }
      const wrong = this.inStage(round, 'advertise-keys');
      if (wrong) return wrong;
      if (this.advertisedCount(round.id) >= round.max_clients) return reject(409, 'wrong_stage', `round ${round.id} has its ${round.max_clients} participants`);
      this.db.prepare('INSERT INTO secagg_clients (round_id, client_id, encryption_key, mask_key, created) VALUES (?, ?, ?, ?, ?)').run(round.id, clientId, Buffer.from(enc), Buffer.from(mask), this.now());
      return { accepted: true, duplicate: false, stage: 'advertise-keys' };
    }).immediate();
  }

  /** Stage share-keys: exactly one well-formed ciphertext per neighbour. */
  shareKeys(round: RoundRow, clientId: string, body: ShareKeysRequest): SecAggAck | SecAggRejection {
    return this.db.transaction((): SecAggAck | SecAggRejection => {
      const me = this.participant(round.id, clientId);
      const sa = this.stageRow(round.id)!;
      if (!me || me.idx === null) return reject(403, 'not_selected', `this client is not on round ${round.id}'s roster (it advertised no keys in time)`);
      if (!me.shared) {
        const wrong = this.inStage(round, 'share-keys');
        if (wrong) return wrong;
      }
      const list = Array.isArray(body?.shares) ? body.shares : undefined;
      if (!list) return reject(400, 'malformed', 'the body is {"shares": [{"to": index, "ciphertext": base64}]}');
      const expected = neighboursOf(me.idx, sa.participants!, sa.neighbours!);
      const got = new Map<number, Buffer>();
      for (const s of list) {
        if (!expected.includes(s?.to) || got.has(s.to)) return reject(400, 'malformed', `share for ${JSON.stringify(s?.to)}: not a neighbour of ${me.idx}, or twice`);
        let ct: Uint8Array;
        try {
          ct = fromBase64(s.ciphertext, 'ciphertext');
        } catch {
          return reject(400, 'malformed', `the share for ${s.to} is not base64`);
        }
        if (ct.length !== CIPHERTEXT_BYTES) return reject(400, 'malformed', `the share for ${s.to} is ${ct.length} bytes; a share ciphertext is ${CIPHERTEXT_BYTES}`);
        got.set(s.to, Buffer.from(ct));
      }
      if (got.size !== expected.length) return reject(400, 'malformed', `${got.size} shares; client ${me.idx} has ${expected.length} neighbours, one share each`);
      if (me.shared) {
        const stored = this.db.prepare('SELECT to_idx, ciphertext FROM secagg_shares WHERE round_id = ? AND from_idx = ?').all(round.id, me.idx) as { to_idx: number; ciphertext: Buffer }[];
        const same = stored.length === got.size && stored.every((r) => got.get(r.to_idx)?.equals(r.ciphertext));
        return same ? { accepted: true, duplicate: true, stage: sa.stage } : reject(409, 'bad_request', `this client already sent other shares for round ${round.id}`);
      }
      const put = this.db.prepare('INSERT INTO secagg_shares (round_id, from_idx, to_idx, ciphertext) VALUES (?, ?, ?, ?)');
      for (const [to, ct] of got) put.run(round.id, me.idx, to, ct);
      this.db.prepare('UPDATE secagg_clients SET shared = 1 WHERE round_id = ? AND client_id = ?').run(round.id, clientId);
      return { accepted: true, duplicate: false, stage: sa.stage };
    }).immediate();
  }

  /** The checks a masked input must pass before its body is read: stage and membership (duplicates are answered after). */
  checkMasked(round: RoundRow, clientId: string, updateId: string): SecAggRejection | 'duplicate' | undefined {
    const me = this.participant(round.id, clientId);
    if (me?.masked_update_id === updateId) return 'duplicate';
    if (me?.masked_update_id) return reject(409, 'bad_request', `this client already sent a masked input for round ${round.id} (under another X-Update-Id)`);
    const wrong = this.inStage(round, 'masked-input');
    if (wrong) return wrong;
    if (!me?.shared) return reject(403, 'not_selected', `this client did not share keys in round ${round.id}, so its masks could not be removed`);
    return undefined;
  }

  /** Stage masked-input: adds the (validated, decoded) masked input to the running sum in one transaction. */
  acceptMasked(round: RoundRow, clientId: string, updateId: string, words: Uint32Array): SecAggAck | SecAggRejection {
    return this.db.transaction((): SecAggAck | SecAggRejection => {
      const check = this.checkMasked(round, clientId, updateId);
      if (check === 'duplicate') return { accepted: true, duplicate: true, stage: this.stageRow(round.id)!.stage };
      if (check) return check;
      const row = this.db.prepare('SELECT masked_sum FROM secagg_rounds WHERE round_id = ?').get(round.id) as { masked_sum: Buffer | null };
      const sum = row.masked_sum ? new Uint32Array(new Uint8Array(row.masked_sum).buffer) : new Uint32Array(words.length);
      for (let i = 0; i < sum.length; i++) sum[i] = (sum[i]! + words[i]!) >>> 0;
      this.db.prepare('UPDATE secagg_rounds SET masked_sum = ?, masked_count = masked_count + 1 WHERE round_id = ?').run(Buffer.from(sum.buffer, sum.byteOffset, sum.byteLength), round.id);
      this.db.prepare('UPDATE secagg_clients SET masked_update_id = ? WHERE round_id = ? AND client_id = ?').run(updateId, round.id, clientId);
      return { accepted: true, duplicate: false, stage: 'masked-input' };
    }).immediate();
  }

  /** Stage unmask: the client's own seed share, and exactly the shares this stage asks of it. */
  unmask(round: RoundRow, clientId: string, body: UnmaskRequest): SecAggAck | SecAggRejection {
    return this.db.transaction((): SecAggAck | SecAggRejection => {
      const me = this.participant(round.id, clientId);
      if (!me || me.idx === null || me.masked_update_id === null) return reject(403, 'not_selected', `this client sent no masked input in round ${round.id}`);
      if (!me.unmasked) {
        const wrong = this.inStage(round, 'unmask');
        if (wrong) return wrong;
      }
      const view = this.status(round, clientId);
      const wantSeeds = [me.idx, ...(view.survivors ?? [])].sort((a, b) => a - b);
      const wantKeys = [...(view.dropped ?? [])].sort((a, b) => a - b);
      const parse = (list: unknown, want: number[], what: string): Map<number, Buffer> | SecAggRejection => {
        if (!Array.isArray(list)) return reject(400, 'malformed', `the body is {"seedShares": [{"of", "share"}], "keyShares": [...]}`);
        const out = new Map<number, Buffer>();
        for (const s of list as { of: number; share: string }[]) {
          if (!want.includes(s?.of) || out.has(s.of)) return reject(400, 'malformed', `${what} of ${JSON.stringify(s?.of)} was not asked for, or twice`);
          try {
            const bytes = fromBase64(s.share, 'share');
            decodeShareValue(bytes);
            out.set(s.of, Buffer.from(bytes));
          } catch {
            return reject(400, 'malformed', `${what} of ${s.of} is not a ${SHARE_BYTES}-byte share value`);
          }
        }
        if (out.size !== want.length) return reject(400, 'malformed', `${out.size} ${what}s; this stage asks for ${want.length} (${want.join(', ') || 'none'})`);
        return out;
      };
      const seeds = parse(body?.seedShares, wantSeeds, 'seed share');
      if (!(seeds instanceof Map)) return seeds;
      const keys = parse(body?.keyShares, wantKeys, 'key share');
      if (!(keys instanceof Map)) return keys;
      if (me.unmasked) {
        const stored = this.db.prepare('SELECT of_idx, kind, share FROM secagg_reveals WHERE round_id = ? AND from_idx = ?').all(round.id, me.idx) as { of_idx: number; kind: string; share: Buffer }[];
        const same = stored.length === seeds.size + keys.size && stored.every((r) => (r.kind === 'seed' ? seeds : keys).get(r.of_idx)?.equals(r.share));
        return same ? { accepted: true, duplicate: true, stage: this.stageRow(round.id)!.stage } : reject(409, 'bad_request', `this client already answered the unmask stage of round ${round.id} differently`);
      }
      const put = this.db.prepare('INSERT INTO secagg_reveals (round_id, from_idx, of_idx, kind, share) VALUES (?, ?, ?, ?, ?)');
      for (const [of, share] of seeds) put.run(round.id, me.idx, of, 'seed', share);
      for (const [of, share] of keys) put.run(round.id, me.idx, of, 'key', share);
      this.db.prepare('UPDATE secagg_clients SET unmasked = 1 WHERE round_id = ? AND client_id = ?').run(round.id, clientId);
      return { accepted: true, duplicate: false, stage: 'unmask' };
    }).immediate();
  }

  /** Starts (once) the job that unmasks an 'aggregating' secure round and publishes it. */
  startUnmask(round: RoundRow, config: SecureAggregationConfig): void {
    if (this.jobs.has(round.id)) return;
    const job = this.unmaskJob(round, config)
      .catch((e: unknown) => {
        this.host.log(`round ${round.id} (secure): unmasking failed: ${(e as Error).message}`);
        try {
          this.host.failRound(round, `the masks could not be removed: ${(e as Error).message}`);
        } catch (inner) {
          this.host.log(`round ${round.id}: could not record the failure: ${(inner as Error).stack}`);
        }
      })
      .finally(() => this.jobs.delete(round.id));
    this.jobs.set(round.id, job);
  }

  /** Resolves when no unmasking job is running (tests, close()). */
  async idle(): Promise<void> {
    while (this.jobs.size) await Promise.all([...this.jobs.values()]);
  }

  private async unmaskJob(round: RoundRow, config: SecureAggregationConfig): Promise<void> {
    const sa = this.stageRow(round.id)!;
    const people = this.participants(round.id);
    const byIdx = new Map(people.map((p) => [p.idx!, p] as const));
    const n = sa.participants!;
    const k = sa.neighbours!;
    const row = this.db.prepare('SELECT masked_sum FROM secagg_rounds WHERE round_id = ?').get(round.id) as { masked_sum: Buffer | null };
    if (!row.masked_sum) throw new Error('no masked inputs were stored');
    const reveals = this.db.prepare('SELECT from_idx, of_idx, kind, share FROM secagg_reveals WHERE round_id = ?').all(round.id) as { from_idx: number; of_idx: number; kind: 'seed' | 'key'; share: Buffer }[];
    const byOwner = new Map<string, { x: number; y: bigint }[]>();
    for (const r of reveals) {
      const key = `${r.kind}:${r.of_idx}`;
      byOwner.set(key, [...(byOwner.get(key) ?? []), { x: r.from_idx, y: decodeShareValue(new Uint8Array(r.share)) }]);
    }
    const sharesOf = (of: number, kind: 'seed' | 'key') => byOwner.get(`${kind}:${of}`) ?? [];
    const survivors = people.filter((p) => p.masked_update_id !== null);
    const surviving = new Set(survivors.map((p) => p.idx!));
    const started = performance.now();
    const sum = await unmaskSum({
      curve: config.curve, roundId: round.id, threshold: sa.threshold!,
      maskedSum: new Uint32Array(new Uint8Array(row.masked_sum).buffer),
      survivors: survivors.map((p) => ({ index: p.idx!, seedShares: sharesOf(p.idx!, 'seed') })),
      dropped: people
        .filter((p) => p.shared && p.masked_update_id === null && neighboursOf(p.idx!, n, k).some((j) => surviving.has(j)))
        .map((p) => ({
          index: p.idx!, maskKey: new Uint8Array(p.mask_key), keyShares: sharesOf(p.idx!, 'key'),
          survivingNeighbours: neighboursOf(p.idx!, n, k).filter((j) => surviving.has(j)).map((j) => ({ index: j, maskKey: new Uint8Array(byIdx.get(j)!.mask_key) })),
        })),
    });
    const m = survivors.length;
    const mean = dequantizeSum(sum, m, config.clippingRange, config.quantizationRange);
    for (let i = 0; i < mean.length; i++) mean[i]! /= m;
    this.host.log(`round ${round.id} (secure): masks removed from the sum of ${m} inputs in ${(performance.now() - started).toFixed(0)} ms`);
    this.host.publish(round, mean, m);
  }
}
