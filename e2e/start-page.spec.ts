import { expect, test } from '@playwright/test';
import { DEMO_URL } from './servers.js';

test.use({ baseURL: DEMO_URL });

test('the start page shows the WebGPU adapter, its features and limits', async ({ page }, testInfo) => {
  await page.goto('/');
  await expect(page.locator('#adapter table')).toContainText('shader-f16');
  await expect(page.locator('#adapter table')).toContainText('subgroups');
  await expect(page.locator('#adapter table')).toContainText('Max storage binding');
  await expect(page.locator('#load-model')).toBeEnabled();
  await expect(page.locator('#train')).toBeDisabled();
  const path = testInfo.outputPath('start-page.png');
  await page.screenshot({ path, fullPage: true });
  await testInfo.attach('start-page', { path, contentType: 'image/png' });
});

test('without WebGPU the start page says what to enable', async ({ page }) => {
  await page.addInitScript(() => {
    Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined });
  });
  await page.goto('/');
  await expect(page.locator('#adapter')).toContainText('WebGPU is not available');
  await expect(page.locator('#webgpu-error')).toContainText('Chrome or Edge 113+');
  await expect(page.locator('#load-model')).toBeDisabled();
  await expect(page.locator('#train')).toBeDisabled();
});
