/**
 * The built demo's "Method" setting (vite build + preview, as e2e/demo.spec.ts) on the bundled model
 * (llama, 4 layers, hidden 256, intermediate 768): IA3 trains a few steps and exports PEFT IA3 files
 * whose scaling vectors moved off their all-ones start; BitFit on the top layer only plans less
 * memory than on every layer, trains, and exports webtune's BitFit files for that one layer; DoRA
 * on the top layer trains and exports PEFT's LoRA files with use_dora and its magnitude vectors.
 * A few steps of batch 2 at sequence 32: SwiftShader runs about 0.25 GFLOP/s.
 */
import { readFile } from 'node:fs/promises';
import { expect, test, type Download, type Page } from '@playwright/test';
import { shot, setField } from './demo-page.js';
import { DEMO_URL } from './servers.js';

test.use({ baseURL: DEMO_URL });

const STEPS = 4;

/** Trains STEPS steps with the page's current settings and waits for the run to finish. */
async function trainAndFinish(page: Page) {
  await expect(page.locator('#memory .badge')).toHaveText('fits');
  await expect(page.locator('#train')).toBeEnabled();
  // The panel's line of the run before (if any) must give way to this run's.
  const before = await page.locator('#train-info').textContent();
  await page.click('#train');
  if (before) await expect(page.locator('#train-info')).not.toHaveText(before);
  await expect(page.locator('#train-info')).toContainText(`Finished ${STEPS} steps`, { timeout: 240_000 });
  await expect(page.locator('#stat-step')).toHaveText(`${STEPS} / ${STEPS}`);
  await expect(page.locator('#train-progress')).toHaveJSProperty('value', 1);
}

/** Clicks Export and reads the two downloaded files: the parsed adapter_config.json and the safetensors tensors (F32). */
async function exportAdapter(page: Page): Promise<{ config: Record<string, unknown>; tensors: Map<string, Float32Array> }> {
  const downloads: Download[] = [];
  const onDownload = (d: Download) => downloads.push(d);
  page.on('download', onDownload);
  await page.click('#export');
  await expect.poll(() => downloads.length, { timeout: 30_000 }).toBe(2);
  page.off('download', onDownload);
  const file = async (name: string) => readFile((await downloads.find((d) => d.suggestedFilename() === name)!.path())!);
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
  return { config, tensors };
}

