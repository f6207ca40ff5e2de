/** Test helpers: a tiny PEFT adapter, deterministic deltas, protocol calls, and DB snapshots. */
import { createHash } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { encodeUpdate, type EncodeOptions, type RegisterResponse, type RoundInfo, type RoundStatus } from '@webtune/federated';
import { parseSafetensors, tensorToFloat32, type HostTensor } from '@webtune/model';

export const SECRET = 'enrol-me';

/** Two modules of one layer, rank 2: 4 tensors, 32 elements. */
export const KEYS = [
  'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight',
  'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight',
  'base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight',
  'base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight',
];
export const SHAPES: number[][] = [[2, 4], [4, 2], [2, 4], [4, 2]];

/** A seeded uniform generator in [-scale, scale) (LCG), so tests are reproducible. */
export function seeded(seed: number, scale = 1): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 4294967296 - 0.5) * 2 * scale;
  };
}

export function tensors(seed: number, scale = 1): Map<string, HostTensor> {
  const r = seeded(seed, scale);
  return new Map(KEYS.map((k, i) => {
    const shape = SHAPES[i]!;
    return [k, { shape, data: Float32Array.from({ length: shape[0]! * shape[1]! }, r) }];
  }));
}

export const initialAdapter = () => tensors(1, 0.5);

export function tmp(prefix = 'webtune-coord-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function encode(delta: Map<string, HostTensor>, options: EncodeOptions): Uint8Array {
  return encodeUpdate(delta, options);
}

export async function register(url: string, name?: string): Promise<RegisterResponse> {
  const res = await fetch(`${url}/v1/register`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ enrolmentSecret: SECRET, name }) });
  if (res.status !== 200) throw new Error(`register: ${res.status} ${await res.text()}`);
  return (await res.json()) as RegisterResponse;
}

export async function roundInfo(url: string, token: string): Promise<RoundInfo> {
  const res = await fetch(`${url}/v1/round`, { headers: { Authorization: `Bearer ${token}` } });
  if (res.status !== 200) throw new Error(`round: ${res.status} ${await res.text()}`);
  return (await res.json()) as RoundInfo;
}

export async function roundStatus(url: string, token: string, roundId: number): Promise<RoundStatus> {
  const res = await fetch(`${url}/v1/rounds/${roundId}`, { headers: { Authorization: `Bearer ${token}` } });
  if (res.status !== 200) throw new Error(`status: ${res.status} ${await res.text()}`);
  return (await res.json()) as RoundStatus;
}

export async function download(url: string, token: string, version: number): Promise<Map<string, Float32Array>> {
  const res = await fetch(`${url}/v1/global/${version}`, { headers: { Authorization: `Bearer ${token}` } });
  if (res.status !== 200) throw new Error(`global ${version}: ${res.status} ${await res.text()}`);
  const file = parseSafetensors(new Uint8Array(await res.arrayBuffer()));
  const out = new Map<string, Float32Array>();
  for (const [k, t] of file.tensors) {
    if (t.dtype !== 'F32') throw new Error(`${k} is ${t.dtype}`);
    out.set(k, tensorToFloat32(t));
  }
  return out;
}

export interface Reply {
  status: number;
  body: any;
}

export async function upload(
  url: string,
  token: string | undefined,
  roundId: number,
  body: Uint8Array,
  headers: { updateId?: string; exampleCount?: string | number; extra?: Record<string, string> } = {},
): Promise<Reply> {
  const h: Record<string, string> = { 'Content-Type': 'application/octet-stream', ...(headers.extra ?? {}) };
  if (token !== undefined) h['Authorization'] = `Bearer ${token}`;
  h['X-Update-Id'] = headers.updateId ?? crypto.randomUUID();
  h['X-Example-Count'] = String(headers.exampleCount ?? 1);
  const res = await fetch(`${url}/v1/rounds/${roundId}/updates`, { method: 'POST', headers: h, body: body as Uint8Array<ArrayBuffer> });
  return { status: res.status, body: await res.json() };
}

/** A POST with a chunked body (no Content-Length), written in `chunks` pieces. */
export function uploadChunked(url: string, token: string, roundId: number, chunk: Uint8Array, chunks: number): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const u = new URL(`${url}/v1/rounds/${roundId}/updates`);
    const req = request(
      { host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { Authorization: `Bearer ${token}`, 'X-Update-Id': crypto.randomUUID(), 'X-Example-Count': '1', 'Transfer-Encoding': 'chunked' } },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(parts).toString('utf8')) }));
      },
    );
    req.on('error', reject);
    let i = 0;
    const write = () => {
      while (i < chunks) {
        i++;
        if (!req.write(chunk)) {
          req.once('drain', write);
          return;
        }
      }
      req.end();
    };
    write();
  });
}

/** Everything a rejected request must leave unchanged. */
export function dbSnapshot(path: string): Record<string, unknown> {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const count = (t: string) => (db.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get() as { n: number }).n;
    const sums = (db.prepare('SELECT round_id, weighted_sum, total_weight, count FROM round_sums ORDER BY round_id').all() as { round_id: number; weighted_sum: Buffer; total_weight: number; count: number }[]).map((r) => ({
      round: r.round_id,
      sumSha256: createHash('sha256').update(r.weighted_sum).digest('hex'),
      totalWeight: r.total_weight,
      count: r.count,
    }));
    const rounds = db.prepare('SELECT id, status, deadline, extensions, result_version FROM rounds ORDER BY id').all();
    return { clients: count('clients'), updates: count('updates'), rounds, versions: count('global_versions'), sums, optimizer: count('optimizer_state') };
  } finally {
    db.close();
  }
}

export function query<T>(path: string, sql: string, ...params: unknown[]): T[] {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(sql).all(...params) as T[];
  } finally {
    db.close();
  }
}

/** Flat f64 copies of a tensor map in KEYS order (sorted, the server's layout order too). */
export function flat(t: ReadonlyMap<string, Float32Array | HostTensor>): Float64Array {
  const parts: number[] = [];
  for (const k of KEYS) {
    const v = t.get(k)!;
    parts.push(...(v instanceof Float32Array ? v : v.data));
  }
  return Float64Array.from(parts);
}

export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol = 1e-6): void {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} != ${expected.length}`);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!) / Math.max(1, Math.abs(expected[i]!));
    if (d > worst) {
      worst = d;
      at = i;
    }
  }
  if (worst > tol) throw new Error(`element ${at}: ${actual[at]} vs expected ${expected[at]} (relative ${worst} > ${tol})`);
}
