/**
 * The main-thread facade that createTrainer() (client.ts) and createOnnxTrainer() (onnx.ts) return,
 * over a TrainerSession in their worker or inline. The facade is a Proxy, as Comlink's
 * Remote<T> is: TrainerApi is derived from TrainerSession's methods, so the method list is written
 * once, in the session. Callbacks go as Comlink proxies, byte arrays handed in are transferred (not
 * copied), and typed errors arrive as the same classes (transfer.ts). Each creator is its own
 * module, so that a bundler sees only the `new Worker(new URL(...))` of the one an app imports.
 */
import * as Comlink from 'comlink';
import { WorkerStartError } from '@webtune/errors';
import type { CheckpointStore } from '@webtune/trainer';
import type { SessionEnvironment, TrainerSession } from './session.js';
import { registerErrorTransfer } from './transfer.js';
import { watchDeviceConditions, type ConditionsWatch } from './device-conditions.js';

type SessionMethodName = {
  [K in keyof TrainerSession]: TrainerSession[K] extends (...args: never[]) => unknown ? K : never;
}[keyof TrainerSession];

type Promised<F> = F extends (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>> : never;

/**
 * Everything an app does with webtune, each call a promise. The same methods as TrainerSession
 * (see its docs for each), whether the session runs in the worker or inline. `dispose()` ends the
 * worker (or frees the GPU in inline mode).
 *
 * @example
 * ```ts
 * const trainer = await createTrainer();
 * await trainer.loadModel('https://example.com/my-model/', { onProgress: (p) => console.log(p.overallLoadedBytes) });
 * await trainer.prepareData({ text: myNotes }, { seqLen: 128 });
 * const summary = await trainer.train({ steps: 100 }, (p) => console.log(p.step, p.loss));
 * ```
 */
export type TrainerApi = { [K in SessionMethodName]: Promised<TrainerSession[K]> };

/** Options of createTrainer(). */
export interface CreateTrainerOptions {
  /**
   * A worker the app started itself, on a file that imports 'webtune/worker' (or
   * 'webtune/onnx-worker'), e.g. to pass its own bundler options. The app keeps ownership:
   * dispose() does not terminate it.
   */
  worker?: Worker;
  /** Run the session in this thread (Node, tests, or an app that manages its own worker). */
  inline?: boolean;
  /** Inline only: the GPU entry point (Node: createNodeGpu() from 'webtune/node'). */
  gpu?: GPU;
  /** Inline only: where checkpoints go (default in memory; the worker uses IndexedDB). */
  checkpoints?: CheckpointStore;
  /** Inline only: caps on the device's limits, features left off (SessionEnvironment.gpuOptions). */
  gpuOptions?: SessionEnvironment['gpuOptions'];
  /**
   * false: train() with `power` does not start watchDeviceConditions() on this thread; the app
   * sends the conditions itself (trainer.updateConditions()). Default true.
   */
  watchConditions?: boolean;
  /**
   * How long to wait for the worker's first answer before failing with WorkerStartError, in
   * milliseconds. Default 30000. A worker whose script fails to load fails at once.
   */
  startTimeoutMs?: number;
}

/**
 * createTrainer() and createOnnxTrainer() share this: how each spawns its worker, and how it makes
 * an inline session (with one dynamic import each, so that the session's code is one lazy chunk).
 * @internal
 */
export async function connectTrainer(
  options: CreateTrainerOptions,
  spawn: () => Worker,
  inlineSession: (env: SessionEnvironment) => Promise<TrainerSession>,
): Promise<TrainerApi> {
  if (options.inline) {
    const env: SessionEnvironment = {};
    if (options.gpu) env.gpu = options.gpu;
    if (options.checkpoints) env.checkpoints = options.checkpoints;
    if (options.gpuOptions) env.gpuOptions = options.gpuOptions;
    return inlineApi(await inlineSession(env), options.watchConditions !== false);
  }
  registerErrorTransfer();
  const owned = !options.worker;
  const worker = options.worker ?? spawn();
  const remote = Comlink.wrap<TrainerSession>(worker);
  try {
    await firstAnswer(worker, remote, options.startTimeoutMs ?? 30_000);
  } catch (error) {
    remote[Comlink.releaseProxy]();
    if (owned) worker.terminate();
    throw error;
  }
  return workerApi(remote, worker, owned, options.watchConditions !== false);
}

/** Waits for the worker to answer a status() call; a load error or silence is WorkerStartError. */
async function firstAnswer(worker: Worker, remote: Comlink.Remote<TrainerSession>, timeoutMs: number): Promise<void> {
  let onError: ((e: Event) => void) | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const failed = new Promise<never>((_, reject) => {
    onError = (e: Event) => {
      const detail = e instanceof ErrorEvent && e.message ? e.message : 'its script failed to load or threw while starting';
      reject(new WorkerStartError(detail));
    };
    worker.addEventListener('error', onError);
    timer = setTimeout(() => reject(new WorkerStartError(`it did not answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([remote.status(), failed]);
  } finally {
    worker.removeEventListener('error', onError!);
    clearTimeout(timer);
  }
}

/** Plain objects only: a class instance (a Blob, a File) is passed as it is. */
function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype;
}

/**
 * Arguments as they cross to the worker. Comlink proxies top-level callbacks only, so a function is
 * wrapped, and an `onProgress` inside the last (options) argument moves to the argument after it,
 * where the session's methods take it (loadModel). The buffers of byte arrays handed in, at the top
 * level or as an object's field, are transferred.
 */
function toWorker(args: unknown[]): unknown[] {
  const out = [...args];
  const last = out[out.length - 1];
  if (isPlainObject(last) && typeof last['onProgress'] === 'function') {
    const { onProgress, ...rest } = last;
    out[out.length - 1] = rest;
    out.push(onProgress);
  }
  // Comlink keys transfer lists by the argument value itself, so each argument gets its own.
  return out.map((arg) => {
    if (typeof arg === 'function') return Comlink.proxy(arg);
    const buffers = new Set<ArrayBuffer>();
    const collect = (v: unknown) => {
      if (v instanceof Uint8Array && v.buffer instanceof ArrayBuffer) buffers.add(v.buffer);
    };
    collect(arg);
    if (isPlainObject(arg)) Object.values(arg).forEach(collect);
    return buffers.size ? Comlink.transfer(arg, [...buffers]) : arg;
  });
}

/**
 * A run with TrainRequest.power needs the page's battery and pressure readings (the Battery API is
 * page-only): the first such train() starts watchDeviceConditions() on this thread, and dispose()
 * stops it. An app that already forwards conditions itself loses nothing: both send the same.
 */
function conditionsOnDemand(api: () => TrainerApi, enabled: boolean): { train(args: unknown[]): Promise<void>; stop(): void } {
  let watch: Promise<ConditionsWatch> | undefined;
  return {
    async train(args) {
      const request = args[0];
      if (enabled && !watch && isPlainObject(request) && request['power'] !== undefined) watch = watchDeviceConditions(api());
      if (watch) await watch;
    },
    stop() {
      void watch?.then((w) => w.stop());
    },
  };
}

function workerApi(remote: Comlink.Remote<TrainerSession>, worker: Worker, owned: boolean, watchConditions: boolean): TrainerApi {
  const call = remote as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  const conditions = conditionsOnDemand(() => api, watchConditions);
  const local: Partial<Record<SessionMethodName, (...args: never[]) => Promise<unknown>>> = {
    // StorageManager.persist() exists on the page only, not in workers: ask from here.
    persistStorage: persistFromPage,
    train: (async (...args: unknown[]) => {
      await conditions.train(args);
      return call['train']!(...toWorker(args));
    }) as (...args: never[]) => Promise<unknown>,
    dispose: async () => {
      conditions.stop();
      await remote.dispose();
      remote[Comlink.releaseProxy]();
      if (owned) worker.terminate();
    },
  };
  const api: TrainerApi = new Proxy({} as TrainerApi, {
    get(_, name) {
      // Not thenable: `await createTrainer()` must resolve to this object.
      if (typeof name !== 'string' || name === 'then') return undefined;
      return local[name as SessionMethodName] ?? ((...args: unknown[]) => call[name]!(...toWorker(args)));
    },
  });
  return api;
}

async function persistFromPage(): Promise<{ persisted: boolean | undefined }> {
  const storage = (globalThis as { navigator?: { storage?: StorageManager } }).navigator?.storage;
  return { persisted: storage?.persist ? await storage.persist() : undefined };
}

function inlineApi(session: TrainerSession, watchConditions: boolean): TrainerApi {
  const methods = session as unknown as Record<string, (...args: unknown[]) => unknown>;
  const conditions = conditionsOnDemand(() => api, watchConditions);
  const api: TrainerApi = new Proxy({} as TrainerApi, {
    get(_, name) {
      if (typeof name !== 'string' || name === 'then' || typeof methods[name] !== 'function') return undefined;
      return async (...args: unknown[]) => {
        if (name === 'train') await conditions.train(args);
        if (name === 'dispose') conditions.stop();
        return methods[name]!(...args);
      };
    },
  });
  return api;
}
