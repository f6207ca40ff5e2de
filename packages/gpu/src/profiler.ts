/**
 * Per-kernel time of a piece of GPU work (one training step, say), for benchmarks. The work runs
 * once as usual while every dispatch is captured; then each captured dispatch is replayed on its
 * own, on the same pipelines, bind groups and buffers, and timed:
 * - with GPU timestamps where the device has 'timestamp-query' (one compute pass per dispatch,
 *   its beginning and end written to a query set), which leaves out submission and CPU time
 *   (Chromium quantizes them to about 0.1 ms unless WebGPU developer features are on);
 * - otherwise with CPU timers, one submit per dispatch and `onSubmittedWorkDone`, which includes
 *   a submit's own overhead (small next to a kernel on the CPU adapters, not on a fast GPU).
 * Replaying runs the kernels on whatever the buffers hold after the work, which costs the same
 * as the real inputs for these data-independent kernels; accumulating kernels add twice, so only
 * profile work whose results are not needed. Dispatches whose buffers were destroyed meanwhile
 * are skipped and counted.
 */
import type { GpuContext } from './device.js';
import type { CapturedDispatch } from './dispatch-cache.js';

export interface KernelTime {
  kernel: string;
  /** The recorder label the dispatches came from (e.g. 'train forward', 'adamw'). */
  phase: string;
  calls: number;
  ms: number;
  /** Arithmetic of these dispatches where the kernel reports it, else undefined. */
  flops: number | undefined;
}

export interface DispatchProfile {
  clock: 'gpu-timestamps' | 'cpu';
  dispatches: number;
  /** Captured dispatches not replayed because one of their buffers was destroyed after the work. */
  skipped: number;
  /** One entry per (phase, kernel), slowest first. */
  kernels: KernelTime[];
  /** Summed kernel time per phase. */
  phases: Record<string, number>;
  totalMs: number;
}

/** Queries per resolve: two per dispatch. */
const TIMESTAMP_BATCH = 1024;

export async function profileDispatches(ctx: GpuContext, work: () => Promise<void>): Promise<DispatchProfile> {
  const cache = ctx.dispatches;
  if (cache.capture) throw new Error('profileDispatches: a profile of this context is already running.');
  const destroyed = new WeakSet<GPUBuffer>();
  const unwatch = ctx.pool.onDestroy((buffer) => destroyed.add(buffer));
  const captured: CapturedDispatch[] = [];
  cache.capture = captured;
  try {
    try {
      await work();
    } finally {
      cache.capture = undefined;
    }
    await ctx.device.queue.onSubmittedWorkDone();
    const live = captured.filter((d) => !d.buffers.some((b) => destroyed.has(b)));
    const times = ctx.features.timestampQuery ? await replayWithTimestamps(ctx, live) : await replayWithCpuTimers(ctx, live);
    return summarize(ctx.features.timestampQuery ? 'gpu-timestamps' : 'cpu', live, times, captured.length - live.length);
  } finally {
    unwatch();
  }
}

async function replayWithTimestamps(ctx: GpuContext, dispatches: CapturedDispatch[]): Promise<number[]> {
  const device = ctx.device;
  const times: number[] = [];
  const querySet = device.createQuerySet({ type: 'timestamp', count: 2 * TIMESTAMP_BATCH });
  const resolve = device.createBuffer({ size: 16 * TIMESTAMP_BATCH, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const read = device.createBuffer({ size: 16 * TIMESTAMP_BATCH, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    for (let start = 0; start < dispatches.length; start += TIMESTAMP_BATCH) {
      const batch = dispatches.slice(start, start + TIMESTAMP_BATCH);
      const encoder = device.createCommandEncoder({ label: 'profiler replay' });
      batch.forEach((d, i) => {
        const pass = encoder.beginComputePass({
          label: d.kernel,
          timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 },
        });
        pass.setPipeline(d.pipeline);
        pass.setBindGroup(0, d.bindGroup);
        pass.dispatchWorkgroups(...d.workgroups);
        pass.end();
      });
      encoder.resolveQuerySet(querySet, 0, 2 * batch.length, resolve, 0);
      encoder.copyBufferToBuffer(resolve, 0, read, 0, 16 * batch.length);
      device.queue.submit([encoder.finish()]);
      await read.mapAsync(GPUMapMode.READ, 0, 16 * batch.length);
      const ticks = new BigUint64Array(read.getMappedRange(0, 16 * batch.length).slice(0));
      read.unmap();
      for (let i = 0; i < batch.length; i++) times.push(Number(ticks[2 * i + 1]! - ticks[2 * i]!) / 1e6);
    }
    return times;
  } finally {
    querySet.destroy();
    resolve.destroy();
    read.destroy();
  }
}

async function replayWithCpuTimers(ctx: GpuContext, dispatches: CapturedDispatch[]): Promise<number[]> {
  const device = ctx.device;
  const times: number[] = [];
  for (const d of dispatches) {
    const t0 = performance.now();
    const encoder = device.createCommandEncoder({ label: 'profiler replay' });
    const pass = encoder.beginComputePass({ label: d.kernel });
    pass.setPipeline(d.pipeline);
    pass.setBindGroup(0, d.bindGroup);
    pass.dispatchWorkgroups(...d.workgroups);
    pass.end();
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
    times.push(performance.now() - t0);
  }
  return times;
}

function summarize(clock: DispatchProfile['clock'], dispatches: CapturedDispatch[], times: number[], skipped: number): DispatchProfile {
  const byKey = new Map<string, KernelTime>();
  const phases: Record<string, number> = {};
  let totalMs = 0;
  dispatches.forEach((d, i) => {
    const ms = times[i]!;
    const key = `${d.phase}\u0000${d.kernel}`;
    let entry = byKey.get(key);
    if (!entry) byKey.set(key, (entry = { kernel: d.kernel, phase: d.phase, calls: 0, ms: 0, flops: d.flops === undefined ? undefined : 0 }));
    entry.calls++;
    entry.ms += ms;
    if (entry.flops !== undefined) entry.flops += d.flops ?? 0;
    phases[d.phase] = (phases[d.phase] ?? 0) + ms;
    totalMs += ms;
  });
  const kernels = [...byKey.values()].sort((a, b) => b.ms - a.ms);
  return { clock, dispatches: dispatches.length, skipped, kernels, phases, totalMs };
}
