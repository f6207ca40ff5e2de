import { expect, test } from '@playwright/test';
import type { SuiteReport } from './pages/kernel-suite.js';

test('kernels match their references in a page and in a dedicated worker (SwiftShader WebGPU)', async ({ page }) => {
  const console: string[] = [];
  page.on('console', (m) => console.push(`${m.type()}: ${m.text()}`));
  await page.goto('/e2e/pages/kernels.html');
  page.on('pageerror', (e) => console.push(`pageerror: ${e.message}`));
  await page.waitForFunction(() => window.kernelReports !== undefined || window.kernelError !== undefined, undefined, { timeout: 280_000 });
  expect(await page.evaluate(() => window.kernelError), console.join('\n')).toBeUndefined();
  const reports = (await page.evaluate(() => window.kernelReports)) as SuiteReport[];
  expect(reports.map((r) => r.where)).toEqual(['page', 'worker']);
  for (const report of reports) {
    expect(report.error, `${report.where}: ${report.error}\n${console.join('\n')}`).toBeUndefined();
    expect(report.adapter.toLowerCase()).toMatch(/swiftshader|google/);
    expect(report.maxStorageBufferBindingSize).toBeGreaterThan(128 * 1024 * 1024);
    expect(report.checks.length).toBeGreaterThan(25);
    expect(report.checks.filter((c) => !c.ok), report.where).toEqual([]);
    expect(report.uncapturedErrors).toEqual([]);
  }
});
