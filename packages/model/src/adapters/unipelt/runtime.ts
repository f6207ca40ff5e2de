/**
 * UniPELT inside a Transformer: gated LoRA on the targeted linears, a gated adapter on each MLP
 * output linear, and the prefix table with its per-token gates (the transformer attends to the
 * prefix apart and merges; see Transformer.gatedPrefixForward). Every gate is
 *   z = x w^T + c (f32),  g = sigmoid(z);   dz = dg g (1 - g),  dw += dz^T x,  dc += sum dz,  dx += dz w
 * Gated LoRA (u = s (x A^T) B^T):  y += g u;  dg = rowdot(dy, u);  dB += s (g dy)^T h;  dh = s (g dy) B;  dA += dh^T x;  dx += dh A
 * Gated adapter (a = up(act(down(y)))):  y' = y + g a;  dg = rowdot(dy', a);  the adapter's backward from g dy';  dy = dy' + (its input gradient) + dz w
 * f16 compute keeps half copies of the weight matrices (refreshed when the adapter changes) and
 * half weight gradients (added into the f32 ones after backward); biases and gates stay f32.
 */
import {
  createElementwiseKernels, createMatmulKernel, createPointwiseKernels, createTensor, createVectorScaleKernels,
  type CommandRecorder, type GpuTensor,
} from '@webtune/gpu';
import { architectureOf } from '../../arch/index.js';
import { adapterActivation } from '../bottleneck/runtime.js';
import { prefixTokenDim } from '../prefix-tuning/config.js';
import { createPromptRuntime } from '../prompt-runtime.js';
import type { AdapterRuntime, RuntimeContext } from '../types.js';
import type { UniPeltAdapter } from './adapter.js';
import { adapterKeys, adapterSite, loraKeys, prefixGateKeys, unipeltLoraModules, UNIPELT_PREFIX } from './config.js';

