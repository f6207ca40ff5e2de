/**
 * The protocol walked end to end over real HTTP and a real SQLite file: register, round info,
 * download, f32 and q8 uploads, status, and aggregation (FedAvg, FedAvgM, FedAdam, central DP)
 * against expected values computed here with plain arithmetic, independently of the server code:
 *   FedAvg   avg = sum_i w_i d_i / sum_i w_i  (w_i = min(examples_i, cap)),  g' = fround(g + avg)
 *   FedAvgM  v = beta v + avg;  g' = fround(g + lr v)
 *   FedAdam  m = b1 m + (1-b1) avg;  v = b2 v + (1-b2) avg^2;  g' = fround(g + lr m / (sqrt(v) + tau))
 * (q8 payloads are stochastically rounded, so the expectation uses what decodeUpdate reads back.)
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { computeDpEpsilon, decodeUpdate } from '@webtune/federated';
import type { HostTensor } from '@webtune/model';
import { startCoordinator, type CoordinatorHandle, type CoordinatorOptions } from '../src/index.js';
import { dbSnapshot, download, encode, expectClose, flat, initialAdapter, KEYS, query, register, roundInfo, roundStatus, SECRET, SHAPES, tensors, tmp, upload } from './helpers.js';

const open: CoordinatorHandle[] = [];
afterEach(async () => {
  while (open.length) await open.pop()!.close();
});

async function start(dbPath: string, options: Partial<CoordinatorOptions> = {}): Promise<CoordinatorHandle> {
  const h = await startCoordinator({ db: dbPath, initialAdapter: initialAdapter(), enrolmentSecret: SECRET, log: () => {}, ...options });
  open.push(h);
  return h;
}

const expectedShapes = new Map(KEYS.map((k, i) => [k, SHAPES[i]!]));
/** What the server reads from an encoded update, flat (f64 copies of the f32 values). */
const decoded = (bytes: Uint8Array) => flat(decodeUpdate(bytes, expectedShapes).tensors);
const f32 = (xs: ArrayLike<number>) => Float64Array.from(xs, (x) => Math.fround(x));

