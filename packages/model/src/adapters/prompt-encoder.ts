/**
 * The small MLPs P-tuning and prefix projection train (PEFT's PromptEncoder mlp_head and
 * PrefixEncoder transform), on the GPU in f32 whatever the model's compute dtype: a few dozen rows
 * (one per virtual token), so precision costs nothing here. Forward saves each layer's input and
 * pre-activation; backward adds every weight's, bias' and the input embedding's gradient.
 *
 *   z = x W^T + b,  y = act(z)        dz = dy * act'(z),  dW += dz^T x,  db += sum_rows dz,  dx = dz W
 */
import { createElementwiseKernels, createMatmulKernel, createPointwiseKernels, createTensor, createVectorScaleKernels, type CommandRecorder, type GpuContext, type GpuTensor } from '@webtune/gpu';
import type { EncoderLayer } from './prompt-learning.js';
import type { TensorSetAdapter } from './module-adapter.js';

export interface PromptEncoder {
  /** [rows, output width] f32, valid after forward. */
  readonly output: GpuTensor;
  forward(rec: CommandRecorder): void;
  /** Adds the gradients of every encoder tensor (the input embedding's included) from dL/d(output). */
  backward(rec: CommandRecorder, gradOutput: GpuTensor): void;
  release(): void;
}

export async function createPromptEncoder(ctx: GpuContext, adapter: TensorSetAdapter<unknown>, inputKey: string, layers: readonly EncoderLayer[]): Promise<PromptEncoder> {
  const [project, weightGrad, inputGrad, inputGradAdd, pointwise, elementwise, columns] = await Promise.all([
    createMatmulKernel(ctx, { transB: true }),
    createMatmulKernel(ctx, { transA: true, accumulate: true }),
    createMatmulKernel(ctx, {}),
    createMatmulKernel(ctx, { accumulate: true }),
    createPointwiseKernels(ctx, {}),
    createElementwiseKernels(ctx, {}),
    createVectorScaleKernels(ctx, {}),
  ]);
  const input = adapter.tensor(inputKey);
  const rows = input.shape[0]!;
  const owned: GpuTensor[] = [];
  const make = (cols: number, label: string) => {
    const t = createTensor(ctx, { shape: [rows, cols], label });
    owned.push(t);
    return t;
  };
  const steps = layers.map((layer) => {
    const weight = adapter.tensor(layer.weight);
    const [out, inp] = weight.shape as [number, number];
    const pre = make(out, 'prompt encoder pre-activation');
    return { layer, weight, bias: adapter.tensor(layer.bias), out, inp, pre, post: layer.activation === 'none' ? pre : make(out, 'prompt encoder activation'), grad: make(out, 'prompt encoder grad') };
  });
  // The input gradient of each layer but the first (which goes to the embedding's own gradient).
  const gradIn = steps.map((s, i) => (i === 0 ? undefined : make(s.inp, 'prompt encoder input grad')));
  return {
    output: steps[steps.length - 1]!.post,
    forward(rec) {
      let x = input;
      for (const s of steps) {
        project.encode(rec, { a: x, b: s.weight, c: s.pre, m: rows, n: s.out, k: s.inp });
        elementwise.addBias(rec, { target: s.pre, bias: s.bias, rows, cols: s.out });
        if (s.layer.activation !== 'none') pointwise.forward(rec, { fn: s.layer.activation, x: s.pre, y: s.post, size: rows * s.out });
        x = s.post;
      }
    },
    backward(rec, gradOutput) {
      let g = gradOutput;
      for (let i = steps.length - 1; i >= 0; i--) {
        const s = steps[i]!;
        let gz = g;
        if (s.layer.activation !== 'none') {
          pointwise.backward(rec, { fn: s.layer.activation, x: s.pre, gradOutput: g, gradInput: s.grad, size: rows * s.out });
          gz = s.grad;
        }
        const x = i === 0 ? input : steps[i - 1]!.post;
        weightGrad.encode(rec, { a: gz, b: x, c: adapter.gradient(s.layer.weight), m: s.out, n: s.inp, k: rows });
        columns.columnDot(rec, { a: gz, out: adapter.gradient(s.layer.bias), rows, cols: s.out, accumulate: true });
        if (i === 0) inputGradAdd.encode(rec, { a: gz, b: s.weight, c: adapter.gradient(inputKey), m: rows, n: s.inp, k: s.out });
        else {
          inputGrad.encode(rec, { a: gz, b: s.weight, c: gradIn[i]!, m: rows, n: s.inp, k: s.out });
          g = gradIn[i]!;
        }
      }
    },
    release() {
      for (const t of owned) t.release();
      owned.length = 0;
    },
  };
}
