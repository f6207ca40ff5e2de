/**
 * Pointwise activations and their input gradients for small adapter MLPs and gates: relu and silu
 * (swish) for bottleneck adapters (AdapterHub's 'relu' and 'swish'), tanh for prefix tuning's
 * projection, sigmoid for UniPELT's per-token gates.
 * Elementwise; every tensor is f32 or f16 (`dtype`), arithmetic f32. The tanh GELU ('gelu_new')
 * is createGeluKernels (activation.ts).
 *
 *   forward   y = f(x)
 *   backward  gradInput (= or +=) gradOutput * f'(x)
 *   relu'(x) = [x > 0] (0 at 0, as PyTorch),  silu'(x) = s (1 + x (1 - s)), s = sigmoid(x),
 *   tanh'(x) = 1 - tanh(x)^2,  sigmoid'(x) = s (1 - s)
 * sigmoid is 1 / (1 + e) or e / (1 + e) with e = exp(-|x|) <= 1, so no input overflows it, and
 * its gradient e / (1 + e)^2 does not cancel where s is within ulps of 1.
 *
 * The function is a uniform, not a pipeline per function: the kernels are bound by memory
 * traffic and every invocation takes the same branch, so specialising would save little, while one
 * forward and two backward pipelines (= and +=) per dtype serve all four. The functions' ids
 * live only here and reach the shaders as override constants.
 * Shaders: shaders/pointwise-forward.wgsl, shaders/pointwise-backward.wgsl.
 * Expected values: PyTorch (scripts/make_pointwise_fixtures.py).
 */
import forwardSource from '../shaders/pointwise-forward.wgsl.js';
import backwardSource from '../shaders/pointwise-backward.wgsl.js';
import type { GpuContext } from '../device.js';
import { InvalidArgumentError } from '@webtune/errors';
import type { ElementType, KernelDefinition } from '../pipeline-cache.js';
import { packParams, type CommandRecorder } from '../recorder.js';
import type { GpuTensor } from '../tensor.js';
import { grid1D } from './grid.js';
import { requireCount, requireElementType, requireDistinct, requireTensor } from './tensor-checks.js';

export const POINTWISE_FORWARD_KERNEL: KernelDefinition = {
  name: 'pointwise-forward',
  files: [{ path: 'shaders/pointwise-forward.wgsl', source: forwardSource }],
  bindings: ['read', 'read-write', 'uniform'],
};
export const POINTWISE_BACKWARD_KERNEL: KernelDefinition = {
  name: 'pointwise-backward',
  files: [{ path: 'shaders/pointwise-backward.wgsl', source: backwardSource }],
  bindings: ['read', 'read', 'read-write', 'uniform'],
};

/** The activations the pointwise kernels compute. */
export type PointwiseFunction = 'relu' | 'silu' | 'tanh' | 'sigmoid';

/** Each function's id in the shaders' `params.activation` (passed to them as RELU, SILU, TANH, SIGMOID). */
const FUNCTION_IDS: Readonly<Record<PointwiseFunction, number>> = { relu: 0, silu: 1, tanh: 2, sigmoid: 3 };
const FUNCTION_CONSTANTS = { RELU: FUNCTION_IDS.relu, SILU: FUNCTION_IDS.silu, TANH: FUNCTION_IDS.tanh, SIGMOID: FUNCTION_IDS.sigmoid };

export const POINTWISE_FUNCTIONS: readonly PointwiseFunction[] = ['relu', 'silu', 'tanh', 'sigmoid'];

const WG = 256;

export interface PointwiseOptions {
  /** Element type of every tensor (default 'f32'; 'f16' needs shader-f16). */
  dtype?: ElementType;
}

export interface PointwiseForwardArgs {
  fn: PointwiseFunction;
  /** [size] */
  x: GpuTensor;
  /** [size], f(x); its own tensor (not x) */
  y: GpuTensor;
  size: number;
}

export interface PointwiseBackwardArgs {
  fn: PointwiseFunction;
  /** [size], the forward's input */
  x: GpuTensor;
  /** [size], dL/dy */
  gradOutput: GpuTensor;
  /** [size], dL/dx: overwritten, or added to with `accumulate` */
  gradInput: GpuTensor;
  size: number;
  /** gradInput += gradOutput * f'(x) (the add in f32) instead of =. */
  accumulate?: boolean;
}

