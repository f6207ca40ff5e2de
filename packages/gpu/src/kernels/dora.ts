/**
 * DoRA (weight-decomposed low-rank adaptation): the per-row weight norm of the adapted weight,
 * ||W + s B A||_2 over each output row, and what DoRA's forward divides by it (PEFT
 * tuners/lora/dora.py, get_weight_norm and m / weight_norm). W is the family's `dtype` (f32, or
 * f16 storage with shader-f16), dense; A, B, the magnitude and every output are f32, and all
 * arithmetic is f32.
 * Shader: shaders/dora-norm.wgsl (with shaders/lib/workgroup-sum.wgsl). CPU reference: dora.ref.ts.
 * Expected values: PyTorch (scripts/make_dora_fixtures.py).
 */
import sumLib from '../shaders/lib/workgroup-sum.wgsl.js';
import doraNormSource from '../shaders/dora-norm.wgsl.js';
import type { GpuContext } from '../device.js';
import { InvalidArgumentError } from '@webtune/errors';
import type { ElementType, KernelDefinition } from '../pipeline-cache.js';
import { packParams, type CommandRecorder } from '../recorder.js';
import { createTensor, type GpuTensor } from '../tensor.js';
import { grid1D } from './grid.js';
import { requireCount, requireDistinct, requireElementType, requireFinite, requireTensor } from './tensor-checks.js';

/** shaders/dora-norm.wgsl: weight (elem), a, b, magnitude, norm, invNorm, mOverNorm (f32), params. */
export const DORA_NORM_KERNEL: KernelDefinition = {
  name: 'dora-norm',
  files: [{ path: 'shaders/lib/workgroup-sum.wgsl', source: sumLib }, { path: 'shaders/dora-norm.wgsl', source: doraNormSource }],
  bindings: ['read', 'read', 'read', 'read', 'read-write', 'read-write', 'read-write', 'uniform'],
};

/**
 * Invocations per row, a power of two. Fixed, so the order of the sum of squares, and hence the
 * result bits, never change between calls.
 */
const WG = 128;
/** The largest LoRA rank weightNorm takes: B's row is staged in a workgroup array of this size. */
const MAX_RANK = 64;
/** Bits of Params.outputs, as in the shader. */
const WRITE_NORM = 1;
const WRITE_INV_NORM = 2;
const WRITE_M_OVER_NORM = 4;

/**
 * The options of {@link createDoraKernels}.
 *
 * @example
 * ```ts
 * const dora = await createDoraKernels(ctx, { dtype: 'f16' }); // the frozen weight is f16
 * ```
 */
export interface DoraKernelOptions {
  /** Element type of the frozen weight W; default 'f32', 'f16' needs shader-f16. A, B, magnitude and outputs are always f32. */
  dtype?: ElementType;
}

/**
 * Arguments of {@link DoraKernels.weightNorm}. Request any of norm, invNorm and mOverNorm (at
 * least one); each is f32 [out], a tensor of its own.
 *
 * @example
 * ```ts
 * const args: DoraWeightNormArgs = { weight: w, a: loraA, b: loraB, scale: alpha / rank, magnitude: m,
 *   mOverNorm: magScale, out: 4096, in: 4096, rank };
 * ```
 */
export interface DoraWeightNormArgs {
  /** W [out, in], the family's dtype, dense (an NF4 base dequantized into a scratch tensor first). */
  weight: GpuTensor;
  /** LoRA A [rank, in], f32. */
  a: GpuTensor;
  /** LoRA B [out, rank], f32. */
  b: GpuTensor;
  /** The LoRA scaling s (alpha / rank, or alpha / sqrt(rank) with rsLoRA); finite. */
  scale: number;
  /** DoRA's magnitude m [out], f32; needed for mOverNorm. */
  magnitude?: GpuTensor;
  /** Written: [out], f32, ||W + s B A||_2 of each row (PEFT's weight_norm). */
  norm?: GpuTensor;
  /** Written: [out], f32, 1 / norm. */
  invNorm?: GpuTensor;
  /** Written: [out], f32, magnitude / norm (DoRA's per-row output scale). */
  mOverNorm?: GpuTensor;
  /** Rows of W (the Linear's out_features). */
  out: number;
  /** Columns of W (the Linear's in_features). */
  in: number;
  /** The LoRA rank r, 1 to 64. */
  rank: number;
}

/**
 * The kernels made by {@link createDoraKernels}.
 *
 * @example
 * ```ts
 * const dora: DoraKernels = await createDoraKernels(ctx);
 * dora.weightNorm(rec, { weight: w, a, b, scale, norm, out, in: inFeatures, rank });
 * ```
 */
export interface DoraKernels {
  /** Element type of the frozen weight. */
  readonly dtype: ElementType;
  /**
   * Per row o of W: norm[o] = sqrt(sum over i of (W[o, i] + s * (B A)[o, i])^2), invNorm[o] =
   * 1 / norm[o], mOverNorm[o] = magnitude[o] / norm[o], in f32, writing only the outputs given.
   * One workgroup of 128 invocations per row, no atomics: the same inputs give the same bits on
   * every call. B A is never materialized. A row whose norm is 0 has an undefined invNorm and
   * mOverNorm (PyTorch gives inf).
   */
  weightNorm(rec: CommandRecorder, args: DoraWeightNormArgs): void;
}

