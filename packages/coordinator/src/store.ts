/**
 * The coordinator's SQLite database (better-sqlite3, WAL, synchronous=FULL): every state change is
 * one transaction committed before the HTTP answer, so after a crash (kill -9) the state is exactly
 * what was acknowledged.
 *
 *   meta             key/value: schema version, the sampling secret, the active config
 *   clients          id, name, SHA-256 of the bearer token (the token itself is never stored)
 *   global_versions  version, PEFT safetensors (F32) of the global adapter, the round that made it
 *   rounds           base version, status, min/max clients, deadline, sample rate + selection rule,
 *                    the config snapshot (client RoundConfig + aggregation settings), result version
 *   updates          one row per accepted update (UNIQUE update id, UNIQUE (round, client)), no tensors
 *   round_sums       per round: the running weighted sum (f64 blob, adapter-sized), total weight, count
 *   optimizer_state  the server optimizer's arrays (f64 blobs: FedAvgM momentum, FedAdam m and v)
 *   update_deltas    each accepted update's delta (f32 blob) while its round is open, only under a
 *                    robust aggregation rule (median, trimmed mean, Krum), which needs them all
 *   invites          invitation codes (SHA-256 only): how many clients each may still register
 *   secagg_rounds    per secure round: its SecAgg+ stage and deadline, n, k, t, the fewest survivors
 *                    it unmasks, the running sum of masked inputs mod 2^32 (u32 blob; no single
 *                    client's masked input is kept), and why it failed
 *   secagg_clients   per secure round and client: its index, its two public keys, and which stages it completed
 *   secagg_shares    the encrypted shares (AES-GCM ciphertexts the coordinator cannot open) while the round runs
 *   secagg_reveals   the shares revealed in unmask while the round runs
 *
 * clients also records when the operator revoked one and which credential (the shared secret or
 * an invitation) minted it. Schema 2 added update_deltas, invites and those two columns; schema 3 the
 * secagg_ tables. Older databases are upgraded in place on open.
 */
import { chmodSync, closeSync, existsSync, openSync } from 'node:fs';
import Database from 'better-sqlite3';

