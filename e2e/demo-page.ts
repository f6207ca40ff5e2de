/** What the demo's specs (demo.spec.ts, assistant.spec.ts) do to the page: full-page screenshots kept with the report, and settings typed in as a user would. */
import type { Page, TestInfo } from '@playwright/test';

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
