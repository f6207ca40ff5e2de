// Waiting on Dawn in Node: the main thread sleeps between Dawn's event ticks instead of spinning
// (createNodeGpu, src/node.ts). Measured on the main thread alone (Linux /proc), since the
// adapter's own threads (lavapipe's) count towards the process's CPU time.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CommandRecorder, createMatmulKernel, createTensor, readF32 } from '../src/index.js';
import { useNodeContext } from './node-context.js';

/** CPU seconds the main thread (thread id = process id) has used: utime + stime of /proc/self/task/<pid>/stat. */
function mainThreadCpuSeconds(): number {
  const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces, so split after its closing parenthesis):
  // state is field 3, utime 14 and stime 15, in clock ticks (100 a second on Linux).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

describe('waiting on Dawn in Node', () => {
  const gpu = useNodeContext();

  it('leaves the main thread idle while the GPU works', async () => {
    const ctx = gpu();
    const [m, n, k] = [512, 1024, 1024];
    const a = createTensor(ctx, { shape: [m, k], label: 'a', data: new Float32Array(m * k).fill(0.5) });
    const b = createTensor(ctx, { shape: [k, n], label: 'b', data: new Float32Array(k * n).fill(0.25) });
    const c = createTensor(ctx, { shape: [m, n], label: 'c' });
    const kernel = await createMatmulKernel(ctx);
    const recorder = new CommandRecorder(ctx, 'long work');
    // About 21 GFLOP: seconds on a CPU adapter.
    for (let i = 0; i < 20; i++) kernel.encode(recorder, { a, b, c, m, n, k });
    recorder.submit();
    const cpu0 = mainThreadCpuSeconds();
    const t0 = performance.now();
    await ctx.device.queue.onSubmittedWorkDone();
    const wall = (performance.now() - t0) / 1000;
    const cpu = mainThreadCpuSeconds() - cpu0;
    // The test means something only if the wait was long against the 10 ms clock tick.
    expect(wall).toBeGreaterThan(0.3);
    // Spinning, as dawn.node does by itself, takes all of it (a core for the whole wait).
    expect(cpu / wall).toBeLessThan(0.25);
    // The result is still read back through the (wrapped) mapAsync.
    const out = await readF32(ctx, c);
    expect(out[0]).toBeCloseTo(k * 0.125, 3);
    for (const t of [a, b, c]) t.release();
  });

  it('passes a failed wait on as the same rejection', async () => {
    const ctx = gpu();
    const buffer = ctx.device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    buffer.destroy();
    ctx.device.pushErrorScope('validation');
    await expect(buffer.mapAsync(GPUMapMode.READ)).rejects.toThrow();
    // Dawn also reports the destroyed buffer as a validation error (through the wrapped popErrorScope).
    expect(await ctx.device.popErrorScope()).not.toBeNull();
    // And waits after it still settle.
    await expect(ctx.device.queue.onSubmittedWorkDone()).resolves.toBeUndefined();
  });
});
