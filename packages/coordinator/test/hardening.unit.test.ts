/**
 * The attacks a hostile client made on the reference coordinator, each now refused (issue 15):
 * updates of unbounded norm in every DP mode, an example count of a billion, an unpublishable
 * aggregate, an absolute-form request target, an aborted upload, a cacheable global, a blank
 * base_version, and a world-readable database. Real HTTP on loopback and a real SQLite file.
 */
import { statSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { serializeSafetensors, type HostTensor } from '@webtune/model';
import { maxUpdateNorm, type RoundSnapshot } from '../src/core.js';
import { startCoordinator, type CoordinatorHandle } from '../src/index.js';
import { dbSnapshot, download, encode, initialAdapter, KEYS, register, roundStatus, SECRET, SHAPES, tensors, tmp, upload } from './helpers.js';

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
