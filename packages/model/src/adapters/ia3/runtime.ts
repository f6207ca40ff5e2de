/**
 * IA3 inside a Transformer (PEFT ia3/layer.py `Linear.forward`):
 *   output scaling   p = x W^T + b (saved),  y = p * l          dl = sum_t g * p,   dx = (g * l) W
 *   input scaling    s = x * l (scratch),    y = s W^T + b      gs = g W,  dl = sum_t x * gs,  dx = gs * l
 * l is f32 and used as it is in f16 compute (the kernels read f32 vectors), so there are no half copies.
 */
import { createElementwiseKernels, createVectorScaleKernels } from '@webtune/gpu';
import type { AdapterRuntime, RuntimeContext } from '../types.js';
import type { IA3Adapter } from './adapter.js';

export async function createIA3Runtime(adapter: IA3Adapter, { ctx, dtype, ops }: RuntimeContext): Promise<AdapterRuntime> {
  const [scale, elementwise] = await Promise.all([createVectorScaleKernels(ctx, { dtype }), createElementwiseKernels(ctx, { dtype })]);
  return {
    beforeForward() {},
    afterBackward() {},
    linearForward(rec, { linear: lin, m, x, y, state }) {
      const p = adapter.params.get(lin.module)!;
      if (p.feedforward) {
        const scaled = ops.scratch('ia3In')!;
        scale.scaleColumns(rec, { src: x, vector: p.l, dst: scaled, rows: m, cols: lin.inFeatures });
        ops.frozenForward(rec, lin, scaled, y);
        if (lin.bias) elementwise.addBias(rec, { target: y, bias: lin.bias, rows: m, cols: lin.outFeatures });
      } else {
        const saved = state[`ia3:${lin.name}`]!;
        ops.frozenForward(rec, lin, x, saved);
        if (lin.bias) elementwise.addBias(rec, { target: saved, bias: lin.bias, rows: m, cols: lin.outFeatures });
        scale.scaleColumns(rec, { src: saved, vector: p.l, dst: y, rows: m, cols: lin.outFeatures });
      }
    },
    linearBackward(rec, { linear: lin, m, x, state, gradOutput, gradInput, accumulate }) {
      const p = adapter.params.get(lin.module)!;
      const scratch = ops.scratch('ia3Grad')!;
      if (p.feedforward) {
        ops.frozenBackward(rec, lin, gradOutput, scratch, false);
        scale.columnDot(rec, { a: x, b: scratch, out: p.grad, rows: m, cols: lin.inFeatures, accumulate: true });
        if (gradInput) scale.scaleColumns(rec, { src: scratch, vector: p.l, dst: gradInput, rows: m, cols: lin.inFeatures, accumulate });
      } else {
        scale.columnDot(rec, { a: gradOutput, b: state[`ia3:${lin.name}`]!, out: p.grad, rows: m, cols: lin.outFeatures, accumulate: true });
        if (gradInput) {
          scale.scaleColumns(rec, { src: gradOutput, vector: p.l, dst: scratch, rows: m, cols: lin.outFeatures });
          ops.frozenBackward(rec, lin, scratch, gradInput, accumulate);
        }
      }
    },
    release() {},
  };
}
