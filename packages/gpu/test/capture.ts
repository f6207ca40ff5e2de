/**
 * What a piece of work dispatches, read from the dispatch cache's capture (as the profiler reads
 * it), so a test can assert which kernel form ran. Shared by the Dawn tests and the browser cases.
 */
import type { CapturedDispatch, GpuContext } from '../src/index.js';

export async function captureDispatches(ctx: GpuContext, work: () => unknown): Promise<CapturedDispatch[]> {
  const captured: CapturedDispatch[] = [];
  ctx.dispatches.capture = captured;
  try {
    await work();
  } finally {
    ctx.dispatches.capture = undefined;
  }
  return captured;
}

/** The names of the kernels `work` dispatches, in order. */
export async function capturedKernels(ctx: GpuContext, work: () => unknown): Promise<string[]> {
  return (await captureDispatches(ctx, work)).map((d) => d.kernel);
}
