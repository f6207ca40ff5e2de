/**
 * RMSNorm (HF LlamaRMSNorm) and LayerNorm (torch.nn.LayerNorm) over the last dimension, forward
 * and input gradient; weight and bias are frozen, so no weight gradients. One workgroup per row.
 * Activations (x, y and their gradients) are f32 or f16 (`dtype`); weight, bias and the row
 * statistics stay f32, and all arithmetic is f32.
 * Shaders: shaders/rms-norm-*.wgsl, shaders/layer-norm-*.wgsl, shaders/lib/workgroup-sum.wgsl.
 * Expected values: PyTorch autograd (scripts/make_transformer_op_fixtures.py).
 */
import sumLib from '../shaders/lib/workgroup-sum.wgsl.js';
import rmsForwardSource from '../shaders/rms-norm-forward.wgsl.js';
import rmsBackwardSource from '../shaders/rms-norm-backward.wgsl.js';
import layerForwardSource from '../shaders/layer-norm-forward.wgsl.js';
import layerBackwardSource from '../shaders/layer-norm-backward.wgsl.js';
import type { GpuContext } from '../device.js';
import { InvalidArgumentError } from '@webtune/errors';
import type { ElementType, KernelDefinition } from '../pipeline-cache.js';
import { packParams, type CommandRecorder } from '../recorder.js';
import type { GpuTensor } from '../tensor.js';
import { grid1D } from './grid.js';
import { lanesFor, laneForms, type Lanes } from './lanes.js';
import { requireCount, requireElementType, requireDistinct, requireFinite, requireTensor } from './tensor-checks.js';

const SUM = { path: 'shaders/lib/workgroup-sum.wgsl', source: sumLib };

/** Each in scalar and vec4 form (kernels/lanes.ts): vec4 where cols is a multiple of 4. */
export const RMS_NORM_FORWARD_KERNELS = laneForms({
  name: 'rms-norm-forward',
  files: [SUM, { path: 'shaders/rms-norm-forward.wgsl', source: rmsForwardSource }],
  bindings: ['read', 'read', 'read-write', 'read-write', 'uniform'],
});
export const RMS_NORM_BACKWARD_KERNELS = laneForms({
  name: 'rms-norm-backward',
  files: [SUM, { path: 'shaders/rms-norm-backward.wgsl', source: rmsBackwardSource }],
  bindings: ['read', 'read', 'read', 'read', 'read-write', 'uniform'],
});
export const LAYER_NORM_FORWARD_KERNELS = laneForms({
  name: 'layer-norm-forward',
  files: [SUM, { path: 'shaders/layer-norm-forward.wgsl', source: layerForwardSource }],
  bindings: ['read', 'read', 'read', 'read-write', 'read-write', 'read-write', 'uniform'],
});
export const LAYER_NORM_BACKWARD_KERNELS = laneForms({
  name: 'layer-norm-backward',
  files: [SUM, { path: 'shaders/layer-norm-backward.wgsl', source: layerBackwardSource }],
  bindings: ['read', 'read', 'read', 'read', 'read', 'read-write', 'uniform'],
});

/**
 * Invocations per row: a power of two (the tree reduction halves it). Scalar form: 32, one warp
 * per row as llama.cpp's CUDA norms take below 1,024 columns: on lavapipe every barrier of the
 * reduction switches between all of a workgroup's 8-lane batches, and 32 ran the 135M step's norms
 * (256 x 576) in about half the time 128 took (1.1-1.6 vs 2.2-2.8 ms, forward and backward, f32
 * and f16). vec4 form: 16, which covers 64 columns a pass; on lavapipe the RMSNorm forward took
 * 0.64 ms with 16 against 0.84 with 32 (and 0.58 with 8, which would leave most of a hardware
 * GPU's warp idle).
 */
const WG: Record<Lanes, number> = { 1: 32, 4: 16 };

export interface NormOptions {
  kind: 'rms' | 'layer';
  eps: number;
  /** Element type of x, y, gradOutput and gradInput (default 'f32'; 'f16' needs shader-f16). */
  dtype?: ElementType;
}