export interface PointwiseKernels {
  readonly dtype: ElementType;
  /**
   * y = fn(x) for the first `size` elements. y must not be x: WebGPU refuses one buffer bound as
   * both read-only and writable in a dispatch, and the backward needs x anyway.
   */
  forward(rec: CommandRecorder, a: PointwiseForwardArgs): void;
  /** gradInput (= or +=) gradOutput * fn'(x); gradInput must be distinct from x and gradOutput. */
  backward(rec: CommandRecorder, a: PointwiseBackwardArgs): void;
}

function requireFunction(op: string, fn: unknown): PointwiseFunction {
  if (!POINTWISE_FUNCTIONS.includes(fn as PointwiseFunction)) {
    throw new InvalidArgumentError(
      `${op}: fn must be one of ${POINTWISE_FUNCTIONS.map((f) => `'${f}'`).join(', ')}, got ${JSON.stringify(fn)}` +
        ` (the tanh GELU, 'gelu_new', is createGeluKernels).`,
    );
  }
  return fn as PointwiseFunction;
}

/**
 * Compiles the forward and backward pipelines once for tensors of element type `dtype`; `forward`
 * and `backward` then record one dispatch each, for whichever function `fn` names.
 *
 * @example
 * ```ts
 * const pointwise = await createPointwiseKernels(ctx); // or (ctx, { dtype: 'f16' })
 * // a bottleneck adapter's act(down(y)), and its gradient
 * pointwise.forward(rec, { fn: 'silu', x: down, y: act, size: tokens * r });
 * pointwise.backward(rec, { fn: 'silu', x: down, gradOutput: gradAct, gradInput: gradDown, size: tokens * r });
 * // UniPELT's per-token gate g = sigmoid(z)
 * pointwise.forward(rec, { fn: 'sigmoid', x: gateLogits, y: gate, size: tokens });
 * ```
 */
export async function createPointwiseKernels(ctx: GpuContext, options: PointwiseOptions = {}): Promise<PointwiseKernels> {
  const dtype = requireElementType(ctx, 'createPointwiseKernels', options.dtype);
  const [forward, backward, backwardAcc] = await Promise.all([
    ctx.pipelines.get(POINTWISE_FORWARD_KERNEL, dtype, { WG, ...FUNCTION_CONSTANTS }),
    ctx.pipelines.get(POINTWISE_BACKWARD_KERNEL, dtype, { WG, ACCUMULATE: false, ...FUNCTION_CONSTANTS }),
    ctx.pipelines.get(POINTWISE_BACKWARD_KERNEL, dtype, { WG, ACCUMULATE: true, ...FUNCTION_CONSTANTS }),
  ]);
  const params = (size: number, fn: PointwiseFunction) => {
    const g = grid1D(size, WG, ctx.limits.maxComputeWorkgroupsPerDimension);
    return { params: packParams([['u32', size], ['u32', g.rowStride], ['u32', FUNCTION_IDS[fn]]]), workgroups: g.workgroups };
  };
  return {
    dtype,
    forward(rec, a) {
      const op = 'pointwise forward';
      const fn = requireFunction(op, a.fn);
      requireCount(op, 'size', a.size);
      requireTensor(op, 'x', a.x, a.size, `size ${a.size}`, dtype);
      requireTensor(op, 'y', a.y, a.size, `size ${a.size}`, dtype);
      requireDistinct(op, { y: a.y }, { x: a.x });
      const p = params(a.size, fn);
      rec.dispatch(forward, [a.x.buffer, a.y.buffer], p.params, p.workgroups);
    },
    backward(rec, a) {
      const op = 'pointwise backward';
      const fn = requireFunction(op, a.fn);
      requireCount(op, 'size', a.size);
      for (const [name, t] of [['x', a.x], ['gradOutput', a.gradOutput], ['gradInput', a.gradInput]] as const) {
        requireTensor(op, name, t, a.size, `size ${a.size}`, dtype);
      }
      requireDistinct(op, { gradInput: a.gradInput }, { x: a.x, gradOutput: a.gradOutput });
      const p = params(a.size, fn);
      rec.dispatch(a.accumulate ? backwardAcc : backward, [a.x.buffer, a.gradOutput.buffer, a.gradInput.buffer], p.params, p.workgroups);
    },
  };
}
