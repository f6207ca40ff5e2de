/**
 * MLP activations, forward and input gradients: SwiGLU (Llama's silu(gate) * up) and the tanh
 * GELU (GPT-2's gelu_new). Elementwise; every tensor is f32 or f16 (`dtype`), arithmetic f32.
 * Shaders: shaders/swiglu-*.wgsl, shaders/gelu-*.wgsl.
 * Expected values: PyTorch autograd (scripts/make_transformer_op_fixtures.py).
 */
import swigluForwardSource from '../shaders/swiglu-forward.wgsl.js';
import swigluBackwardSource from '../shaders/swiglu-backward.wgsl.js';
import geluForwardSource from '../shaders/gelu-forward.wgsl.js';
import geluBackwardSource from '../shaders/gelu-backward.wgsl.js';
import type { GpuContext } from '../device.js';
import type { CompiledKernel, ElementType } from '../pipeline-cache.js';
import { packParams, type CommandRecorder } from '../recorder.js';
import type { GpuTensor } from '../tensor.js';
import { compileLaneForms, laneForms, laneGrid, type Lanes } from './lanes.js';
import { requireCount, requireElementType, requireDistinct, requireTensor } from './tensor-checks.js';

/** Each in scalar and vec4 form (kernels/lanes.ts). */
export const SWIGLU_FORWARD_KERNELS = laneForms({
  name: 'swiglu-forward',
  files: [{ path: 'shaders/swiglu-forward.wgsl', source: swigluForwardSource }],
  bindings: ['read', 'read', 'read-write', 'uniform'],
});
export const SWIGLU_BACKWARD_KERNELS = laneForms({
  name: 'swiglu-backward',
  files: [{ path: 'shaders/swiglu-backward.wgsl', source: swigluBackwardSource }],
  bindings: ['read', 'read', 'read', 'read-write', 'read-write', 'uniform'],
});
export const GELU_FORWARD_KERNELS = laneForms({
  name: 'gelu-forward',
  files: [{ path: 'shaders/gelu-forward.wgsl', source: geluForwardSource }],
  bindings: ['read', 'read-write', 'uniform'],
});
export const GELU_BACKWARD_KERNELS = laneForms({
  name: 'gelu-backward',
  files: [{ path: 'shaders/gelu-backward.wgsl', source: geluBackwardSource }],
  bindings: ['read', 'read', 'read-write', 'uniform'],
});

const WG = 256;

export interface ActivationOptions {
  /** Element type of every tensor (default 'f32'; 'f16' needs shader-f16). */
  dtype?: ElementType;
}

export interface SwigluForwardArgs {
  gate: GpuTensor;
  up: GpuTensor;
  /** silu(gate) * up */
  out: GpuTensor;
  size: number;
}

export interface SwigluBackwardArgs {
  gate: GpuTensor;
  up: GpuTensor;
  gradOutput: GpuTensor;
  gradGate: GpuTensor;
  gradUp: GpuTensor;
  size: number;
}

export interface SwigluKernels {
  readonly dtype: ElementType;
  /** out = silu(gate) * up */
  forward(rec: CommandRecorder, a: SwigluForwardArgs): void;
  backward(rec: CommandRecorder, a: SwigluBackwardArgs): void;
}

export interface GeluForwardArgs {
  x: GpuTensor;
  y: GpuTensor;
  size: number;
}

export interface GeluBackwardArgs {
  x: GpuTensor;
  gradOutput: GpuTensor;
  gradInput: GpuTensor;
  size: number;
}

export interface GeluKernels {
  readonly dtype: ElementType;
  /** y = gelu(x), tanh approximation (HF gelu_new, torch gelu(approximate='tanh')). */
  forward(rec: CommandRecorder, a: GeluForwardArgs): void;
  backward(rec: CommandRecorder, a: GeluBackwardArgs): void;
}

function checkElementwise(op: string, size: number, dtype: ElementType, tensors: Record<string, GpuTensor>): void {
  requireCount(op, 'size', size);
  for (const [name, t] of Object.entries(tensors)) requireTensor(op, name, t, size, `size ${size}`, dtype);
}

