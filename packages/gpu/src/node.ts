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
 * 256 x 1536 x 576 ran at 23-24 GFLOP/s with the spin and 41-45 without it, and one batched
 * dispatch of the same work no longer ran 1.2x as fast as 32 dispatches (issue 22).
 *
 * So every Dawn wait that can last (queue completion, buffer mapping, pipeline compilation and its
 * messages, error scopes) is tracked: while any is pending, the thread sleeps between Dawn's
 * ticks, each sleep 1/50 of the age of the newest pending wait, 20 us to 1 ms (Atomics.wait adds
 * about 70 us here). A wait of t ms thus returns at most about t / 50 + 0.1 ms late (an empty
 * submit: 0.28 ms against 0.16 spinning), and a long wait costs about 1% of a core instead of all
 * of it. The event loop's other work still runs between the sleeps, each turn delayed by at most
 * one sleep (1 ms). Installed once per process, on the classes `webgpu` exports (which patches
 * GPUDevice itself the same way); where the thread cannot block (no SharedArrayBuffer or
 * Atomics.wait), waits spin as before.
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
        return trackDawnWait((original as (...a: unknown[]) => Promise<unknown>).apply(this, args));
      };
    }
    proto[patched] = true;
  };
  wrap('GPUQueue', ['onSubmittedWorkDone']);
  wrap('GPUBuffer', ['mapAsync']);
  wrap('GPUDevice', ['createComputePipelineAsync', 'popErrorScope']);
  wrap('GPUShaderModule', ['getCompilationInfo']);
}

const MAX_SLEEP_MS = 1;
const MIN_SLEEP_MS = 0.02;
/** Each sleep is the newest pending wait's age divided by this: a wait returns at most ~2% late, plus Atomics.wait's own cost. */
const SLEEP_DIVISOR = 50;
let pendingWaits = 0;
/** When the newest pending wait began: a short wait that overlaps a long one still sleeps little. */
let newestWaitStart = 0;
let sleeping = false;

/** Dawn waits tracked and not settled yet (0 when none is pending; for tests and diagnostics). */
export function pendingDawnWaits(): number {
  return pendingWaits;
}

/** Tracks `pending` and keeps the sleep loop running while anything tracked is unsettled. */
function trackDawnWait<T>(pending: Promise<T>): Promise<T> {
  pendingWaits++;
  newestWaitStart = performance.now();
  const settle = () => {
    pendingWaits--;
  };
  Promise.resolve(pending).then(settle, settle);
  if (!sleeping && blockingSleep) {
    sleeping = true;
    // blockingSleep was tried at load; nothing else in the loop throws.
    void sleepBetweenTicks().catch(() => undefined);
  }
  return pending;
}

/** Blocks the thread for `ms`, or undefined where it cannot (then the loop does not run). */
const blockingSleep: ((ms: number) => void) | undefined = (() => {
  try {
    const cell = new Int32Array(new SharedArrayBuffer(4));
    Atomics.wait(cell, 0, 0, 0);
    return (ms: number) => {
      Atomics.wait(cell, 0, 0, ms);
    };
  } catch {
    return undefined;
  }
})();

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** One event-loop turn free (finished work costs nothing), then a sleep before each further turn. */
async function sleepBetweenTicks(): Promise<void> {
  try {
    await nextTurn();
    while (pendingWaits > 0) {
      blockingSleep!(Math.min(MAX_SLEEP_MS, Math.max(MIN_SLEEP_MS, (performance.now() - newestWaitStart) / SLEEP_DIVISOR)));
      await nextTurn();
    }
  } finally {
    sleeping = false;
  }
}
