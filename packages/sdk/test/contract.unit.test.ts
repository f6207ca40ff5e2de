/**
 * The worker contract, checked by the type checker (npm test's typecheck lane) and at run time:
 * every method of the worker-side TrainerSession has a main-thread counterpart in TrainerApi with
 * the same parameters (callbacks aside) and the same awaited result, and everything that crosses
 * the boundary is structured-cloneable data (no functions, no class instances with methods).
 */
import { describe, expect, expectTypeOf, it } from 'vitest';
import * as Comlink from 'comlink';
import { CheckpointNotFoundError, InvalidArgumentError, ModelFormatError, WorkerStartError } from '@webtune/errors';
import { MemoryCheckpointStore, type CheckpointMeta, type JsonValue } from '@webtune/trainer';
import { createTrainer, TrainerSession, type DataInfo, type ModelInfo, type ProgressEvent, type TrainerApi, type TrainSummary } from '../src/index.js';
import type { PeftFiles } from '@webtune/model';

type Methods<T> = { [K in keyof T as T[K] extends (...args: never[]) => unknown ? K : never]: T[K] };
type Awaited2<T> = T extends (...args: never[]) => infer R ? Awaited<R> : never;

/** Plain data only: what structured clone carries without losing anything. */
type Cloneable<T> = [T] extends [JsonValue]
  ? true
  : T extends (...args: never[]) => unknown
  ? false
  : T extends string | number | boolean | undefined | null | Uint8Array | Float32Array
    ? true
    : T extends ReadonlyArray<infer U>
      ? Cloneable<U>
      : T extends object
        ? false extends { [K in keyof T]-?: Cloneable<T[K]> }[keyof T] ? false : true
        : false;

describe('worker contract', () => {
  it('TrainerApi has every TrainerSession method, with the same awaited results', () => {
    type SessionKeys = keyof Methods<TrainerSession>;
    expectTypeOf<SessionKeys>().toEqualTypeOf<keyof TrainerApi>();
    expectTypeOf<Awaited2<TrainerApi['train']>>().toEqualTypeOf<Awaited2<TrainerSession['train']>>();
    expectTypeOf<Awaited2<TrainerApi['loadModel']>>().toEqualTypeOf<ModelInfo>();
    expectTypeOf<Awaited2<TrainerApi['prepareData']>>().toEqualTypeOf<DataInfo>();
    expectTypeOf<Awaited2<TrainerApi['listCheckpoints']>>().toEqualTypeOf<CheckpointMeta[]>();
    expectTypeOf<Awaited2<TrainerApi['exportAdapter']>>().toEqualTypeOf<PeftFiles>();
    expectTypeOf<Awaited2<TrainerApi['exportCheckpoint']>>().toEqualTypeOf<Uint8Array>();
    expectTypeOf<Parameters<TrainerApi['prepareData']>>().toEqualTypeOf<Parameters<TrainerSession['prepareData']>>();
    expectTypeOf<Parameters<TrainerApi['train']>[0]>().toEqualTypeOf<Parameters<TrainerSession['train']>[0]>();
    expectTypeOf<Parameters<TrainerApi['generate']>>().toEqualTypeOf<Parameters<TrainerSession['generate']>>();
    expectTypeOf<ReturnType<TrainerApi['exportOnnx']>>().toEqualTypeOf<ReturnType<TrainerSession['exportOnnx']>>();
  });

  it('Comlink sees the session methods as promises of the same data', () => {
    type Remote = Comlink.Remote<TrainerSession>;
    expectTypeOf<Awaited<ReturnType<Remote['train']>>>().toEqualTypeOf<TrainSummary>();
    expectTypeOf<Awaited<ReturnType<Remote['status']>>>().toEqualTypeOf<ReturnType<TrainerSession['status']>>();
  });

  it('what crosses the boundary is plain, cloneable data', () => {
    expectTypeOf<Cloneable<TrainSummary>>().toEqualTypeOf<true>();
    expectTypeOf<Cloneable<ProgressEvent>>().toEqualTypeOf<true>();
    expectTypeOf<Cloneable<ModelInfo>>().toEqualTypeOf<true>();
    expectTypeOf<Cloneable<DataInfo>>().toEqualTypeOf<true>();
    expectTypeOf<Cloneable<CheckpointMeta>>().toEqualTypeOf<true>();
    expectTypeOf<Cloneable<PeftFiles>>().toEqualTypeOf<true>();
    // And the check itself can fail: a function inside makes it false.
    expectTypeOf<Cloneable<{ a: number; f: () => void }>>().toEqualTypeOf<false>();
  });

  it('at run time the facade answers every session method, and is not thenable', async () => {
    const methods = Object.getOwnPropertyNames(TrainerSession.prototype).filter((k) => k !== 'constructor');
    const api = await createTrainer({ inline: true, checkpoints: new MemoryCheckpointStore() });
    for (const name of methods) expect(typeof (api as unknown as Record<string, unknown>)[name], name).toBe('function');
    expect((api as unknown as { then?: unknown }).then).toBeUndefined(); // `await createTrainer()` resolves to it
    await expect(api.listCheckpoints()).resolves.toEqual([]);
  });
});

/**
 * The worker path over a real MessageChannel (Node's ports speak the same postMessage protocol as a
 * Worker): Comlink, the error transfer and the start handshake, without a GPU.
 */
describe('worker facade over a MessageChannel', () => {
  async function connected(): Promise<{ api: TrainerApi; close: () => void }> {
    const { port1, port2 } = new MessageChannel();
    Comlink.expose(new TrainerSession({ checkpoints: new MemoryCheckpointStore() }), port1 as unknown as Comlink.Endpoint);
    const api = await createTrainer({ worker: port2 as unknown as Worker });
    return { api, close: () => { port1.close(); port2.close(); } };
  }

  it('errors keep their class, code and fields; byte arrays handed in are transferred', async () => {
    const { api, close } = await connected();
    try {
      const missing = await api.exportCheckpoint('no-such-id').catch((e: unknown) => e);
      expect(missing).toBeInstanceOf(CheckpointNotFoundError);
      expect(missing).toMatchObject({ code: 'CHECKPOINT_NOT_FOUND', id: 'no-such-id', name: 'CheckpointNotFoundError' });
      const bytes = new Uint8Array(64).fill(7);
      const corrupt = await api.importCheckpoint(bytes).catch((e: unknown) => e);
      expect(corrupt).toBeInstanceOf(ModelFormatError); // not a safetensors file at all
      expect(bytes.byteLength).toBe(0); // moved to the worker, not copied
      await expect(api.prepareData({ text: 'x' })).rejects.toBeInstanceOf(InvalidArgumentError);
    } finally {
      close();
    }
  });

  it('a worker that never answers is WorkerStartError after startTimeoutMs, not a hang', async () => {
    const { port1, port2 } = new MessageChannel(); // nobody serves port1: an app worker file that imports nothing
    try {
      const started = Date.now();
      const error = await createTrainer({ worker: port2 as unknown as Worker, startTimeoutMs: 300 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(WorkerStartError);
      expect((error as Error).message).toMatch(/did not answer within 300 ms.*import 'webtune\/worker'/s);
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      port1.close();
      port2.close();
    }
  });
});
