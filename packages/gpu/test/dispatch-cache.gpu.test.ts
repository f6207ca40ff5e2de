/**
 * The dispatch cache (bind groups and uniform buffers kept across submits) and the profiler that
 * replays captured dispatches, on Dawn. Expected products come from matmulRef, the CPU reference
 * that references.unit.test.ts checks against PyTorch.
 */
import { describe, expect, it } from 'vitest';
import { CommandRecorder, createMatmulKernel, createTensor, matmulRef, profileDispatches, readF32, type GpuContext, type GpuTensor } from '../src/index.js';
import { nodeContext, useNodeContext } from './node-context.js';
import { randn, worstError } from './random.js';

const M = 8;
const N = 12;
const K = 16;

describe('dispatch cache on Dawn', () => {
  const gpu = useNodeContext();
  const a = randn(M * K, 1);
  const b = randn(K * N, 2);
  const expected = (alpha: number) => matmulRef(a, b, { m: M, n: N, k: K, alpha });

  async function setUp(ctx: GpuContext) {
    const kernel = await createMatmulKernel(ctx);
    const ta = createTensor(ctx, { shape: [M, K], data: a, label: 'A' });
    const tb = createTensor(ctx, { shape: [K, N], data: b, label: 'B' });
    const run = (rec: CommandRecorder, c: GpuTensor, alpha = 1) => kernel.encode(rec, { a: ta, b: tb, c, m: M, n: N, k: K, alpha });
    return { ta, tb, run, release: () => [ta, tb].forEach((t) => t.release()) };
  }
  const expectProduct = async (ctx: GpuContext, c: GpuTensor, alpha: number) => {
    expect(worstError(await readF32(ctx, c), expected(alpha), 1e-5, 1e-5).ratio).toBeLessThanOrEqual(1);
  };

  it('a dispatch repeated in a later recorder creates no bind group and no uniform buffer', async () => {
    const ctx = gpu();
    const s = await setUp(ctx);
    const c = createTensor(ctx, { shape: [M, N], label: 'C' });
    const stats = ctx.dispatches.stats;
    const first = new CommandRecorder(ctx, 'first');
    s.run(first, c);
    first.submit();
    const created = { bindGroups: stats.bindGroupsCreated, uniforms: stats.uniformsCreated };
    const second = new CommandRecorder(ctx, 'second');
    s.run(second, c);
    second.submit();
    expect(stats.bindGroupsCreated).toBe(created.bindGroups);
    expect(stats.uniformsCreated).toBe(created.uniforms);
    await expectProduct(ctx, c, 1);
    c.release();
    s.release();
  });

  it('equal Params share one uniform buffer; other buffers get their own bind group', async () => {
    const ctx = gpu();
    const s = await setUp(ctx);
    const [c1, c2] = [1, 2].map((i) => createTensor(ctx, { shape: [M, N], label: `C${i}` }));
    const stats = ctx.dispatches.stats;
    const before = { bindGroups: stats.bindGroupsCreated, uniforms: stats.uniformsCreated };
    const rec = new CommandRecorder(ctx, 'two outputs');
    s.run(rec, c1!, 3.5);
    s.run(rec, c2!, 3.5);
    rec.submit();
    expect(stats.uniformsCreated - before.uniforms).toBe(1);
    expect(stats.bindGroupsCreated - before.bindGroups).toBe(2);
    await expectProduct(ctx, c1!, 3.5);
    await expectProduct(ctx, c2!, 3.5);
    [c1, c2].forEach((t) => t!.release());
    s.release();
  });

  it('drops the bind groups of a destroyed buffer, and a new buffer binds correctly', async () => {
    const ctx = await nodeContext(); // its own, so the cache holds only this test's entries
    const s = await setUp(ctx);
    const c = createTensor(ctx, { shape: [M, N], label: 'C' });
    let rec = new CommandRecorder(ctx, 'before trim');
    s.run(rec, c, 2);
    rec.submit();
    await expectProduct(ctx, c, 2);
    expect(ctx.dispatches.size.bindGroups).toBe(1);
    c.release();
    ctx.pool.trim(); // destroys the parked C
    expect(ctx.dispatches.size.bindGroups).toBe(0);
    expect(ctx.dispatches.size.uniforms).toBe(1); // still alive, still bindable
    const fresh = createTensor(ctx, { shape: [M, N], label: 'C again' });
    rec = new CommandRecorder(ctx, 'after trim');
    s.run(rec, fresh, 2);
    rec.submit();
    await expectProduct(ctx, fresh, 2);
    fresh.release();
    s.release();
    expect(ctx.uncapturedErrors).toEqual([]);
    ctx.destroy();
    expect(ctx.dispatches.size).toEqual({ bindGroups: 0, uniforms: 0 });
  });

  it('evicts past its capacity, but never a uniform buffer that a recorder still open has bound', async () => {
    const ctx = gpu();
    const cache = ctx.dispatches;
    const saved = { ...cache.capacity };
    cache.capacity.uniforms = 2;
    cache.capacity.bindGroups = 2;
    try {
      const s = await setUp(ctx);
      const held = createTensor(ctx, { shape: [M, N], label: 'held' });
      const open = new CommandRecorder(ctx, 'held open');
      s.run(open, held, 0.25);
      // Meanwhile other recorders bind other Params and submit, which evicts the oldest entries.
      const outputs: GpuTensor[] = [];
      for (const alpha of [2, 3, 4, 5, 6]) {
        const c = createTensor(ctx, { shape: [M, N], label: `alpha ${alpha}` });
        const rec = new CommandRecorder(ctx, `alpha ${alpha}`);
        s.run(rec, c, alpha);
        rec.submit();
        outputs.push(c);
      }
      // The capacity: the open recorder's uniform (oldest, yet kept) and the newest.
      expect(cache.size.uniforms).toBe(2);
      ctx.device.pushErrorScope('validation');
      open.submit();
      expect(await ctx.device.popErrorScope()).toBeNull();
      await expectProduct(ctx, held, 0.25);
      for (const [i, c] of outputs.entries()) await expectProduct(ctx, c, i + 2);
      expect(cache.size.uniforms).toBeLessThanOrEqual(2);
      expect(cache.size.bindGroups).toBeLessThanOrEqual(2);
      [held, ...outputs].forEach((t) => t.release());
      s.release();
    } finally {
      Object.assign(cache.capacity, saved);
    }
  });

  it('without reuse across submits, every dispatch creates its own, as before the cache, and computes the same', async () => {
    const ctx = gpu();
    const s = await setUp(ctx);
    const c = createTensor(ctx, { shape: [M, N], label: 'C' });
    const stats = ctx.dispatches.stats;
    ctx.dispatches.reuseAcrossSubmits = false;
    try {
      const before = { bindGroups: stats.bindGroupsCreated, uniforms: stats.uniformsCreated, size: ctx.dispatches.size };
      for (let i = 0; i < 2; i++) {
        const rec = new CommandRecorder(ctx, `no reuse ${i}`);
        s.run(rec, c, 1.5);
        s.run(rec, c, 1.5);
        rec.submit();
        // Its uniform buffers went back to the pool after the submit.
        expect(ctx.memory.snapshot().byLabel['uniforms']?.liveBytes ?? 0).toBe(0);
      }
      expect(stats.bindGroupsCreated - before.bindGroups).toBe(4);
      expect(stats.uniformsCreated - before.uniforms).toBe(4);
      expect(ctx.dispatches.size).toEqual(before.size);
      await expectProduct(ctx, c, 1.5);
    } finally {
      ctx.dispatches.reuseAcrossSubmits = true;
    }
    c.release();
    s.release();
  });
});