export interface NormForwardArgs {
  /** [rows, cols], dtype */
  x: GpuTensor;
  /** [cols], f32 */
  weight: GpuTensor;
  /** [cols], f32, layer norm only; omit for a LayerNorm without bias. */
  bias?: GpuTensor;
  /** [rows, cols], dtype */
  y: GpuTensor;
  /** [rows], f32, written: 1 / sqrt(var + eps), needed by backward. */
  rstd: GpuTensor;
  /** [rows], f32, layer norm only, written: the row means, needed by backward. */
  mean?: GpuTensor;
  rows: number;
  cols: number;
}

export interface NormBackwardArgs {
  x: GpuTensor;
  weight: GpuTensor;
  /** From forward. */
  rstd: GpuTensor;
  /** From forward, layer norm only. */
  mean?: GpuTensor;
  /** dL/dy [rows, cols], dtype */
  gradOutput: GpuTensor;
  /** dL/dx [rows, cols], dtype */
  gradInput: GpuTensor;
  rows: number;
  cols: number;
  /** Add into gradInput instead of overwriting it (residual stream). */
  accumulate?: boolean;
}

export interface NormKernels {
  readonly kind: 'rms' | 'layer';
  /** Element type of the activations. */
  readonly dtype: ElementType;
  forward(rec: CommandRecorder, a: NormForwardArgs): void;
  backward(rec: CommandRecorder, a: NormBackwardArgs): void;
}

/**
 * Normalization over the last dimension of a [rows, cols] tensor, f32 or (with `dtype: 'f16'`)
 * f16 activations with f32 weight, statistics and arithmetic.
 *
 * @example
 * ```ts
 * const norm = await createNormKernels(ctx, { kind: 'rms', eps: 1e-6 });
 * const rec = new CommandRecorder(ctx, 'block');
 * norm.forward(rec, { x, weight, y, rstd, rows, cols });
 * norm.backward(rec, { x, weight, rstd, gradOutput: dy, gradInput: dx, rows, cols, accumulate: true });
 * rec.submit();
 * ```
 */
