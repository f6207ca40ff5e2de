/** Worker side of the start page: owns its own GPU device and runs a matmul when asked. */
import * as Comlink from 'comlink';
import { createGpuContext, createTensor, matmul, matmulRef, readF32, type GpuContext } from '@webtune/gpu';

let ctx: GpuContext | undefined;

const api = {
  async run(size: number) {
    ctx ??= await createGpuContext();
    const a = Float32Array.from({ length: size * size }, (_, i) => Math.sin(i) * 0.5);
    const b = Float32Array.from({ length: size * size }, (_, i) => Math.cos(i) * 0.5);
    const ta = createTensor(ctx, { shape: [size, size], data: a, label: 'A' });
    const tb = createTensor(ctx, { shape: [size, size], data: b, label: 'B' });
    // One untimed run compiles the pipeline.
    (await matmul(ctx, ta, tb)).release();
    const start = performance.now();
    const tc = await matmul(ctx, ta, tb);
    const c = await readF32(ctx, tc);
    const ms = performance.now() - start;
    // Check a few rows against the CPU reference rather than the whole product.
    const rows = Math.min(size, 4);
    const expected = matmulRef(a.subarray(0, rows * size), b, { m: rows, n: size, k: size });
    let maxError = 0;
    for (let i = 0; i < expected.length; i++) maxError = Math.max(maxError, Math.abs(expected[i]! - c[i]!));
    for (const t of [ta, tb, tc]) t.release();
    return { ms, gflops: (2 * size ** 3) / ms / 1e6, maxError, peakBytes: ctx.memory.peakBytes };
  },
};

export type MatmulWorkerApi = typeof api;
Comlink.expose(api);