describe('profiler on Dawn', () => {
  const gpu = useNodeContext();

  it('times every captured dispatch by kernel and phase, and skips what was destroyed', async () => {
    const ctx = gpu();
    const kernel = await createMatmulKernel(ctx);
    const a = createTensor(ctx, { shape: [64, 64], data: randn(64 * 64, 3), label: 'A' });
    const b = createTensor(ctx, { shape: [64, 64], data: randn(64 * 64, 4), label: 'B' });
    const kept = createTensor(ctx, { shape: [64, 64], label: 'kept' });
    const profile = await profileDispatches(ctx, async () => {
      const forward = new CommandRecorder(ctx, 'phase one');
      for (let i = 0; i < 3; i++) kernel.encode(forward, { a, b, c: kept, m: 64, n: 64, k: 64 });
      forward.submit();
      const temporary = createTensor(ctx, { shape: [64, 64], label: 'temporary' });
      const other = new CommandRecorder(ctx, 'phase two');
      kernel.encode(other, { a, b, c: temporary, m: 64, n: 64, k: 64 });
      other.submit();
      await ctx.device.queue.onSubmittedWorkDone();
      ctx.pool.destroy(temporary.buffer);
    });
    expect(profile.clock).toBe(ctx.features.timestampQuery ? 'gpu-timestamps' : 'cpu');
    expect(profile.dispatches).toBe(3);
    expect(profile.skipped).toBe(1);
    expect(Object.keys(profile.phases)).toEqual(['phase one']);
    expect(profile.kernels).toHaveLength(1);
    expect(profile.kernels[0]!.calls).toBe(3);
    expect(profile.kernels[0]!.ms).toBeGreaterThan(0);
    expect(profile.totalMs).toBeCloseTo(profile.kernels[0]!.ms, 6);
    expect(ctx.dispatches.capture).toBeUndefined();
    expect(ctx.uncapturedErrors).toEqual([]);
    [a, b, kept].forEach((t) => t.release());
  });
});
