/**
 * The attacks a hostile client made on the reference coordinator, each now refused (issue 15):
 * updates of unbounded norm in every DP mode, an example count of a billion, an unpublishable
 * aggregate, an absolute-form request target, an aborted upload, a cacheable global, a blank
 * base_version, and a world-readable database. Real HTTP on loopback and a real SQLite file.
 */
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { serializeSafetensors, type HostTensor } from '@webtune/model';
import { maxUpdateNorm, type RoundSnapshot } from '../src/core.js';
import { createInvite, startCoordinator, type CoordinatorHandle } from '../src/index.js';
import { dbSnapshot, download, encode, initialAdapter, KEYS, query, register, roundStatus, SECRET, SHAPES, tensors, tmp, upload } from './helpers.js';

const root = join(import.meta.dirname, '../../..');

type Mode = 'none' | 'local' | 'central';
const ELEMENTS = SHAPES.reduce((a, s) => a + s[0]! * s[1]!, 0);

async function coordinator(mode: Mode, extra: Record<string, unknown> = {}, log: (line: string) => void = () => {}): Promise<{ c: CoordinatorHandle; path: string }> {
  const path = join(tmp(), 'c.sqlite');
  const dp = { mode, noiseMultiplier: mode === 'none' ? 0 : 1, delta: 1e-5 };
  const c = await startCoordinator({
    db: path, initialAdapter: initialAdapter(), enrolmentSecret: SECRET, log,
    config: { minClients: 2, maxClients: 3, ...extra, round: { clipNorm: 0.5, dp } },
  });
  return { c, path };
}

/** Every tensor filled with `value`. */
const filled = (value: number) => new Map<string, HostTensor>(KEYS.map((k, i) => [k, { shape: SHAPES[i]!, data: new Float32Array(SHAPES[i]![0]! * SHAPES[i]![1]!).fill(value) }]));
const norm = (t: Map<string, HostTensor>) => Math.sqrt([...t.values()].reduce((a, x) => a + x.data.reduce((b, y) => b + y * y, 0), 0));
const scaledTo = (target: number) => {
  const t = tensors(5, 1);
  const k = target / norm(t);
  return new Map([...t].map(([key, v]) => [key, { shape: v.shape, data: v.data.map((y) => y * k) }]));
};

describe('bounded updates in every DP mode', () => {
  for (const mode of ['none', 'local', 'central'] as const) {
    it(`${mode}: a 3.4e38-filled update and one above the bound are 400 and change nothing; one within is accepted`, async () => {
      const { c, path } = await coordinator(mode);
      try {
        const x = await register(c.url);
        const before = dbSnapshot(path);
        // The attack that made the global Inf: two of these summed overflow f32.
        expect(await upload(c.url, x.token, 1, encode(filled(3.4e38), { baseVersion: 0 }))).toMatchObject({ status: 400, body: { error: 'norm_exceeded' } });
        const snap = { client: { clipNorm: 0.5, dp: mode === 'none' ? { mode, noiseMultiplier: 0, delta: 1e-5 } : { mode, noiseMultiplier: 1, delta: 1e-5 } }, normTolerance: 1e-3 } as unknown as RoundSnapshot;
        const bound = maxUpdateNorm(snap, ELEMENTS);
        expect(await upload(c.url, x.token, 1, encode(scaledTo(bound * 1.01), { baseVersion: 0 }))).toMatchObject({ status: 400, body: { error: 'norm_exceeded' } });
        expect(dbSnapshot(path)).toEqual(before);
        expect((await upload(c.url, x.token, 1, encode(scaledTo(bound * 0.99), { baseVersion: 0 }))).status).toBe(200);
      } finally {
        await c.close();
      }
    });
  }

  it('the bound: S (with the tolerance) without noise; under local DP, S plus the noise norm zS(sqrt(d) + 10)', () => {
    const snap = (mode: Mode, z: number) => ({ client: { clipNorm: 2, dp: { mode, noiseMultiplier: z, delta: 1e-5 } }, normTolerance: 0 }) as unknown as RoundSnapshot;
    expect(maxUpdateNorm(snap('none', 0), 100)).toBeCloseTo(2, 5);
    expect(maxUpdateNorm(snap('central', 1), 100)).toBeCloseTo(2, 5);
    expect(maxUpdateNorm(snap('local', 0.5), 100)).toBeCloseTo(2 + 0.5 * 2 * (10 + 10), 5);
  });
});

