/** Adapters on the GPU from a spec: fresh, or from saved tensors. */
import type { GpuContext } from '@webtune/gpu';
import type { ModelConfig } from '../config.js';
import { InvalidArgumentError } from '@webtune/errors';
import type { BaseModel } from '../weights.js';
import { BitFitAdapter } from './bitfit/adapter.js';
import { BottleneckAdapter } from './bottleneck/adapter.js';
import type { BottleneckConfig } from './bottleneck/config.js';
import { PTuningAdapter } from './p-tuning/adapter.js';
import type { PTuningConfig } from './p-tuning/config.js';
import { PrefixTuningAdapter } from './prefix-tuning/adapter.js';
import type { PrefixTuningConfig } from './prefix-tuning/config.js';
import { PromptTuningAdapter } from './prompt-tuning/adapter.js';
import type { PromptTuningConfig } from './prompt-tuning/config.js';
import { UniPeltAdapter } from './unipelt/adapter.js';
import type { UniPeltConfig } from './unipelt/config.js';
import { DoraAdapter } from './dora/adapter.js';
import type { DoraConfig } from './dora/config.js';
import type { BitFitConfig } from './bitfit/config.js';
import { IA3Adapter } from './ia3/adapter.js';
import type { IA3Config } from './ia3/config.js';
import { LoraAdapter } from './lora/adapter.js';
import type { LoraConfig } from './lora/config.js';
import { adapterMethod } from './registry.js';
import type { Adapter, AdapterSpec, HostTensor } from './types.js';

/**
 * A fresh adapter for `spec` (its config resolved against the model first), initialised as its
 * method does, with `seed`. DoRA starts its magnitude from the base weights: use
 * createAdapterOnBase for it (that works for every method).
 */
export function createAdapter(ctx: GpuContext, model: ModelConfig, spec: AdapterSpec, seed = 0): Adapter {
  const config = adapterMethod(spec.method).resolve(model, spec.config);
  switch (spec.method) {
    case 'lora': return LoraAdapter.create(ctx, model, config as LoraConfig, seed);
    case 'dora': throw new InvalidArgumentError('A DoRA adapter starts from the base weights\' row norms: create it with createAdapterOnBase(ctx, base, spec).');
    case 'ia3': return IA3Adapter.create(ctx, model, config as IA3Config);
    case 'bitfit': return BitFitAdapter.create(ctx, model, config as BitFitConfig, seed);
    case 'prompt-tuning': return PromptTuningAdapter.create(ctx, model, config as PromptTuningConfig, seed);
    case 'p-tuning': return PTuningAdapter.create(ctx, model, config as PTuningConfig, seed);
    case 'prefix-tuning': return PrefixTuningAdapter.create(ctx, model, config as PrefixTuningConfig, seed);
    case 'bottleneck': return BottleneckAdapter.create(ctx, model, config as BottleneckConfig, seed);
    case 'unipelt': return UniPeltAdapter.create(ctx, model, config as UniPeltConfig, seed);
  }
}

/** An adapter from saved tensors (PEFT keys); every key is checked and extras are refused. */
export function adapterFromTensors(ctx: GpuContext, model: ModelConfig, spec: AdapterSpec, tensors: ReadonlyMap<string, HostTensor>, source = 'adapter'): Adapter {
  const config = adapterMethod(spec.method).resolve(model, spec.config);
  switch (spec.method) {
    case 'lora': return LoraAdapter.fromTensors(ctx, model, config as LoraConfig, tensors, source);
    case 'dora': return DoraAdapter.fromTensors(ctx, model, config as DoraConfig, tensors, source);
    case 'ia3': return IA3Adapter.fromTensors(ctx, model, config as IA3Config, tensors, source);
    case 'bitfit': return BitFitAdapter.fromTensors(ctx, model, config as BitFitConfig, tensors, source);
    case 'prompt-tuning': return PromptTuningAdapter.fromTensors(ctx, model, config as PromptTuningConfig, tensors, source);
    case 'p-tuning': return PTuningAdapter.fromTensors(ctx, model, config as PTuningConfig, tensors, source);
    case 'prefix-tuning': return PrefixTuningAdapter.fromTensors(ctx, model, config as PrefixTuningConfig, tensors, source);
    case 'bottleneck': return BottleneckAdapter.fromTensors(ctx, model, config as BottleneckConfig, tensors, source);
    case 'unipelt': return UniPeltAdapter.fromTensors(ctx, model, config as UniPeltConfig, tensors, source);
  }
}

/**
 * A fresh adapter of any method on the uploaded base model (DoRA reads the base weights' row
 * norms; prompt tuning's TEXT init reads the embeddings of its init text's tokens).
 */
export async function createAdapterOnBase(ctx: GpuContext, base: BaseModel, spec: AdapterSpec, seed = 0): Promise<Adapter> {
  if (spec.method === 'dora') return DoraAdapter.create(ctx, base, adapterMethod('dora').resolve(base.config, spec.config) as DoraConfig, seed);
  if (spec.method === 'prompt-tuning') return PromptTuningAdapter.createOnBase(ctx, base, adapterMethod('prompt-tuning').resolve(base.config, spec.config) as PromptTuningConfig, seed);
  return createAdapter(ctx, base.config, spec, seed);
}
