/**
 * Rotary position embedding (RoPE) as HF transformers computes it: the cos/sin tables on the CPU
 * (`ropeTables`, the same float32 steps as ROPE_INIT_FUNCTIONS + LlamaRotaryEmbedding) and an
 * in-place rotation on the GPU in the rotate_half convention. x may be f32 or f16 (`dtype`; f16
 * storage, f32 arithmetic); the tables are always f32. Shader: shaders/rope.wgsl.
 * Reference values: scripts/make_attention_fixtures.py (PyTorch).
 */
import source from '../shaders/rope.wgsl.js';
import type { GpuContext } from '../device.js';
import { InvalidArgumentError } from '@webtune/errors';
import { requireElementType } from './tensor-checks.js';
import type { ElementType, KernelDefinition } from '../pipeline-cache.js';
import { packParams, type CommandRecorder } from '../recorder.js';
import type { GpuTensor } from '../tensor.js';
import { grid1D } from './grid.js';
import { lanesFor, laneForms } from './lanes.js';

export type RopeScaling =
  | { type: 'default' }
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number };

export interface RopeTableOptions {
  headDim: number;
  /** rope_theta (the frequency base), e.g. 10000 or 500000. */
  theta: number;
  scaling: RopeScaling;
  /** Rows of the tables: positions 0 .. positions - 1. */
  positions: number;
}

export interface RopeTables {
  /** [positions, headDim / 2] */
  cos: Float32Array;
  /** [positions, headDim / 2] */
  sin: Float32Array;
  /** HF's attention_scaling, multiplied into cos and sin; 1 for 'default', 'linear' and 'llama3'. */
  attentionScaling: number;
  /** [headDim / 2] the float32 inverse frequencies the tables were built from. */
  invFreq: Float32Array;
}

const f32 = Math.fround;

/**
 * inv_freq as HF computes it in float32 tensors: 1 / base ** (arange(0, dim, 2) / dim), then the
 * 'linear' or 'llama3' adjustment. Every step is rounded to float32 as torch does; the power is
 * correctly rounded here, where torch's vectorized powf may be 1 ulp away for some dims.
 */
function inverseFrequencies(headDim: number, theta: number, scaling: RopeScaling): Float32Array {
  const half = headDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = f32(1 / f32(Math.pow(f32(theta), f32((2 * i) / headDim))));
  if (scaling.type === 'linear') {
    for (let i = 0; i < half; i++) inv[i] = f32(inv[i]! / f32(scaling.factor));
  } else if (scaling.type === 'llama3') {
    // transformers' _compute_llama3_parameters; `scalar / tensor` is reciprocal(tensor) * scalar in torch.
    const factor = f32(scaling.factor);
    const low = scaling.lowFreqFactor;
    const high = scaling.highFreqFactor;
    const old = scaling.originalMaxPositionEmbeddings;
    const lowFreqWavelen = f32(old / low);
    const highFreqWavelen = f32(old / high);
    const twoPi = f32(2 * Math.PI);
    for (let i = 0; i < half; i++) {
      const freq = inv[i]!;
      const wavelen = f32(f32(1 / freq) * twoPi);
      const llama = wavelen > lowFreqWavelen ? f32(freq / factor) : freq;
      const smooth = f32(f32(f32(f32(1 / wavelen) * f32(old)) - f32(low)) / f32(high - low));
      const smoothed = f32(f32(f32(f32(1 - smooth) * llama) / factor) + f32(smooth * llama));
      const medium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
      inv[i] = medium ? smoothed : llama;
    }
  }
  return inv;
}

/**
 * cos/sin tables [positions, headDim / 2] for `RopeKernel.apply`, computed as HF transformers'
 * LlamaRotaryEmbedding does: angle = f32(position) * inv_freq rounded to float32, then cos and
 * sin of that float32 angle (here in float64, rounded to float32).
 *
 * @example
 * ```ts
 * const { cos, sin } = ropeTables({ headDim: 64, theta: 500000, positions: 2048,
 *   scaling: { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } });
 * ```
 */
export function ropeTables(options: RopeTableOptions): RopeTables {
  const { headDim, theta, scaling, positions } = options;
  if (!Number.isInteger(headDim) || headDim < 2 || headDim % 2 !== 0) {
    throw new InvalidArgumentError(`ropeTables: headDim must be a positive even integer, got ${headDim}.`);
  }
  if (!Number.isInteger(positions) || positions < 1) {
    throw new InvalidArgumentError(`ropeTables: positions must be a positive integer, got ${positions}.`);
  }
  if (!(theta > 0)) throw new InvalidArgumentError(`ropeTables: theta must be positive, got ${theta}.`);
  if (scaling.type !== 'default' && !(scaling.factor > 0)) {
    throw new InvalidArgumentError(`ropeTables: ${scaling.type} scaling needs a positive factor, got ${scaling.factor}.`);
  }
  if (scaling.type === 'llama3' && !(scaling.highFreqFactor > scaling.lowFreqFactor && scaling.lowFreqFactor > 0)) {
    throw new InvalidArgumentError(
      `ropeTables: llama3 scaling needs highFreqFactor > lowFreqFactor > 0, got ${scaling.highFreqFactor} and ${scaling.lowFreqFactor}.`,
    );
  }
  const half = headDim / 2;
  const invFreq = inverseFrequencies(headDim, theta, scaling);
  const cos = new Float32Array(positions * half);
  const sin = new Float32Array(positions * half);
  for (let p = 0; p < positions; p++) {
    const position = f32(p);
    for (let j = 0; j < half; j++) {
      const angle = f32(position * invFreq[j]!);
      cos[p * half + j] = Math.cos(angle);
      sin[p * half + j] = Math.sin(angle);
    }
  }
  return { cos, sin, attentionScaling: 1, invFreq };
}

