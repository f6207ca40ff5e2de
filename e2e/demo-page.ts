/** What the demo's specs (demo.spec.ts, assistant.spec.ts, methods.spec.ts, privacy.spec.ts) do to the page: full-page screenshots kept with the report, and settings typed in as a user would. */
import { expect, type Page, type TestInfo } from '@playwright/test';

/** A full-page screenshot in the test's output folder, attached to the report. */
export async function shot(page: Page, testInfo: TestInfo, name: string): Promise<void> {
  const path = testInfo.outputPath(`${name}.png`);
  await page.screenshot({ path, fullPage: true });
  await testInfo.attach(name, { path, contentType: 'image/png' });
}

/** Types `value` into the field `#id` and fires its change event (the demo saves settings on change). */
export async function setField(page: Page, id: string, value: string): Promise<void> {
  await page.locator(`#${id}`).fill(value);
  await page.locator(`#${id}`).dispatchEvent('change');
}

/** Small training settings (batch 2, sequence 32), the bundled model loaded and the sample text prepared. */
export async function loadBundledWithSample(page: Page, steps: number): Promise<void> {
  await setField(page, 'steps', String(steps));
  await setField(page, 'batch', '2');
  await setField(page, 'seq', '32');
  await page.selectOption('#model-source', 'bundled');
  await page.click('#load-model');
  await expect(page.locator('#model-info')).toContainText('Loaded bundled demo model: llama, 4 layers', { timeout: 60_000 });
  await page.click('#use-sample');
  await expect(page.locator('#data-info')).toContainText(/[\d,]+ tokens/, { timeout: 60_000 });
}
