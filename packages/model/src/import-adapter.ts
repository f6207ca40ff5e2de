/** Adapter files onto the GPU (GPU code, kept apart from peft.ts so file-only apps do not bundle kernels). */
import type { GpuContext } from '@webtune/gpu';
import { adapterFromTensors } from './adapters/create.js';
import type { Adapter } from './adapters/types.js';
import type { ModelConfig } from './config.js';
import { readPeftAdapter } from './peft.js';

/** A GPU adapter (LoRA, IA3 or BitFit, as adapter_config.json says) from its files, to continue training or to generate. */
export function importPeftAdapter(ctx: GpuContext, model: ModelConfig, files: { config: string; weights: Uint8Array }): Adapter {
  const { spec, tensors } = readPeftAdapter(model, files);
  return adapterFromTensors(ctx, model, spec, tensors, 'adapter_model.safetensors');
}
