/**
 * Bottleneck adapters inside a Transformer, as hooks on the linear whose output they adapt:
 *
 *   forward   y = x W^T + b (frozen);  in = y (saved);  pre = in Wd^T + bd (saved);  h = act(pre)
 *             y' = y + h Wu^T + bu
 *   backward  g = dL/dy';  h = act(pre) (recomputed);  dWu += g^T h;  dbu += sum_rows g
 *             dpre = (g Wu) * act'(pre);  dWd += dpre^T in;  dbd += sum_rows dpre
 *             dL/dy = g + dpre Wd  ->  the frozen linear's input gradient
 *
 * f16 compute keeps half copies of the weights and half weight gradients (folded into the f32
 * ones after backward), as LoRA does; biases stay f32 (the kernels read f32 vectors).
 */
import { createElementwiseKernels, createGeluKernels, createMatmulKernel, createPointwiseKernels, createVectorScaleKernels, type CommandRecorder, type ElementType, type GpuContext, type GpuTensor } from '@webtune/gpu';
import { halfCopies } from '../lora/runtime.js';
import type { AdapterRuntime, RuntimeContext } from '../types.js';
import type { BottleneckAdapter } from './adapter.js';
import type { BottleneckActivation } from './config.js';

/** An adapter's nonlinearity (AdapterHub's names: relu, swish = silu, gelu_new = tanh GELU), forward and input gradient. */
export async function adapterActivation(ctx: GpuContext, dtype: ElementType, nonLinearity: BottleneckActivation): Promise<{
  forward(rec: CommandRecorder, x: GpuTensor, y: GpuTensor, size: number): void;
  backward(rec: CommandRecorder, x: GpuTensor, gradOutput: GpuTensor, gradInput: GpuTensor, size: number): void;
}> {
  if (nonLinearity === 'gelu_new') {
    const gelu = await createGeluKernels(ctx, { dtype });
    return {
      forward: (rec, x, y, size) => gelu.forward(rec, { x, y, size }),
      backward: (rec, x, gradOutput, gradInput, size) => gelu.backward(rec, { x, gradOutput, gradInput, size }),
    };
  }
  const pointwise = await createPointwiseKernels(ctx, { dtype });
  const fn = nonLinearity === 'relu' ? 'relu' : 'silu';
  return {
    forward: (rec, x, y, size) => pointwise.forward(rec, { fn, x, y, size }),
    backward: (rec, x, gradOutput, gradInput, size) => pointwise.backward(rec, { fn, x, gradOutput, gradInput, size }),
  };
}

export async function createBottleneckRuntime(adapter: BottleneckAdapter, { ctx, dtype, ops }: RuntimeContext): Promise<AdapterRuntime> {
  const f32 = dtype === 'f32';
  const [project, projectAdd, weightGrad, inputGrad, inputGradAdd, elementwise, columns] = await Promise.all([
    createMatmulKernel(ctx, { dtype, transB: true }),
    createMatmulKernel(ctx, { dtype, transB: true, accumulate: true }),
    // f32 adds weight gradients in place; f16 writes half gradients that afterBackward adds in.
    createMatmulKernel(ctx, { dtype, transA: true, accumulate: f32 }),
    createMatmulKernel(ctx, { dtype }),
    createMatmulKernel(ctx, { dtype, accumulate: true }),
    createElementwiseKernels(ctx, { dtype }),
    createVectorScaleKernels(ctx, { dtype }),
  ]);
  const act = await adapterActivation(ctx, dtype, adapter.config.nonLinearity);
  const tensors = [...adapter.params.values()].map((p) => ({ module: p.module, a: p.down, b: p.up, gradA: p.gradDown, gradB: p.gradUp }));
  const half = halfCopies(ctx, elementwise, tensors, dtype);
  const of = new Map(tensors.map((t) => [t.module, t]));
  const r = adapter.config.bottleneckSize;

  return {
    beforeForward: (rec) => half.sync(rec, adapter.version),
    afterBackward: (rec) => half.accumulate(rec),
    linearForward(rec, { linear: lin, m, x, y, state }) {
      const p = adapter.params.get(lin.module)!;
      const w = half.of(of.get(lin.module)!);
      const d = lin.outFeatures;
      const input = state[`bn:${lin.name}:in`]!;
      const pre = state[`bn:${lin.name}:pre`]!;
      const h = ops.scratch('bn:h')!;
      ops.frozenForward(rec, lin, x, y);
      if (lin.bias) elementwise.addBias(rec, { target: y, bias: lin.bias, rows: m, cols: d });
      elementwise.cast(rec, { src: y, dst: input, size: m * d });
      project.encode(rec, { a: input, b: w.a, c: pre, m, n: r, k: d });
      elementwise.addBias(rec, { target: pre, bias: p.downBias, rows: m, cols: r });
      act.forward(rec, pre, h, m * r);
      projectAdd.encode(rec, { a: h, b: w.b, c: y, m, n: d, k: r });
      elementwise.addBias(rec, { target: y, bias: p.upBias, rows: m, cols: d });
    },
    linearBackward(rec, { linear: lin, m, x: _x, state, gradOutput, gradInput, accumulate }) {
      const p = adapter.params.get(lin.module)!;
      const w = half.of(of.get(lin.module)!);
      const d = lin.outFeatures;
      const input = state[`bn:${lin.name}:in`]!;
      const pre = state[`bn:${lin.name}:pre`]!;
      const [h, dh, dpre, g] = ['bn:h', 'bn:dh', 'bn:dpre', 'bn:g'].map((n) => ops.scratch(n)!) as [GpuTensor, GpuTensor, GpuTensor, GpuTensor];
      act.forward(rec, pre, h, m * r);
      weightGrad.encode(rec, { a: gradOutput, b: h, c: w.gradB, m: d, n: r, k: m });
      columns.columnDot(rec, { a: gradOutput, out: p.gradUpBias, rows: m, cols: d, accumulate: true });
      inputGrad.encode(rec, { a: gradOutput, b: w.b, c: dh, m, n: r, k: d });
      act.backward(rec, pre, dh, dpre, m * r);
      weightGrad.encode(rec, { a: dpre, b: input, c: w.gradA, m: r, n: d, k: m });
      columns.columnDot(rec, { a: dpre, out: p.gradDownBias, rows: m, cols: r, accumulate: true });
      if (!gradInput) return;
      elementwise.cast(rec, { src: gradOutput, dst: g, size: m * d });
      inputGradAdd.encode(rec, { a: dpre, b: w.a, c: g, m, n: d, k: r });
      ops.frozenBackward(rec, lin, g, gradInput, accumulate);
    },
    release: () => half.release(),
  };
}