export async function createNormKernels(ctx: GpuContext, options: NormOptions): Promise<NormKernels> {
  const { kind, eps } = options;
  const op = kind === 'rms' ? 'rms norm' : 'layer norm';
  if (kind !== 'rms' && kind !== 'layer') throw new InvalidArgumentError(`createNormKernels: kind must be 'rms' or 'layer', got ${String(kind)}.`);
  requireFinite(op, 'eps', eps);
  if (eps < 0) throw new InvalidArgumentError(`${op}: eps must be >= 0, got ${eps}.`);
  const dtype = requireElementType(ctx, 'createNormKernels', options.dtype);
  const forwardForms = kind === 'rms' ? RMS_NORM_FORWARD_KERNELS : LAYER_NORM_FORWARD_KERNELS;
  const backwardForms = kind === 'rms' ? RMS_NORM_BACKWARD_KERNELS : LAYER_NORM_BACKWARD_KERNELS;
  const compile = async (lanes: Lanes) => {
    const get = (definition: KernelDefinition, constants: Record<string, number | boolean>) =>
      ctx.pipelines.get(definition, dtype, { WG: WG[lanes], ...constants });
    const [forwardBias, forwardNoBias, backward, backwardAcc] = await Promise.all([
      get(forwardForms[lanes], kind === 'layer' ? { HAS_BIAS: true } : {}),
      kind === 'layer' ? get(forwardForms[lanes], { HAS_BIAS: false }) : undefined,
      get(backwardForms[lanes], { ACCUMULATE: false }),
      get(backwardForms[lanes], { ACCUMULATE: true }),
    ]);
    return { forwardBias, forwardNoBias, backward, backwardAcc };
  };
  const [scalar, vector] = await Promise.all([compile(1), compile(4)]);
  const pipelines = (cols: number) => (lanesFor(cols) === 4 ? vector : scalar);
  const maxGroups = ctx.limits.maxComputeWorkgroupsPerDimension;

  function checkCommon(rows: number, cols: number, tensors: Record<string, GpuTensor>): string {
    requireCount(op, 'rows', rows);
    requireCount(op, 'cols', cols);
    const shape = `[${rows}, ${cols}]`;
    for (const [name, t] of Object.entries(tensors)) {
      const perRow = name === 'weight' || name === 'bias';
      const perStat = name === 'rstd' || name === 'mean';
      const needed = perRow ? cols : perStat ? rows : rows * cols;
      requireTensor(op, name, t, needed, perRow ? `[${cols}]` : perStat ? `[${rows}]` : shape, perRow || perStat ? 'f32' : dtype);
    }
    return shape;
  }

  function meanFor(mean: GpuTensor | undefined, where: string): GpuTensor | undefined {
    if (kind === 'layer' && !mean) throw new InvalidArgumentError(`layer norm ${where}: mean [rows] is required (written by forward, read by backward).`);
    if (kind === 'rms' && mean) throw new InvalidArgumentError(`rms norm ${where}: takes no mean; RMSNorm does not center.`);
    return mean;
  }

  return {
    kind,
    dtype,
    forward(rec, a) {
      const mean = meanFor(a.mean, 'forward');
      if (kind === 'rms' && a.bias) throw new InvalidArgumentError('rms norm forward: takes no bias (HF LlamaRMSNorm has none).');
      const tensors: Record<string, GpuTensor> = { x: a.x, weight: a.weight, y: a.y, rstd: a.rstd };
      if (a.bias) tensors.bias = a.bias;
      if (mean) tensors.mean = mean;
      checkCommon(a.rows, a.cols, tensors);
      const written: Record<string, GpuTensor> = { y: a.y, rstd: a.rstd };
      if (mean) written.mean = mean;
      requireDistinct(op, written, { x: a.x, weight: a.weight, bias: a.bias });
      const g = grid1D(a.rows, 1, maxGroups);
      const params = packParams([['u32', a.rows], ['u32', a.cols], ['f32', eps], ['u32', g.rowStride]]);
      const { forwardBias, forwardNoBias } = pipelines(a.cols);
      if (kind === 'rms') {
        rec.dispatch(forwardBias, [a.x.buffer, a.weight.buffer, a.y.buffer, a.rstd.buffer], params, g.workgroups);
      } else {
        // Without a bias the weight fills the bias binding: two read-only bindings of one buffer are allowed.
        rec.dispatch(a.bias ? forwardBias : forwardNoBias!, [a.x.buffer, a.weight.buffer, (a.bias ?? a.weight).buffer, a.y.buffer, mean!.buffer, a.rstd.buffer], params, g.workgroups);
      }
    },
    backward(rec, a) {
      const mean = meanFor(a.mean, 'backward');
      const tensors: Record<string, GpuTensor> = { x: a.x, weight: a.weight, rstd: a.rstd, gradOutput: a.gradOutput, gradInput: a.gradInput };
      if (mean) tensors.mean = mean;
      checkCommon(a.rows, a.cols, tensors);
      requireDistinct(op, { gradInput: a.gradInput }, { x: a.x, weight: a.weight, rstd: a.rstd, mean, gradOutput: a.gradOutput });
      const g = grid1D(a.rows, 1, maxGroups);
      const params = packParams([['u32', a.rows], ['u32', a.cols], ['u32', g.rowStride]]);
      const { backward, backwardAcc } = pipelines(a.cols);
      const kernel = a.accumulate ? backwardAcc : backward;
      const buffers = kind === 'rms'
        ? [a.x.buffer, a.weight.buffer, a.rstd.buffer, a.gradOutput.buffer, a.gradInput.buffer]
        : [a.x.buffer, a.weight.buffer, mean!.buffer, a.rstd.buffer, a.gradOutput.buffer, a.gradInput.buffer];
      rec.dispatch(kernel, buffers, params, g.workgroups);
    },
  };
}
