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
 * (`GPUBufferUsage`, ...) that kernels use, once per process.
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
  cached = dawn.create(dawnOptions);
  return cached;
}
