/**
 * Every refused request answers 4xx with an ErrorResponse and leaves the database exactly as it
 * was: row counts, rounds, and each round's running sum (SHA-256 of the blob, total weight, count).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serializeSafetensors } from '@webtune/model';
import { startCoordinator, type CoordinatorHandle } from '../src/index.js';
import { dbSnapshot, encode, initialAdapter, KEYS, register, roundInfo, SECRET, SHAPES, tensors, tmp, upload, uploadChunked, type Reply } from './helpers.js';

const MAX_UPLOAD = 4096; // a valid dense f32 update of this adapter is about 700 bytes

let c: CoordinatorHandle;
let dbPath: string;
let token: string;
let other: string;

beforeAll(async () => {
  dbPath = join(tmp(), 'c.sqlite');
  c = await startCoordinator({
    db: dbPath, initialAdapter: initialAdapter(), enrolmentSecret: SECRET, log: () => {},
    config: { minClients: 2, maxClients: 3, round: { maxUploadBytes: MAX_UPLOAD } },
  });
  token = (await register(c.url)).token;
  other = (await register(c.url)).token;
  // One accepted update, so the running sum is not all zeros.
  expect((await upload(c.url, other, 1, encode(tensors(7, 0.01), { baseVersion: 0 }), { exampleCount: 3 })).status).toBe(200);
});
afterAll(async () => {
  await c.close();
});

/** Runs a request and asserts its error answer and that nothing in the database changed. */
async function refused(run: () => Promise<Reply>, status: number, error: string): Promise<void> {
  const before = dbSnapshot(dbPath);
  const r = await run();
  expect(r.status).toBe(status);
  expect(r.body.error).toBe(error);
  expect(typeof r.body.message).toBe('string');
  expect(dbSnapshot(dbPath)).toEqual(before);
}

const valid = () => encode(tensors(8, 0.01), { baseVersion: 0 });
const call = async (path: string, init: RequestInit): Promise<Reply> => {
  const res = await fetch(`${c.url}${path}`, init);
  return { status: res.status, body: await res.json() };
};
/** A hand-built payload with the update metadata. */
const payload = (tensorsToWrite: Parameters<typeof serializeSafetensors>[0], meta: Record<string, string> = {}) =>
  serializeSafetensors(tensorsToWrite, { format: 'webtune-update', protocol: '1', encoding: 'f32', sparse: 'none', base_version: '0', ...meta });
const denseF32 = (skip?: string, override?: { name: string; shape: number[]; data: Float32Array }) => {
  const list = KEYS.filter((k) => k !== skip).map((k, i) => ({ name: k, dtype: 'F32' as const, shape: SHAPES[KEYS.indexOf(k)]!, data: new Float32Array(SHAPES[i]![0]! * SHAPES[i]![1]!).fill(0.001) }));
  return override ? [...list.filter((t) => t.name !== override.name), { ...override, dtype: 'F32' as const }] : list;
};