test('IA3, BitFit and DoRA on the top layer: pick the method, train, export', async ({ page }, testInfo) => {
  test.setTimeout(480_000);
  await page.goto('/');
  await expect(page.locator('#adapter table')).toContainText('shader-f16');
  // LoRA is the default, with its fields.
  await expect(page.locator('#method')).toHaveValue('lora');
  await expect(page.locator('#rank')).toBeVisible();
  await expect(page.locator('#targets')).toBeVisible();

  await setField(page, 'steps', String(STEPS));
  await setField(page, 'batch', '2');
  await setField(page, 'seq', '32');
  await page.selectOption('#model-source', 'bundled');
  await page.click('#load-model');
  await expect(page.locator('#model-info')).toContainText('Loaded bundled demo model: llama, 4 layers', { timeout: 60_000 });
  await page.click('#use-sample');
  await expect(page.locator('#data-info')).toContainText(/[\d,]+ tokens/, { timeout: 60_000 });

  // IA3: rank, alpha and targets go; the hint counts PEFT's default vectors (k 128 + v 128 + down_proj's input 768, times 4 layers).
  await page.selectOption('#method', 'ia3');
  await expect(page.locator('#rank')).toBeHidden();
  await expect(page.locator('#alpha')).toBeHidden();
  await expect(page.locator('#targets')).toBeHidden();
  await expect(page.locator('#method-hint')).toHaveAttribute('data-params', '4096');
  await expect(page.locator('#method-hint')).toContainText('IA3 trains one scaling vector');
  await expect(page.locator('#method-hint')).toContainText('in all 4 layers');
  await expect(page.locator('#memory')).toContainText('IA3 adapter');
  await shot(page, testInfo, '01-ia3-settings');

  await trainAndFinish(page);
  // The loss moved: a number at every step, and the last differs from the first.
  expect(Number(await page.locator('#chart').getAttribute('data-points'))).toBeGreaterThan(1);
  const first = Number(await page.locator('#chart').getAttribute('data-first-loss'));
  const last = Number(await page.locator('#chart').getAttribute('data-last-loss'));
  expect(Number.isFinite(first) && Number.isFinite(last)).toBe(true);
  expect(last).not.toBe(first);
  await shot(page, testInfo, '02-ia3-trained');

  const ia3 = await exportAdapter(page);
  expect(ia3.config.peft_type).toBe('IA3');
  expect(ia3.config.layers_to_transform ?? null).toBeNull();
  expect([...ia3.tensors.keys()].every((k) => k.endsWith('.ia3_l'))).toBe(true);
  expect(ia3.tensors.size).toBe(12);
  // The vectors start at ones (init_ia3_weights); training moved them.
  const values = [...ia3.tensors.values()].flatMap((t) => [...t]);
  expect(values).toHaveLength(4096);
  expect(values.some((v) => Math.abs(v - 1) > 1e-4)).toBe(true);
  await expect(page.locator('#checkpoint-info')).toContainText('load them with PEFT');

  // BitFit: every linear's bias (256 + 128 + 128 + 256 + 768 + 768 + 256 = 2560 per layer); the top
  // layer only is 2560 parameters, and its backward pass stops at layer 3, so the plan is smaller.
  await page.selectOption('#method', 'bitfit');
  await expect(page.locator('#method-hint')).toHaveAttribute('data-params', '10240');
  const totalMiB = async () => Number((await page.locator('#memory .total .mib').textContent())!.replace(/[^\d.]/g, ''));
  const allLayers = await totalMiB();
  await setField(page, 'top-layers', '1');
  await expect(page.locator('#method-hint')).toHaveAttribute('data-params', '2560');
  await expect(page.locator('#method-hint')).toContainText('in the top 1 of 4 layers (layer 3;');
  expect(await totalMiB()).toBeLessThan(allLayers);
  // More layers than the model has: refused in the settings panel, Train off.
  await setField(page, 'top-layers', '9');
  await expect(page.locator('#settings-msg')).toContainText('The model has 4 layers');
  await expect(page.locator('#train')).toBeDisabled();
  await setField(page, 'top-layers', '1');
  await expect(page.locator('#settings-msg')).toBeEmpty();
  await shot(page, testInfo, '03-bitfit-top-layer');

  await trainAndFinish(page);
  await shot(page, testInfo, '04-bitfit-trained');
  const bitfit = await exportAdapter(page);
  expect(bitfit.config.webtune_method).toBe('bitfit');
  expect(bitfit.config.layers_to_transform).toEqual([3]);
  expect([...bitfit.tensors.keys()].every((k) => k.includes('.layers.3.') && k.endsWith('.bitfit_bias'))).toBe(true);
  expect([...bitfit.tensors.values()].reduce((n, t) => n + t.length, 0)).toBe(2560);
  expect([...bitfit.tensors.values()].some((t) => t.some((v) => v !== 0))).toBe(true);
  await expect(page.locator('#checkpoint-info')).toContainText('PEFT has no BitFit method');

  // DoRA on the top layer: LoRA's fields, and PEFT's LoRA files with use_dora and a magnitude per
  // targeted module (its norm kernel runs on SwiftShader too).
  await page.selectOption('#method', 'dora');
  await expect(page.locator('#rank')).toBeVisible();
  await expect(page.locator('#targets')).toBeVisible();
  await expect(page.locator('#method-hint')).toContainText('DoRA is LoRA plus a learned magnitude');
  await trainAndFinish(page);
  const dora = await exportAdapter(page);
  expect(dora.config).toMatchObject({ peft_type: 'LORA', use_dora: true, layers_to_transform: [3] });
  const magnitudes = [...dora.tensors.keys()].filter((k) => k.endsWith('.lora_magnitude_vector'));
  expect(magnitudes.length).toBeGreaterThan(0);
  expect([...dora.tensors.keys()].every((k) => k.includes('.layers.3.'))).toBe(true);
  expect(magnitudes.every((k) => dora.tensors.get(k)!.every((v) => Number.isFinite(v) && v > 0))).toBe(true);
  await shot(page, testInfo, '05-dora-trained');

  // Back to LoRA: its fields come back.
  await page.selectOption('#method', 'lora');
  await expect(page.locator('#rank')).toBeVisible();
  await expect(page.locator('#targets')).toBeVisible();
});