export const SCHEMA_VERSION = 3;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS clients (
  id TEXT PRIMARY KEY,
  name TEXT,
  token_hash TEXT NOT NULL UNIQUE,
  created INTEGER NOT NULL,
  revoked INTEGER,
  credential TEXT
);
CREATE TABLE IF NOT EXISTS invites (
  code_hash TEXT PRIMARY KEY,
  max_uses INTEGER NOT NULL,
  uses INTEGER NOT NULL DEFAULT 0,
  created INTEGER NOT NULL,
  expires INTEGER
);
CREATE TABLE IF NOT EXISTS global_versions (
  version INTEGER PRIMARY KEY,
  weights BLOB NOT NULL,
  from_round INTEGER,
  created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rounds (
  id INTEGER PRIMARY KEY,
  base_version INTEGER NOT NULL REFERENCES global_versions(version),
  status TEXT NOT NULL CHECK (status IN ('open', 'aggregating', 'closed')),
  min_clients INTEGER NOT NULL,
  max_clients INTEGER NOT NULL,
  deadline INTEGER NOT NULL,
  sample_rate REAL NOT NULL,
  selection TEXT NOT NULL,
  config TEXT NOT NULL,
  extensions INTEGER NOT NULL DEFAULT 0,
  result_version INTEGER REFERENCES global_versions(version),
  outcome TEXT,
  dp_epsilon REAL,
  created INTEGER NOT NULL,
  closed INTEGER
);
CREATE TABLE IF NOT EXISTS updates (
  update_id TEXT NOT NULL UNIQUE,
  round_id INTEGER NOT NULL REFERENCES rounds(id),
  client_id TEXT NOT NULL REFERENCES clients(id),
  example_count INTEGER NOT NULL,
  weight REAL NOT NULL,
  norm REAL NOT NULL,
  encoding TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  created INTEGER NOT NULL,
  UNIQUE (round_id, client_id)
);
CREATE TABLE IF NOT EXISTS round_sums (
  round_id INTEGER PRIMARY KEY REFERENCES rounds(id),
  weighted_sum BLOB NOT NULL,
  total_weight REAL NOT NULL,
  count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS optimizer_state (
  name TEXT PRIMARY KEY,
  data BLOB NOT NULL,
  version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS update_deltas (
  update_id TEXT PRIMARY KEY REFERENCES updates(update_id),
  round_id INTEGER NOT NULL REFERENCES rounds(id),
  data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS update_deltas_round ON update_deltas (round_id);
CREATE TABLE IF NOT EXISTS secagg_rounds (
  round_id INTEGER PRIMARY KEY REFERENCES rounds(id),
  stage TEXT NOT NULL CHECK (stage IN ('advertise-keys', 'share-keys', 'masked-input', 'unmask', 'aggregating', 'closed')),
  stage_deadline INTEGER NOT NULL,
  participants INTEGER,
  neighbours INTEGER,
  threshold INTEGER,
  min_survivors INTEGER,
  masked_sum BLOB,
  masked_count INTEGER NOT NULL DEFAULT 0,
  failure TEXT
);
CREATE TABLE IF NOT EXISTS secagg_clients (
  round_id INTEGER NOT NULL REFERENCES rounds(id),
  client_id TEXT NOT NULL REFERENCES clients(id),
  idx INTEGER,
  encryption_key BLOB NOT NULL,
  mask_key BLOB NOT NULL,
  shared INTEGER NOT NULL DEFAULT 0,
  masked_update_id TEXT,
  unmasked INTEGER NOT NULL DEFAULT 0,
  created INTEGER NOT NULL,
  PRIMARY KEY (round_id, client_id),
  UNIQUE (round_id, idx)
);
CREATE TABLE IF NOT EXISTS secagg_shares (
  round_id INTEGER NOT NULL REFERENCES rounds(id),
  from_idx INTEGER NOT NULL,
  to_idx INTEGER NOT NULL,
  ciphertext BLOB NOT NULL,
  PRIMARY KEY (round_id, from_idx, to_idx)
);
CREATE INDEX IF NOT EXISTS secagg_shares_to ON secagg_shares (round_id, to_idx);
CREATE TABLE IF NOT EXISTS secagg_reveals (
  round_id INTEGER NOT NULL REFERENCES rounds(id),
  from_idx INTEGER NOT NULL,
  of_idx INTEGER NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('seed', 'key')),
  share BLOB NOT NULL,
  PRIMARY KEY (round_id, from_idx, of_idx)
);
`;

export function openDatabase(path: string): Database.Database {
  // The database holds the sampling secret and token hashes: owner-only (0600) from its first
  // byte, and tightened if an older coordinator left it readable. SQLite gives its -wal and -shm
  // files the database file's permissions.
  if (path !== ':memory:') {
    if (!existsSync(path)) closeSync(openSync(path, 'wx', 0o600));
    else chmodSync(path, 0o600);
  }
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  db.exec(SCHEMA);
  const row = db.prepare('SELECT value FROM meta WHERE key = ?').get('schema_version') as { value: string } | undefined;
  if (!row) db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run('schema_version', String(SCHEMA_VERSION));
  // Schema 1 -> 2: update_deltas and invites (SCHEMA above just created them) and two client columns;
  // 2 -> 3: the secagg_ tables (created above).
  else if (Number(row.value) === 1 || Number(row.value) === 2) {
    db.transaction(() => {
      if (Number(row.value) === 1) db.exec('ALTER TABLE clients ADD COLUMN revoked INTEGER; ALTER TABLE clients ADD COLUMN credential TEXT;');
      db.prepare("UPDATE meta SET value = ? WHERE key = 'schema_version'").run(String(SCHEMA_VERSION));
    })();
  }
  else if (Number(row.value) !== SCHEMA_VERSION) throw new Error(`${path}: database schema ${row.value}, this coordinator speaks ${SCHEMA_VERSION}`);
  return db;
}

/** A blob as f64 values (copied: SQLite's buffers need not be 8-aligned). */
export function blobToF64(blob: Uint8Array): Float64Array {
  const copy = new Uint8Array(blob.byteLength);
  copy.set(blob);
  return new Float64Array(copy.buffer);
}

/** A blob as f32 values (copied, for the same reason as blobToF64). */
export function blobToF32(blob: Uint8Array): Float32Array {
  const copy = new Uint8Array(blob.byteLength);
  copy.set(blob);
  return new Float32Array(copy.buffer);
}

export function f64ToBlob(values: Float64Array): Buffer {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength);
}

export interface RoundRow {
  id: number;
  base_version: number;
  status: 'open' | 'aggregating' | 'closed';
  min_clients: number;
  max_clients: number;
  deadline: number;
  sample_rate: number;
  selection: string;
  config: string;
  extensions: number;
  result_version: number | null;
  outcome: string | null;
  dp_epsilon: number | null;
  created: number;
  closed: number | null;
}
