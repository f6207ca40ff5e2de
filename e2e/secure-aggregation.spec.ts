/**
 * End to end, secure aggregation (SecAgg+, protocol 4): the reference coordinator (its real launcher,
 * SQLite in a temp folder) with `round.secureAggregation`, and three browser contexts (separate
 * storage, like three users' browsers), each training in its own worker on its own text. Their
 * FederatedClients go through advertise-keys, share-keys, masked-input and unmask with WebCrypto in
 * Chromium; the coordinator publishes the unmasked mean as version 1. Every request a context makes
 * to the coordinator is recorded, to check that no update went to it in the clear.
 */
import { expect, test, type BrowserContext } from '@playwright/test';
import { startCoordinator, type TestCoordinator } from './coordinator.js';

let coordinator: TestCoordinator;

test.beforeAll(async ({ baseURL }) => {
  coordinator = await startCoordinator({
    modelConfig: 'packages/model/test/fixtures/models/tiny-llama/config.json', rank: 4, alpha: 8, secret: 'e2e',
    allowOrigin: new URL(baseURL!).origin,
    config: {
      minClients: 3, maxClients: 3, sampleRate: 1,
      round: {
        steps: 1, batchSize: 1, learningRate: 0.01, seqLen: 32, clipNorm: 1, dp: { mode: 'none', noiseMultiplier: 0, delta: 1e-5 },
        // Share-keys and unmask wait at most this long for a client (a deadline, not a measured time).
        secureAggregation: { stageTimeoutMs: 120_000 },
      },
    },
  });
});

test.afterAll(() => coordinator?.stop());

/** The tensors of a safetensors file, by name, as their raw bytes. */
function tensorBytes(file: ArrayBuffer): Map<string, Uint8Array> {
  const view = new DataView(file);
  const headerLength = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(file, 8, headerLength))) as Record<string, { data_offsets: [number, number] }>;
  const data = 8 + headerLength;
  const out = new Map<string, Uint8Array>();
  for (const [name, t] of Object.entries(header)) {
    if (name !== '__metadata__') out.set(name, new Uint8Array(file, data + t.data_offsets[0], t.data_offsets[1] - t.data_offsets[0]));
  }
  return out;
}

const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

test('three browsers run a secure round: each gets uploaded with 3 survivors, version 1 is published, and no update was sent in the clear', async ({ browser }) => {
  const coordinatorOrigin = new URL(coordinator.url).origin;
  const contexts: BrowserContext[] = [];
  try {
    const join = async (chapter: number) => {
      const context = await browser.newContext();
      contexts.push(context);
      // Every request this user's browser makes to the coordinator (pages and workers of the context).
      const requests: { method: string; path: string; bytes: number }[] = [];
      context.on('request', (r) => {
        const url = new URL(r.url());
        if (url.origin === coordinatorOrigin) requests.push({ method: r.method(), path: url.pathname, bytes: r.postDataBuffer()?.byteLength ?? 0 });
      });
      const page = await context.newPage();
      await page.goto('/e2e/pages/federated.html');
      await page.waitForFunction(() => window.joinRound !== undefined);
      const result = await page.evaluate(
        ({ url, chapter }) => window.joinRound!(url, chapter, { secureAggregation: { pollIntervalMs: 200 } }),
        { url: coordinator.url, chapter },
      );
      return { result, requests };
    };
    // Concurrently: every stage waits for all three participants.
    const joined = await Promise.all([join(1), join(2), join(3)]);

    for (const { result, requests } of joined) {
      expect(result).toMatchObject({ status: 'uploaded', roundId: 1, secureAggregation: { participants: 3, survivors: 3, resultVersion: 1 } });
      const posts = (path: string) => requests.filter((r) => r.method === 'POST' && r.path === path);
      // The recording sees this client's traffic: it advertised keys, shared them and revealed its shares.
      expect(posts('/v1/rounds/1/secagg/keys')).toHaveLength(1);
      expect(posts('/v1/rounds/1/secagg/shares')).toHaveLength(1);
      expect(posts('/v1/rounds/1/secagg/unmask')).toHaveLength(1);
      // Its update went out once, masked, and never through the plain upload route.
      const masked = posts('/v1/rounds/1/secagg/masked');
      expect(masked).toHaveLength(1);
      expect(masked[0]!.bytes).toBeGreaterThan(0);
      expect(requests.filter((r) => r.path === '/v1/rounds/1/updates')).toEqual([]);
    }

    const status = await (await coordinator.get('/v1/rounds/1')).json();
    expect(status).toMatchObject({ status: 'closed', outcome: 'aggregated', resultVersion: 1 });
    const v0 = await coordinator.get('/v1/global/0');
    const v1 = await coordinator.get('/v1/global/1');
    expect(v0.status).toBe(200);
    expect(v1.status).toBe(200);
    // The new global is the old one moved by the unmasked mean: same tensors, some of them changed.
    const before = tensorBytes(await v0.arrayBuffer());
    const after = tensorBytes(await v1.arrayBuffer());
    expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
    expect(before.size).toBeGreaterThan(0);
    const changed = [...after].filter(([name, bytes]) => !sameBytes(bytes, before.get(name)!));
    expect(changed.length).toBeGreaterThan(0);
  } finally {
    await Promise.all(contexts.map((c) => c.close()));
  }
});
