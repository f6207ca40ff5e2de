/** What the demo's specs (demo.spec.ts, assistant.spec.ts, methods.spec.ts, privacy.spec.ts) do to the page: full-page screenshots kept with the report, and settings typed in as a user would. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect, type Download, type Page, type TestInfo } from '@playwright/test';

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

/**
 * Clicks Export and reads the two downloaded files: the parsed adapter_config.json and the
 * safetensors tensors (F32); with `saveIn`, also keeps them there under their names (for Import adapter).
 */
export async function exportAdapter(page: Page, saveIn?: string): Promise<{ config: Record<string, unknown>; tensors: Map<string, Float32Array>; paths: string[] }> {
  const downloads: Download[] = [];
  const onDownload = (d: Download) => downloads.push(d);
  page.on('download', onDownload);
  await page.click('#export');
  await expect.poll(() => downloads.length, { timeout: 30_000 }).toBe(2);
  page.off('download', onDownload);
  const file = async (name: string) => readFile((await downloads.find((d) => d.suggestedFilename() === name)!.path())!);
  const paths: string[] = [];
  if (saveIn) {
    for (const d of downloads) {
      paths.push(join(saveIn, d.suggestedFilename()));
      await d.saveAs(paths.at(-1)!);
    }
  }
  const config = JSON.parse((await file('adapter_config.json')).toString('utf8')) as Record<string, unknown>;
  // safetensors: u64 header length, a JSON header of { name: { dtype, shape, data_offsets } }, then the data.
  const bytes = await file('adapter_model.safetensors');
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const tensors = new Map<string, Float32Array>();
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    expect(t.dtype).toBe('F32');
    const data = bytes.subarray(8 + headerLength + t.data_offsets[0], 8 + headerLength + t.data_offsets[1]);
    tensors.set(name, new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)));
  }
  return { config, tensors, paths };
}
