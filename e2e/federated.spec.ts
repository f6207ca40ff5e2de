/**
 * End to end: the reference coordinator (its real launcher, SQLite in a temp folder) and two
 * browser contexts (separate storage, like two users' browsers), each training in its own
 * worker on its own text and joining the round; the coordinator aggregates both updates into a
 * new global version.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, test } from '@playwright/test';
import { initialLoraAdapter } from '../scripts/initial-adapter.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
let coordinator: ChildProcess | undefined;
let url = '';
let dir = '';

test.beforeAll(async ({ baseURL }) => {
  dir = mkdtempSync(join(tmpdir(), 'webtune-e2e-fed-'));
  let seed = 5;
  const uniform = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const model = JSON.parse(readFileSync(join(ROOT, 'packages/model/test/fixtures/models/tiny-llama/config.json'), 'utf8'));
  const { weights, adapterConfig } = initialLoraAdapter(model, { rank: 4, alpha: 8, uniform });
  writeFileSync(join(dir, 'adapter_model.safetensors'), weights);
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify(adapterConfig));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({
    minClients: 2, maxClients: 2, sampleRate: 1,
    round: { steps: 3, batchSize: 2, learningRate: 0.01, seqLen: 32, clipNorm: 1, dp: { mode: 'none', noiseMultiplier: 0, delta: 1e-5 } },
  }));
  coordinator = spawn(process.execPath, [
    'packages/coordinator/bin/coordinator.mjs', '--db', join(dir, 'state.sqlite'), '--port', '0',
    '--initial-adapter', join(dir, 'adapter_model.safetensors'), '--enrolment-secret', 'e2e', '--config', join(dir, 'config.json'),
    '--allow-origin', new URL(baseURL!).origin,
  ], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  url = await new Promise<string>((resolve, reject) => {
    let out = '';
    coordinator!.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    coordinator!.once('exit', (code) => reject(new Error(`coordinator exited with ${code}: ${out}`)));
  });
});

test.afterAll(() => {
  coordinator?.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
});

test('two browsers join a round and a new global version appears', async ({ browser }) => {
  const join = async (chapter: number) => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto('/e2e/pages/federated.html');
    await page.waitForFunction(() => window.joinRound !== undefined);
    const result = await page.evaluate(({ url, chapter }) => window.joinRound!(url, chapter), { url, chapter });
    await context.close();
    return result;
  };
  const [a, b] = await Promise.all([join(1), join(2)]);
  for (const r of [a, b]) expect(r).toMatchObject({ status: 'uploaded', roundId: 1 });

  const { token } = (await (await fetch(`${url}/v1/register`, { method: 'POST', body: JSON.stringify({ enrolmentSecret: 'e2e' }) })).json()) as { token: string };
  const auth = { headers: { Authorization: `Bearer ${token}` } };
  const status = await (await fetch(`${url}/v1/rounds/1`, auth)).json();
  expect(status).toMatchObject({ status: 'closed', accepted: 2, resultVersion: 1 });
  const round = await (await fetch(`${url}/v1/round`, auth)).json();
  expect(round).toMatchObject({ roundId: 2, globalVersion: 1 });
  const v1 = await fetch(`${url}/v1/global/1`, auth);
  expect(v1.status).toBe(200);
  expect((await v1.arrayBuffer()).byteLength).toBeGreaterThan(4000);
});
