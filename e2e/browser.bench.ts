import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test, expect } from '@playwright/test';

test('browser benchmark', async ({ page }) => {
  page.on('console', (m) => process.stderr.write(`[page] ${m.text()}\n`));
  // A run takes many minutes, and the dev server reloads a page when a file it imports changes (or
  // its dependency optimizer finishes): the page gets a no-op client instead of Vite's, as
  // e2e/device-adaptation.spec.ts does. (Dev tooling only; nothing of webtune is stubbed.)
  await page.route('**/@vite/client', (route) =>
    route.fulfill({
      contentType: 'text/javascript',
      body: 'export const createHotContext = () => ({ accept() {}, dispose() {}, prune() {}, invalidate() {}, decline() {}, on() {}, off() {}, send() {}, data: {} });\n' +
        'export const updateStyle = () => {}; export const removeStyle = () => {}; export const injectQuery = (url) => url; export class ErrorOverlay {}\n',
    }));
  const sizes = process.env.BENCH_SIZES ?? '256,512,1024';
  // 'generate' group: BENCH_PROMPT_TOKENS and BENCH_NEW_TOKENS (default 32 each), BENCH_GENERATE_RUNS (default min(BENCH_RUNS, 3)).
  const generate = `&promptTokens=${process.env.BENCH_PROMPT_TOKENS ?? 32}&newTokens=${process.env.BENCH_NEW_TOKENS ?? 32}` +
    (process.env.BENCH_GENERATE_RUNS ? `&generateRuns=${process.env.BENCH_GENERATE_RUNS}` : '');
  // 'step' group: BENCH_STEP_STEPS timed steps (default 2), BENCH_STEP_SEQ / BENCH_STEP_LAYERS shrink the shape for a quick look.
  const step = ['STEPS', 'SEQ', 'LAYERS'].map((k) => (process.env[`BENCH_STEP_${k}`] ? `&step${k[0]}${k.slice(1).toLowerCase()}=${process.env[`BENCH_STEP_${k}`]}` : '')).join('');
  await page.goto(`/e2e/pages/bench.html?sizes=${sizes}&runs=${process.env.BENCH_RUNS ?? 9}&only=${process.env.BENCH_ONLY ?? ''}${generate}${step}`);
  await page.waitForFunction(() => window.benchResult || window.benchError, undefined, { timeout: 1_700_000, polling: 1000 });
  expect(await page.evaluate(() => window.benchError)).toBeUndefined();
  const result = await page.evaluate(() => window.benchResult);
  // scripts/bench.mjs points partial runs (BENCH_ONLY) away from the committed results.
  const dir = process.env.BENCH_RESULTS_DIR ?? 'bench/results';
  mkdirSync(dir, { recursive: true });
  const { step: stepResult, ...lane } = result!;
  writeFileSync(join(dir, 'browser.json'), JSON.stringify(lane, null, 2) + '\n');
  if (stepResult) {
    // The full shape's figures are committed, as the Node lane's are (scripts/bench.mjs); a shrunk one stays in the cache.
    const stepDir = process.env.BENCH_STEP_SEQ || process.env.BENCH_STEP_LAYERS ? dir : 'bench/results';
    writeFileSync(join(stepDir, 'step-efficiency-browser.json'), JSON.stringify(stepResult.result, null, 2) + '\n');
    writeFileSync(join(stepDir, 'step-efficiency-browser.md'), `# Step efficiency, Chromium\n\nWritten by \`BENCH_ONLY=step npm run bench -- browser\` (e2e/browser.bench.ts, bench/step-efficiency.ts).\n\n${stepResult.markdown}`);
  }
  for (const row of lane.rows) process.stderr.write(`${row.benchmark} ${row.shape} ${row.library}: ${row.medianMs.toFixed(1)} ms ${row.gflops?.toFixed(2) ?? row.tokensPerSecond?.toFixed(1) ?? ''}\n`);
});
