/**
 * The worker contract, checked by the type checker (npm test's typecheck lane) and at run time:
 * every method of the worker-side TrainerSession has a main-thread counterpart in TrainerApi with
 * the same parameters (callbacks aside) and the same awaited result, and everything that crosses
 * the boundary is structured-cloneable data (no functions, no class instances with methods).
 */
import { describe, expect, expectTypeOf, it } from 'vitest';
import type * as Comlink from 'comlink';
import {
  TrainerSession,
  type CheckpointMeta, type DataInfo, type JsonValue, type ModelInfo, type ProgressEvent, type TrainerApi, type TrainSummary,
} from '../src/index.js';
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

  it('at run time too: the session prototype has exactly the API methods', () => {
    const methods = Object.getOwnPropertyNames(TrainerSession.prototype)
      .filter((k) => k !== 'constructor' && typeof (TrainerSession.prototype as unknown as Record<string, unknown>)[k] === 'function');
    const api: Array<keyof TrainerApi> = [
      'loadModel', 'prepareData', 'planTraining', 'train', 'pause', 'resume', 'cancel', 'generate', 'exportAdapter', 'exportOnnx', 'importAdapter', 'listCheckpoints',
      'restoreCheckpoint', 'deleteCheckpoint', 'exportCheckpoint', 'importCheckpoint', 'persistStorage', 'recoverDevice', 'status', 'dispose',
    ];
    const isPrivate = (k: string) => ['context', 'modelInfo', 'requireModel', 'tokenizer', 'continueRun', 'disposeRun', 'releaseModel'].includes(k);
    expect(methods.filter((k) => !isPrivate(k)).sort()).toEqual([...api].sort());
  });
});