describe('aggregation that cannot be published', () => {
  it('an aggregate that is not finite fails the round: the previous version stays current and a new round opens', async () => {
    const lines: string[] = [];
    const { c, path } = await coordinator('none', { maxClients: 2 }, (l) => lines.push(l));
    try {
      const a = await register(c.url);
      const b = await register(c.url);
      expect((await upload(c.url, a.token, 1, encode(tensors(3, 0.01), { baseVersion: 0 }))).status).toBe(200);
      // No client can make a sum overflow any more (every update is bounded), so the fault is made in
      // the database itself: a running sum damaged on disk, as a bug or bad storage could leave it.
      const db = new Database(path);
      db.prepare('UPDATE round_sums SET weighted_sum = ? WHERE round_id = 1').run(Buffer.from(new Float64Array(ELEMENTS).fill(Infinity).buffer));
      db.close();
      expect((await upload(c.url, b.token, 1, encode(tensors(4, 0.01), { baseVersion: 0 }))).status).toBe(200);
      c.tick();
      const status = await roundStatus(c.url, a.token, 1);
      expect(status).toMatchObject({ status: 'closed', outcome: 'failed' });
      expect(status.resultVersion).toBeUndefined();
      await expect(download(c.url, a.token, 1)).rejects.toThrow(/404/);
      const next = await (await fetch(`${c.url}/v1/round`, { headers: { Authorization: `Bearer ${a.token}` } })).json();
      expect(next).toMatchObject({ roundId: 2, status: 'open', globalVersion: 0 });
      expect(lines.some((l) => /not publishable/.test(l))).toBe(true);
    } finally {
      await c.close();
    }
  });
});

describe('weights', () => {
  it("the default cap is the round's steps x batchSize: a claim of a billion examples weighs as much as an honest client", async () => {
    const { c } = await coordinator('none', { maxClients: 2 });
    try {
      const honest = await register(c.url);
      const liar = await register(c.url);
      const info = await (await fetch(`${c.url}/v1/round`, { headers: { Authorization: `Bearer ${honest.token}` } })).json();
      const perRound = info.config.steps * info.config.batchSize;
      const dh = tensors(10, 0.01);
      const dl = tensors(11, 0.01);
      expect((await upload(c.url, honest.token, 1, encode(dh, { baseVersion: 0 }), { exampleCount: perRound })).status).toBe(200);
      const before = await roundStatus(c.url, liar.token, 1);
      expect(before.weights).toEqual([perRound]);
      expect(before.yourWeight).toBeUndefined();
      expect((await upload(c.url, liar.token, 1, encode(dl, { baseVersion: 0 }), { exampleCount: 1_000_000_000 })).status).toBe(200);
      const after = await roundStatus(c.url, liar.token, 1);
      expect(after.weights).toEqual([perRound, perRound]);
      expect(after.yourWeight).toBe(perRound);
      // The new global is the plain mean: the liar got half, not 99.9999%.
      const g = await download(c.url, honest.token, 1);
      const g0 = initialAdapter();
      for (const k of KEYS) {
        const expected = g0.get(k)!.data.map((v, i) => v + (dh.get(k)!.data[i]! + dl.get(k)!.data[i]!) / 2);
        for (let i = 0; i < expected.length; i++) expect(g.get(k)![i]).toBeCloseTo(expected[i]!, 6);
      }
    } finally {
      await c.close();
    }
  });
});