/**
 * Kernels for DoRA: the weight norm ||W + s B A|| per output row that DoRA divides the adapted
 * Linear's output by (PEFT's DoraLinearLayer.get_weight_norm), and the magnitude scale m / norm.
 *
 * For an NF4 (QLoRA) base, dequantize W into a dense scratch tensor of the family's dtype with
 * `createNF4DequantizeKernel` in the same recorder, then call weightNorm on the scratch.
 *
 * @example
 * ```ts
 * const dora = await createDoraKernels(ctx); // or (ctx, { dtype: 'f16' }) for an f16 weight
 * const rec = new CommandRecorder(ctx, 'dora norm');
 * // Dense base W [out, in]: the per-row scale m / ||W + s B A|| for the forward pass
 * dora.weightNorm(rec, { weight: w, a: loraA, b: loraB, scale: alpha / rank, magnitude: m,
 *   mOverNorm: magScale, out, in: inFeatures, rank });
 * // NF4 base: dequantize into a scratch first, then the same call
 * const dequantize = await createNF4DequantizeKernel(ctx, { blockSize: 64, doubleQuant: true });
 * dequantize.encode(rec, { weight: nf4Weight, output: scratch });
 * dora.weightNorm(rec, { weight: scratch, a: loraA, b: loraB, scale: alpha / rank, norm, invNorm,
 *   out, in: inFeatures, rank });
 * rec.submit();
 * ```
 */
export async function createDoraKernels(ctx: GpuContext, options: DoraKernelOptions = {}): Promise<DoraKernels> {
  const dtype = requireElementType(ctx, 'createDoraKernels', options.dtype);
  const pipeline = await ctx.pipelines.get(DORA_NORM_KERNEL, dtype, { WG, MAX_RANK });
  const maxPerDimension = ctx.limits.maxComputeWorkgroupsPerDimension;
  // WebGPU refuses two writable bindings of one buffer, so each output slot not asked for gets
  // its own 1-element stand-in (never written: the shader writes only the slots in `outputs`),
  // made on first need and kept for the family's lifetime, as attention's unused lse is.
  const unused: GpuTensor[] = [];
  const standIn = (i: number) => (unused[i] ??= createTensor(ctx, { shape: [1], label: `dora-norm output ${i} (unused)` }));
  return {
    dtype,
    weightNorm(rec, args) {
      const op = 'dora weightNorm';
      requireCount(op, 'out', args.out);
      requireCount(op, 'in', args.in);
      requireCount(op, 'rank', args.rank);
      if (args.rank > MAX_RANK) throw new InvalidArgumentError(`${op}: rank must be at most ${MAX_RANK}, got ${args.rank}.`);
      requireFinite(op, 'scale', args.scale);
      const { out, in: cols, rank } = args;
      requireTensor(op, 'weight', args.weight, out * cols, `[${out}, ${cols}]`, dtype);
      requireTensor(op, 'a', args.a, rank * cols, `[${rank}, ${cols}]`, 'f32');
      requireTensor(op, 'b', args.b, out * rank, `[${out}, ${rank}]`, 'f32');
      if (args.magnitude) requireTensor(op, 'magnitude', args.magnitude, out, `[${out}]`, 'f32');
      const written: Record<string, GpuTensor> = {};
      if (args.norm) written.norm = args.norm;
      if (args.invNorm) written.invNorm = args.invNorm;
      if (args.mOverNorm) written.mOverNorm = args.mOverNorm;
      if (!args.norm && !args.invNorm && !args.mOverNorm) throw new InvalidArgumentError(`${op}: give at least one output tensor (norm, invNorm or mOverNorm).`);
      if (args.mOverNorm && !args.magnitude) {
        throw new InvalidArgumentError(`${op}: mOverNorm "${args.mOverNorm.label}" needs the magnitude tensor; pass magnitude, or ask for norm or invNorm only.`);
      }
      for (const [name, t] of Object.entries(written)) requireTensor(op, name, t, out, `[${out}]`, 'f32');
      requireDistinct(op, written, { weight: args.weight, a: args.a, b: args.b, magnitude: args.magnitude });
      const outputs = (args.norm ? WRITE_NORM : 0) | (args.invNorm ? WRITE_INV_NORM : 0) | (args.mOverNorm ? WRITE_M_OVER_NORM : 0);
      const g = grid1D(out, 1, maxPerDimension);
      let standIns = 0;
      const slot = (t: GpuTensor | undefined) => (t ?? standIn(standIns++)).buffer;
      // Without a magnitude the shader never reads binding 3; a fills it (read-only bindings may share a buffer).
      rec.dispatch(
        pipeline,
        [args.weight.buffer, args.a.buffer, args.b.buffer, (args.magnitude ?? args.a).buffer,
          slot(args.norm), slot(args.invNorm), slot(args.mOverNorm)],
        packParams([['u32', out], ['u32', cols], ['u32', rank], ['f32', args.scale], ['u32', g.rowStride], ['u32', outputs]]),
        g.workgroups,
      );
    },
  };
}
