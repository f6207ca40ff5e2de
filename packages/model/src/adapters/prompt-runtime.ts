/**
 * The runtime of PEFT's prompt-learning methods inside a Transformer. Each has one table of rows
 * the transformer reads: virtual-token embeddings (prompt tuning, P-tuning) or every layer's key and
 * value prefixes side by side (prefix tuning, PEFT's [P, layers * 2 * kv width] layout). The runtime
 * hands the table over in the compute dtype and takes back its gradient, summed over the batch.
 * The table is a trainable tensor (prompt tuning; prefix tuning without projection) or an encoder's
 * output (P-tuning; prefix projection), whose forward runs once per adapter version and whose
 * backward runs after the model's. In f32, a trainable table's gradient is added to directly.
 */
import { createElementwiseKernels, createTensor, type GpuTensor } from '@webtune/gpu';
import type { TensorSetAdapter } from './module-adapter.js';
import type { PromptEncoder } from './prompt-encoder.js';
import type { AdapterRuntime, RuntimeContext } from './types.js';

/** Where the table comes from: a trainable tensor, or an encoder's output. */
export type PromptSource = { tensor: string } | { encoder: PromptEncoder };

/** What the table is: virtual tokens, or per-layer key/value prefixes `kvWidth` wide (keys of layer l at columns 2l * kvWidth, values after them). */
export type PromptUse = { virtualTokens: true } | { prefix: { kvWidth: number } };

export async function createPromptRuntime(adapter: TensorSetAdapter<unknown>, { ctx, dtype }: RuntimeContext, source: PromptSource, use: PromptUse): Promise<AdapterRuntime> {
  const [f32, half] = await Promise.all([createElementwiseKernels(ctx, {}), dtype === 'f16' ? createElementwiseKernels(ctx, { dtype }) : undefined]);
  const encoder = 'encoder' in source ? source.encoder : undefined;
  const values: GpuTensor = encoder ? encoder.output : adapter.tensor((source as { tensor: string }).tensor);
  const [count, width] = values.shape as [number, number];
  const owned: GpuTensor[] = [];
  const make = (dt: 'f32' | 'f16', label: string) => {
    const t = createTensor(ctx, { shape: [count, width], dtype: dt, label, data: new Float32Array(count * width) });
    owned.push(t);
    return t;
  };
  // f32 prompt tuning reads and writes the trainable tensor directly; otherwise copies in the compute dtype.
  const direct = !encoder && dtype === 'f32';
  const table = dtype === 'f32' ? values : make('f16', 'prompt table (f16)');
  const gradient = direct ? adapter.gradient((source as { tensor: string }).tensor) : make(dtype, 'prompt table grad');
  const gradientF32 = encoder && dtype === 'f16' ? make('f32', 'prompt table grad (f32)') : gradient;
  let synced = -1;
  return {
    beforeForward(rec) {
      if (synced === adapter.version) return;
      encoder?.forward(rec);
      if (dtype === 'f16') f32.cast(rec, { src: values, dst: table, size: values.size });
      synced = adapter.version;
    },
    afterBackward(rec) {
      if (direct) return;
      if (encoder) {
        if (gradientF32 !== gradient) f32.cast(rec, { src: gradient, dst: gradientF32, size: gradient.size });
        encoder.backward(rec, gradientF32);
      } else {
        f32.cast(rec, { src: gradient, dst: adapter.gradient((source as { tensor: string }).tensor), size: gradient.size, accumulate: true });
      }
      (half ?? f32).fill(rec, { target: gradient, size: gradient.size, value: 0 });
    },
    linearForward() {
      throw new Error('unreachable: prompt methods touch no linear');
    },
    linearBackward() {
      throw new Error('unreachable: prompt methods touch no linear');
    },
    ...('prefix' in use
      ? { prefix: { count, table, gradient, columns: width, keyOffset: (l: number) => 2 * l * use.prefix.kvWidth, valueOffset: (l: number) => (2 * l + 1) * use.prefix.kvWidth } }
      : { virtualTokens: { count, embeddings: table, gradient } }),
    release() {
      encoder?.release();
      for (const t of owned) t.release();
      owned.length = 0;
    },
  };
}
