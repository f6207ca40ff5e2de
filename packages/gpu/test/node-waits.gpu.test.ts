// Waiting on Dawn in Node: the thread sleeps between Dawn's event ticks instead of spinning
// (createNodeGpu, src/node.ts). Measured on the test's own thread (Linux /proc/thread-self), since
// the adapter's threads (lavapipe's) count towards the process's CPU time. The gpu lane runs on
// lavapipe, where the long work below takes seconds.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CommandRecorder, createMatmulKernel, createTensor, readF32, type GpuContext, type GpuTensor } from '../src/index.js';
import { pendingDawnWaits } from '../src/node.js';
import { useNodeContext } from './node-context.js';

/** CPU seconds this thread has used: utime + stime of /proc/thread-self/stat. */
function threadCpuSeconds(): number {
  const stat = readFileSync('/proc/thread-self/stat', 'utf8');
  // Fields after the command name (which may hold spaces, so split after its closing parenthesis):
  // state is field 3, utime 14 and stime 15, in clock ticks (100 a second on Linux).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Submits about 21 GFLOP of matmuls into `c` (seconds on a CPU adapter). */
async function submitLongWork(ctx: GpuContext, c: GpuTensor): Promise<GpuTensor[]> {
  const [m, n, k] = [512, 1024, 1024];
  const a = createTensor(ctx, { shape: [m, k], label: 'a', data: new Float32Array(m * k).fill(0.5) });
  const b = createTensor(ctx, { shape: [k, n], label: 'b', data: new Float32Array(k * n).fill(0.25) });
  const kernel = await createMatmulKernel(ctx);
  const recorder = new CommandRecorder(ctx, 'long work');
  for (let i = 0; i < 20; i++) kernel.encode(recorder, { a, b, c, m, n, k });
  recorder.submit();
  return [a, b];
}

/** The wait's wall seconds and the share of them this thread spent on a CPU. */
async function measure(wait: () => Promise<unknown>): Promise<{ wall: number; busy: number }> {
  const cpu0 = threadCpuSeconds();
  const t0 = performance.now();
  await wait();
  const wall = (performance.now() - t0) / 1000;
  return { wall, busy: (threadCpuSeconds() - cpu0) / wall };
}

describe('waiting on Dawn in Node', () => {
  const gpu = useNodeContext();

  for (const [name, wait] of [
    ['queue completion (onSubmittedWorkDone)', (ctx: GpuContext) => ctx.device.queue.onSubmittedWorkDone()],
    ['a read-back (mapAsync)', (ctx: GpuContext, c: GpuTensor) => readF32(ctx, c)],
  ] as const) {
    it(`leaves the thread idle while the GPU works: ${name}`, async () => {
      const ctx = gpu();
      const c = createTensor(ctx, { shape: [512, 1024], label: 'c' });
      const operands = await submitLongWork(ctx, c);
      const { wall, busy } = await measure(() => wait(ctx, c));
      // Meaningful only if the wait was long against the 10 ms clock tick.
      expect(wall).toBeGreaterThan(0.3);
      // Spinning, as dawn.node does by itself, took three quarters of it or more here.
      expect(busy).toBeLessThan(0.25);
      expect(pendingDawnWaits()).toBe(0);
      expect((await readF32(ctx, c))[0]).toBeCloseTo(1024 * 0.125, 3);
      for (const t of [...operands, c]) t.release();
    });
  }

  it('passes a failed wait on as the same rejection and stops tracking it', async () => {
    const ctx = gpu();
    const buffer = ctx.device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    buffer.destroy();
    ctx.device.pushErrorScope('validation');
    const mapping = buffer.mapAsync(GPUMapMode.READ);
    expect(pendingDawnWaits()).toBe(1);
    await expect(mapping).rejects.toThrow();
    expect(pendingDawnWaits()).toBe(0);
    // Dawn also reports the destroyed buffer as a validation error (through the tracked popErrorScope).
    expect(await ctx.device.popErrorScope()).not.toBeNull();
    // And waits after it still settle.
    await expect(ctx.device.queue.onSubmittedWorkDone()).resolves.toBeUndefined();
    expect(pendingDawnWaits()).toBe(0);
  });
});
