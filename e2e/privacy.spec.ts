/**
 * The built demo's "Privacy (DP-SGD)" panel (vite build + preview, as e2e/methods.spec.ts) on the
 * bundled model and the Moby-Dick sample: off by default; a preset shows the noise multiplier sigma
 * that noiseMultiplierFor picks for the prepared rows, steps and batch, with delta and q, before
 * training; a run without DP and one with DP on the same text put two labelled loss series on the
 * chart, and the private run's epsilon curve rises step by step and stays under the budget; an
 * epsilon out of the accountant's reach is refused before training; a fixed sigma whose budget runs
 * out after 2 of 3 steps stops the run there and says so. The DP-SGD numbers themselves are tested
 * in packages/trainer (accountant, noise, clipping); this is the page. Batch 2 at sequence 32, 3 steps a run.
 */
import { expect, test, type Page } from '@playwright/test';
import { exportAdapter, loadBundledWithSample, shot, setField } from './demo-page.js';
import { DEMO_URL } from './servers.js';

test.use({ baseURL: DEMO_URL });

const STEPS = 3;

async function train(page: Page, done: string | RegExp) {
  await expect(page.locator('#memory .badge')).toHaveText('fits');
  await expect(page.locator('#train')).toBeEnabled();
  const before = await page.locator('#train-info').textContent();
  await page.click('#train');
  if (before) await expect(page.locator('#train-info')).not.toHaveText(before);
  await expect(page.locator('#train-info')).toContainText(done, { timeout: 120_000 });
}

/** The privacy estimate's figures (data-* of #privacy-estimate) once it has them. */
async function estimate(page: Page) {
  const el = page.locator('#privacy-estimate');
  await expect(el).toHaveAttribute('data-sigma', /\d/);
  const n = async (k: string) => Number(await el.getAttribute(`data-${k}`));
  return { sigma: await n('sigma'), epsilon: await n('epsilon'), delta: await n('delta'), q: await n('q'), target: await n('target'), lastStep: await n('last-step') };
}

