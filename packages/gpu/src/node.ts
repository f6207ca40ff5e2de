/**
 * Node entry: WebGPU through Dawn (the `webgpu` npm package). Kept out of the main entry so
 * browser bundles never see it.
 *
 * @example
 * ```ts
 * import { createGpuContext } from '@webtune/gpu';
 * import { createNodeGpu } from '@webtune/gpu/node';
 * const ctx = await createGpuContext({ gpu: await createNodeGpu() });
 * ```
 */
/// <reference types="@webgpu/types" preserve="true" />
import { WebGPUUnavailableError } from '@webtune/errors';

let cached: GPU | undefined;

/**
 * Returns Dawn's `GPU` object and installs WebGPU's global classes and constants
 * (`GPUBufferUsage`, ...) that kernels use, once per process. Waits on the GPU sleep between
 * Dawn's event ticks instead of spinning (see `sleepWhileDawnWaits`).
 */
export async function createNodeGpu(dawnOptions: string[] = []): Promise<GPU> {
  if (cached) return cached;
  let dawn: { create(options: string[]): GPU; globals: Record<string, unknown> };
  try {
    dawn = (await import('webgpu')) as unknown as typeof dawn;
  } catch (cause) {
    throw new WebGPUUnavailableError(
      "the `webgpu` npm package (Dawn for Node) could not be loaded; run `npm install webgpu`",
      { cause },
    );
  }
  Object.assign(globalThis, dawn.globals);
  sleepWhileDawnWaits(dawn.globals);
  cached = dawn.create(dawnOptions);
  return cached;
}

/**
 * dawn.node settles its promises from a setImmediate loop that runs for as long as any of them is
 * pending (AsyncRunner::ScheduleProcessEvents in Dawn's src/dawn/node/binding, crbug.com/dawn/1127):
 * while Node awaits the GPU, its main thread spins at 100% of a core. With a CPU adapter that core
 * is one the adapter's own threads need. On lavapipe with 2 cores, 32 products of
 * 256 x 1536 x 576 ran at 23-24 GFLOP/s with the spin and 43-44 without it, and one batched
 * dispatch of the same work no longer ran 1.2x as fast as 32 dispatches (issue 22).
 *
 * So every Dawn wait that can last (queue completion, buffer mapping, pipeline compilation, error
 * scopes) is wrapped: while any is pending, the thread sleeps between Dawn's ticks, each sleep
 * 1/50 of how long the waits have lasted so far, 20 us to 1 ms (Atomics.wait adds about 70 us
 * here). A wait of t ms thus returns at most about t / 50 + 0.1 ms late, and a long wait costs
 * about 1% of a core instead of all of it. Other work on the event loop still runs between the sleeps. Installed once per
 * process, on the classes `webgpu` exports (which patches GPUDevice itself the same way).
 */
function sleepWhileDawnWaits(globals: Record<string, unknown>): void {
  const patched = Symbol.for('webtune.sleepWhileDawnWaits');
  const wrap = (className: string, methods: string[]) => {
    const proto = (globals[className] as { prototype?: Record<string | symbol, unknown> } | undefined)?.prototype;
    if (!proto || proto[patched]) return;
    for (const method of methods) {
      const original = proto[method];
      if (typeof original !== 'function') continue;
      proto[method] = function (this: unknown, ...args: unknown[]) {
        return whileSleeping((original as (...a: unknown[]) => Promise<unknown>).apply(this, args));
      };
    }
    proto[patched] = true;
  };
  wrap('GPUQueue', ['onSubmittedWorkDone']);
  wrap('GPUBuffer', ['mapAsync']);
  wrap('GPUDevice', ['createComputePipelineAsync', 'popErrorScope']);
}

const MAX_SLEEP_MS = 1;
const MIN_SLEEP_MS = 0.02;
/** Each sleep is this fraction of how long the waits have lasted: a wait returns at most ~2% late. */
const SLEEP_FRACTION = 50;
const sleepCell = new Int32Array(new SharedArrayBuffer(4));
let pendingWaits = 0;
/** When the waits now pending began (the last time none was). */
let waitingSince = 0;
let sleeping = false;

/** Tracks `pending` and keeps the sleep loop running while anything tracked is unsettled. */
function whileSleeping<T>(pending: Promise<T>): Promise<T> {
  if (pendingWaits++ === 0) waitingSince = performance.now();
  const settle = () => {
    pendingWaits--;
  };
  pending.then(settle, settle);
  if (!sleeping) {
    sleeping = true;
    void sleepBetweenTicks();
  }
  return pending;
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** One event-loop turn free (finished work costs nothing), then a sleep before each further turn. */
async function sleepBetweenTicks(): Promise<void> {
  try {
    await nextTurn();
    while (pendingWaits > 0) {
      const sleep = Math.min(MAX_SLEEP_MS, Math.max(MIN_SLEEP_MS, (performance.now() - waitingSince) / SLEEP_FRACTION));
      Atomics.wait(sleepCell, 0, 0, sleep);
      await nextTurn();
    }
  } finally {
    sleeping = false;
  }
}
