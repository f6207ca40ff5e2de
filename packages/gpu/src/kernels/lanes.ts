/**
 * Elements per invocation in the elementwise and per-row kernels (activations, norms, RoPE,
 * axpy): four, one vec4 access, wherever the sizes are multiples of 4, as every common model's
 * hidden, MLP and half-head sizes are; one otherwise. Both forms are compiled when a kernel is
 * created. On the CPU adapters each access whose address differs across lanes is a
 * gather, and one 16-byte access replaces four: on lavapipe the 135M step's SwiGLU forward ran
 * about 2x faster (1.2 vs 2.3 ms at 256 x 1552) and its RMSNorm forward 2x (0.64 vs 1.31 ms at
 * 256 x 576, with 16 invocations a row; issue 22).
 *
 * Each shader is written once over the aliases `velem` (storage: elem or vec4<elem>) and `vf32`
 * (arithmetic: f32 or vec4<f32>), the constant LANES and `lane_sum` (a vf32's elements added),
 * which the file prepended here declares.
 */
import type { GpuContext } from '../device.js';
import type { CompiledKernel, ElementType, KernelDefinition, OverrideConstants } from '../pipeline-cache.js';
import { grid1D, type Grid } from './grid.js';

export type Lanes = 1 | 4;
export const VECTOR_LANES = 4;

/** 4 when `count` is a multiple of 4, else 1. */
export function lanesFor(count: number): Lanes {
  return count % VECTOR_LANES === 0 ? VECTOR_LANES : 1;
}

const ALIASES: Record<Lanes, string> = {
  1: 'const LANES = 1u;\nalias velem = elem;\nalias vf32 = f32;\nfn lane_sum(v: f32) -> f32 { return v; }\n',
  4: 'const LANES = 4u;\nalias velem = vec4<elem>;\nalias vf32 = vec4<f32>;\nfn lane_sum(v: vec4<f32>) -> f32 { return (v.x + v.y) + (v.z + v.w); }\n',
};

/** Both forms of a kernel written over the lane aliases; the vec4 one is named `<name>-vec4`. */
export function laneForms(definition: KernelDefinition): Record<Lanes, KernelDefinition> {
  const of = (lanes: Lanes): KernelDefinition => ({
    ...definition,
    name: lanes === 4 ? `${definition.name}-vec4` : definition.name,
    files: [{ path: `<lanes ${lanes}>`, source: ALIASES[lanes] }, ...definition.files],
  });
  return { 1: of(1), 4: of(4) };
}

/** Compiles both forms of a kernel with the same constants. */
export async function compileLaneForms(
  ctx: GpuContext, forms: Record<Lanes, KernelDefinition>, dtype: ElementType, constants: OverrideConstants = {},
): Promise<Record<Lanes, CompiledKernel>> {
  const [scalar, vector] = await Promise.all([ctx.pipelines.get(forms[1], dtype, constants), ctx.pipelines.get(forms[4], dtype, constants)]);
  return { 1: scalar, 4: vector };
}

/** A one-dimensional dispatch over `size` elements: the form it takes, its vector count and grid. */
export function laneGrid(ctx: GpuContext, size: number, workgroupSize: number): { lanes: Lanes; count: number; grid: Grid } {
  const lanes = lanesFor(size);
  const count = size / lanes;
  return { lanes, count, grid: grid1D(count, workgroupSize, ctx.limits.maxComputeWorkgroupsPerDimension) };
}