export async function createUniPeltRuntime(adapter: UniPeltAdapter, context: RuntimeContext): Promise<AdapterRuntime> {
  const { ctx, dtype, ops } = context;
  const model = adapter.model;
  const arch = architectureOf(model);
  const f32 = dtype === 'f32';
  const [project, weightGrad, inputGrad, inputGradAdd, elementwise, vectors, act, elementwise32, vectors32, pointwise32] = await Promise.all([
    createMatmulKernel(ctx, { dtype, transB: true }),
    // f32 adds weight gradients in place; f16 writes half gradients that afterBackward adds in.
    createMatmulKernel(ctx, { dtype, transA: true, accumulate: f32 }),
    createMatmulKernel(ctx, { dtype }),
    createMatmulKernel(ctx, { dtype, accumulate: true }),
    createElementwiseKernels(ctx, { dtype }),
    createVectorScaleKernels(ctx, { dtype }),
    adapterActivation(ctx, dtype, adapter.config.nonLinearity),
    createElementwiseKernels(ctx, {}),
    createVectorScaleKernels(ctx, {}),
    createPointwiseKernels(ctx, {}),
  ]);
  // The prefix table's runtime owns tensors: made once the kernels exist, so a failed compile leaks nothing.
  const table = await createPromptRuntime(adapter, context, { tensor: UNIPELT_PREFIX }, { prefix: { kvWidth: prefixTokenDim(model) } });

  // The weight matrices the matmuls read, with half copies in f16 (vectors and biases stay f32).
  const matrices = [...adapter.tensors.keys()].filter((k) => k !== UNIPELT_PREFIX && adapter.tensors.get(k)!.shape.length === 2);
  const half = new Map<string, { param: GpuTensor; grad: GpuTensor }>();
  if (!f32) {
    for (const key of matrices) {
      const shape = adapter.tensors.get(key)!.shape;
      half.set(key, { param: createTensor(ctx, { shape, dtype, label: 'unipelt (f16)' }), grad: createTensor(ctx, { shape, dtype, label: 'unipelt grad (f16)' }) });
    }
  }
  const weight = (key: string) => half.get(key)?.param ?? adapter.tensor(key);
  const weightGradient = (key: string) => half.get(key)?.grad ?? adapter.gradient(key);
  let synced = -1;

  /** A gate's forward: z = x w^T + c into `z` (f32), g = sigmoid(z) into `g`. */
  function gateForward(rec: CommandRecorder, x: GpuTensor, keys: { weight: string; bias: string }, m: number, inF: number, n: number, z: GpuTensor, g: GpuTensor): void {
    const scratch = ops.scratch('u:gateOut')!;
    project.encode(rec, { a: x, b: weight(keys.weight), c: scratch, m, n, k: inF });
    elementwise.addBias(rec, { target: scratch, bias: adapter.tensor(keys.bias), rows: m, cols: n });
    elementwise32.cast(rec, { src: scratch, dst: z, size: m * n });
    pointwise32.forward(rec, { fn: 'sigmoid', x: z, y: g, size: m * n });
  }

  /** A gate's backward from dL/dg (f32 [m, n]): its weight's and bias' gradients, and dL/dx added into `gradInput` when given. */
  function gateBackward(rec: CommandRecorder, x: GpuTensor, keys: { weight: string; bias: string }, m: number, inF: number, n: number, z: GpuTensor, gradGate: GpuTensor, gradInput: GpuTensor | undefined): void {
    const dz = ops.scratch('u:dz')!;
    const dzCompute = ops.scratch('u:dz16')!;
    pointwise32.backward(rec, { fn: 'sigmoid', x: z, gradOutput: gradGate, gradInput: dz, size: m * n });
    vectors32.columnDot(rec, { a: dz, out: adapter.gradient(keys.bias), rows: m, cols: n, accumulate: true });
    elementwise32.cast(rec, { src: dz, dst: dzCompute, size: m * n });
    weightGrad.encode(rec, { a: dzCompute, b: x, c: weightGradient(keys.weight), m: n, n: inF, k: m });
    if (gradInput) inputGradAdd.encode(rec, { a: dzCompute, b: weight(keys.weight), c: gradInput, m, n: inF, k: n });
  }

  const lora = new Map(unipeltLoraModules(model, adapter.config).map((t) => [t.module, loraKeys(t.module)]));
  const site = adapterSite(model);
  const sites = new Map(Array.from({ length: model.numLayers }, (_, l) => [`${arch.layerPrefix(l)}.${site}`, adapterKeys(arch.layerPrefix(l))]));
  const s = adapter.scale;
  const r = adapter.config.rank;
  const rb = adapter.config.bottleneckSize;

  return {
    beforeForward(rec) {
      table.beforeForward(rec);
      if (!f32 && synced !== adapter.version) {
        for (const key of matrices) elementwise32.cast(rec, { src: adapter.tensor(key), dst: half.get(key)!.param, size: adapter.tensor(key).size });
        synced = adapter.version;
      }
    },
    afterBackward(rec) {
      table.afterBackward(rec);
      for (const [key, h] of half) elementwise32.cast(rec, { src: h.grad, dst: adapter.gradient(key), size: h.grad.size, accumulate: true });
    },
    linearForward(rec, { linear: lin, m, x, y, state }) {
      ops.frozenForward(rec, lin, x, y);
      if (lin.bias) elementwise.addBias(rec, { target: y, bias: lin.bias, rows: m, cols: lin.outFeatures });
      const branch = ops.scratch('u:branch')!;
      const k = lora.get(lin.module);
      if (k) {
        const h = state[`ul:${lin.name}:h`]!;
        const g = state[`ul:${lin.name}:g`]!;
        project.encode(rec, { a: x, b: weight(k.a), c: h, m, n: r, k: lin.inFeatures });
        project.encode(rec, { a: h, b: weight(k.b), c: branch, m, n: lin.outFeatures, k: r, alpha: s });
        gateForward(rec, x, { weight: k.gate, bias: k.gateBias }, m, lin.inFeatures, 1, state[`ul:${lin.name}:z`]!, g);
        vectors.scaleRows(rec, { src: branch, dst: y, gate: g, rows: m, cols: lin.outFeatures, accumulate: true });
        return;
      }
      const a = sites.get(lin.module)!;
      const d = lin.outFeatures;
      const input = state[`ua:${lin.name}:in`]!;
      const pre = state[`ua:${lin.name}:pre`]!;
      const g = state[`ua:${lin.name}:g`]!;
      const hidden = ops.scratch('u:h')!;
      elementwise.cast(rec, { src: y, dst: input, size: m * d });
      project.encode(rec, { a: input, b: weight(a.down), c: pre, m, n: rb, k: d });
      elementwise.addBias(rec, { target: pre, bias: adapter.tensor(a.downBias), rows: m, cols: rb });
      act.forward(rec, pre, hidden, m * rb);
      project.encode(rec, { a: hidden, b: weight(a.up), c: branch, m, n: d, k: rb });
      elementwise.addBias(rec, { target: branch, bias: adapter.tensor(a.upBias), rows: m, cols: d });
      gateForward(rec, input, { weight: a.gate, bias: a.gateBias }, m, d, 1, state[`ua:${lin.name}:z`]!, g);
      vectors.scaleRows(rec, { src: branch, dst: y, gate: g, rows: m, cols: d, accumulate: true });
    },
    linearBackward(rec, { linear: lin, m, x, state, gradOutput, gradInput, accumulate }) {
      const branch = ops.scratch('u:branch')!;
      const gradBranch = ops.scratch('u:gradBranch')!;
      const dh = ops.scratch('u:dh')!;
      const gradGate = ops.scratch('u:dGate')!;
      const k = lora.get(lin.module);
      if (k) {
        const out = lin.outFeatures;
        const h = state[`ul:${lin.name}:h`]!;
        const g = state[`ul:${lin.name}:g`]!;
        project.encode(rec, { a: h, b: weight(k.b), c: branch, m, n: out, k: r, alpha: s });
        vectors.rowDot(rec, { a: gradOutput, b: branch, out: gradGate, rows: m, cols: out });
        vectors.scaleRows(rec, { src: gradOutput, dst: gradBranch, gate: g, rows: m, cols: out });
        weightGrad.encode(rec, { a: gradBranch, b: h, c: weightGradient(k.b), m: out, n: r, k: m, alpha: s });
        inputGrad.encode(rec, { a: gradBranch, b: weight(k.b), c: dh, m, n: r, k: out, alpha: s });
        weightGrad.encode(rec, { a: dh, b: x, c: weightGradient(k.a), m: r, n: lin.inFeatures, k: m });
        if (gradInput) {
          ops.frozenBackward(rec, lin, gradOutput, gradInput, accumulate);
          inputGradAdd.encode(rec, { a: dh, b: weight(k.a), c: gradInput, m, n: lin.inFeatures, k: r });
        }
        gateBackward(rec, x, { weight: k.gate, bias: k.gateBias }, m, lin.inFeatures, 1, state[`ul:${lin.name}:z`]!, gradGate, gradInput);
        return;
      }
      const a = sites.get(lin.module)!;
      const d = lin.outFeatures;
      const input = state[`ua:${lin.name}:in`]!;
      const pre = state[`ua:${lin.name}:pre`]!;
      const g = state[`ua:${lin.name}:g`]!;
      const hidden = ops.scratch('u:h')!;
      const dpre = ops.scratch('u:dpre')!;
      const gradY = ops.scratch('u:g')!;
      act.forward(rec, pre, hidden, m * rb);
      project.encode(rec, { a: hidden, b: weight(a.up), c: branch, m, n: d, k: rb });
      elementwise.addBias(rec, { target: branch, bias: adapter.tensor(a.upBias), rows: m, cols: d });
      vectors.rowDot(rec, { a: gradOutput, b: branch, out: gradGate, rows: m, cols: d });
      vectors.scaleRows(rec, { src: gradOutput, dst: gradBranch, gate: g, rows: m, cols: d });
      weightGrad.encode(rec, { a: gradBranch, b: hidden, c: weightGradient(a.up), m: d, n: rb, k: m });
      vectors.columnDot(rec, { a: gradBranch, out: adapter.gradient(a.upBias), rows: m, cols: d, accumulate: true });
      inputGrad.encode(rec, { a: gradBranch, b: weight(a.up), c: dh, m, n: rb, k: d });
      act.backward(rec, pre, dh, dpre, m * rb);
      weightGrad.encode(rec, { a: dpre, b: input, c: weightGradient(a.down), m: rb, n: d, k: m });
      vectors.columnDot(rec, { a: dpre, out: adapter.gradient(a.downBias), rows: m, cols: rb, accumulate: true });
      // dL/dy = dL/dy' + the adapter's input gradient + the gate's.
      elementwise.cast(rec, { src: gradOutput, dst: gradY, size: m * d });
      inputGradAdd.encode(rec, { a: dpre, b: weight(a.down), c: gradY, m, n: d, k: rb });
      gateBackward(rec, input, { weight: a.gate, bias: a.gateBias }, m, d, 1, state[`ua:${lin.name}:z`]!, gradGate, gradY);
      if (gradInput) ops.frozenBackward(rec, lin, gradY, gradInput, accumulate);
    },
    prefix: {
      ...table.prefix!,
      gate: {
        forward(rec, { layer, input, m, state }) {
          gateForward(rec, input, prefixGateKeys(arch.layerPrefix(layer)), m, model.hiddenSize, 2, state['pg:z']!, state['pg:gates']!);
          return state['pg:gates']!;
        },
        gates: (state) => state['pg:gates']!,
        backward(rec, { layer, input, m, state, gradGates, gradInput }) {
          gateBackward(rec, input, prefixGateKeys(arch.layerPrefix(layer)), m, model.hiddenSize, 2, state['pg:z']!, gradGates, gradInput);
        },
      },
    },
    release() {
      table.release();
      for (const h of half.values()) {
        h.param.release();
        h.grad.release();
      }
      half.clear();
    },
  };
}
