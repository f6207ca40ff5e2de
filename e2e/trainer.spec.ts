/**
 * The worker SDK in Chromium: createTrainer() in a module worker over Comlink, checkpoints in the
 * page origin's real IndexedDB, SwiftShader WebGPU. The spec reloads the page to kill the worker
 * mid-run, corrupts a stored checkpoint byte, and lowers the origin's storage quota through the
 * DevTools protocol for a real QuotaExceededError.
 */
import { expect, test, type Page } from '@playwright/test';

async function open(page: Page): Promise<void> {
  await page.goto('/e2e/pages/trainer.html');
  await page.waitForFunction(() => window.trainerPage !== undefined);
}

test.describe.configure({ mode: 'serial' });

test('checkpoints survive a reload mid-run and resume exactly; a corrupt one is detected and skipped', async ({ page, context }) => {
  const log: string[] = [];
  page.on('console', (m) => log.push(`${m.type()}: ${m.text()}`));
  await open(page);
  await page.evaluate(() => new Promise<void>((resolve) => { const r = indexedDB.deleteDatabase('webtune-checkpoints'); r.onsuccess = r.onerror = r.onblocked = () => resolve(); }));
  await open(page);

  // 16 steps straight through.
  const straight = await page.evaluate(() => window.trainerPage!.trainStraight('straight'));
  expect(straight.summary.stopped).toBe('completed');
  expect(straight.summary.step).toBe(16);
  expect(straight.loadEvents).toBeGreaterThan(0); // loadModel's onProgress crosses the worker boundary

  // The same run, with the page reloaded (worker killed) once the step-8 checkpoint is stored.
  await open(page);
  expect(await page.evaluate(() => window.trainerPage!.startAndWaitForCheckpoint('split'))).toContain(8);
  await open(page);
  const resumed = await page.evaluate(() => window.trainerPage!.resume('split'));
  expect(resumed.summary.resumedFrom, log.join('\n')).toBe(8);
  expect(resumed.summary.step).toBe(16);
  expect(resumed.adapterSha).toBe(straight.adapterSha);

  // Corrupt the newest checkpoint's bytes in IndexedDB: restoring it is a typed error, and resuming
  // falls back to the one before it and still reproduces the same adapter.
  const list = await page.evaluate(() => window.trainerPage!.listCheckpoints('split'));
  expect(list.map((c) => c.step)).toEqual([16, 8]);
  await page.evaluate((id) => window.trainerPage!.corrupt(id), list[0]!.id);
  const bad = await page.evaluate((id) => window.trainerPage!.restore(id), list[0]!.id);
  expect(bad.ok).toBe(false);
  expect(bad.ok === false && bad.error).toMatchObject({ isWebtuneError: true, constructorName: 'CheckpointCorruptError', code: 'CHECKPOINT_CORRUPT' });
  await open(page);
  const fallback = await page.evaluate(() => window.trainerPage!.resume('split'));
  expect(fallback.summary.skippedCheckpoints.map((s) => s.id)).toEqual([list[0]!.id]);
  expect(fallback.summary.resumedFrom).toBe(8);
  expect(fallback.adapterSha).toBe(straight.adapterSha);

});

test('a full disk (a real QuotaExceededError) is a typed error and earlier checkpoints stay loadable', async ({ page, context }) => {
  // A fresh browser context has a fresh IndexedDB; its quota is lowered before anything is stored
  // (Chromium caches the space left per database, so the override must come first).
  await open(page);
  const cdp = await context.newCDPSession(page);
  const origin = new URL(page.url()).origin;
  await cdp.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: 256 * 1024 });
  const full = await page.evaluate(() => window.trainerPage!.trainUntilFull('full'));
  await cdp.send('Storage.overrideQuotaForOrigin', { origin });
  expect(full.ok, JSON.stringify(full)).toBe(false);
  expect(full.ok === false && full.error).toMatchObject({ isWebtuneError: true, constructorName: 'StorageFullError', code: 'STORAGE_FULL' });
  const saved = await page.evaluate(() => window.trainerPage!.listCheckpoints('full'));
  expect(saved.length).toBeGreaterThan(0);
  for (const c of saved) {
    expect(await page.evaluate((id) => window.trainerPage!.restore(id), c.id)).toEqual({ ok: true, step: c.step });
  }
});

test('errors thrown in the worker arrive as the same class', async ({ page }) => {
  await open(page);
  const r = await page.evaluate(() => window.trainerPage!.missingModel());
  expect(r.ok).toBe(false);
  expect(r.ok === false && r.error).toMatchObject({ isWebtuneError: true, constructorName: 'ModelFileMissingError', name: 'ModelFileMissingError', code: 'MODEL_FILE_MISSING' });
  expect(r.ok === false && r.file).toBe('config.json');
});

test('cancel stops within one step; progress is throttled and complete', async ({ page }) => {
  await open(page);
  const c = await page.evaluate(() => window.trainerPage!.cancelEarly('cancel'));
  expect(c.summary.stopped).toBe('cancelled');
  expect(c.summary.step - c.cancelledAt).toBeLessThanOrEqual(1);

  const t = await page.evaluate(() => window.trainerPage!.throttled('throttled'));
  expect(t.summary.stopped).toBe('completed');
  expect(t.steps[0]).toBe(1);
  expect(t.steps.at(-1)).toBe(40);
  expect(t.steps.length).toBeLessThan(40);
  // Every gap but the one before the final event (always sent) respects the interval.
  for (const gap of t.gaps.slice(0, -1)) expect(gap).toBeGreaterThanOrEqual(1490);
  expect(t.sample).toMatchObject({ step: 1, totalSteps: 40, runId: 'throttled' });
  for (const key of ['loss', 'learningRate', 'gradNorm', 'tokensPerSecond', 'etaSeconds', 'gpuBytes', 'epoch'] as const) {
    expect(typeof t.sample![key]).toBe('number');
  }
  expect(t.sample!.gpuBytes).toBeGreaterThan(0);
  const persisted = await page.evaluate(() => window.trainerPage!.persist());
  expect(typeof persisted.persisted).toBe('boolean');
});
