/**
 * End to end: the reference coordinator (its real launcher, SQLite in a temp folder) and two
 * browser contexts (separate storage, like two users' browsers), each training in its own
 * worker on its own text and joining the round; the coordinator aggregates both updates into a
 * new global version.
 */
import { expect, test } from '@playwright/test';
import { startCoordinator, type TestCoordinator } from './coordinator.js';

let coordinator: TestCoordinator;

test.beforeAll(async ({ baseURL }) => {
  coordinator = await startCoordinator({
    modelConfig: 'packages/model/test/fixtures/models/tiny-llama/config.json', rank: 4, alpha: 8, secret: 'e2e',
    allowOrigin: new URL(baseURL!).origin,
    config: {
      minClients: 2, maxClients: 2, sampleRate: 1,
      round: { steps: 3, batchSize: 2, learningRate: 0.01, seqLen: 32, clipNorm: 1, dp: { mode: 'none', noiseMultiplier: 0, delta: 1e-5 } },
    },
  });
});

test.afterAll(() => coordinator?.stop());

test('two browsers join a round and a new global version appears', async ({ browser }) => {
  const join = async (chapter: number) => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto('/e2e/pages/federated.html');
    await page.waitForFunction(() => window.joinRound !== undefined);
    const result = await page.evaluate(({ url, chapter }) => window.joinRound!(url, chapter), { url: coordinator.url, chapter });
    await context.close();
    return result;
  };
  const [a, b] = await Promise.all([join(1), join(2)]);
  for (const r of [a, b]) expect(r).toMatchObject({ status: 'uploaded', roundId: 1 });

  const status = await (await coordinator.get('/v1/rounds/1')).json();
  expect(status).toMatchObject({ status: 'closed', accepted: 2, resultVersion: 1 });
  const round = await (await coordinator.get('/v1/round')).json();
  expect(round).toMatchObject({ roundId: 2, globalVersion: 1 });
  const v1 = await coordinator.get('/v1/global/1');
  expect(v1.status).toBe(200);
  expect((await v1.arrayBuffer()).byteLength).toBeGreaterThan(4000);
});
