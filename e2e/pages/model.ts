/**
 * The training engine in a real browser (Chromium, SwiftShader WebGPU): the tiny Llama is
 * downloaded from the dev server through the Cache API (a second load comes from the cache),
 * then the PyTorch goldens are checked: base logits, LoRA logits, loss and every LoRA gradient,
 * and greedy tokens through the KV cache. Results go to window.modelReport for e2e/model.spec.ts.
 */
import { createGpuContext, readF32 } from '@webtune/gpu';
import { generate, loadModelFiles, LoraAdapter, resolveLoraConfig, Transformer, uploadBaseModel, weightReader, type LoadProgress } from '@webtune/model';

interface Encoded { shape: number[]; b64: string }
interface Golden {
  inputIds: number[][];
  labels: number[][];
  logits: Encoded;
  loss: number;
  greedyPrompt: number[];
  greedyBase: number[];
  lora: Array<{ config: { r: number; alpha: number; targets: string[] }; adapters: Record<string, Encoded>; grads: Record<string, Encoded>; logits: Encoded; loss: number; greedy: number[] }>;
}

export interface ModelReport {
  adapter: string;
  firstLoad: { events: number; fromCache: boolean[]; total: number | undefined };
  secondLoad: { events: number; fromCache: boolean[] };
  baseLogitsMaxDiff: number;
  baseLossDiff: number;
  baseGreedy: { got: number[]; want: number[] };
  loraLogitsMaxDiff: number;
  loraLossDiff: number;
  worstGradRelError: number;
  loraGreedy: { got: number[]; want: number[] };
  uncapturedErrors: string[];
}

declare global {
  interface Window {
    modelReport?: ModelReport;
    modelError?: string;
  }
}

function f32(t: Encoded): Float32Array {
  const bin = atob(t.b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new Float32Array(bytes.buffer);
}

const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

async function main() {
  const fixtures = new URL('/packages/model/test/fixtures/', location.href).href;
  await caches.delete('webtune-models');
  const first: LoadProgress[] = [];
  await loadModelFiles(`${fixtures}models/tiny-llama/`, { onProgress: (p) => first.push(p) });
  const second: LoadProgress[] = [];
  const files = await loadModelFiles(`${fixtures}models/tiny-llama/`, { onProgress: (p) => second.push(p) });
  const g = (await (await fetch(`${fixtures}goldens/tiny-llama.json`)).json()) as Golden;

  const ctx = await createGpuContext();
  const base = await uploadBaseModel(ctx, files.config, weightReader(files));
  const model = await Transformer.create(ctx, base);
  const batchSize = g.inputIds.length;
  const seq = g.inputIds[0]!.length;
  const ids = new Uint32Array(g.inputIds.flat());
  const targets = new Uint32Array(batchSize * seq).fill(0xffffffff);
  for (let b = 0; b < batchSize; b++) for (let s = 0; s + 1 < seq; s++) if (g.labels[b]![s + 1] !== -100) targets[b * seq + s] = g.labels[b]![s + 1]!;
  const batch = { ids, targets, batch: batchSize, seq };

  const baseLogits = await model.logits(batch);
  const baseLoss = (await model.evaluate(batch)).loss;
  const baseGreedy = await generate(model, g.greedyPrompt, { maxNewTokens: g.greedyBase.length, stopTokens: [] });

  const v = g.lora[0]!;
  const lora = resolveLoraConfig(files.config, { rank: v.config.r, alpha: v.config.alpha, targets: v.config.targets });
  const tensors = new Map(Object.entries(v.adapters).map(([k, t]) => [k, { data: f32(t), shape: t.shape }]));
  const adapter = LoraAdapter.fromTensors(ctx, files.config, lora, tensors);
  model.setAdapter(adapter);
  const loraLogits = await model.logits(batch);
  const { loss } = await model.trainStep(batch);
  let worst = 0;
  for (const t of adapter.trainable()) {
    const got = await readF32(ctx, t.grad);
    const want = f32(v.grads[t.key]!);
    worst = Math.max(worst, maxDiff(got, want) / want.reduce((m, x) => Math.max(m, Math.abs(x)), 1e-30));
  }
  const loraGreedy = await generate(model, g.greedyPrompt, { maxNewTokens: v.greedy.length, stopTokens: [] });

  window.modelReport = {
    adapter: ctx.adapter.name,
    firstLoad: { events: first.length, fromCache: first.map((p) => p.fromCache), total: first.at(-1)?.overallTotalBytes },
    secondLoad: { events: second.length, fromCache: second.map((p) => p.fromCache) },
    baseLogitsMaxDiff: maxDiff(baseLogits, f32(g.logits)),
    baseLossDiff: Math.abs(baseLoss - g.loss),
    baseGreedy: { got: baseGreedy, want: g.greedyBase },
    loraLogitsMaxDiff: maxDiff(loraLogits, f32(v.logits)),
    loraLossDiff: Math.abs(loss - v.loss),
    worstGradRelError: worst,
    loraGreedy: { got: loraGreedy, want: v.greedy },
    uncapturedErrors: ctx.uncapturedErrors.map((e) => e.message),
  };
  document.getElementById('status')!.textContent = JSON.stringify(window.modelReport, null, 2);
}

main().catch((error: unknown) => {
  window.modelError = String((error as Error)?.stack ?? error);
});
