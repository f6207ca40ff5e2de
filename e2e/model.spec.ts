import { expect, test } from '@playwright/test';
import type { ModelReport } from './pages/model.js';

test('tiny Llama in Chromium: Cache API download, logits, loss, LoRA gradients and greedy tokens match PyTorch', async ({ page }) => {
  const console: string[] = [];
  page.on('console', (m) => console.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => console.push(`pageerror: ${e.message}`));
  await page.goto('/e2e/pages/model.html');
  await page.waitForFunction(() => window.modelReport !== undefined || window.modelError !== undefined, undefined, { timeout: 280_000 });
  expect(await page.evaluate(() => window.modelError), console.join('\n')).toBeUndefined();
  const r = (await page.evaluate(() => window.modelReport)) as ModelReport;
  expect(r.adapter.toLowerCase()).toMatch(/swiftshader|google/);
  // First load downloads (progress per chunk), the second is served by the Cache API.
  expect(r.firstLoad.events).toBeGreaterThan(2);
  expect(r.firstLoad.fromCache.some((c) => c)).toBe(false);
  expect(r.firstLoad.total).toBeGreaterThan(400_000);
  expect(r.secondLoad.fromCache.every((c) => c)).toBe(true);
  // Same tolerances as the Node gpu lane (packages/model/test/transformer.gpu.test.ts).
  expect(r.baseLogitsMaxDiff).toBeLessThan(2e-5);
  expect(r.baseLossDiff).toBeLessThan(1e-5);
  expect(r.baseGreedy.got).toEqual(r.baseGreedy.want);
  expect(r.loraLogitsMaxDiff).toBeLessThan(2e-5);
  expect(r.loraLossDiff).toBeLessThan(1e-5);
  expect(r.worstGradRelError).toBeLessThan(2e-5);
  expect(r.loraGreedy.got).toEqual(r.loraGreedy.want);
  expect(r.uncapturedErrors).toEqual([]);
});
