/**
 * DoRA inside a Transformer (PEFT `tuners/lora/dora.py`), with V = W + s B A and n = ||V||_row
 * treated as a constant in backward (DoRA paper, section 4.3):
 *   forward   y' = x W^T + s (x A^T) B^T          (the LoRA kernel)
 *             z  = y' / n   (saved)               y = m * z + bias
 *   backward  dm = sum_t g * z                    g' = g * (m / n)
 *             dA, dB, dx from g' as LoRA's backward
 * n and m / n depend on the parameters only: they are computed once per adapter version (after
 * each optimizer step), not per token. A 4-bit base is dequantized into a scratch for the norm.
 */
import {
  CommandRecorder, createDoraKernels, createElementwiseKernels, createLoraKernels, createNF4DequantizeKernel, createTensor, createVectorScaleKernels, readF32,
  type GpuContext, type GpuTensor,
} from '@webtune/gpu';
import type { BaseModel, FrozenLinear } from '../../weights.js';
import { halfCopies } from '../lora/runtime.js';
import type { AdapterRuntime, RuntimeContext, TargetModule } from '../types.js';
import type { DoraAdapter, DoraParam } from './adapter.js';

/** ||W||_row of every module's base weight (DoRA's initial magnitude), read back to the host. */
export async function baseWeightNorms(ctx: GpuContext, base: BaseModel, modules: Array<TargetModule & { a: GpuTensor; b: GpuTensor }>): Promise<Map<string, Float32Array>> {
  const dtype = base.dtype;
  const [dora, dequantize] = await Promise.all([
    createDoraKernels(ctx, { dtype }),
    base.nf4 ? createNF4DequantizeKernel(ctx, { ...base.nf4, dtype }) : undefined,
  ]);
  const out = new Map<string, Float32Array>();
  for (const p of modules) {
    const lin = base.layers[p.layer]!.linears.get(p.name)!;
    const owned: GpuTensor[] = [];
    try {
      const rec = new CommandRecorder(ctx, 'dora init');
      let weight: GpuTensor;
      if (lin.weight.format === 'nf4') {
        weight = createTensor(ctx, { shape: [p.outFeatures * p.inFeatures], dtype, label: 'dora weight (dequantized)' });
        owned.push(weight);
        dequantize!.encode(rec, { weight: lin.weight.weight, output: weight });
      } else {
        weight = lin.weight.weight;
      }
      const norm = createTensor(ctx, { shape: [p.outFeatures], label: 'dora norm' });
      owned.push(norm);
      // B is zero at initialisation, so this is ||W||.
      dora.weightNorm(rec, { weight, a: p.a, b: p.b, scale: 0, norm, out: p.outFeatures, in: p.inFeatures, rank: p.a.shape[0]! });
      rec.submit();
      out.set(p.module, await readF32(ctx, norm));
    } finally {
      for (const t of owned) t.release();
    }
  }
  return out;
}

export async function createDoraRuntime(adapter: DoraAdapter, { ctx, dtype, nf4, ops }: RuntimeContext): Promise<AdapterRuntime> {
  const [lora, dora, scale, elementwise, dequantize] = await Promise.all([
    createLoraKernels(ctx, { dtype, base: nf4 ? { format: 'nf4', ...nf4 } : { format: 'dense' }, accumulateGrads: dtype === 'f32' }),
    createDoraKernels(ctx, { dtype }),
    createVectorScaleKernels(ctx, { dtype }),
    createElementwiseKernels(ctx, { dtype }),
    nf4 ? createNF4DequantizeKernel(ctx, { ...nf4, dtype }) : undefined,
  ]);
  const half = halfCopies(ctx, elementwise, adapter.params.values(), dtype);
  // 1 / n and m / n per module, refreshed when the adapter changes.
  const vectors = new Map<string, { invNorm: GpuTensor; mOverNorm: GpuTensor }>();
  for (const p of adapter.params.values()) {
    vectors.set(p.module, {
      invNorm: createTensor(ctx, { shape: [p.outFeatures], label: 'dora 1/norm' }),
      mOverNorm: createTensor(ctx, { shape: [p.outFeatures], label: 'dora m/norm' }),
    });
  }
  let normsVersion = -1;
  const layerOf = (lin: FrozenLinear, p: DoraParam) => {
    const t = half.of(p);
    return { base: lin.weight, a: t.a, b: t.b, scale: adapter.scale };
  };
  const frozenOf = (p: DoraParam): FrozenLinear => ops.linear(p.layer, p.name);

  return {
    beforeForward(rec) {
      half.sync(rec, adapter.version);
      if (normsVersion === adapter.version) return;
      for (const p of adapter.params.values()) {
        const lin = frozenOf(p);
        let weight: GpuTensor;
        if (lin.weight.format === 'nf4') {
          weight = ops.scratch('doraWeight')!;
          dequantize!.encode(rec, { weight: lin.weight.weight, output: weight });
        } else {
          weight = lin.weight.weight;
        }
        const v = vectors.get(p.module)!;
        dora.weightNorm(rec, {
          weight, a: p.a, b: p.b, scale: adapter.scale, magnitude: p.m, invNorm: v.invNorm, mOverNorm: v.mOverNorm,
          out: p.outFeatures, in: p.inFeatures, rank: adapter.config.rank,
        });
      }
      normsVersion = adapter.version;
    },
    afterBackward: (rec) => half.accumulate(rec),
    linearForward(rec, { linear: lin, m, x, y, state }) {
      const p = adapter.params.get(lin.module)!;
      const v = vectors.get(lin.module)!;
      const z = state[`z:${lin.name}`]!;
      lora.forward(rec, { layer: layerOf(lin, p), m, x, h: state[`h:${lin.name}`]!, y, weightScratch: ops.scratch('weightScratch') });
      scale.scaleColumns(rec, { src: y, vector: v.invNorm, dst: z, rows: m, cols: lin.outFeatures });
      scale.scaleColumns(rec, { src: z, vector: p.m, dst: y, rows: m, cols: lin.outFeatures });
      if (lin.bias) elementwise.addBias(rec, { target: y, bias: lin.bias, rows: m, cols: lin.outFeatures });
    },
    linearBackward(rec, { linear: lin, m, x, state, gradOutput, gradInput, accumulate }) {
      const p = adapter.params.get(lin.module)!;
      const v = vectors.get(lin.module)!;
      const scaled = ops.scratch('doraGrad')!;
      scale.columnDot(rec, { a: gradOutput, b: state[`z:${lin.name}`]!, out: p.gradM, rows: m, cols: lin.outFeatures, accumulate: true });
      scale.scaleColumns(rec, { src: gradOutput, vector: v.mOverNorm, dst: scaled, rows: m, cols: lin.outFeatures });
      lora.backward(rec, {
        layer: layerOf(lin, p), m, x, h: state[`h:${lin.name}`]!, gradOutput: scaled, gB: ops.scratch('gB')!,
        gradA: half.of(p).gradA, gradB: half.of(p).gradB, gradInput, accumulateGradInput: accumulate,
        weightScratch: ops.scratch('weightScratch'),
      });
    },
    release() {
      half.release();
      for (const v of vectors.values()) for (const t of [v.invNorm, v.mOverNorm]) t.release();
      vectors.clear();
    },
  };
}
