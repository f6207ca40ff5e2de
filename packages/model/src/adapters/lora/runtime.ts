/**
 * LoRA inside a Transformer: y = x W^T + s (x~ A^T) B^T on the targeted linears, with the
 * gradients of A and B (gpu `createLoraKernels`), LoRA dropout on the branch input, and for f16
 * compute half copies of A and B refreshed when the adapter changes and half gradients folded
 * into the f32 ones after backward.
 */
import { createDropoutKernels, createElementwiseKernels, createLoraKernels, createTensor, type CommandRecorder, type ElementwiseKernels, type GpuContext, type GpuTensor } from '@webtune/gpu';
import type { FrozenLinear } from '../../weights.js';
import type { AdapterRuntime, RuntimeContext } from '../types.js';
import type { LoraAdapter } from './adapter.js';

/** The LoRA tensors of one module: f32 masters, or their f16 copies. */
export type LoraTensors = { module: string; a: GpuTensor; b: GpuTensor; gradA: GpuTensor; gradB: GpuTensor };

/**
 * f16 compute keeps half copies of A and B (refreshed when the adapter's version changes) and
 * half gradients (folded into the f32 ones after backward); f32 uses the masters. Shared by LoRA
 * and DoRA.
 */
export function halfCopies(ctx: GpuContext, elementwise: ElementwiseKernels, params: Iterable<LoraTensors>, dtype: 'f32' | 'f16') {
  const masters = [...params];
  const half = new Map<string, LoraTensors>();
  if (dtype === 'f16') {
    for (const p of masters) {
      const t = (shape: readonly number[], label: string) => createTensor(ctx, { shape, dtype: 'f16', label });
      half.set(p.module, { module: p.module, a: t(p.a.shape, 'lora A (f16)'), b: t(p.b.shape, 'lora B (f16)'), gradA: t(p.a.shape, 'lora grad (f16)'), gradB: t(p.b.shape, 'lora grad (f16)') });
    }
  }
  let synced = -1;
  return {
    /** The tensors the kernels use for a module. */
    of: (p: LoraTensors): LoraTensors => half.get(p.module) ?? p,
    sync(rec: CommandRecorder, version: number): void {
      if (half.size === 0 || synced === version) return;
      for (const p of masters) {
        const h = half.get(p.module)!;
        elementwise.cast(rec, { src: p.a, dst: h.a, size: p.a.size });
        elementwise.cast(rec, { src: p.b, dst: h.b, size: p.b.size });
      }
      synced = version;
    },
    accumulate(rec: CommandRecorder): void {
      for (const p of masters) {
        const h = half.get(p.module);
        if (!h) continue;
        elementwise.cast(rec, { src: h.gradA, dst: p.gradA, size: p.gradA.size, accumulate: true });
        elementwise.cast(rec, { src: h.gradB, dst: p.gradB, size: p.gradB.size, accumulate: true });
      }
    },
    release(): void {
      for (const h of half.values()) for (const t of [h.a, h.b, h.gradA, h.gradB]) t.release();
      half.clear();
    },
  };
}

export async function createLoraRuntime(adapter: LoraAdapter, { ctx, dtype, nf4, ops }: RuntimeContext): Promise<AdapterRuntime> {
  const [lora, dropout, elementwise] = await Promise.all([
    // f32 accumulates LoRA gradients in place; f16 writes them to half copies that are then
    // added into the f32 gradients (afterBackward).
    createLoraKernels(ctx, { dtype, base: nf4 ? { format: 'nf4', ...nf4 } : { format: 'dense' }, accumulateGrads: dtype === 'f32' }),
    createDropoutKernels(ctx, { dtype }),
    createElementwiseKernels(ctx, { dtype }),
  ]);
  const half = halfCopies(ctx, elementwise, adapter.params.values(), dtype);
  const layerOf = (lin: FrozenLinear, p: LoraTensors) => {
    const t = half.of(p);
    return { base: lin.weight, a: t.a, b: t.b, scale: adapter.scale };
  };
  const rate = adapter.config.dropout;

  return {
    beforeForward: (rec) => half.sync(rec, adapter.version),
    afterBackward: (rec) => half.accumulate(rec),
    linearForward(rec, { linear: lin, m, x, y, state, training, seed, stream }) {
      const p = adapter.params.get(lin.module)!;
      let loraInput: GpuTensor | undefined;
      if (training && rate > 0) {
        loraInput = state[`xd:${lin.name}`]!;
        dropout.forward(rec, { x, y: loraInput, size: m * lin.inFeatures, p: rate, seed, stream });
      }
      lora.forward(rec, { layer: layerOf(lin, p), m, x, h: state[`h:${lin.name}`]!, y, loraInput, weightScratch: ops.scratch('weightScratch') });
      if (lin.bias) elementwise.addBias(rec, { target: y, bias: lin.bias, rows: m, cols: lin.outFeatures });
    },
    linearBackward(rec, { linear: lin, m, x, state, seed, stream, gradOutput, gradInput, accumulate }) {
      const p = adapter.params.get(lin.module)!;
      const loraInput = rate > 0 ? state[`xd:${lin.name}`] : undefined;
      const loraGradInput = rate > 0 && gradInput ? ops.scratch('loraDx') : undefined;
      lora.backward(rec, {
        layer: layerOf(lin, p), m, x, h: state[`h:${lin.name}`]!, gradOutput, gB: ops.scratch('gB')!,
        gradA: half.of(p).gradA, gradB: half.of(p).gradB, gradInput, accumulateGradInput: accumulate, loraInput, loraGradInput,
        weightScratch: ops.scratch('weightScratch'),
      });
      if (loraGradInput && gradInput) {
        dropout.backward(rec, { gradOutput: loraGradInput, gradInput, size: m * lin.inFeatures, p: rate, seed, stream, accumulate: true });
      }
    },
    release: () => half.release(),
  };
}
