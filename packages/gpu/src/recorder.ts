/**
 * Records kernel dispatches into one compute pass and submits them together, so a chain such
 * as LoRA forward + backward costs one submit. Uniform buffers (one per distinct Params) and bind
 * groups come from the context's DispatchCache, so a step that repeats the last step's dispatches
 * creates no WebGPU objects. When a profiler is capturing (profiler.ts), each dispatch is also
 * noted for replay.
 */
import type { GpuContext } from './device.js';
import type { CompiledKernel } from './pipeline-cache.js';
import { InvalidArgumentError } from '@webtune/errors';

export type Workgroups = readonly [number, number?, number?];

/** What a dispatch computes, for the profiler's rates; kernels that know their arithmetic say so. */
export interface DispatchCost {
  flops?: number;
}

export class CommandRecorder {
  private readonly encoder: GPUCommandEncoder;
  private pass: GPUComputePassEncoder | undefined;
  private readonly serial: number;
  private submitted = false;

  constructor(
    private readonly ctx: GpuContext,
    readonly label = 'webtune commands',
  ) {
    ctx.assertAlive();
    this.encoder = ctx.device.createCommandEncoder({ label });
    this.serial = ctx.dispatches.openRecorder(this);
  }

  dispatch(kernel: CompiledKernel, buffers: readonly GPUBuffer[], params: ArrayBuffer | undefined, workgroups: Workgroups, cost?: DispatchCost): void {
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
    const cache = this.ctx.dispatches;
    const t0 = performance.now();
    const uniform = params ? cache.uniform(params, this.serial) : undefined;
    const bindGroup = cache.bindGroup(kernel, buffers, uniform);
    this.pass ??= this.encoder.beginComputePass({ label: this.label });
    this.pass.setPipeline(kernel.pipeline);
    this.pass.setBindGroup(0, bindGroup);
    this.pass.dispatchWorkgroups(x, y, z);
    cache.stats.dispatches++;
    cache.stats.recordMs += performance.now() - t0;
    cache.capture?.push({
      kernel: kernel.definition.name, phase: this.label, pipeline: kernel.pipeline, bindGroup,
      buffers: uniform ? [...buffers, uniform] : [...buffers], workgroups: [x, y, z], flops: cost?.flops,
      constants: kernel.constants,
    });
  }

  submit(): void {
    if (this.submitted) return;
    this.submitted = true;
    const cache = this.ctx.dispatches;
    const t0 = performance.now();
    this.pass?.end();
    this.ctx.device.queue.submit([this.encoder.finish()]);
    cache.stats.submits++;
    cache.stats.recordMs += performance.now() - t0;
    cache.closeRecorder(this, this.serial);
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
