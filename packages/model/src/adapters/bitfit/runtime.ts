/**
 * BitFit inside a Transformer: y = x W^T + b + delta; d(delta) = sum over tokens of dL/dy (a
 * column sum), dx = dL/dy W as for a frozen linear. No saved state: the bias gradient needs
 * only the output gradient, which is why BitFit is the cheapest method to train (TinyTL).
 */
import { createElementwiseKernels, createVectorScaleKernels } from '@webtune/gpu';
import type { AdapterRuntime, RuntimeContext } from '../types.js';
import type { BitFitAdapter } from './adapter.js';

export async function createBitFitRuntime(adapter: BitFitAdapter, { ctx, dtype, ops }: RuntimeContext): Promise<AdapterRuntime> {
  const [scale, elementwise] = await Promise.all([createVectorScaleKernels(ctx, { dtype }), createElementwiseKernels(ctx, { dtype })]);
  return {
    beforeForward() {},
    afterBackward() {},
    linearForward(rec, { linear: lin, m, x, y }) {
      const p = adapter.params.get(lin.module)!;
      ops.frozenForward(rec, lin, x, y);
      if (lin.bias) elementwise.addBias(rec, { target: y, bias: lin.bias, rows: m, cols: lin.outFeatures });
      elementwise.addBias(rec, { target: y, bias: p.delta, rows: m, cols: lin.outFeatures });
    },
    linearBackward(rec, { linear: lin, m, gradOutput, gradInput, accumulate }) {
      const p = adapter.params.get(lin.module)!;
      scale.columnDot(rec, { a: gradOutput, out: p.grad, rows: m, cols: lin.outFeatures, accumulate: true });
      if (gradInput) ops.frozenBackward(rec, lin, gradOutput, gradInput, accumulate);
    },
    release() {},
  };
}
