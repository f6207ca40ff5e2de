import { describe, expect, it } from 'vitest';
import { createGpuContext, createTensor, readF32, type KernelDefinition } from '../src/index.js';
import { BindingLimitError, DeviceLostError, InvalidArgumentError, ShaderCompileError, WebGPUUnavailableError } from '@webtune/errors';
import { createNodeGpu } from '../src/node.js';
import { nodeContext } from './node-context.js';

describe('GPU context on Dawn', () => {
  it("asks for the adapter's real limits and reports features", async () => {
    const gpu = await createNodeGpu();
    const adapter = (await gpu.requestAdapter())!;
    const ctx = await nodeContext();
    expect(ctx.limits.maxStorageBufferBindingSize).toBe(adapter.limits.maxStorageBufferBindingSize);
    expect(ctx.limits.maxBufferSize).toBe(adapter.limits.maxBufferSize);
    expect(ctx.features.shaderF16).toBe(adapter.features.has('shader-f16'));
    expect(ctx.features.subgroups).toBe(adapter.features.has('subgroups'));
    expect(ctx.features.timestampQuery).toBe(adapter.features.has('timestamp-query'));
    expect(ctx.adapter.description.length).toBeGreaterThan(0);
    ctx.destroy();
  });

  it('leaves out features the caller disables', async () => {
    const ctx = await nodeContext({ disableFeatures: ['shader-f16'] });
    expect(ctx.features.shaderF16).toBe(false);
    ctx.destroy();
  });

  it('picks the subgroup matmul on lavapipe and refuses it without subgroups', async () => {
    const ctx = await nodeContext();
    expect(ctx.adapter.name).toMatch(/llvmpipe/);
    expect(ctx.adapter.subgroupMinSize).toBeGreaterThanOrEqual(8);
    expect(ctx.tuning).toEqual({ matmul: 'subgroup', linear: 'matmul' });
    ctx.destroy();
    const without = await nodeContext({ disableFeatures: ['subgroups'] });
    expect(without.tuning).toEqual({ matmul: 'scalar', linear: 'vec4' });
    const scalar = await nodeContext({ tuning: { matmul: 'scalar' } });
    expect(scalar.tuning).toEqual({ matmul: 'scalar', linear: 'vec4' }); // the linear rule follows a chosen kernel
    scalar.destroy();
    without.destroy();
    const error = await createGpuContext({ gpu: await createNodeGpu(), disableFeatures: ['subgroups'], tuning: { matmul: 'subgroup' } }).catch((e) => e);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect(error.message).toMatch(/subgroups.*Use 'vec4' or 'scalar'/);
  });

  it('refuses a tensor larger than one binding instead of truncating it, allocating nothing', async () => {
    const ctx = await nodeContext();
    const limit = ctx.limits.maxStorageBufferBindingSize;
    const before = ctx.memory.liveBytes;
    expect(() => createTensor(ctx, { shape: [limit / 4 + 1], label: 'too big' })).toThrowError(BindingLimitError);
    expect(ctx.memory.liveBytes).toBe(before);
    ctx.destroy();
  });

  it('accounts live and peak bytes by label, and reuses pooled buffers', async () => {
    const ctx = await nodeContext();
    const a = createTensor(ctx, { shape: [1000], label: 'activations' });
    const b = createTensor(ctx, { shape: [10], dtype: 'u8', label: 'codes' });
    const snap = ctx.memory.snapshot();
    expect(snap.byLabel.activations).toEqual({ liveBytes: 4000, peakBytes: 4000, buffers: 1 });
    expect(snap.byLabel.codes!.liveBytes).toBe(12); // padded to whole words
    const buffer = a.buffer;
    a.release();
    expect(ctx.memory.snapshot().byLabel.activations!.liveBytes).toBe(0);
    const again = createTensor(ctx, { shape: [1000], label: 'activations' });
    expect(again.buffer).toBe(buffer);
    again.release();
    b.release();
    ctx.destroy();
  });

  it('reports WGSL errors with the shader file and line', async () => {
    const ctx = await nodeContext();
    const broken: KernelDefinition = {
      name: 'broken',
      files: [
        { path: 'shaders/lib/ok.wgsl', source: 'fn helper() -> f32 { return 1.0; }\n' },
        { path: 'shaders/broken.wgsl', source: '// header\n@compute @workgroup_size(1)\nfn main() {\n  let x: f32 = undefined_thing;\n}\n' },
      ],
      bindings: [],
    };
    const error = await ctx.pipelines.get(broken, 'f32').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ShaderCompileError);
    const first = (error as ShaderCompileError).messages.find((m) => m.type === 'error')!;
    expect(first.file).toBe('shaders/broken.wgsl');
    expect(first.line).toBe(4);
    expect((error as ShaderCompileError).message).toMatch(/shaders\/broken\.wgsl:4:/);
    ctx.destroy();
  });

  it('turns a lost device into DeviceLostError for every later call', async () => {
    const ctx = await nodeContext();
    const t = createTensor(ctx, { shape: [4], label: 'x', data: new Float32Array(4) });
    ctx.device.destroy();
    const lost = await ctx.lost;
    expect(lost).toBeInstanceOf(DeviceLostError);
    expect(lost.reason).toBe('destroyed');
    expect(() => createTensor(ctx, { shape: [4], label: 'y' })).toThrowError(DeviceLostError);
    await expect(readF32(ctx, t)).rejects.toThrowError(DeviceLostError);
  });

  it('without a GPU entry point in Node says how to get one', async () => {
    await expect(createGpuContext()).rejects.toThrowError(WebGPUUnavailableError);
    await expect(createGpuContext()).rejects.toThrow(/createNodeGpu/);
  });
});