describe('protocol v1 walk', () => {
  it('register, round, download, f32 + q8 uploads, status, FedAvg with a weight cap', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'c.sqlite');
    const c = await start(dbPath, { config: { minClients: 2, maxClients: 3, maxExampleWeight: 50, sampleRate: 1 } });

    const clients = [await register(c.url, 'a'), await register(c.url, 'b'), await register(c.url)];
    // A LoRA coordinator speaks protocol 1, which 0.2.0 clients speak too.
    expect(clients[0]!.protocol).toBe(1);
    expect(new Set(clients.map((x) => x.clientId)).size).toBe(3);
    // Only the token's SHA-256 is stored.
    const stored = query<{ token_hash: string }>(dbPath, 'SELECT token_hash FROM clients');
    expect(stored.map((r) => r.token_hash)).not.toContain(clients[0]!.token);
    expect(stored.every((r) => /^[0-9a-f]{64}$/.test(r.token_hash))).toBe(true);

    const info = await roundInfo(c.url, clients[0]!.token);
    expect(info).toMatchObject({ protocol: 1, roundId: 1, status: 'open', globalVersion: 0, selected: true, minClients: 2, maxClients: 3, sampleRate: 1 });
    expect(info.config.lora).toMatchObject({ rank: 2, alpha: 2, targets: ['q_proj', 'v_proj'] });
    expect(info.config.dp.mode).toBe('none');
    expect(info.deadline).toBeGreaterThan(Date.now());

    const g0 = await download(c.url, clients[0]!.token, 0);
    expect([...g0.keys()].sort()).toEqual(KEYS);
    expectClose(flat(g0), flat(initialAdapter()), 0);

    const deltas = [tensors(11, 0.01), tensors(12, 0.01), tensors(13, 0.01)];
    const payloads = [
      encode(deltas[0]!, { baseVersion: 0 }),
      encode(deltas[1]!, { baseVersion: 0, encoding: 'q8' }),
      encode(deltas[2]!, { baseVersion: 0 }),
    ];
    const examples = [10, 30, 100];
    for (let i = 0; i < 3; i++) {
      const r = await upload(c.url, clients[i]!.token, 1, payloads[i]!, { exampleCount: examples[i] });
      expect(r).toEqual({ status: 200, body: { accepted: true, duplicate: false, count: i + 1 } });
      if (i === 0) expect(await roundStatus(c.url, clients[0]!.token, 1)).toMatchObject({ roundId: 1, status: 'open', accepted: 1 });
    }
    // maxClients reached: aggregated at once.
    const st = await roundStatus(c.url, clients[0]!.token, 1);
    expect(st).toMatchObject({ roundId: 1, status: 'closed', accepted: 3, resultVersion: 1 });

    // Expected FedAvg: weights 10, 30, min(100, 50) = 50.
    const w = [10, 30, 50];
    const g = flat(initialAdapter());
    const d = payloads.map(decoded);
    const want = new Float64Array(g.length);
    for (let j = 0; j < g.length; j++) {
      const avg = (w[0]! * d[0]![j]! + w[1]! * d[1]![j]! + w[2]! * d[2]![j]!) / (w[0]! + w[1]! + w[2]!);
      want[j] = Math.fround(g[j]! + avg);
    }
    const g1 = await download(c.url, clients[0]!.token, 1);
    expectClose(flat(g1), want, 1e-7);

    const next = await roundInfo(c.url, clients[1]!.token);
    expect(next).toMatchObject({ roundId: 2, status: 'open', globalVersion: 1 });

    // Memory, by design: updates rows hold no tensors; one adapter-sized f64 running sum per round.
    const cols = query<{ name: string; type: string }>(dbPath, "SELECT name, type FROM pragma_table_info('updates')");
    expect(cols.some((x) => x.type.toUpperCase() === 'BLOB')).toBe(false);
    const sums = query<{ round_id: number; n: number }>(dbPath, 'SELECT round_id, length(weighted_sum) AS n FROM round_sums ORDER BY round_id');
    expect(sums).toEqual([{ round_id: 1, n: 8 * 32 }, { round_id: 2, n: 8 * 32 }]);
    expect(query<{ n: number }>(dbPath, 'SELECT COUNT(*) AS n FROM updates')[0]!.n).toBe(3);
    const rounds = query<{ status: string; outcome: string | null; result_version: number | null; selection: string }>(dbPath, 'SELECT status, outcome, result_version, selection FROM rounds ORDER BY id');
    expect(rounds.map((r) => [r.status, r.outcome, r.result_version])).toEqual([['closed', 'aggregated', 1], ['open', null, null]]);
    expect(JSON.parse(rounds[0]!.selection)).toMatchObject({ rule: 'bernoulli', rate: 1 });
    // WAL + synchronous FULL.
    expect(query<{ journal_mode: string }>(dbPath, 'PRAGMA journal_mode')[0]!.journal_mode).toBe('wal');
  });

  it('a replayed X-Update-Id is accepted once', async () => {
    const dbPath = join(tmp(), 'c.sqlite');
    const c = await start(dbPath, { config: { minClients: 2, maxClients: 3 } });
    const a = await register(c.url);
    const body = encode(tensors(5, 0.01), { baseVersion: 0 });
    const id = crypto.randomUUID();
    expect((await upload(c.url, a.token, 1, body, { updateId: id, exampleCount: 4 })).body).toEqual({ accepted: true, duplicate: false, count: 1 });
    const before = dbSnapshot(dbPath);
    expect((await upload(c.url, a.token, 1, body, { updateId: id, exampleCount: 4 }))).toEqual({ status: 200, body: { accepted: true, duplicate: true, count: 1 } });
    expect(dbSnapshot(dbPath)).toEqual(before);
  });

  it('FedAvgM over two rounds (server momentum, persisted across a restart)', async () => {
    const dbPath = join(tmp(), 'c.sqlite');
    const config = { minClients: 2, maxClients: 2, serverOptimizer: { type: 'fedavgm' as const, lr: 0.7, momentum: 0.9 } };
    let c = await start(dbPath, { config });
    const a = await register(c.url);
    const b = await register(c.url);
    const run = async (round: number, base: number, seeds: [number, number], ex: [number, number]) => {
      const pa = encode(tensors(seeds[0], 0.02), { baseVersion: base });
      const pb = encode(tensors(seeds[1], 0.02), { baseVersion: base });
      expect((await upload(c.url, a.token, round, pa, { exampleCount: ex[0] })).status).toBe(200);
      expect((await upload(c.url, b.token, round, pb, { exampleCount: ex[1] })).status).toBe(200);
      const da = decoded(pa);
      const db = decoded(pb);
      return da.map((x, j) => (ex[0] * x + ex[1] * db[j]!) / (ex[0] + ex[1]));
    };
    const g0 = flat(initialAdapter());
    const avg1 = await run(1, 0, [21, 22], [3, 1]);
    const v1 = avg1.map((x) => 0.9 * 0 + x);
    const g1 = f32(g0.map((x, j) => x + 0.7 * v1[j]!));
    expectClose(flat(await download(c.url, a.token, 1)), g1, 1e-7);

    await c.close();
    open.length = 0;
    c = await start(dbPath, { config, initialAdapter: undefined });
    const avg2 = await run(2, 1, [23, 24], [2, 5]);
    const v2 = avg2.map((x, j) => 0.9 * v1[j]! + x);
    const g2 = f32(g1.map((x, j) => x + 0.7 * v2[j]!));
    expectClose(flat(await download(c.url, a.token, 2)), g2, 1e-7);
    const state = query<{ name: string; version: number }>(dbPath, 'SELECT name, version FROM optimizer_state');
    expect(state).toEqual([{ name: 'momentum', version: 2 }]);
  });

  it('FedAdam over two rounds', async () => {
    const dbPath = join(tmp(), 'c.sqlite');
    const [lr, b1, b2, tau] = [0.05, 0.9, 0.99, 1e-3];
    const c = await start(dbPath, { config: { minClients: 2, maxClients: 2, serverOptimizer: { type: 'fedadam', lr, beta1: b1, beta2: b2, tau } } });
    const a = await register(c.url);
    const b = await register(c.url);
    let g = flat(initialAdapter());
    let m = new Float64Array(g.length);
    let v = new Float64Array(g.length);
    for (const [round, seeds] of [[1, [31, 32]], [2, [33, 34]]] as const) {
      const pa = encode(tensors(seeds[0], 0.02), { baseVersion: round - 1, encoding: round === 2 ? 'q8' : 'f32' });
      const pb = encode(tensors(seeds[1], 0.02), { baseVersion: round - 1 });
      expect((await upload(c.url, a.token, round, pa, { exampleCount: 6 })).status).toBe(200);
      expect((await upload(c.url, b.token, round, pb, { exampleCount: 2 })).status).toBe(200);
      const da = decoded(pa);
      const db = decoded(pb);
      const avg = da.map((x, j) => (6 * x + 2 * db[j]!) / 8);
      m = m.map((x, j) => b1 * x + (1 - b1) * avg[j]!);
      v = v.map((x, j) => b2 * x + (1 - b2) * avg[j]! * avg[j]!);
      g = f32(g.map((x, j) => x + (lr * m[j]!) / (Math.sqrt(v[j]!) + tau)));
      expect(await roundStatus(c.url, a.token, round)).toMatchObject({ status: 'closed', resultVersion: round });
      expectClose(flat(await download(c.url, a.token, round)), g, 1e-7);
    }
  });

  it('central DP: noise N(0, (z S / m)^2) on the equal-weight mean; norms above S refused', async () => {
    const dbPath = join(tmp(), 'c.sqlite');
    const z = 1.3;
    const S = 0.5;
    // A constant "gaussian" makes the noise visible: every element moves by exactly z S / m.
    const c = await start(dbPath, {
      gaussian: () => 1,
      config: { minClients: 2, maxClients: 2, round: { clipNorm: S, dp: { mode: 'central', noiseMultiplier: z, delta: 1e-5 } } },
    });
    const a = await register(c.url);
    const b = await register(c.url);
    const info = await roundInfo(c.url, a.token);
    expect(info.config.dp).toEqual({ mode: 'central', noiseMultiplier: z, delta: 1e-5 });
    expect(info.config.clipNorm).toBe(S);
    const clip = (t: Map<string, HostTensor>) => {
      let n = 0;
      for (const x of t.values()) for (const y of x.data) n += y * y;
      const s = Math.min(1, S / Math.sqrt(n));
      return new Map([...t].map(([k, x]) => [k, { shape: x.shape, data: x.data.map((y) => y * s) }]));
    };
    const ta = clip(tensors(41, 0.5));
    const tb = clip(tensors(42, 0.5));
    const pa = encode(ta, { baseVersion: 0 });
    // Unclipped (norm well above S): refused.
    const big = await upload(c.url, b.token, 1, encode(tensors(42, 0.5), { baseVersion: 0 }), { exampleCount: 1 });
    expect(big).toMatchObject({ status: 400, body: { error: 'norm_exceeded' } });
    expect((await upload(c.url, a.token, 1, pa, { exampleCount: 100 })).status).toBe(200);
    expect((await upload(c.url, b.token, 1, encode(tb, { baseVersion: 0 }), { exampleCount: 1 })).status).toBe(200);
    const g0 = flat(initialAdapter());
    const da = flat(ta);
    const dbv = flat(tb);
    // Equal weights under central DP (example counts 100 and 1 are ignored), noise z S / 2.
    const want = f32(g0.map((x, j) => x + (da[j]! + dbv[j]!) / 2 + (z * S) / 2));
    expectClose(flat(await download(c.url, a.token, 1)), want, 1e-7);
    expect(query<{ weight: number }>(dbPath, 'SELECT weight FROM updates ORDER BY rowid').map((r) => r.weight)).toEqual([1, 1]);
    // Privacy accounting: one release (z, q = 1) after round 1, two after round 2.
    const eps = (steps: number) => computeDpEpsilon({ noiseMultiplier: z, sampleRate: 1, steps, delta: 1e-5 }).epsilon;
    expect(query<{ dp_epsilon: number }>(dbPath, 'SELECT dp_epsilon FROM rounds WHERE id = 1')[0]!.dp_epsilon).toBeCloseTo(eps(1), 10);
    expect((await upload(c.url, a.token, 2, encode(ta, { baseVersion: 1 }))).status).toBe(200);
    expect((await upload(c.url, b.token, 2, encode(tb, { baseVersion: 1 }))).status).toBe(200);
    expect(query<{ dp_epsilon: number }>(dbPath, 'SELECT dp_epsilon FROM rounds WHERE id = 2')[0]!.dp_epsilon).toBeCloseTo(eps(2), 10);
    expect(eps(2)).toBeGreaterThan(eps(1));
  });

  it('client sampling is deterministic per (round, client) and survives a restart', async () => {
    const dbPath = join(tmp(), 'c.sqlite');
    let c = await start(dbPath, { config: { sampleRate: 0.5 } });
    const clients = [];
    for (let i = 0; i < 24; i++) clients.push(await register(c.url));
    const flags = await Promise.all(clients.map(async (x) => (await roundInfo(c.url, x.token)).selected));
    expect(flags).toContain(true);
    expect(flags).toContain(false);
    expect((await roundInfo(c.url, clients[0]!.token)).sampleRate).toBe(0.5);
    await c.close();
    open.length = 0;
    c = await start(dbPath, { config: { sampleRate: 0.5 }, initialAdapter: undefined });
    const again = await Promise.all(clients.map(async (x) => (await roundInfo(c.url, x.token)).selected));
    expect(again).toEqual(flags);
  });

  it('deadlines: too few updates extend the round, then close it; enough updates aggregate it', async () => {
    const dbPath = join(tmp(), 'c.sqlite');
    let now = 1_000_000;
    const c = await start(dbPath, { now: () => now, tickMs: 3_600_000, config: { minClients: 2, maxClients: 5, roundDurationMs: 1000, deadlineAction: 'extend', maxExtensions: 1 } });
    const [a, b, x] = [await register(c.url), await register(c.url), await register(c.url)];
    expect((await roundInfo(c.url, a.token)).deadline).toBe(1_001_000);
    expect((await upload(c.url, a.token, 1, encode(tensors(51, 0.01), { baseVersion: 0 }))).status).toBe(200);
    now = 1_001_000;
    c.tick();
    expect(await roundStatus(c.url, a.token, 1)).toMatchObject({ status: 'open', accepted: 1, deadline: 1_002_000 });
    now = 1_002_500;
    c.tick();
    // Extended once already: closed without a version; round 2 opens on the same base, the update is not in any model.
    const closed = await roundStatus(c.url, a.token, 1);
    expect(closed).toMatchObject({ status: 'closed', accepted: 1 });
    expect(closed.resultVersion).toBeUndefined();
    expect(await roundInfo(c.url, a.token)).toMatchObject({ roundId: 2, globalVersion: 0, deadline: 1_003_500 });
    expect((await upload(c.url, a.token, 1, encode(tensors(52, 0.01), { baseVersion: 0 }))).body.error).toBe('round_closed');
    const p = [encode(tensors(53, 0.01), { baseVersion: 0 }), encode(tensors(54, 0.01), { baseVersion: 0 })];
    expect((await upload(c.url, b.token, 2, p[0]!, { exampleCount: 1 })).status).toBe(200);
    expect((await upload(c.url, x.token, 2, p[1]!, { exampleCount: 3 })).status).toBe(200);
    now = 1_003_500;
    c.tick();
    expect(await roundStatus(c.url, a.token, 2)).toMatchObject({ status: 'closed', accepted: 2, resultVersion: 1 });
    const g0 = flat(initialAdapter());
    const [d0, d1] = p.map(decoded);
    expectClose(flat(await download(c.url, a.token, 1)), f32(g0.map((v, j) => v + (d0![j]! + 3 * d1![j]!) / 4)), 1e-7);
    expect(query<{ outcome: string | null }>(dbPath, 'SELECT outcome FROM rounds ORDER BY id').map((r) => r.outcome)).toEqual(['abandoned', 'aggregated', null]);
  });

  it('restart recovery: a round found "aggregating" (crash mid-aggregation) or past its deadline with >= minClients is aggregated at start', async () => {
    for (const how of ['aggregating', 'deadline'] as const) {
      const dbPath = join(tmp(), 'c.sqlite');
      let now = 5_000_000;
      const config = { minClients: 2, maxClients: 5, roundDurationMs: 1000 };
      let c = await start(dbPath, { now: () => now, config });
      const a = await register(c.url);
      const b = await register(c.url);
      const p = [encode(tensors(71, 0.01), { baseVersion: 0 }), encode(tensors(72, 0.01), { baseVersion: 0 })];
      expect((await upload(c.url, a.token, 1, p[0]!, { exampleCount: 2 })).status).toBe(200);
      expect((await upload(c.url, b.token, 1, p[1]!, { exampleCount: 1 })).status).toBe(200);
      await c.close();
      open.length = 0;
      if (how === 'aggregating') {
        const raw = new Database(dbPath);
        raw.prepare("UPDATE rounds SET status = 'aggregating' WHERE id = 1").run();
        raw.close();
      } else {
        now += 10_000;
      }
      c = await start(dbPath, { now: () => now, config, initialAdapter: undefined });
      expect(await roundStatus(c.url, a.token, 1)).toMatchObject({ status: 'closed', accepted: 2, resultVersion: 1 });
      const [d0, d1] = p.map(decoded);
      const g0 = flat(initialAdapter());
      expectClose(flat(await download(c.url, a.token, 1)), f32(g0.map((v, j) => v + (2 * d0![j]! + d1![j]!) / 3)), 1e-7);
      expect((await roundInfo(c.url, a.token)).roundId).toBe(2);
      await c.close();
      open.length = 0;
    }
  });

  it('maxRounds stops opening rounds; GET /v1/round then reports the last, closed round', async () => {
    const dbPath = join(tmp(), 'c.sqlite');
    const c = await start(dbPath, { config: { minClients: 1, maxClients: 1, maxRounds: 1 } });
    const a = await register(c.url);
    expect((await upload(c.url, a.token, 1, encode(tensors(61, 0.01), { baseVersion: 0 }))).status).toBe(200);
    expect(await roundInfo(c.url, a.token)).toMatchObject({ roundId: 1, status: 'closed' });
    await c.close();
    open.length = 0;
    const again = await start(dbPath, { config: { minClients: 1, maxClients: 1, maxRounds: 2 }, initialAdapter: undefined });
    expect(await roundInfo(again.url, a.token)).toMatchObject({ roundId: 2, status: 'open', globalVersion: 1 });
  });
});
