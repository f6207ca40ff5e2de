import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test, expect } from '@playwright/test';

test('browser benchmark', async ({ page }) => {
  page.on('console', (m) => process.stderr.write(`[page] ${m.text()}\n`));
  const sizes = process.env.BENCH_SIZES ?? '256,512,1024';
  await page.goto(`/e2e/pages/bench.html?sizes=${sizes}&runs=${process.env.BENCH_RUNS ?? 9}&only=${process.env.BENCH_ONLY ?? ''}`);
  await page.waitForFunction(() => window.benchResult || window.benchError, undefined, { timeout: 1_700_000, polling: 1000 });
  expect(await page.evaluate(() => window.benchError)).toBeUndefined();
  const result = await page.evaluate(() => window.benchResult);
  // scripts/bench.mjs points partial runs (BENCH_ONLY) away from the committed results.
  const dir = process.env.BENCH_RESULTS_DIR ?? 'bench/results';
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'browser.json'), JSON.stringify(result, null, 2) + '\n');
  for (const row of result!.rows) process.stderr.write(`${row.benchmark} ${row.shape} ${row.library}: ${row.medianMs.toFixed(1)} ms ${row.gflops?.toFixed(2) ?? ''}\n`);
});
