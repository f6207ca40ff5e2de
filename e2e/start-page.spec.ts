import { expect, test } from '@playwright/test';

test('the start page shows the adapter and runs a matmul in a worker', async ({ page }) => {
  await page.goto('/');
  await expect(page.locator('#adapter table')).toContainText('shader-f16');
  await expect(page.locator('#adapter table')).toContainText('Max storage binding');
  await page.selectOption('#size', '128');
  await page.click('#run');
  await expect(page.locator('#matmul-result')).toContainText('GFLOP/s', { timeout: 60_000 });
  const text = await page.locator('#matmul-result').textContent();
  const error = Number(/vs CPU ([\d.e+-]+)/.exec(text ?? '')?.[1]);
  expect(error).toBeLessThan(1e-3);
  await page.screenshot({ path: 'test-results/start-page.png', fullPage: true });
});

test('without WebGPU the start page says what to enable', async ({ page }) => {
  await page.addInitScript(() => {
    Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined });
  });
  await page.goto('/');
  await expect(page.locator('#adapter')).toContainText('WebGPU is not available');
  await expect(page.locator('#webgpu-error')).toContainText('Chrome or Edge 113+');
  await expect(page.locator('#run')).toBeDisabled();
});