describe('rejected requests change nothing', () => {
  it('register: wrong secret (401), bad JSON (400), too large (413)', async () => {
    await refused(() => call('/v1/register', { method: 'POST', body: JSON.stringify({ enrolmentSecret: 'nope' }) }), 401, 'bad_secret');
    await refused(() => call('/v1/register', { method: 'POST', body: '{not json' }), 400, 'bad_request');
    await refused(() => call('/v1/register', { method: 'POST', body: JSON.stringify({ enrolmentSecret: SECRET, name: 'x'.repeat(20_000) }) }), 413, 'too_large');
  });

  it('missing or unknown token: 401', async () => {
    await refused(() => upload(c.url, undefined, 1, valid()), 401, 'unauthenticated');
    await refused(() => upload(c.url, 'not-a-token', 1, valid()), 401, 'unauthenticated');
    await refused(() => call('/v1/round', { headers: { Authorization: 'Basic abc' } }), 401, 'unauthenticated');
  });

  it('bad headers: 400', async () => {
    await refused(() => upload(c.url, token, 1, valid(), { exampleCount: 0 }), 400, 'bad_request');
    await refused(() => upload(c.url, token, 1, valid(), { exampleCount: '2.5' }), 400, 'bad_request');
    await refused(() => upload(c.url, token, 1, valid(), { updateId: 'has spaces' }), 400, 'bad_request');
  });

  it('wrong round (409) and unknown version / route (404)', async () => {
    await refused(() => upload(c.url, token, 99, valid()), 409, 'wrong_round');
    await refused(() => call('/v1/global/42', { headers: { Authorization: `Bearer ${token}` } }), 404, 'not_found');
    await refused(() => call('/v1/nothing', { headers: { Authorization: `Bearer ${token}` } }), 404, 'not_found');
  });

  it('too large: by Content-Length (413) and by the streamed size without one (413)', async () => {
    await refused(() => upload(c.url, token, 1, new Uint8Array(MAX_UPLOAD + 1)), 413, 'too_large');
    await refused(() => uploadChunked(c.url, token, 1, new Uint8Array(1000), 10), 413, 'too_large');
    // The connection is usable for the next request (a fresh one).
    expect((await roundInfo(c.url, token)).roundId).toBe(1);
  });

  it('malformed, wrong tensors, wrong shapes, wrong dtypes, non-finite: 400', async () => {
    await refused(() => upload(c.url, token, 1, new Uint8Array(200).fill(7)), 400, 'malformed');
    await refused(() => upload(c.url, token, 1, payload(denseF32(), { format: 'pt' })), 400, 'malformed');
    await refused(() => upload(c.url, token, 1, payload(denseF32(), { protocol: '2' })), 400, 'unsupported_protocol');
    await refused(() => upload(c.url, token, 1, payload(denseF32(KEYS[1]))), 400, 'wrong_tensors');
    await refused(() => upload(c.url, token, 1, payload([...denseF32(), { name: 'extra.weight', dtype: 'F32', shape: [1], data: Float32Array.of(0) }])), 400, 'wrong_tensors');
    await refused(() => upload(c.url, token, 1, payload(denseF32(undefined, { name: KEYS[0]!, shape: [4, 2], data: new Float32Array(8) }))), 400, 'wrong_tensors');
    const f64 = denseF32().map((t, i) => (i === 0 ? { name: t.name, dtype: 'F64' as const, shape: t.shape, data: new Uint8Array(8 * 8) } : t));
    await refused(() => upload(c.url, token, 1, payload(f64)), 400, 'wrong_tensors');
    const nan = new Float32Array(8).fill(0.001);
    nan[3] = NaN;
    await refused(() => upload(c.url, token, 1, payload(denseF32(undefined, { name: KEYS[2]!, shape: [2, 4], data: nan }))), 400, 'not_finite');
    const inf = new Float32Array(8).fill(Infinity);
    await refused(() => upload(c.url, token, 1, encode(new Map(KEYS.map((k, i) => [k, { shape: SHAPES[i]!, data: i === 1 ? inf : new Float32Array(8) }])), { baseVersion: 0 })), 400, 'not_finite');
  });

  it('base_version not the round\'s: 409', async () => {
    await refused(() => upload(c.url, token, 1, encode(tensors(9, 0.01), { baseVersion: 3 })), 409, 'wrong_round');
  });

  it('a second update from the same client in a round (new X-Update-Id): 409; a replayed id from another client: 409', async () => {
    const id = crypto.randomUUID();
    await refused(() => upload(c.url, other, 1, valid(), { updateId: crypto.randomUUID() }), 409, 'bad_request');
    // `token` uploads once (accepted: count 2), then `other` reuses its id.
    expect((await upload(c.url, token, 1, valid(), { updateId: id, exampleCount: 2 })).body).toEqual({ accepted: true, duplicate: false, count: 2 });
    await refused(() => upload(c.url, other, 1, valid(), { updateId: id }), 409, 'bad_request');
  });

  it('closed round: 409 round_closed; its replay still answers duplicate', async () => {
    const third = await register(c.url);
    const id = crypto.randomUUID();
    expect((await upload(c.url, third.token, 1, valid(), { updateId: id })).body).toEqual({ accepted: true, duplicate: false, count: 3 });
    expect((await roundInfo(c.url, token)).roundId).toBe(2); // maxClients 3: aggregated
    const late = await register(c.url);
    await refused(() => upload(c.url, late.token, 1, valid()), 409, 'round_closed');
    const before = dbSnapshot(dbPath);
    expect(await upload(c.url, third.token, 1, valid(), { updateId: id })).toEqual({ status: 200, body: { accepted: true, duplicate: true, count: 3 } });
    expect(dbSnapshot(dbPath)).toEqual(before);
  });
});

describe('rejections that need their own round settings', () => {
  it('not selected: 403', async () => {
    const path = join(tmp(), 'c.sqlite');
    const s = await startCoordinator({ db: path, initialAdapter: initialAdapter(), enrolmentSecret: SECRET, log: () => {}, config: { sampleRate: 0.3 } });
    try {
      let loser: string | undefined;
      for (let i = 0; i < 50 && !loser; i++) {
        const x = await register(s.url);
        if (!(await roundInfo(s.url, x.token)).selected) loser = x.token;
      }
      expect(loser).toBeDefined();
      const before = dbSnapshot(path);
      const r = await upload(s.url, loser!, 1, valid());
      expect(r).toMatchObject({ status: 403, body: { error: 'not_selected' } });
      expect(dbSnapshot(path)).toEqual(before);
    } finally {
      await s.close();
    }
  });

  it('central DP: norm above S (beyond the tolerance) is 400 norm_exceeded; just at S is accepted', async () => {
    const path = join(tmp(), 'c.sqlite');
    const S = 0.1;
    const s = await startCoordinator({
      db: path, initialAdapter: initialAdapter(), enrolmentSecret: SECRET, log: () => {},
      config: { minClients: 2, maxClients: 3, normTolerance: 1e-3, round: { clipNorm: S, dp: { mode: 'central', noiseMultiplier: 1, delta: 1e-5 } } },
    });
    try {
      const x = await register(s.url);
      const scaled = (norm: number) => {
        const t = tensors(77, 1);
        let n = 0;
        for (const v of t.values()) for (const y of v.data) n += y * y;
        const k = norm / Math.sqrt(n);
        return encode(new Map([...t].map(([key, v]) => [key, { shape: v.shape, data: v.data.map((y) => y * k) }])), { baseVersion: 0 });
      };
      const before = dbSnapshot(path);
      expect(await upload(s.url, x.token, 1, scaled(S * 1.01))).toMatchObject({ status: 400, body: { error: 'norm_exceeded' } });
      expect(dbSnapshot(path)).toEqual(before);
      expect((await upload(s.url, x.token, 1, scaled(S))).status).toBe(200);
    } finally {
      await s.close();
    }
  });
});
