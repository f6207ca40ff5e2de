/**
 * The built demo's "Method" setting (vite build + preview, as e2e/demo.spec.ts) on the bundled model
 * (llama, 4 layers, hidden 256, intermediate 768): IA3 trains a few steps and exports PEFT IA3 files
 * whose scaling vectors moved off their all-ones start; BitFit on the top layer only plans less
 * memory than on every layer, trains, and exports webtune's BitFit files for that one layer; DoRA
 * on the top layer trains and exports PEFT's LoRA files with use_dora and its magnitude vectors.
 * Prompt tuning, P-tuning, prefix tuning and bottleneck adapters show their own fields and the
 * planner's parameter counts; prefix tuning (with projection) trains, generates and exports PEFT's
 * PREFIX_TUNING files, Houlsby bottleneck adapters on the top 2 layers webtune's own; UniPELT shows
 * its own three fields (no layer choice: its prefix spans every layer) and the count of its gated
 * LoRA, prefix and adapter; imported on the bundled ONNX model, the prefix adapter turns the ONNX
 * export off and says why (worker-level training, resume and the typed refusals, UniPELT's too:
 * e2e/prompt-methods.spec.ts).
 * A few steps of batch 2 at sequence 32: SwiftShader runs about 0.25 GFLOP/s.
 */
import { expect, test, type Page } from '@playwright/test';
import { exportAdapter, loadBundledWithSample, shot, setField } from './demo-page.js';
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

/** Opens the demo with small training settings, the bundled model loaded and the sample text prepared. */
async function openWithSample(page: Page) {
  await page.goto('/');
  await expect(page.locator('#adapter table')).toContainText('shader-f16');
  // LoRA is the default, with its fields.
  await expect(page.locator('#method')).toHaveValue('lora');
  await expect(page.locator('#rank')).toBeVisible();
  await expect(page.locator('#targets')).toBeVisible();

  await loadBundledWithSample(page, STEPS);
}

