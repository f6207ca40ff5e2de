/**
 * Records kernel dispatches into one compute pass and submits them together, so a chain such
 * as LoRA forward + backward costs one submit. Each dispatch gets its own small uniform buffer
 * holding its `Params`; they are destroyed right after submit (WebGPU keeps them alive until
 * the GPU is done with them).
 */
import type { GpuContext } from './device.js';
import type { CompiledKernel } from './pipeline-cache.js';
import { InvalidArgumentError } from '@webtune/errors';

export type Workgroups = readonly [number, number?, number?];

export class CommandRecorder {
  private readonly encoder: GPUCommandEncoder;
  private pass: GPUComputePassEncoder | undefined;
  private readonly uniforms: GPUBuffer[] = [];
  private submitted = false;

  constructor(
    private readonly ctx: GpuContext,
    private readonly label = 'webtune commands',
  ) {
    ctx.assertAlive();
    this.encoder = ctx.device.createCommandEncoder({ label });
  }

  dispatch(kernel: CompiledKernel, buffers: readonly GPUBuffer[], params: ArrayBuffer | undefined, workgroups: Workgroups): void {
    if (this.submitted) throw new InvalidArgumentError(`CommandRecorder "${this.label}" was already submitted.`);
    const [x, y = 1, z = 1] = workgroups;
    const maxGroups = this.ctx.limits.maxComputeWorkgroupsPerDimension;
    if (x > maxGroups || y > maxGroups || z > maxGroups) {
      throw new InvalidArgumentError(
        `${kernel.definition.name}: dispatch of [${x}, ${y}, ${z}] workgroups exceeds this adapter's ` +
          `maxComputeWorkgroupsPerDimension (${maxGroups}); split the work into smaller calls.`,
      );
    }
    if (x === 0 || y === 0 || z === 0) return;
    const entries: GPUBindGroupEntry[] = buffers.map((buffer, binding) => ({ binding, resource: { buffer } }));
    if (params) {
      const uniform = this.ctx.pool.acquire(params.byteLength, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, 'uniforms');
      this.ctx.device.queue.writeBuffer(uniform, 0, params);
      this.uniforms.push(uniform);
      entries.push({ binding: buffers.length, resource: { buffer: uniform } });
    }
    const bindGroup = this.ctx.device.createBindGroup({
      label: `${kernel.definition.name} bind group`,
      layout: kernel.layout,
      entries,
    });
    this.pass ??= this.encoder.beginComputePass({ label: this.label });
    this.pass.setPipeline(kernel.pipeline);
    this.pass.setBindGroup(0, bindGroup);
    this.pass.dispatchWorkgroups(x, y, z);
  }

  submit(): void {
    if (this.submitted) return;
    this.submitted = true;
    this.pass?.end();
    this.ctx.device.queue.submit([this.encoder.finish()]);
    // Uniform buffers go back to the pool: a later writeBuffer to one is ordered after this submit.
    for (const uniform of this.uniforms) this.ctx.pool.release(uniform);
  }
}

/** Packs a Params struct of u32 and f32 fields (in declaration order) into 16-byte-aligned bytes. */
export function packParams(fields: ReadonlyArray<readonly ['u32' | 'f32' | 'i32', number]>): ArrayBuffer {
  const bytes = new ArrayBuffer(Math.max(16, Math.ceil((fields.length * 4) / 16) * 16));
  const view = new DataView(bytes);
  fields.forEach(([type, value], i) => {
    if (type === 'f32') view.setFloat32(i * 4, value, true);
    else if (type === 'i32') view.setInt32(i * 4, value, true);
    else view.setUint32(i * 4, value, true);
  });
  return bytes;
}