/** The form `size` elements take, with its Params (vector count, row stride) and workgroups. */
function sizeDispatch(ctx: GpuContext, forms: Record<Lanes, CompiledKernel>, size: number) {
  const { lanes, count, grid } = laneGrid(ctx, size, WG);
  return { kernel: forms[lanes], params: packParams([['u32', count], ['u32', grid.rowStride]]), workgroups: grid.workgroups };
}

/**
 * Llama's gated MLP activation, silu(gate) * up, and its gradients for gate and up.
 *
 * @example
 * ```ts
 * const swiglu = await createSwigluKernels(ctx); // or (ctx, { dtype: 'f16' })
 * swiglu.forward(rec, { gate, up, out: h, size: tokens * intermediate });
 * ```
 */
export async function createSwigluKernels(ctx: GpuContext, options: ActivationOptions = {}): Promise<SwigluKernels> {
  const dtype = requireElementType(ctx, 'createSwigluKernels', options.dtype);
  const [forward, backward] = await Promise.all([
    compileLaneForms(ctx, SWIGLU_FORWARD_KERNELS, dtype, { WG }),
    compileLaneForms(ctx, SWIGLU_BACKWARD_KERNELS, dtype, { WG }),
  ]);
  return {
    dtype,
    forward(rec, a) {
      checkElementwise('swiglu forward', a.size, dtype, { gate: a.gate, up: a.up, out: a.out });
      requireDistinct('swiglu forward', { out: a.out }, { gate: a.gate, up: a.up });
      const { kernel, params, workgroups } = sizeDispatch(ctx, forward, a.size);
      rec.dispatch(kernel, [a.gate.buffer, a.up.buffer, a.out.buffer], params, workgroups);
    },
    backward(rec, a) {
      const op = 'swiglu backward';
      checkElementwise(op, a.size, dtype, { gate: a.gate, up: a.up, gradOutput: a.gradOutput, gradGate: a.gradGate, gradUp: a.gradUp });
      requireDistinct(op, { gradGate: a.gradGate, gradUp: a.gradUp }, { gate: a.gate, up: a.up, gradOutput: a.gradOutput });
      const { kernel, params, workgroups } = sizeDispatch(ctx, backward, a.size);
      rec.dispatch(kernel, [a.gate.buffer, a.up.buffer, a.gradOutput.buffer, a.gradGate.buffer, a.gradUp.buffer], params, workgroups);
    },
  };
}

/**
 * GPT-2's activation (tanh GELU) and its input gradient.
 *
 * @example
 * ```ts
 * const gelu = await createGeluKernels(ctx);
 * gelu.forward(rec, { x: fc, y: act, size: tokens * 4 * hidden });
 * ```
 */
export async function createGeluKernels(ctx: GpuContext, options: ActivationOptions = {}): Promise<GeluKernels> {
  const dtype = requireElementType(ctx, 'createGeluKernels', options.dtype);
  const [forward, backward] = await Promise.all([
    compileLaneForms(ctx, GELU_FORWARD_KERNELS, dtype, { WG }),
    compileLaneForms(ctx, GELU_BACKWARD_KERNELS, dtype, { WG }),
  ]);
  return {
    dtype,
    forward(rec, a) {
      checkElementwise('gelu forward', a.size, dtype, { x: a.x, y: a.y });
      requireDistinct('gelu forward', { y: a.y }, { x: a.x });
      const { kernel, params, workgroups } = sizeDispatch(ctx, forward, a.size);
      rec.dispatch(kernel, [a.x.buffer, a.y.buffer], params, workgroups);
    },
    backward(rec, a) {
      checkElementwise('gelu backward', a.size, dtype, { x: a.x, gradOutput: a.gradOutput, gradInput: a.gradInput });
      requireDistinct('gelu backward', { gradInput: a.gradInput }, { x: a.x, gradOutput: a.gradOutput });
      const { kernel, params, workgroups } = sizeDispatch(ctx, backward, a.size);
      rec.dispatch(kernel, [a.x.buffer, a.gradOutput.buffer, a.gradInput.buffer], params, workgroups);
    },
  };
}
