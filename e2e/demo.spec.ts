/**
 * The built demo (vite build + preview, service worker included) end to end on the bundled model:
 * load, bad uploads, sample text, memory plan, train with chart, pause/resume, generate from the
 * base model and with the adapter, adapter export, a reload in the middle of a run and "Resume
 * training", cancel, checkpoint export/delete/import; settings chosen for the device (autoConfigure)
 * and a run with them; then a federated round from the page against the real coordinator.
 */
import { readFile } from 'node:fs/promises';
import { expect, test, type Download, type Page, type TestInfo } from '@playwright/test';
import { startCoordinator } from './coordinator.js';
import { shot, setField } from './demo-page.js';
import { DEMO_URL } from './servers.js';

test.use({ baseURL: DEMO_URL });

async function loadBundledAndSample(page: Page) {
  await expect(page.locator('#adapter table')).toContainText('shader-f16');
  await page.selectOption('#model-source', 'bundled');
  await page.click('#load-model');
  await expect(page.locator('#model-info')).toContainText('Loaded bundled demo model: llama', { timeout: 60_000 });
  await page.click('#use-sample');
  await expect(page.locator('#data-info')).toContainText(/[\d,]+ tokens/, { timeout: 60_000 });
}

test('the demo trains, generates, exports, resumes after a reload and manages checkpoints', async ({ page }, testInfo) => {
  test.setTimeout(600_000);
  await page.goto('/');
  await expect(page.locator('#adapter table')).toContainText('shader-f16');
  await shot(page, testInfo, '01-start');

  await setField(page, 'steps', '8');
  await setField(page, 'batch', '2');
  await setField(page, 'seq', '32');
  await loadBundledAndSample(page);

  // Bad uploads show an error in the data panel and the app stays usable.
  await page.setInputFiles('#data-file', { name: 'bad.txt', mimeType: 'text/plain', buffer: Buffer.from([0, 1, 2, 255, 254, 0, 7, 8, 0, 0, 3, 200, 100, 0]) });
  await expect(page.locator('#data-msg')).toContainText('binary');
  await shot(page, testInfo, '02-binary-upload-error');
  await page.setInputFiles('#data-file', { name: 'empty.txt', mimeType: 'text/plain', buffer: Buffer.alloc(0) });
  await expect(page.locator('#data-msg')).toContainText('empty');
  await page.click('#use-sample');
  await expect(page.locator('#data-info')).toContainText(/[\d,]+ tokens/);
  await expect(page.locator('#data-msg')).toBeEmpty();

  // The memory plan.
  await expect(page.locator('#memory')).toContainText('Total');
  await expect(page.locator('#memory')).toContainText('MiB');
  await expect(page.locator('#memory')).toContainText('fits');
  // A batch that cannot fit: the planner refuses with its advice and Train stays off.
  await setField(page, 'batch', '100000');
  await expect(page.locator('#memory')).toContainText('does not fit');
  await expect(page.locator('#memory .refusal')).toContainText(/batch/i);
  await expect(page.locator('#train')).toBeDisabled();
  await shot(page, testInfo, '02b-does-not-fit');
  await setField(page, 'batch', '2');
  await expect(page.locator('#memory .badge')).toHaveText('fits');

  // Before: the base model answers; the adapter side says what it is waiting for.
  await page.click('#generate');
  await expect(page.locator('#out-before span')).not.toBeEmpty({ timeout: 60_000 });
  await expect(page.locator('#out-after')).toContainText('Train (or import an adapter)');
  const baseText = await page.locator('#out-before').textContent();
  await shot(page, testInfo, '03-ready-to-train');

  // Train 8 steps.
  await expect(page.locator('#train')).toBeEnabled();
  await page.click('#train');
  await expect(page.locator('#train-info')).toContainText('Finished 8 steps', { timeout: 240_000 });
  await expect(page.locator('#stat-step')).toHaveText('8 / 8');
  expect(Number(await page.locator('#chart').getAttribute('data-points'))).toBeGreaterThan(0);
  await expect(page.locator('#chart canvas')).toHaveCount(1);
  await expect(page.locator('#stat-loss')).toHaveText(/\d+\.\d+/);

  // After: the same prompt through the base model alone and with the adapter, side by side.
  await page.click('#generate');
  await expect(page.locator('#out-after span')).not.toBeEmpty({ timeout: 60_000 });
  await expect(page.locator('#out-before')).toHaveText(baseText!);
  await shot(page, testInfo, '04-trained');

  // Export: two downloads.
  const downloads: Download[] = [];
  page.on('download', (d) => downloads.push(d));
  await page.click('#export');
  await expect.poll(() => downloads.length, { timeout: 30_000 }).toBe(2);
  expect(downloads.map((d) => d.suggestedFilename()).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
  const config = JSON.parse(await readFile((await downloads.find((d) => d.suggestedFilename().endsWith('.json'))!.path())!, 'utf8'));
  expect(config.r).toBe(8);

  // A long run: pause, resume, then a reload in the middle.
  await setField(page, 'steps', '200');
  await page.click('#train');
  await expect(page.locator('#pause')).toBeEnabled();
  await expect(page.locator('#resume')).toBeDisabled();
  await expect(page.locator('#stat-step')).toHaveText(/^[1-9]\d* \/ 200$/, { timeout: 120_000 });
  await page.click('#pause');
  await expect(page.locator('#train-info')).toContainText('Paused at step', { timeout: 120_000 });
  await expect(page.locator('#resume')).toBeEnabled();
  await expect(page.locator('#pause')).toBeDisabled();
  await expect(page.locator('#train')).toBeDisabled();
  await page.click('#resume');
  await expect(page.locator('#pause')).toBeEnabled();
  // A checkpoint of this run (the pause wrote one; more come every 10 steps), then close the tab mid-run.
  await expect(page.locator('#checkpoints tbody tr').first()).toBeVisible({ timeout: 240_000 });
  await expect(page.locator('#checkpoints tbody td:first-child', { hasText: /\/ 8$/ })).toHaveCount(0);
  await expect(page.locator('#stat-step')).not.toHaveText('200 / 200');
  await shot(page, testInfo, '05-training');
  await page.reload();

  // After the reload: the page offers to resume.
  await expect(page.locator('#resume-banner')).toBeVisible({ timeout: 60_000 });
  await expect(page.locator('#steps')).toHaveValue('200');
  await loadBundledAndSample(page);
  await expect(page.locator('#resume-run')).toBeEnabled();
  await shot(page, testInfo, '06-after-reload');
  await page.click('#resume-run');
  await expect(page.locator('#cancel')).toBeEnabled();
  await expect(page.locator('#stat-step')).toHaveText(/^\d+ \/ 200$/, { timeout: 120_000 });
  await page.click('#cancel');
  await expect(page.locator('#train-info')).toContainText(/resumed from step \d+/, { timeout: 120_000 });
  expect(Number(await page.locator('#train-info').getAttribute('data-resumed-from'))).toBeGreaterThanOrEqual(1);
  await expect(page.locator('#train')).toBeEnabled();

  // Export the newest checkpoint as one file, delete it, import the file: it is back.
  const rows = page.locator('#checkpoints tbody tr');
  const before = await rows.count();
  expect(before).toBeGreaterThan(0);
  const step = await rows.first().getAttribute('data-step');
  const saved = page.waitForEvent('download');
  await rows.first().locator('.save').click();
  const file = await saved;
  expect(file.suggestedFilename()).toBe(`webtune-demo-step-${step}.ckpt`);
  const bytes = await readFile((await file.path())!);
  await rows.first().locator('.delete').click();
  await expect(rows).toHaveCount(before - 1);
  await expect(page.locator('#checkpoint-info')).toContainText('Deleted the checkpoint');
  await page.setInputFiles('#import-checkpoint', { name: file.suggestedFilename(), mimeType: 'application/octet-stream', buffer: bytes });
  await expect(page.locator('#checkpoint-info')).toContainText(`Imported the checkpoint of step ${step}`);
  await expect(rows).toHaveCount(before);
  await expect(page.locator(`#checkpoints tbody tr[data-step="${step}"]`)).toHaveCount(1);
  // A damaged file is refused with the reason, and the list stays as it was.
  bytes[bytes.length - 5]! ^= 0xff;
  await page.setInputFiles('#import-checkpoint', { name: 'damaged.ckpt', mimeType: 'application/octet-stream', buffer: bytes });
  await expect(page.locator('#checkpoint-msg')).not.toBeEmpty();
  await expect(rows).toHaveCount(before);
  await shot(page, testInfo, '07-checkpoints');
});

test('the ONNX model: train on its 4-bit weights, export with the adapter, and run it in onnxruntime-web from local files', async ({ page }, testInfo) => {
  const offOrigin: string[] = [];
  page.on('request', (r) => { if (!r.url().startsWith(DEMO_URL) && !r.url().startsWith('blob:') && !r.url().startsWith('data:')) offOrigin.push(r.url()); });
  await page.goto('/');
  await setField(page, 'steps', '6');
  await setField(page, 'batch', '2');
  await setField(page, 'seq', '32');
  await expect(page.locator('#adapter table')).toContainText('shader-f16');
  await page.selectOption('#model-source', 'bundled-onnx');
  await page.click('#load-model');
  await expect(page.locator('#model-info')).toContainText('Loaded bundled demo model (onnx/model_q4.onnx): llama', { timeout: 60_000 });
  await expect(page.locator('#model-info')).toContainText('of q4 weights');
  await expect(page.locator('#ort-row')).toBeVisible();
  await expect(page.locator('#ort-run')).toBeDisabled();
  await page.click('#use-sample');
  await expect(page.locator('#data-info')).toContainText(/[\d,]+ tokens/, { timeout: 60_000 });
  await page.click('#train');
  await expect(page.locator('#train-info')).toContainText('Finished 6 steps', { timeout: 240_000 });
  await page.click('#generate');
  await expect(page.locator('#out-after span')).not.toBeEmpty({ timeout: 60_000 });
  await page.click('#ort-run');
  await expect(page.locator('#out-ort span')).not.toBeEmpty({ timeout: 120_000 });
  await expect(page.locator('#out-ort small')).toContainText('onnxruntime-web (wasm)');
  expect((await page.locator('#out-ort').getAttribute('data-tokens'))!.split(',').length).toBeGreaterThan(0);
  await shot(page, testInfo, '09-onnxruntime-web');
  const saved = page.waitForEvent('download');
  await page.click('#export-onnx');
  const file = await saved;
  expect(file.suggestedFilename()).toBe('model_q4.onnx');
  const original = await readFile(new URL('../demo-app/public/models/webtune-demo/onnx/model_q4.onnx', import.meta.url));
  const exported = await readFile((await file.path())!);
  // The 4-bit weights are kept and each adapted MatMulNBits node gets its LoRA side branch (node
  // names are plain UTF-8 in the file; packages/onnx/test/patch.unit.test.ts checks the structure).
  expect(exported.byteLength).toBeGreaterThan(original.byteLength);
  expect(original.includes('/lora_Add')).toBe(false);
  expect(exported.includes('/lora_Add')).toBe(true);
  expect(offOrigin).toEqual([]);
});

test('settings for this device: the plan, why, what was measured and refused, then two steps with it', async ({ page }, testInfo) => {
  await page.goto('/');
  await setField(page, 'steps', '2');
  await setField(page, 'batch', '2');
  await setField(page, 'seq', '32');
  await loadBundledAndSample(page);
  await expect(page.locator('#device-conditions')).toContainText(/battery .+ · CPU pressure .+\./);

  await page.click('#device-choose');
  await expect(page.locator('#device-choose')).toBeDisabled();
  const plan = page.locator('#device-plan');
  await expect(plan).toBeVisible({ timeout: 240_000 });
  // SwiftShader has no shader-f16: f32 activations only, and the reasons say so.
  await expect(plan).toHaveAttribute('data-dtype', 'f32');
  await expect(plan).toHaveAttribute('data-seq-len', '32');
  await expect(page.locator('#device-reasons li').first()).toContainText('micro-batch');
  await expect(page.locator('#device-reasons')).toContainText('no shader-f16');
  const measured = page.locator('#device-measured tbody tr');
  await expect(measured).not.toHaveCount(0);
  await expect(page.locator('#device-measured tbody tr:not([data-dtype="f32"])')).toHaveCount(0);
  await expect(page.locator('#device-measured tr.chosen')).toHaveCount(1);
  await expect(page.locator('#device-measured tr.chosen')).toHaveAttribute('data-format', (await plan.getAttribute('data-format'))!);
  await expect(page.locator('#device-chosen')).toContainText(/\d+ training passes in [\d.]+ s/);
  await expect(page.locator('#device-rejected summary')).toBeVisible();
  // Measuring f32 and nf4 loaded the model again: the model panel says in which format it is now.
  await expect(page.locator('#model-info')).toContainText(`${await plan.getAttribute('data-format')} weights and f32 activations (chosen for this device)`);
  await shot(page, testInfo, '10-device-plan');

  // The next run takes the plan's micro-batch (and waits on a low battery, which this one is not).
  await page.check('#power-battery');
  await page.click('#device-use');
  await expect(page.locator('#device-applied')).toHaveAttribute('data-applied', 'true');
  await expect(page.locator('#memory .badge')).toHaveText('fits');
  await page.click('#train');
  await expect(page.locator('#train-info')).toContainText('Finished 2 steps', { timeout: 240_000 });
  await expect(page.locator('#power-state')).toHaveAttribute('data-state', 'finished');
  await expect(page.locator('#power-state')).toContainText('did not wait');
  await expect(page.locator('#recovery-log')).toHaveAttribute('data-micro-batch', (await plan.getAttribute('data-micro-batch'))!);
  await expect(page.locator('#recovery-log')).toBeHidden();
  await shot(page, testInfo, '11-device-trained');
});

test('the federated panel joins a round of the coordinator and shows the privacy setting and epsilon spent', async ({ page }, testInfo) => {
  const coordinator = await startCoordinator({
    modelConfig: 'demo-app/public/models/webtune-demo/config.json', rank: 8, alpha: 16, secret: 'demo-e2e', allowOrigin: DEMO_URL,
    config: {
      minClients: 1, maxClients: 1, sampleRate: 1,
      round: { steps: 2, batchSize: 2, learningRate: 0.005, seqLen: 32, clipNorm: 1, dp: { mode: 'local', noiseMultiplier: 1, delta: 1e-5 } },
    },
  });
  try {
    await page.goto('/');
    await setField(page, 'seq', '32');
    await loadBundledAndSample(page);
    await page.fill('#fed-url', coordinator.url);
    await page.fill('#fed-secret', 'demo-e2e');
    await page.click('#fed-join');
    await expect(page.locator('#fed-info')).toHaveAttribute('data-status', 'uploaded', { timeout: 240_000 });
    await expect(page.locator('#fed-info')).toContainText('Sent the update for round 1');
    await expect(page.locator('#fed-info')).toContainText('local DP: the update is clipped to norm 1 and noised here (z = 1');
    await expect(page.locator('#fed-info')).toContainText(/Epsilon spent: \d+\.\d\d of 8 over 1 local-DP round\./);
    expect(Number(await page.locator('#fed-info').getAttribute('data-epsilon'))).toBeGreaterThan(0);
    await shot(page, testInfo, '08-federated');
    const status = await (await coordinator.get('/v1/rounds/1')).json();
    expect(status).toMatchObject({ status: 'closed', accepted: 1, resultVersion: 1 });

    // A coordinator that is not there: a typed error in the panel, and the page keeps working.
    await page.fill('#fed-url', 'http://127.0.0.1:9');
    await page.click('#fed-join');
    await expect(page.locator('#fed-msg')).not.toBeEmpty({ timeout: 120_000 });
    await expect(page.locator('#fed-join')).toBeEnabled();
  } finally {
    coordinator.stop();
  }
});
