/**
 * Durability through the real launcher (bin/coordinator.mjs) as a child process: k updates
 * accepted, SIGKILL mid-round, restart on the same SQLite file: the k updates are there, replays
 * answer duplicate, the round completes with more uploads, and the new global version is
 * byte-identical to the one an uninterrupted run produces from the same updates.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { serializeSafetensors } from '@webtune/model';
import { encode, initialAdapter, query, register, roundInfo, roundStatus, SECRET, tensors, tmp, upload } from './helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '../../..');
const launcher = join(root, 'scripts/coordinator.mjs');
const children: ChildProcess[] = [];

afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

/** Starts the launcher and resolves with its URL once it prints the listening line. */
function launch(args: string[]): Promise<{ child: ChildProcess; url: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [launcher, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    let err = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve({ child, url: m[1]! });
    });
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    child.once('exit', (code, signal) => reject(new Error(`launcher exited (${code ?? signal}) before listening:\n${out}\n${err}`)));
  });
}

function killed(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

function setup(): { dir: string; args: (db: string) => string[] } {
  const dir = tmp();
  const adapterPath = join(dir, 'adapter.safetensors');
  writeFileSync(adapterPath, serializeSafetensors([...initialAdapter()].map(([name, t]) => ({ name, dtype: 'F32', shape: t.shape, data: t.data })), { format: 'pt' }));
  const configPath = join(dir, 'round-config.json');
  writeFileSync(configPath, JSON.stringify({ minClients: 5, maxClients: 5, roundDurationMs: 3_600_000, serverOptimizer: { type: 'fedavgm', lr: 1, momentum: 0.5 } }));
  return {
    dir,
    args: (db) => ['--db', db, '--port', '0', '--initial-adapter', adapterPath, '--enrolment-secret', SECRET, '--config', configPath],
  };
}

// The same five updates (f32, so no stochastic rounding) and weights for both runs.
const payloads = [0, 1, 2, 3, 4].map((i) => encode(tensors(100 + i, 0.01), { baseVersion: 0 }));
const examples = [5, 1, 7, 2, 9];
const K = 3;

async function globalBytes(url: string, token: string, version: number): Promise<Uint8Array> {
  const res = await fetch(`${url}/v1/global/${version}`, { headers: { Authorization: `Bearer ${token}` } });
  expect(res.status).toBe(200);
  return new Uint8Array(await res.arrayBuffer());
}

describe('durability', () => {
  it('kill -9 mid-round, restart on the same file: accepted updates kept, the round completes, same aggregate as an uninterrupted run', { timeout: 60_000 }, async () => {
    const { dir, args } = setup();

    // Uninterrupted reference run.
    const refDb = join(dir, 'reference.sqlite');
    const ref = await launch(args(refDb));
    const refClients = [];
    for (let i = 0; i < 5; i++) refClients.push(await register(ref.url));
    for (let i = 0; i < 5; i++) expect((await upload(ref.url, refClients[i]!.token, 1, payloads[i]!, { exampleCount: examples[i] })).status).toBe(200);
    expect(await roundStatus(ref.url, refClients[0]!.token, 1)).toMatchObject({ status: 'closed', resultVersion: 1 });
    const reference = await globalBytes(ref.url, refClients[0]!.token, 1);
    await killed(ref.child);

    // Interrupted run: K uploads, SIGKILL, restart.
    const db = join(dir, 'coordinator.sqlite');
    let run = await launch(args(db));
    const clients = [];
    for (let i = 0; i < 5; i++) clients.push(await register(run.url));
    const ids = payloads.map(() => crypto.randomUUID());
    for (let i = 0; i < K; i++) {
      expect((await upload(run.url, clients[i]!.token, 1, payloads[i]!, { updateId: ids[i], exampleCount: examples[i] })).body).toEqual({ accepted: true, duplicate: false, count: i + 1 });
    }
    await killed(run.child);
    expect(run.child.signalCode).toBe('SIGKILL');

    run = await launch(args(db)); // --initial-adapter is ignored for an existing database
    const info = await roundInfo(run.url, clients[0]!.token); // tokens survive
    expect(info).toMatchObject({ roundId: 1, status: 'open', globalVersion: 0 });
    expect(await roundStatus(run.url, clients[0]!.token, 1)).toMatchObject({ status: 'open', accepted: K });
    expect(query<{ update_id: string }>(db, 'SELECT update_id FROM updates ORDER BY rowid').map((r) => r.update_id)).toEqual(ids.slice(0, K));
    // A client whose answer was lost retries: duplicate, not counted twice.
    expect((await upload(run.url, clients[K - 1]!.token, 1, payloads[K - 1]!, { updateId: ids[K - 1], exampleCount: examples[K - 1] })).body).toEqual({ accepted: true, duplicate: true, count: K });
    for (let i = K; i < 5; i++) {
      expect((await upload(run.url, clients[i]!.token, 1, payloads[i]!, { updateId: ids[i], exampleCount: examples[i] })).body).toEqual({ accepted: true, duplicate: false, count: i + 1 });
    }
    expect(await roundStatus(run.url, clients[0]!.token, 1)).toMatchObject({ status: 'closed', accepted: 5, resultVersion: 1 });
    expect(Buffer.from(await globalBytes(run.url, clients[0]!.token, 1)).equals(Buffer.from(reference))).toBe(true);
    expect((await roundInfo(run.url, clients[0]!.token))).toMatchObject({ roundId: 2, globalVersion: 1 });

    // The FedAvgM momentum was committed with the version: another kill -9 and restart keeps it.
    await killed(run.child);
    run = await launch(args(db));
    expect(query<{ name: string; version: number }>(db, 'SELECT name, version FROM optimizer_state')).toEqual([{ name: 'momentum', version: 1 }]);
    expect(await roundInfo(run.url, clients[0]!.token)).toMatchObject({ roundId: 2, status: 'open' });
    await killed(run.child);
  });

  it('the launcher refuses a new database without an initial adapter', { timeout: 30_000 }, async () => {
    const dir = tmp();
    await expect(launch(['--db', join(dir, 'x.sqlite'), '--port', '0', '--enrolment-secret', SECRET])).rejects.toThrow(/initial adapter/);
  });
});
