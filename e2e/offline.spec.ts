/**
 * The built demo works offline after one visit: its Workbox service worker precached the page,
 * the scripts, the sample text and the bundled model, so with the network off a reload still
 * shows the app, loads the model, prepares the sample and generates.
 */
import { expect, test } from '@playwright/test';
import { DEMO_URL } from './servers.js';

test.use({ baseURL: DEMO_URL });

test('after one visit the app and the bundled model load with the network off', async ({ page, context }, testInfo) => {
  await page.goto('/');
  await expect(page.locator('#offline-status')).toHaveAttribute('data-offline-ready', '1', { timeout: 60_000 });
  expect(await page.evaluate(async () => (await navigator.serviceWorker.ready).active?.state)).toBe('activated');

  await context.setOffline(true);
  // Really offline: what the service worker did not precache cannot be fetched.
  expect(await page.evaluate(() => fetch(`/not-precached-${Date.now()}.txt`).then(() => 'fetched', () => 'failed'))).toBe('failed');
  await page.reload();
  await expect(page.locator('#adapter table')).toContainText('shader-f16');
  await expect(page.locator('#offline-status')).toContainText('Works offline');
  await page.click('#load-model');
  await expect(page.locator('#model-info')).toContainText('Loaded bundled demo model', { timeout: 60_000 });
  await page.click('#use-sample');
  await expect(page.locator('#data-info')).toContainText(/[\d,]+ tokens/, { timeout: 60_000 });
  await page.click('#generate');
  await expect(page.locator('#out-before span')).not.toBeEmpty({ timeout: 60_000 });
  const path = testInfo.outputPath('offline.png');
  await page.screenshot({ path, fullPage: true });
  await testInfo.attach('offline', { path, contentType: 'image/png' });
});