test('privacy panel: a preset\'s sigma before training, a live epsilon curve under the budget, the loss with and without DP, budget refused and spent', async ({ page }, testInfo) => {
  test.setTimeout(240_000);
  const log: string[] = [];
  page.on('console', (m) => log.push(`${m.type()}: ${m.text()}`));
  await page.goto('/');
  await expect(page.locator('#adapter table')).toContainText('shader-f16');
  // Off by default, and it says what it would do.
  await expect(page.locator('#privacy-preset')).toHaveValue('off');
  await expect(page.locator('#privacy-estimate')).toContainText('Off');
  await expect(page.locator('#privacy-epsilon')).toBeHidden();
  // On before any data: the estimate waits for it.
  await page.selectOption('#privacy-preset', 'high');
  await expect(page.locator('#privacy-estimate')).toContainText('Prepare the data');
  await expect(page.locator('#privacy-what')).toContainText('The privacy unit is one training row');
  await page.selectOption('#privacy-preset', 'off');

  await loadBundledWithSample(page, STEPS);
  const rows = Number(/([\d,]+) training sequences/.exec((await page.locator('#data-info').textContent())!)![1]!.replace(/,/g, ''));

  // Without DP first: one loss series, no epsilon.
  await train(page, `Finished ${STEPS} steps`);
  await expect(page.locator('#chart')).toHaveAttribute('data-plain-points', String(STEPS));
  await expect(page.locator('#chart')).toHaveAttribute('data-dp-points', '0');
  await expect(page.locator('#privacy-live')).toBeHidden();

  // High (epsilon 1): sigma for these rows, steps and batch, before training.
  await page.selectOption('#privacy-preset', 'high');
  const high = await estimate(page);
  expect(high.target).toBe(1);
  expect(high.sigma).toBeGreaterThan(0);
  expect(high.epsilon).toBeLessThanOrEqual(1);
  expect(high.epsilon).toBeGreaterThan(0.9);
  expect(high.q).toBeCloseTo(2 / rows, 12);
  expect(high.delta).toBeCloseTo(1 / (10 * rows), 12);
  expect(high.lastStep).toBe(STEPS);
  await expect(page.locator('#privacy-estimate')).toContainText('σ = ');
  await expect(page.locator('#privacy-estimate')).toContainText(`q = 2 / ${rows.toLocaleString('en')} rows`);
  await expect(page.locator('#privacy-what')).toContainText('one window of 32 tokens of the text');
  await shot(page, testInfo, '01-privacy-estimate');

  await train(page, `Finished ${STEPS} steps`);
  await expect(page.locator('#train-info')).toContainText('spent (DP-SGD)');
  const curve = page.locator('#privacy-curve');
  await expect(curve).toHaveAttribute('data-points', String(STEPS));
  const epsilons = (await curve.getAttribute('data-epsilons'))!.split(',').map(Number);
  expect(epsilons, log.join('\n')).toHaveLength(STEPS);
  for (let i = 1; i < epsilons.length; i++) expect(epsilons[i]!).toBeGreaterThan(epsilons[i - 1]!);
  expect(epsilons[0]!).toBeGreaterThan(0);
  expect(epsilons.at(-1)!).toBeLessThanOrEqual(1);
  // The run's epsilon is what the estimate said before it started.
  expect(epsilons.at(-1)!).toBeCloseTo(high.epsilon, 6);
  await expect(page.locator('#privacy-spent')).toContainText('clipped to norm C');
  expect(Number(await page.locator('#privacy-spent').getAttribute('data-clipped'))).toBeGreaterThanOrEqual(0);
  await expect(page.locator('#privacy-status')).toContainText('-differentially private for one training row');
  // Both loss series on one chart, labelled.
  await expect(page.locator('#chart')).toHaveAttribute('data-dp-points', String(STEPS));
  await expect(page.locator('#chart')).toHaveAttribute('data-plain-points', String(STEPS));
  await expect(page.locator('#loss-legend')).toBeVisible();
  await expect(page.locator('#loss-legend')).toContainText('loss without DP (the last run)');
  await expect(page.locator('#loss-legend')).toContainText('loss with DP (this run)');
  await shot(page, testInfo, '02-private-run');

  // The exported adapter records the privacy.
  const { config } = await exportAdapter(page);
  expect(config.webtune_privacy).toMatchObject({ targetEpsilon: 1, steps: STEPS, dataSize: rows, accountant: 'rdp', mechanism: 'dp-sgd' });
  expect((config.webtune_privacy as { epsilon: number }).epsilon).toBeCloseTo(epsilons.at(-1)!, 6);

  // A fixed sigma whose first step alone would spend more than the budget: refused before training, Train off.
  await page.selectOption('#privacy-preset', 'custom');
  await setField(page, 'privacy-sigma', '0.3');
  await setField(page, 'privacy-epsilon', '0.01');
  await expect(page.locator('#privacy-estimate')).toContainText('the first step alone spends more');
  await expect(page.locator('#settings-msg')).toContainText('the first step alone spends more');
  await expect(page.locator('#train')).toBeDisabled();

  // A fixed sigma and a budget between what 2 and 3 steps spend: the run stops after step 2.
  await setField(page, 'privacy-sigma', '1');
  await setField(page, 'privacy-epsilon', '100');
  await setField(page, 'steps', '2');
  await expect(page.locator('#privacy-estimate')).toContainText('after 2 steps');
  const two = (await estimate(page)).epsilon;
  await setField(page, 'steps', String(STEPS));
  await expect(page.locator('#privacy-estimate')).toContainText(`after ${STEPS} steps`);
  const three = (await estimate(page)).epsilon;
  expect(three).toBeGreaterThan(two);
  await setField(page, 'privacy-epsilon', String((two + three) / 2));
  await expect(page.locator('#privacy-estimate')).toContainText(`runs out after 2 of ${STEPS} steps`);
  await expect(page.locator('#settings-msg')).toBeEmpty();
  await train(page, `Stopped at step 2 of ${STEPS}: the privacy budget is spent`);
  await expect(page.locator('#privacy-status')).toHaveClass(/budget-exhausted/);
  await expect(page.locator('#privacy-status')).toContainText('The privacy budget is spent');
  await expect(curve).toHaveAttribute('data-points', '2');
  expect(Number(await curve.getAttribute('data-epsilon'))).toBeLessThanOrEqual((two + three) / 2);
  await shot(page, testInfo, '03-budget-spent');

  // After a reload the stopped run is not offered for resuming: its budget is spent (checkpointBudgetSpent).
  await page.reload();
  await expect(page.locator('#resume-banner')).toBeVisible({ timeout: 30_000 });
  await expect(page.locator('#resume-text')).toContainText(`stopped at step 2 of ${STEPS}: its privacy budget is spent`);
  await expect(page.locator('#resume-run')).toBeHidden();
});
