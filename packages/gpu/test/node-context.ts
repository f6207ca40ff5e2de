/**
 * The gpu lane's device: Dawn in Node. Under CI=true a missing adapter fails the run; elsewhere
 * it also fails, with the install command, because a silently skipped GPU lane proves nothing.
 */
import { afterAll, beforeAll, expect } from 'vitest';
import { CommandRecorder, createGpuContext, type CreateGpuContextOptions, type GpuContext } from '../src/index.js';
import { createNodeGpu } from '../src/node.js';

export async function nodeContext(options: Pick<CreateGpuContextOptions, 'disableFeatures' | 'tuning'> = {}): Promise<GpuContext> {
  try {
    return await createGpuContext({ gpu: await createNodeGpu(), ...options });
  } catch (error) {
    throw new Error(
      `The gpu test lane needs a WebGPU adapter in Node (Dawn). On Debian 12 install Mesa >= 24 lavapipe: ` +
        `sudo scripts/install-system-deps.sh (mesa-vulkan-drivers from bookworm-backports). Cause: ${(error as Error).message}`,
      { cause: error },
    );
  }
}

/**
 * Registers a Dawn context for the calling test file: created before its tests, checked for
 * uncaptured GPU errors and destroyed after them. Returns a getter.
 */
export function useNodeContext(options: Parameters<typeof nodeContext>[0] = {}): () => GpuContext {
  let ctx: GpuContext | undefined;
  beforeAll(async () => {
    ctx = await nodeContext(options);
  });
  afterAll(() => {
    expect(ctx!.uncapturedErrors.map((e) => e.message)).toEqual([]);
    ctx!.destroy();
  });
  return () => ctx!;
}

/** Records `body` into one command buffer on `ctx`, submits it, and fails on any validation error. */
export async function recordValidated(ctx: GpuContext, label: string, body: (rec: CommandRecorder) => void): Promise<void> {
  ctx.device.pushErrorScope('validation');
  const rec = new CommandRecorder(ctx, label);
  body(rec);
  rec.submit();
  const error = await ctx.device.popErrorScope();
  expect(error?.message ?? null, `validation error in ${label}`).toBeNull();
}
