/** P-tuning's encoder on the GPU: input embeddings and the MLP, with PyTorch's default inits. */
import type { GpuContext } from '@webtune/gpu';
import type { ModelConfig } from '../../config.js';
import { Rng } from '../../rng.js';
import { savedTensorInits, TensorSetAdapter } from '../module-adapter.js';
import { createPromptEncoder } from '../prompt-encoder.js';
import { initEncoder } from '../prompt-learning.js';
import { createPromptRuntime } from '../prompt-runtime.js';
import type { Adapter, AdapterBuffers, AdapterRuntime, HostTensor, RuntimeContext, SequenceLayout } from '../types.js';
import { pTuningShapes, PTUNING_EMBEDDING, PTUNING_LAYERS, type PTuningConfig } from './config.js';

export class PTuningAdapter extends TensorSetAdapter<PTuningConfig> implements Adapter {
  readonly method = 'p-tuning' as const;

  private constructor(ctx: GpuContext, model: ModelConfig, config: PTuningConfig) {
    super(ctx, model, config);
  }

  override get sequence(): SequenceLayout {
    return { virtualTokens: this.config.numVirtualTokens, prefixTokens: 0 };
  }

  /** nn.Embedding's N(0, 1) for the input embeddings, nn.Linear's kaiming-uniform for the MLP, from `seed`. */
  static create(ctx: GpuContext, model: ModelConfig, config: PTuningConfig, seed = 0): PTuningAdapter {
    const shapes = pTuningShapes(model, config);
    return PTuningAdapter.fromTensors(ctx, model, config, initEncoder(shapes[0]!, PTUNING_LAYERS, shapes, new Rng(seed)));
  }

  static fromTensors(ctx: GpuContext, model: ModelConfig, config: PTuningConfig, tensors: ReadonlyMap<string, HostTensor>, source = 'adapter'): PTuningAdapter {
    const inits = savedTensorInits(pTuningShapes(model, config), tensors, 'P-tuning', source);
    const adapter = new PTuningAdapter(ctx, model, config);
    adapter.build(inits, 'p-tuning encoder');
    return adapter;
  }

  buffers(): AdapterBuffers {
    return { layer: [], shared: [] };
  }

  async createRuntime(context: RuntimeContext): Promise<AdapterRuntime> {
    const encoder = await createPromptEncoder(context.ctx, this, PTUNING_EMBEDDING, PTUNING_LAYERS);
    try {
      return await createPromptRuntime(this, context, { encoder }, { virtualTokens: true });
    } catch (error) {
      encoder.release();
      throw error;
    }
  }
}
