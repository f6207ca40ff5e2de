/**
 * webtune's ONNX in transformers.js (@huggingface/transformers 4.x, browser build, device 'wasm'),
 * offline in Chromium. The page is e2e/pages/transformers-js.ts:
 *  (1) AutoModelForCausalLM.from_pretrained on the ONNX fixture folders, served by the dev server
 *      under env.localModelPath (dtype 'fp32' -> onnx/model.onnx, 'q4' -> onnx/model_q4.onnx, and the
 *      external-data copy), against PyTorch's logits, in one call and in two calls through
 *      transformers.js' DynamicCache;
 *  (2) LoRA trained in the page with webtune, exported with exportOnnx() (tiny Llama f32 and q4) and
 *      exportMergedOnnx() (tiny GPT-2 q4), loaded by transformers.js from memory (env.fetch), against
 *      webtune's forward with the adapter; generate() with its KV cache against greedy decoding
 *      by full forwards on the same exported model.
 * Tolerances (max |difference| over logits of order 1): 2e-5, as e2e/onnx.spec.ts for the wasm EP
 * (f32 weights; q4 runs MatMulNBits, the goldens use the same dequantized weights; the q4 export
 * keeps MatMulNBits and adds the adapter as an exact MatMul side branch).
 * Nothing may come from anywhere but the dev server: no hub, no CDN (transformers.js defaults its
 * onnxruntime-web wasmPaths to one; the page points it at node_modules).
 */
import { expect, test } from '@playwright/test';
import type { TjsReport, TjsResult } from './pages/transformers-js.js';

const EXACT = 2e-5;

function ok<T>(r: TjsResult<T>, what: string): T {
  expect(r.ok ? undefined : r.error, what).toBeUndefined();
  return r as T;
}

test('transformers.js (offline, wasm): the ONNX fixtures vs PyTorch, and ONNX exported after LoRA training vs webtune with the adapter', async ({ page, baseURL }) => {
  const logs: string[] = [];
  const requests: string[] = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  page.on('request', (r) => requests.push(r.url()));
  await page.goto('/e2e/pages/transformers-js.html');
  await page.waitForFunction(() => window.tjsReport !== undefined || window.tjsError !== undefined, undefined, { timeout: 280_000, polling: 500 });
  expect(await page.evaluate(() => window.tjsError), logs.join('\n')).toBeUndefined();
  const r = (await page.evaluate(() => window.tjsReport)) as TjsReport;
  console.log(`transformers.js ${r.transformersVersion}, onnxruntime-web ${r.ortVersion} (.wasm from ${r.wasmPaths}); webtune on ${r.adapter}; ${r.seconds.toFixed(1)} s`);
  expect(r.transformersVersion).toMatch(/^[4-9]\./);

  // (1) the fixture folders.
  expect(r.fixtures.map((c) => `${c.modelId} ${c.variant}`)).toEqual(['tiny-llama f32', 'tiny-llama q4', 'tiny-llama-external f32', 'tiny-gpt2 f32', 'tiny-gpt2 q4']);
  for (const c of r.fixtures) {
    const what = `${c.modelId} ${c.variant} (dtype '${c.dtype}')`;
    const res = ok(c.result, what);
    console.log(`${what}: transformers.js vs PyTorch ${res.vsTorch.toExponential(2)}, second call with DynamicCache ${res.withPastVsTorch.toExponential(2)} (${res.ms.toFixed(0)} ms; inputs ${res.inputNames.join(' ')})`);
    expect(res.logitsDims, what).toEqual([2, 16, 512]);
    expect(res.vsTorch, `${what}: transformers.js vs PyTorch`).toBeLessThan(EXACT);
    expect(res.withPastVsTorch, `${what}: transformers.js with past vs PyTorch`).toBeLessThan(EXACT);
  }

  // (2) exported by webtune after training, loaded by transformers.js from memory.
  expect(r.exports.map((t) => `${t.model} ${t.variant} ${t.via}`)).toEqual(['tiny-llama f32 exportOnnx', 'tiny-llama q4 exportOnnx', 'tiny-gpt2 q4 exportMergedOnnx']);
  for (const t of r.exports) {
    const what = `${t.model} ${t.variant} after ${t.steps} steps, ${t.via}()`;
    const file = t.variant === 'q4' ? 'onnx/model_q4.onnx' : 'onnx/model.onnx';
    expect(t.exportedFiles, what).toEqual([file]);
    const res = ok(t.result, what);
    console.log(`${what} (loss ${t.lastLoss?.toFixed(3)}): adapter moved logits ${t.moved.toExponential(2)}; transformers.js on the export vs webtune with the adapter ${res.vsWebtune.toExponential(2)}, on the original ${res.originalVsWebtune.toExponential(2)}; generate ${JSON.stringify(res.generated)}`);
    expect(t.moved, `${what}: the adapter moves the logits`).toBeGreaterThan(10 * EXACT);
    expect(res.vsWebtune, `${what}: transformers.js on the export vs webtune with the adapter`).toBeLessThan(EXACT);
    expect(res.originalVsWebtune, `${what}: transformers.js on the original file is far from webtune with the adapter`).toBeGreaterThan(10 * EXACT);
    expect(res.generated, `${what}: generate() with the KV cache vs greedy by full forwards`).toEqual(res.greedy);
    for (const f of ['config.json', file]) expect(r.servedFromMemory, what).toContain(`${t.modelId}/${f}`);
  }
  expect(r.uncapturedErrors).toEqual([]);

  // Everything came from the dev server: the fixture folders, onnxruntime-web's .wasm, no hub, no CDN.
  const origin = new URL(baseURL!).origin;
  const offOrigin = requests.filter((u) => !u.startsWith('data:') && !u.startsWith('blob:') && new URL(u).origin !== origin);
  expect(offOrigin, 'requests off the page origin').toEqual([]);
  expect(r.wasmPaths.startsWith(`${origin}/node_modules/`), r.wasmPaths).toBe(true);
  expect(requests.filter((u) => u.startsWith(r.wasmPaths) && u.endsWith('.wasm')), 'onnxruntime-web .wasm from this origin').not.toEqual([]);
  const fixtures = `${origin}/packages/model/test/fixtures/onnx/`;
  for (const f of ['tiny-llama/config.json', 'tiny-llama/onnx/model.onnx', 'tiny-llama/onnx/model_q4.onnx', 'tiny-llama-external/onnx/model.onnx_data', 'tiny-gpt2/onnx/model_q4.onnx']) {
    expect(requests, `transformers.js fetched ${f} from the dev server`).toContain(`${fixtures}${f}`);
  }
  expect(requests.filter((u) => u.includes('webtune-export-')), 'the exported folders never hit the network').toEqual([]);
});
