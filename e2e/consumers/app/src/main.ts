// A stranger's app: it knows webtune only through `npm install webtune` and the README's
// "Use it in your app". Built by Vite and by webpack in production mode, type-checked by tsc
// with strict settings; e2e/consumers.spec.ts drives the functions on `window.consumer`.
import {
  createTrainer,
  DataFormatError,
  InvalidArgumentError,
  ModelFileMissingError,
  WebtuneError,
  type ProgressEvent,
  type TrainerApi,
  type TrainRequest,
  type TrainSummary,
} from 'webtune';

const base = new URL('./', location.href);
const MODEL = new URL('models/webtune-demo/', base).href;
const RUN: TrainRequest = {
  steps: 6, batchSize: 2, learningRate: 5e-3, seed: 3, runId: 'consumer', checkpointEvery: 2, keepLast: 2,
  lora: { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj'] },
};

let trainer: TrainerApi | undefined;
const progress: ProgressEvent[] = [];
let loadEvents = 0;

async function prepare(t: TrainerApi): Promise<TrainerApi> {
  await t.loadModel(MODEL, { onProgress: () => { loadEvents++; } });
  const text = await (await fetch(new URL('sample.txt', base))).text();
  await t.prepareData({ text }, { seqLen: 32, heldOut: 0 });
  return t;
}

async function ready(): Promise<TrainerApi> {
  trainer ??= await prepare(await createTrainer());
  return trainer;
}

function describeError(error: unknown) {
  return {
    isWebtuneError: error instanceof WebtuneError,
    isModelFileMissing: error instanceof ModelFileMissingError,
    isInvalidArgument: error instanceof InvalidArgumentError,
    name: error instanceof Error ? error.name : String(error),
    code: error instanceof WebtuneError ? error.code : undefined,
  };
}

const consumer = {
  /** Errors thrown in the worker arrive as their own classes. */
  async errors() {
    const t = await createTrainer();
    try {
      const missing = await t.loadModel(new URL('models/no-such-model/', base).href).then(() => undefined, describeError);
      await t.loadModel(MODEL);
      const empty = await t.prepareData({ text: '   ' }).then(() => undefined, describeError);
      return { missing, empty };
    } finally {
      await t.dispose();
    }
  },
  /** Starts RUN and resolves once its step-2 checkpoint is stored; training goes on until the page reloads. */
  async start(): Promise<number[]> {
    const t = await ready();
    void t.train(RUN, (p) => progress.push(p)).catch(() => undefined);
    for (;;) {
      const steps = (await t.listCheckpoints(RUN.runId)).map((c) => c.step);
      if (steps.includes(2)) return steps;
      await new Promise((r) => setTimeout(r, 20));
    }
  },
  /** After the reload: resumes RUN from its newest checkpoint, generates, exports the PEFT adapter. */
  async resume(): Promise<{ summary: TrainSummary; progressEvents: number; loadEvents: number; text: string; adapterBytes: number; adapterConfig: string }> {
    const t = await ready();
    const summary = await t.train({ ...RUN, resume: true }, (p) => progress.push(p));
    const { text } = await t.generate('Call me', { maxNewTokens: 8, temperature: 0 });
    const peft = await t.exportAdapter();
    return {
      summary, progressEvents: progress.length, loadEvents, text,
      adapterBytes: peft['adapter_model.safetensors'].byteLength, adapterConfig: peft['adapter_config.json'],
    };
  },
  /**
   * Instruction tuning in the worker (README, "Fine-tune an assistant"): conversations rendered
   * with the model's chat template, held-out evaluation while training, then chat. A broken line is
   * a DataFormatError that names it.
   */
  async assistant() {
    const t = await createTrainer();
    try {
      await t.loadModel(MODEL);
      const line = (i: number) => JSON.stringify({ messages: [{ role: 'user', content: `What comes after ${i}?` }, { role: 'assistant', content: `${i + 1} comes after ${i}.` }] });
      const jsonl = Array.from({ length: 16 }, (_, i) => line(i)).join('\n');
      const bad = await t.prepareData({ content: `${line(1)}\n{"messages": oops`, format: 'jsonl' }).then(
        () => undefined,
        (e: unknown) => ({ ...describeError(e), isDataFormat: e instanceof DataFormatError, line: e instanceof DataFormatError ? e.line : undefined }),
      );
      const data = await t.prepareData({ content: jsonl, format: 'jsonl' }, { seqLen: 32, heldOut: 0.25 });
      const summary = await t.train({ steps: 4, batchSize: 2, learningRate: 5e-3, evalEvery: 2, runId: 'assistant', checkpointEvery: 0 });
      const answer = await t.generate([{ role: 'user', content: 'What comes after 3?' }], { maxNewTokens: 6 });
      return { bad, kind: data.kind, chatTemplate: data.chatTemplate, examples: data.examples, evaluations: summary.evaluations.map((e) => e.step), answer: answer.text, answerTokens: answer.tokens.length };
    } finally {
      await t.dispose();
    }
  },
  /** The app's own worker file, which imports 'webtune/worker', trains too. */
  async ownWorker(): Promise<TrainSummary> {
    const worker = new Worker(new URL('./my-worker.ts', import.meta.url), { type: 'module' });
    const t = await prepare(await createTrainer({ worker }));
    try {
      return await t.train({ steps: 2, batchSize: 2, runId: 'own-worker' });
    } finally {
      await t.dispose();
      worker.terminate();
    }
  },
};

declare global {
  interface Window { consumer: typeof consumer }
}
window.consumer = consumer;
document.getElementById('status')!.textContent = 'ready';