export interface RopeApplyArgs {
  /** [rows, heads * headDim], rotated in place. */
  x: GpuTensor;
  /** [maxPositions, headDim / 2] */
  cos: GpuTensor;
  /** [maxPositions, headDim / 2] */
  sin: GpuTensor;
  rows: number;
  heads: number;
  headDim: number;
  /** Tokens per sequence: row r is at position (r % seqLen) + positionOffset. */
  seqLen: number;
  /** Absolute position of each sequence's first row (KV-cache decoding); default 0. */
  positionOffset?: number;
  /** Rotate by -angle: the backward pass (grad_in = R^T grad_out). */
  inverse?: boolean;
}

export interface RopeKernelOptions {
  /** Element type of x: 'f16' needs the device's shader-f16 feature. Default 'f32'. */
  dtype?: ElementType;
  /**
   * Rotate four pairs per invocation (vec4) where headDim / 2 is a multiple of 4, as every
   * common head size's is (default true; kernels/lanes.ts). False always takes one pair, the
   * form other head sizes get: for tests and comparisons.
   */
  vec4?: boolean;
}

export interface RopeKernel {
  readonly dtype: ElementType;
  /**
   * In place on x [rows, heads*headDim], HF rotate_half convention: for j < half:
   * x'[j] = x[j] cos - x[j+half] sin; x'[j+half] = x[j+half] cos + x[j] sin, at position
   * (row % seqLen) + positionOffset. `inverse` rotates by -angle (RoPE's backward).
   */
  apply(recorder: CommandRecorder, args: RopeApplyArgs): void;
}

/** In scalar and vec4 form (kernels/lanes.ts). */
export const ROPE_KERNELS = laneForms({
  name: 'rope',
  files: [{ path: 'shaders/rope.wgsl', source }],
  bindings: ['read-write', 'read', 'read', 'uniform'],
});

const WG = 64;

function positiveInteger(what: string, name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) throw new InvalidArgumentError(`${what}: ${name} must be a positive integer, got ${value}.`);
}

/**
 * Compiles the rotation for x of element type `dtype` (default f32).
 *
 * @example
 * ```ts
 * const rope = await createRopeKernel(ctx, { dtype: ctx.features.shaderF16 ? 'f16' : 'f32' });
 * rope.apply(rec, { x: q, cos, sin, rows: 512, heads: 9, headDim: 64, seqLen: 256 });
 * ```
 */
export async function createRopeKernel(ctx: GpuContext, options: RopeKernelOptions = {}): Promise<RopeKernel> {
  const dtype = requireElementType(ctx, 'rope', options.dtype ?? 'f32');
  const vec4 = options.vec4 ?? true;
  const [scalar, vector] = await Promise.all([
    ctx.pipelines.get(ROPE_KERNELS[1], dtype, {}),
    vec4 ? ctx.pipelines.get(ROPE_KERNELS[4], dtype, {}) : undefined,
  ]);
  return {
    dtype,
    apply(recorder, a) {
      const { rows, heads, headDim, seqLen } = a;
      const offset = a.positionOffset ?? 0;
      for (const [name, value] of [['rows', rows], ['heads', heads], ['headDim', headDim], ['seqLen', seqLen]] as const) {
        positiveInteger('rope', name, value);
      }
      if (headDim % 2 !== 0) throw new InvalidArgumentError(`rope: headDim must be even, got ${headDim}.`);
      if (!Number.isInteger(offset) || offset < 0) throw new InvalidArgumentError(`rope: positionOffset must be a non-negative integer, got ${offset}.`);
      const half = headDim / 2;
      const width = heads * headDim;
      if (a.x.dtype !== dtype) {
        throw new InvalidArgumentError(`rope: x "${a.x.label}" is ${a.x.dtype} but the kernel was created for ${dtype}.`);
      }
      if (a.x.size < rows * width) {
        throw new InvalidArgumentError(
          `rope: x "${a.x.label}" must be ${dtype} with at least ${rows} x ${width} elements (rows x heads*headDim); ` +
            `got ${a.x.dtype} [${a.x.shape.join(', ')}].`,
        );
      }
      const lastPosition = Math.min(seqLen, rows) - 1 + offset;
      for (const [name, t] of [['cos', a.cos], ['sin', a.sin]] as const) {
        const tableRows = t.size / half;
        if (t.dtype !== 'f32' || t.shape[t.shape.length - 1] !== half || tableRows <= lastPosition) {
          throw new InvalidArgumentError(
            `rope: ${name} table "${t.label}" must be f32 [positions, ${half}] covering position ${lastPosition} ` +
              `(seqLen ${seqLen}, positionOffset ${offset}); got ${t.dtype} [${t.shape.join(', ')}].`,
          );
        }
      }
      if (a.x.buffer === a.cos.buffer || a.x.buffer === a.sin.buffer) {
        throw new InvalidArgumentError('rope: x must not share a buffer with the cos/sin tables.');
      }
      const lanes = vector ? lanesFor(half) : 1;
      const halfVectors = half / lanes;
      const g = grid1D(rows * heads * halfVectors, WG, ctx.limits.maxComputeWorkgroupsPerDimension);
      recorder.dispatch(lanes === 4 ? vector! : scalar, [a.x.buffer, a.cos.buffer, a.sin.buffer],
        packParams([
          ['u32', rows], ['u32', heads], ['u32', halfVectors], ['u32', seqLen], ['u32', offset], ['u32', g.rowStride],
          ['f32', a.inverse ? -1 : 1],
        ]), g.workgroups);
    },
  };
}