describe('protocol edges', () => {
  /** One raw HTTP/1.1 exchange, for request targets fetch() will not send. */
  function raw(url: string, text: string): Promise<string> {
    const u = new URL(url);
    return new Promise((resolve, reject) => {
      const socket = connect(Number(u.port), u.hostname, () => socket.end(text));
      let out = '';
      socket.on('data', (d) => (out += d.toString()));
      socket.on('end', () => resolve(out));
      socket.on('error', reject);
    });
  }

  it('an absolute-form or malformed request target is 400, logged without a stack', async () => {
    const lines: string[] = [];
    const { c } = await coordinator('none', {}, (l) => lines.push(l));
    try {
      for (const target of ['http://[/', 'http://example.com/v1/round', '//evil/v1/round', '*']) {
        const reply = await raw(c.url, `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
        expect(reply, target).toMatch(/^HTTP\/1\.1 400 /);
        expect(reply).toContain('"bad_request"');
      }
      expect(lines.filter((l) => /internal error|\n\s+at /.test(l))).toEqual([]);
    } finally {
      await c.close();
    }
  });

  it('an upload the client aborts mid-body is one log line, and changes nothing', async () => {
    const lines: string[] = [];
    const { c, path } = await coordinator('none', {}, (l) => lines.push(l));
    try {
      const x = await register(c.url);
      const before = dbSnapshot(path);
      const u = new URL(c.url);
      await new Promise<void>((resolve) => {
        const socket = connect(Number(u.port), u.hostname, () => {
          socket.write(`POST /v1/rounds/1/updates HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${x.token}\r\nX-Update-Id: aborted-1\r\nX-Example-Count: 1\r\nContent-Length: 600\r\n\r\n`);
          socket.write(Buffer.alloc(100, 1), () => setTimeout(() => socket.destroy(), 50));
        });
        socket.on('close', () => resolve());
      });
      await new Promise((r) => setTimeout(r, 200));
      const about = lines.filter((l) => l.includes('/v1/rounds/1/updates'));
      expect(about).toHaveLength(1);
      expect(about[0]).toMatch(/closed the connection after 100 bytes/);
      expect(about[0]).not.toMatch(/\n/);
      expect(dbSnapshot(path)).toEqual(before);
    } finally {
      await c.close();
    }
  });

  it('the global adapter is private to the client that fetched it (Cache-Control: private)', async () => {
    const { c } = await coordinator('none');
    try {
      const x = await register(c.url);
      const res = await fetch(`${c.url}/v1/global/0`, { headers: { Authorization: `Bearer ${x.token}` } });
      expect(res.headers.get('cache-control')).toMatch(/^private\b/);
    } finally {
      await c.close();
    }
  });

  it('base_version must be digits: "" (which Number() reads as 0), " 0" and "0x0" are malformed', async () => {
    const { c, path } = await coordinator('none');
    try {
      const x = await register(c.url);
      const before = dbSnapshot(path);
      for (const base of ['', ' 0', '0x0', '0e0', '-0']) {
        const body = serializeSafetensors(
          KEYS.map((k, i) => ({ name: k, dtype: 'F32' as const, shape: SHAPES[i]!, data: new Float32Array(SHAPES[i]![0]! * SHAPES[i]![1]!).fill(0.001) })),
          { format: 'webtune-update', protocol: '1', encoding: 'f32', sparse: 'none', base_version: base },
        );
        expect(await upload(c.url, x.token, 1, body), JSON.stringify(base)).toMatchObject({ status: 400, body: { error: 'malformed' } });
      }
      expect(dbSnapshot(path)).toEqual(before);
    } finally {
      await c.close();
    }
  });

  it('the database file is readable by its owner only (0600)', async () => {
    const { c, path } = await coordinator('none');
    try {
      expect(statSync(path).mode & 0o777).toBe(0o600);
      expect(statSync(`${path}-wal`).mode & 0o777).toBe(0o600);
    } finally {
      await c.close();
    }
  });
});

describe('identities', () => {
  it('by default, ten Sybils registered after the round opened take at most half of it; the older client still gets in', async () => {
    let t = 1_000_000;
    const path = join(tmp(), 'c.sqlite');
    const c = await startCoordinator({
      db: path, initialAdapter: initialAdapter(), enrolmentSecret: SECRET, log: () => {}, now: () => t,
      config: { minClients: 1, maxClients: 4, roundDurationMs: 1000, deadlineAction: 'close' },
    });
    try {
      const honest = await register(c.url);
      t += 2000; // round 1 closes unused; round 2 opens after the honest client registered
      c.tick();
      const info = await (await fetch(`${c.url}/v1/round`, { headers: { Authorization: `Bearer ${honest.token}` } })).json();
      expect(info.roundId).toBe(2);
      t += 10;
      const sybils = [];
      for (let i = 0; i < 10; i++) sybils.push(await register(c.url));
      const statuses = [];
      for (const [i, s] of sybils.entries()) statuses.push((await upload(c.url, s.token, 2, encode(tensors(20 + i, 0.01), { baseVersion: 0 }))).status);
      expect(statuses.filter((s) => s === 200)).toHaveLength(2);
      expect(statuses.filter((s) => s === 403)).toHaveLength(8);
      expect((await upload(c.url, honest.token, 2, encode(tensors(40, 0.01), { baseVersion: 0 }))).status).toBe(200);
      expect((await roundStatus(c.url, honest.token, 2)).accepted).toBe(3);
    } finally {
      await c.close();
    }
  });

  it('the shared secret registers at most maxRegistrations clients; an invitation code its uses, until it expires', async () => {
    const path = join(tmp(), 'c.sqlite');
    const c = await startCoordinator({ db: path, initialAdapter: initialAdapter(), enrolmentSecret: SECRET, log: () => {}, config: { maxRegistrations: 2 } });
    const reg = (secret: string) => fetch(`${c.url}/v1/register`, { method: 'POST', body: JSON.stringify({ enrolmentSecret: secret }) });
    try {
      expect((await reg(SECRET)).status).toBe(200);
      expect((await reg(SECRET)).status).toBe(200);
      const third = await reg(SECRET);
      expect(third.status).toBe(403);
      expect((await third.json()).message).toMatch(/registered its 2 clients.*invitation code/);
      const db = new Database(path);
      const code = createInvite(db, 2, null);
      const expired = createInvite(db, 5, Date.now() - 1);
      db.close();
      expect((await reg(code)).status).toBe(200);
      expect((await reg(code)).status).toBe(200);
      expect((await reg(code)).status).toBe(403);
      expect((await reg(expired)).status).toBe(403);
      expect((await reg('inv_not-a-code')).status).toBe(401);
    } finally {
      await c.close();
    }
  });

  it('registrations are rate-limited per source address (429 with Retry-After)', async () => {
    const path = join(tmp(), 'c.sqlite');
    const c = await startCoordinator({ db: path, initialAdapter: initialAdapter(), enrolmentSecret: SECRET, log: () => {}, limits: { registerBurst: 5, registerPerMinute: 6 } });
    try {
      const codes = [];
      for (let i = 0; i < 7; i++) {
        const res = await fetch(`${c.url}/v1/register`, { method: 'POST', body: JSON.stringify({ enrolmentSecret: SECRET }) });
        codes.push([res.status, res.headers.get('retry-after')]);
      }
      expect(codes.slice(0, 5).every(([s]) => s === 200)).toBe(true);
      expect(codes[5]).toEqual([429, '10']);
      expect(query<{ n: number }>(path, 'SELECT COUNT(*) AS n FROM clients')[0]!.n).toBe(5);
    } finally {
      await c.close();
    }
  });

  it('tokens expire after tokenTtlMs; a revoked client is refused at once (and the CLI revokes and invites)', async () => {
    let t = 5_000_000;
    const path = join(tmp(), 'c.sqlite');
    const c = await startCoordinator({ db: path, initialAdapter: initialAdapter(), enrolmentSecret: SECRET, log: () => {}, now: () => t, config: { tokenTtlMs: 60_000 } });
    const round = (token: string) => fetch(`${c.url}/v1/round`, { headers: { Authorization: `Bearer ${token}` } });
    try {
      const a = await register(c.url);
      const b = await register(c.url);
      expect((await round(a.token)).status).toBe(200);
      t += 60_000;
      const expired = await round(a.token);
      expect(expired.status).toBe(401);
      expect(await expired.json()).toMatchObject({ error: 'unauthenticated', message: expect.stringMatching(/expired/) });
      t -= 60_000;
      const cli = (...args: string[]) => spawnSync(process.execPath, [join(root, 'scripts/coordinator.mjs'), ...args, '--db', path], { cwd: root, encoding: 'utf8' });
      const revoked = cli('clients', 'revoke', b.clientId);
      expect(revoked.status, revoked.stderr).toBe(0);
      const refused = await round(b.token);
      expect(refused.status).toBe(401);
      expect((await refused.json()).error).toBe('revoked');
      const listed = cli('clients', 'list').stdout.trim().split('\n').map((l) => JSON.parse(l) as { id: string; revoked: number | null });
      expect(listed.find((x) => x.id === b.clientId)!.revoked).not.toBeNull();
      const invite = cli('invite', '--uses', '1').stdout.trim();
      expect(invite).toMatch(/^inv_/);
      const withInvite = await fetch(`${c.url}/v1/register`, { method: 'POST', body: JSON.stringify({ enrolmentSecret: invite }) });
      expect(withInvite.status).toBe(200);
    } finally {
      await c.close();
    }
  });
});

describe('resource limits', () => {
  /** Opens an upload whose body never finishes; resolves once the server has its headers. */
  function stalledUpload(url: string, token: string, id: string): Promise<{ close: () => void; answer: Promise<string> }> {
    const u = new URL(url);
    return new Promise((resolve) => {
      let reply = '';
      let done: (s: string) => void = () => {};
      const answer = new Promise<string>((r) => (done = r));
      const socket = connect(Number(u.port), u.hostname, () => {
        socket.write(`POST /v1/rounds/1/updates HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nX-Update-Id: ${id}\r\nX-Example-Count: 1\r\nContent-Length: 600\r\n\r\n`);
        socket.write(Buffer.alloc(10, 1), () => setTimeout(() => resolve({ close: () => socket.destroy(), answer }), 30));
      });
      socket.on('data', (d) => {
        reply += d.toString();
        done(reply);
      });
      socket.on('close', () => done(reply));
    });
  }

  it('50 stalled uploads under one token: one is received, 49 get 429 with Retry-After at once; memory stays flat', async () => {
    const { c, path } = await coordinator('none', {}, () => {});
    const x = await register(c.url);
    const before = dbSnapshot(path);
    const heap = process.memoryUsage().heapUsed;
    const first = await stalledUpload(c.url, x.token, 'stalled-0');
    const others = await Promise.all(Array.from({ length: 49 }, (_, i) => stalledUpload(c.url, x.token, `stalled-${i + 1}`)));
    const answers = await Promise.all(others.map((o) => o.answer));
    try {
      expect(answers.every((a) => /^HTTP\/1\.1 429 /.test(a) && /retry-after: 5/i.test(a))).toBe(true);
      expect(process.memoryUsage().heapUsed - heap).toBeLessThan(50 * 1024 * 1024);
      expect(dbSnapshot(path)).toEqual(before);
    } finally {
      first.close();
      others.forEach((o) => o.close());
      await c.close();
    }
  });

  it('uploads in flight from all clients are capped too (maxConcurrentUploads)', async () => {
    const path = join(tmp(), 'c.sqlite');
    const c = await startCoordinator({ db: path, initialAdapter: initialAdapter(), enrolmentSecret: SECRET, log: () => {}, limits: { maxConcurrentUploads: 3 } });
    const tokens = [];
    for (let i = 0; i < 4; i++) tokens.push((await register(c.url)).token);
    const held = [];
    try {
      for (let i = 0; i < 3; i++) held.push(await stalledUpload(c.url, tokens[i]!, `held-${i}`));
      const fourth = await stalledUpload(c.url, tokens[3]!, 'held-3');
      held.push(fourth);
      expect(await fourth.answer).toMatch(/^HTTP\/1\.1 429 /);
    } finally {
      held.forEach((h) => h.close());
      await c.close();
    }
  });

  it('connections that never finish their headers are closed after headersTimeoutMs', async () => {
    const path = join(tmp(), 'c.sqlite');
    const c = await startCoordinator({ db: path, initialAdapter: initialAdapter(), enrolmentSecret: SECRET, log: () => {}, limits: { headersTimeoutMs: 400 } });
    const u = new URL(c.url);
    try {
      const closed = await Promise.all(Array.from({ length: 20 }, () => new Promise<number>((resolve) => {
        const opened = Date.now();
        const socket = connect(Number(u.port), u.hostname, () => socket.write('GET /v1/round HTTP/1.1\r\nHost: x\r\nX-Slow: '));
        socket.on('data', () => {});
        socket.on('error', () => {});
        socket.on('close', () => resolve(Date.now() - opened));
        setTimeout(() => socket.destroy(), 10_000);
      })));
      expect(Math.max(...closed)).toBeLessThan(5_000);
    } finally {
      await c.close();
    }
  });
});
