/**
 * A secure round survives kill -9 of the coordinator at every stage: the real launcher
 * (scripts/coordinator.mjs) runs as a child process on a fixed port; at each stage change it logs,
 * the test kills it (SIGKILL) and starts it again on the same SQLite file and port. Clients
 * (FederatedClients with trainer doubles) retry through the outage. Every acknowledged message
 * is kept (the round completes without any client sending one twice in two different ways), and
 * the published global is the mean of the clients' clipped updates within the quantization step.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { serializeSafetensors } from '@webtune/model';
import { download, register, roundStatus, SECRET, tmp } from '../../coordinator/test/helpers.js';
import { FederatedClient } from '../src/client.js';
import { quantizationStep } from '../src/secagg/quantize.js';
import { MemoryRoundStore } from '../src/round-store.js';
import { expectedGlobal, recordingFetch, secureAdapter, SecureTrainerDouble } from './secure-helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '../../..');
const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Starts the launcher; resolves once it listens. `onLine` sees every stdout line. */
function launch(args: string[], onLine: (line: string, child: ChildProcess) => void): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(root, 'scripts/coordinator.mjs'), ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let buffered = '';
    let err = '';
    child.stdout!.on('data', (c: Buffer) => {
      buffered += c.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (/listening on/.test(line)) resolve(child);
        onLine(line, child);
      }
    });
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    child.once('exit', (code, signal) => reject(new Error(`launcher exited (${code ?? signal}) before listening:\n${err}`)));
  });
}

describe('secure rounds and kill -9', () => {
  it('the coordinator killed at each stage change and restarted: the round completes with the right mean', { timeout: 180_000 }, async () => {
    const n = 5;
    const dir = tmp('webtune-secagg-kill-');
    const initial = secureAdapter();
    const adapterPath = join(dir, 'adapter.safetensors');
    writeFileSync(adapterPath, serializeSafetensors([...initial].map(([name, t]) => ({ name, dtype: 'F32', shape: t.shape, data: t.data })), { format: 'pt' }));
    const configPath = join(dir, 'config.json');
    writeFileSync(configPath, JSON.stringify({ minClients: 3, maxClients: n, roundDurationMs: 60_000, maxRounds: 1, round: { steps: 1, batchSize: 1, clipNorm: 1, secureAggregation: { stageTimeoutMs: 60_000 } } }));
    const port = await freePort();
    const args = ['--db', join(dir, 'state.sqlite'), '--port', String(port), '--initial-adapter', adapterPath, '--enrolment-secret', SECRET, '--config', configPath];
    const url = `http://127.0.0.1:${port}`;

    // Each stage change is logged; the first time each is seen, the coordinator dies at once and comes back.
    const killAt = [/sharing keys/, /collecting masked inputs/, /; unmasking/];
    const kills: string[] = [];
    let restarting: Promise<unknown> = Promise.resolve();
    const onLine = (line: string, child: ChildProcess) => {
      const at = killAt.findIndex((re) => re.test(line));
      if (at < 0) return;
      killAt.splice(at, 1);
      kills.push(line);
      restarting = new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }).then(() => launch(args, onLine));
    };
    await launch(args, onLine);

    const clients = Array.from({ length: n }, (_, i) => {
      const trainer = new SecureTrainerDouble(i + 1);
      const rec = recordingFetch();
      return {
        rec,
        client: new FederatedClient({
          url, enrolmentSecret: SECRET, trainer: trainer.api(), store: new MemoryRoundStore(), fetch: rec.fetch, name: `c${i + 1}`,
          retry: { attempts: 60, baseDelayMs: 100 }, secureAggregation: { pollIntervalMs: 50 },
        }),
      };
    });
    const results = await Promise.all(clients.map((k) => k.client.runRound()));
    await restarting;
    expect(kills).toHaveLength(3);
    expect(results.map((r) => r.status)).toEqual(Array(n).fill('uploaded'));
    for (const r of results) expect(r.secureAggregation).toMatchObject({ participants: n, survivors: n, resultVersion: 1 });
    const token = (await register(url)).token;
    expect(await roundStatus(url, token, 1)).toMatchObject({ outcome: 'aggregated', resultVersion: 1 });
    const global = await download(url, token, 1);
    const want = expectedGlobal(initial, [1, 2, 3, 4, 5], 1);
    for (const [k, w] of want) for (let i = 0; i < w.length; i++) expect(Math.abs(global.get(k)![i]! - w[i]!)).toBeLessThanOrEqual(quantizationStep(8, 2 ** 22) + 1e-6);
    // Each client sent each message of the round once (repeats after an outage are the same bytes).
    for (const { rec } of clients) {
      for (const route of ['keys', 'shares', 'masked', 'unmask']) {
        const sent = rec.log.filter((t) => t.method === 'POST' && t.path.endsWith(`/secagg/${route}`)).map((t) => (typeof t.body === 'string' ? t.body : Buffer.from(t.body as Uint8Array).toString('base64')));
        expect(sent.length).toBeGreaterThanOrEqual(1);
        expect(new Set(sent).size).toBe(1);
      }
    }
  });
});