test('IA3, BitFit and DoRA on the top layer: pick the method, train, export', async ({ page }, testInfo) => {
  test.setTimeout(480_000);
  await openWithSample(page);

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

test('prompt tuning, P-tuning, prefix tuning, bottleneck adapters and UniPELT: pick and count; prefix tuning and bottleneck adapters train, generate, export; no merged (ONNX) export for them', async ({ page }, testInfo) => {
  test.setTimeout(360_000);
  await openWithSample(page);
  const hint = page.locator('#method-hint');

  // Prompt tuning: virtual tokens started from a text; no rank, targets or top-N layers (the
  // virtual tokens sit in front of the first layer). 16 x hidden 256 parameters.
  await page.selectOption('#method', 'prompt-tuning');
  await expect(page.locator('#virtual-tokens')).toHaveValue('16');
  await expect(page.locator('#init-text')).not.toHaveValue('');
  for (const id of ['rank', 'alpha', 'targets', 'top-layers', 'encoder-width', 'prefix-projection', 'bottleneck-size']) await expect(page.locator(`#${id}`)).toBeHidden();
  await expect(hint).toHaveAttribute('data-params', '4096');
  await expect(hint).toContainText('Prompt tuning trains');
  await expect(hint).toContainText('in front of the first layer');
  await expect(page.locator('#memory')).toContainText('Prompt tuning adapter');

  // P-tuning: an encoder 256 -> 128 -> 128 -> 256 over 16 embeddings of 256.
  await page.selectOption('#method', 'p-tuning');
  await expect(page.locator('#encoder-width')).toHaveValue('128');
  await expect(page.locator('#init-text')).toBeHidden();
  await expect(hint).toHaveAttribute('data-params', String(16 * 256 + (256 * 128 + 128) + (128 * 128 + 128) + (128 * 256 + 256)));
  await expect(hint).toContainText('P-tuning makes its virtual tokens');

  // Prefix tuning with projection: 16 embeddings of the key/value width 128 (4 heads of 32), an MLP
  // 128 -> 128 -> 4 layers x (keys + values) x 128. Without the projection the prefixes train themselves.
  await page.selectOption('#method', 'prefix-tuning');
  await expect(page.locator('#prefix-projection')).toBeChecked();
  await expect(page.locator('#virtual-tokens')).toBeVisible();
  await expect(page.locator('#top-layers')).toBeHidden();
  const projected = 16 * 128 + (128 * 128 + 128) + (1024 * 128 + 1024);
  await expect(hint).toHaveAttribute('data-params', String(projected));
  await expect(hint).toContainText('in all 4 layers');
  await page.locator('#prefix-projection').uncheck();
  await expect(page.locator('#encoder-width')).toBeHidden();
  await expect(hint).toHaveAttribute('data-params', String(16 * 1024));
  await page.locator('#prefix-projection').check();
  await expect(page.locator('#encoder-width')).toBeVisible();
  await expect(hint).toHaveAttribute('data-params', String(projected));
  await shot(page, testInfo, '06-prefix-settings');

  await trainAndFinish(page);
  expect(Number.isFinite(Number(await page.locator('#chart').getAttribute('data-last-loss')))).toBe(true);
  // Generation runs the prefixes through the KV cache.
  await page.click('#generate');
  await expect(page.locator('#out-after span')).not.toBeEmpty({ timeout: 120_000 });
  await expect(page.locator('#out-before span')).not.toBeEmpty();
  // The demo loaded safetensors: no ONNX buttons to refuse.
  await expect(page.locator('#export-onnx')).toBeHidden();
  // PEFT's files: with projection only the MLP's output, 16 x (4 x 2 x 128).
  const prefix = await exportAdapter(page, testInfo.outputPath('prefix-adapter'));
  expect(prefix.config).toMatchObject({ peft_type: 'PREFIX_TUNING', num_virtual_tokens: 16, token_dim: 128, prefix_projection: true, encoder_hidden_size: 128 });
  expect([...prefix.tensors.keys()]).toEqual(['prompt_embeddings']);
  expect(prefix.tensors.get('prompt_embeddings')).toHaveLength(16 * 1024);
  await expect(page.locator('#checkpoint-info')).toContainText('load them with PEFT');
  await shot(page, testInfo, '07-prefix-trained');

  // Bottleneck adapters, Houlsby (after attention and after the feed-forward block), 16 wide, on
  // the top 2 layers: 2 sites x (256 x 16 + 16 + 16 x 256 + 256) per layer.
  await page.selectOption('#method', 'bottleneck');
  await expect(page.locator('#bottleneck-variant')).toHaveValue('houlsby');
  await expect(page.locator('#bottleneck-size')).toHaveValue('16');
  await expect(page.locator('#virtual-tokens')).toBeHidden();
  await expect(page.locator('#top-layers')).toBeVisible();
  await expect(hint).toHaveAttribute('data-params', String(4 * 2 * 8464));
  await setField(page, 'top-layers', '2');
  await expect(hint).toHaveAttribute('data-params', String(2 * 2 * 8464));
  await expect(hint).toContainText('in the top 2 of 4 layers');
  await expect(page.locator('#memory')).toContainText('Bottleneck adapter');
  await trainAndFinish(page);
  const bottleneck = await exportAdapter(page);
  expect(bottleneck.config).toMatchObject({ webtune_method: 'bottleneck', variant: 'houlsby', bottleneck_size: 16, layers_to_transform: [2, 3] });
  expect(bottleneck.tensors.size).toBe(16);
  expect([...bottleneck.tensors.keys()].every((k) => /^model\.layers\.[23]\.(attention|output)_adapter\.adapter_(down\.0|up)\.(weight|bias)$/.test(k))).toBe(true);
  await expect(page.locator('#checkpoint-info')).toContainText('PEFT has no bottleneck adapter method');

  // UniPELT: its own LoRA rank 4, 8 prefix rows and an adapter 16 wide; LoRA's rank, alpha and
  // targets, the other methods' fields and "top N layers" (still 2 from above) go: the prefix spans
  // every layer, so all 4 train. The prefix table 8 x (4 layers x 2 x 128), then per layer gated
  // LoRA on q_proj (4 x 256 + 256 x 4 + gate 256 + 1) and v_proj (4 x 256 + 128 x 4 + 256 + 1),
  // the prefix gates (2 x 256 + 2) and the gated adapter (16 x 256 + 16 + 256 x 16 + 256 + 256 + 1).
  await page.selectOption('#method', 'unipelt');
  await expect(page.locator('#unipelt-rank')).toHaveValue('4');
  await expect(page.locator('#unipelt-prefix')).toHaveValue('8');
  await expect(page.locator('#unipelt-adapter')).toHaveValue('16');
  for (const id of ['rank', 'alpha', 'targets', 'top-layers', 'virtual-tokens', 'init-text', 'encoder-width', 'prefix-projection', 'bottleneck-variant', 'bottleneck-size']) {
    await expect(page.locator(`#${id}`)).toBeHidden();
  }
  const unipelt = (rank: number) => 8 * 1024 + 4 * ((rank * 256 + 256 * rank + 257) + (rank * 256 + 128 * rank + 257) + 514 + 8721);
  await expect(hint).toHaveAttribute('data-params', String(unipelt(4)));
  expect(unipelt(4)).toBe(61_524);
  await expect(hint).toContainText('UniPELT combines LoRA');
  await expect(hint).toContainText('in all 4 layers');
  await expect(page.locator('#memory')).toContainText('UniPELT adapter');
  await setField(page, 'unipelt-rank', '8');
  await expect(hint).toHaveAttribute('data-params', String(unipelt(8)));
  await setField(page, 'unipelt-prefix', '4');
  await expect(hint).toHaveAttribute('data-params', String(unipelt(8) - 4 * 1024));
  await setField(page, 'unipelt-adapter', '0');
  await expect(page.locator('#settings-msg')).toContainText('“Adapter width” takes a whole number of 1 or more');
  await expect(page.locator('#train')).toBeDisabled();
  await setField(page, 'unipelt-adapter', '16');
  await expect(page.locator('#settings-msg')).toBeEmpty();
  await expect(hint).toHaveAttribute('data-params', String(unipelt(8) - 4 * 1024));
  await shot(page, testInfo, '08-unipelt-settings');

  // The same model as ONNX, with the prefix adapter imported: its ONNX export and the
  // onnxruntime-web run (both merge the adapter) are off, and say why and what to use instead.
  await page.selectOption('#model-source', 'bundled-onnx');
  await page.click('#load-model');
  await expect(page.locator('#model-info')).toContainText('Loaded bundled demo model (onnx/model_q4.onnx)', { timeout: 60_000 });
  await expect(page.locator('#export-onnx')).toBeVisible();
  await page.setInputFiles('#import', prefix.paths);
  await expect(page.locator('#checkpoint-info')).toContainText('Imported adapter_model.safetensors');
  await expect(page.locator('#export')).toBeEnabled();
  await expect(page.locator('#export-onnx')).toBeDisabled();
  await expect(page.locator('#ort-run')).toBeDisabled();
  const refusals = page.locator('.merge-hint');
  await expect(refusals).toHaveCount(2);
  for (const refusal of await refusals.all()) {
    await expect(refusal).toBeVisible();
    await expect(refusal).toContainText('prefix tuning adds keys and values to every layer');
    await expect(refusal).toContainText('Use “Export adapter”');
  }
  // The imported prefixes generate over the 4-bit base.
  await page.click('#generate');
  await expect(page.locator('#out-after span')).not.toBeEmpty({ timeout: 120_000 });
  await shot(page, testInfo, '09-onnx-refused');
});
