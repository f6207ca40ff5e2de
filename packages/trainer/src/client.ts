/**
 * The main-thread API: `createTrainer()` starts the worker (or uses one the app supplies) and
 * returns a typed facade over the worker's TrainerSession. Callbacks are passed as Comlink
 * proxies, large results (adapter and checkpoint files) come back transferred, not copied, and
 * typed errors arrive as the same classes (transfer.ts). In Node, or to stay on the page,
 * `createTrainer({ inline: true })` runs the same session without a worker.
 */
import * as Comlink from 'comlink';
import type { CheckpointMeta } from './checkpoint.js';
import type { CheckpointStore } from './checkpoint-store.js';
import type {
  TrainerSession,
  DataInfo, DataInput, DataOptions, LoadOptions, ModelInfo, ProgressEvent, SessionGenerateOptions, TrainRequest, TrainSummary,
} from './session.js';
import { registerErrorTransfer } from './transfer.js';
import type { LoadProgress, ModelFileSource, PeftFiles } from '@webtune/model';
import type { ExportOnnxOptions } from '@webtune/onnx';

export interface TrainerApi {
  loadModel(source: string | File[] | ModelFileSource, options?: LoadOptions): Promise<ModelInfo>;
  prepareData(input: DataInput, options?: DataOptions): Promise<DataInfo>;
  planTraining(request: Parameters<TrainerSession['planTraining']>[0]): ReturnType<TrainerSession['planTraining']>;
  train(request: TrainRequest, onProgress?: (p: ProgressEvent) => void): Promise<TrainSummary>;
  pause(): Promise<void>;
  resume(onProgress?: (p: ProgressEvent) => void): Promise<TrainSummary>;
  cancel(): Promise<void>;
  generate(prompt: string, options?: SessionGenerateOptions): Promise<{ text: string; tokens: number[] }>;
  exportAdapter(): Promise<PeftFiles>;
  exportOnnx(options?: ExportOnnxOptions): Promise<Record<string, Uint8Array>>;
  importAdapter(files: { config: string; weights: Uint8Array }): Promise<void>;
  listCheckpoints(runId?: string): Promise<CheckpointMeta[]>;
  restoreCheckpoint(id: string): Promise<CheckpointMeta>;
  deleteCheckpoint(id: string): Promise<void>;
  exportCheckpoint(id: string): Promise<Uint8Array>;
  importCheckpoint(bytes: Uint8Array): Promise<CheckpointMeta>;
  persistStorage(): Promise<{ persisted: boolean | undefined }>;
  recoverDevice(): Promise<ModelInfo>;
  status(): Promise<ReturnType<TrainerSession['status']>>;
  /** Ends the worker (or frees the GPU in inline mode). */
  dispose(): Promise<void>;
}

export interface CreateTrainerOptions {
  /** A worker the app started on '@webtune/trainer/worker' (e.g. with its own bundler options). */
  worker?: Worker;
  /** Run in this thread (Node, tests, or an app that manages its own worker). */
  inline?: boolean;
  /** Inline only: the GPU entry point (Node: createNodeGpu()) and checkpoint store. */
  gpu?: GPU;
  checkpoints?: CheckpointStore;
}

/** The session's methods in the worker, as Comlink sees them. */
type Remote = Comlink.Remote<TrainerSession>;

export async function createTrainer(options: CreateTrainerOptions = {}): Promise<TrainerApi> {
  if (options.inline) {
    // Loaded on demand: a page that trains in the worker does not carry the session (models,
    // tokenizer, ONNX reader) in its own bundle.
    const { TrainerSession } = await import('./session.js');
    return inlineTrainer(new TrainerSession({ gpu: options.gpu, checkpoints: options.checkpoints }));
  }
  registerErrorTransfer();
  const worker = options.worker ?? new Worker(new URL('./worker.ts', import.meta.url), { type: 'module', name: 'webtune trainer' });
  const remote = Comlink.wrap<TrainerSession>(worker);
  const proxied = <T extends (...a: never[]) => unknown>(f: T | undefined) => (f ? Comlink.proxy(f) : undefined);
  const api: TrainerApi = {
    loadModel: (source, o = {}) => {
      const { onProgress, ...rest } = o;
      return (remote as Remote).loadModel(source as string, rest, proxied(onProgress) as ((p: LoadProgress) => void) | undefined);
    },
    prepareData: (input, o) => remote.prepareData(input, o),
    planTraining: (request) => remote.planTraining(request),
    train: (request, onProgress) => remote.train(request, proxied(onProgress)),
    pause: () => remote.pause(),
    resume: (onProgress) => remote.resume(proxied(onProgress)),
    cancel: () => remote.cancel(),
    generate: (prompt, o) => remote.generate(prompt, o),
    exportOnnx: (o) => remote.exportOnnx(o),
    exportAdapter: () => remote.exportAdapter(),
    importAdapter: (files) => remote.importAdapter(Comlink.transfer(files, [files.weights.buffer as ArrayBuffer])),
    listCheckpoints: (runId) => remote.listCheckpoints(runId),
    restoreCheckpoint: (id) => remote.restoreCheckpoint(id),
    deleteCheckpoint: (id) => remote.deleteCheckpoint(id),
    exportCheckpoint: (id) => remote.exportCheckpoint(id),
    importCheckpoint: (bytes) => remote.importCheckpoint(Comlink.transfer(bytes, [bytes.buffer as ArrayBuffer])),
    // StorageManager.persist() exists on the page only, not in workers: ask from here.
    persistStorage: () => persistFromPage(),
    recoverDevice: () => remote.recoverDevice(),
    status: () => remote.status(),
    dispose: async () => {
      await remote.dispose();
      remote[Comlink.releaseProxy]();
      if (!options.worker) worker.terminate();
    },
  };
  return api;
}

async function persistFromPage(): Promise<{ persisted: boolean | undefined }> {
  const storage = (globalThis as { navigator?: { storage?: StorageManager } }).navigator?.storage;
  return { persisted: storage?.persist ? await storage.persist() : undefined };
}

function inlineTrainer(session: TrainerSession): TrainerApi {
  return {
    loadModel: (source, o) => session.loadModel(source, o),
    prepareData: (input, o) => session.prepareData(input, o),
    planTraining: (request) => session.planTraining(request),
    train: (request, onProgress) => session.train(request, onProgress),
    pause: async () => session.pause(),
    resume: (onProgress) => session.resume(onProgress),
    cancel: async () => session.cancel(),
    generate: (prompt, o) => session.generate(prompt, o),
    exportOnnx: (o) => session.exportOnnx(o),
    exportAdapter: () => session.exportAdapter(),
    importAdapter: (files) => session.importAdapter(files),
    listCheckpoints: (runId) => session.listCheckpoints(runId),
    restoreCheckpoint: (id) => session.restoreCheckpoint(id),
    deleteCheckpoint: (id) => session.deleteCheckpoint(id),
    exportCheckpoint: (id) => session.exportCheckpoint(id),
    importCheckpoint: (bytes) => session.importCheckpoint(bytes),
    persistStorage: () => session.persistStorage(),
    recoverDevice: () => session.recoverDevice(),
    status: async () => session.status(),
    dispose: async () => session.dispose(),
  };
}
