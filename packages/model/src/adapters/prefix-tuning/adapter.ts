/** Prefix tuning's tensors on the GPU: the prefixes, or the projection's input embeddings and MLP. */
import type { GpuContext } from '@webtune/gpu';
import type { ModelConfig } from '../../config.js';
import { Rng } from '../../rng.js';
import { savedTensorInits, TensorSetAdapter } from '../module-adapter.js';
import { createPromptEncoder } from '../prompt-encoder.js';
import { initEncoder } from '../prompt-learning.js';
import { createPromptRuntime } from '../prompt-runtime.js';
import type { Adapter, AdapterBuffers, AdapterRuntime, HostTensor, RuntimeContext, SequenceLayout } from '../types.js';
import { PREFIX_EMBEDDING, PREFIX_PROJECTION, prefixTokenDim, prefixTuningShapes, type PrefixTuningConfig } from './config.js';

export class PrefixTuningAdapter extends TensorSetAdapter<PrefixTuningConfig> implements Adapter {
  readonly method = 'prefix-tuning' as const;

  private constructor(ctx: GpuContext, model: ModelConfig, config: PrefixTuningConfig) {
    super(ctx, model, config);
  }

  override get sequence(): SequenceLayout {
    return { virtualTokens: 0, prefixTokens: this.config.numVirtualTokens };
  }

  /** nn.Embedding's N(0, 1) for the prefixes (or the projection's input), nn.Linear's kaiming-uniform for the MLP, from `seed`. */
  static create(ctx: GpuContext, model: ModelConfig, config: PrefixTuningConfig, seed = 0): PrefixTuningAdapter {
    const shapes = prefixTuningShapes(model, config);
    const tensors = initEncoder(shapes[0]!, config.prefixProjection ? PREFIX_PROJECTION : [], shapes, new Rng(seed));
    return PrefixTuningAdapter.fromTensors(ctx, model, config, tensors);
  }

  static fromTensors(ctx: GpuContext, model: ModelConfig, config: PrefixTuningConfig, tensors: ReadonlyMap<string, HostTensor>, source = 'adapter'): PrefixTuningAdapter {
    const inits = savedTensorInits(prefixTuningShapes(model, config), tensors, 'prefix tuning', source);
    const adapter = new PrefixTuningAdapter(ctx, model, config);
    adapter.build(inits, 'prefix tuning');
    return adapter;
  }

  buffers(): AdapterBuffers {
    return { layer: [], shared: [] };
  }

  async createRuntime(context: RuntimeContext): Promise<AdapterRuntime> {
    const use = { prefix: { kvWidth: prefixTokenDim(this.model) } };
    if (!this.config.prefixProjection) return createPromptRuntime(this, context, { tensor: PREFIX_EMBEDDING }, use);
    const encoder = await createPromptEncoder(context.ctx, this, PREFIX_EMBEDDING, PREFIX_PROJECTION);
    try {
      return await createPromptRuntime(this, context, { encoder }, use);
    } catch (error) {
      encoder.release();
      throw error;
    }
  }
}
