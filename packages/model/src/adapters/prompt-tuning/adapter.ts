/** Prompt tuning's virtual-token embeddings on the GPU ([numVirtualTokens, hidden] f32 with a gradient). */
import { createElementwiseKernels, createTensor, readF32, CommandRecorder, type GpuContext } from '@webtune/gpu';
import { InvalidArgumentError } from '@webtune/errors';
import type { ModelConfig } from '../../config.js';
import { Rng } from '../../rng.js';
import type { BaseModel } from '../../weights.js';
import { savedTensorInits, TensorSetAdapter } from '../module-adapter.js';
import { normalTensor, PROMPT_EMBEDDINGS } from '../prompt-learning.js';
import type { Adapter, AdapterBuffers, AdapterRuntime, HostTensor, RuntimeContext, SequenceLayout } from '../types.js';
import { initTokenRows, promptTuningShapes, type PromptTuningConfig } from './config.js';
import { createPromptRuntime } from '../prompt-runtime.js';

export class PromptTuningAdapter extends TensorSetAdapter<PromptTuningConfig> implements Adapter {
  readonly method = 'prompt-tuning' as const;

  private constructor(ctx: GpuContext, model: ModelConfig, config: PromptTuningConfig) {
    super(ctx, model, config);
  }

  override get sequence(): SequenceLayout {
    return { virtualTokens: this.config.numVirtualTokens, prefixTokens: 0 };
  }

  /** RANDOM init: N(0, 1) from `seed`. TEXT init reads the base model's embeddings: use createOnBase. */
  static create(ctx: GpuContext, model: ModelConfig, config: PromptTuningConfig, seed = 0): PromptTuningAdapter {
    if (config.init === 'text') throw new InvalidArgumentError("Prompt tuning with init 'text' starts from the base model's embeddings: create it with createAdapterOnBase(ctx, base, spec).");
    return PromptTuningAdapter.withTensors(ctx, model, config, new Map([[PROMPT_EMBEDDINGS, normalTensor([config.numVirtualTokens, model.hiddenSize], new Rng(seed))]]));
  }

  /** Either init; TEXT copies the embedding rows of the init text's tokens (repeated or cut, as PEFT does). */
  static async createOnBase(ctx: GpuContext, base: BaseModel, config: PromptTuningConfig, seed = 0): Promise<PromptTuningAdapter> {
    if (config.init !== 'text') return PromptTuningAdapter.create(ctx, base.config, config, seed);
    if (!config.initTokenIds) throw new InvalidArgumentError("Prompt tuning with init 'text' needs the init text's token ids (initTokenIds); the SDK fills them from initText with the model's tokenizer.");
    const d = base.config.hiddenSize;
    const rows = initTokenRows(config.initTokenIds, config.numVirtualTokens);
    // Gather only the rows needed (the whole table can be hundreds of MB), in the base's dtype, then read them back as f32.
    const ew = await createElementwiseKernels(ctx, { dtype: base.embed.dtype as 'f32' | 'f16' });
    const picked = createTensor(ctx, { shape: [rows.length, d], dtype: base.embed.dtype, label: 'prompt tuning init' });
    try {
      const rec = new CommandRecorder(ctx, 'prompt tuning init');
      rows.forEach((id, r) => ew.copyColumns(rec, { src: base.embed, srcCols: d, srcOffset: 0, srcRowOffset: id, dst: picked, dstCols: d, dstOffset: 0, dstRowOffset: r, rows: 1, cols: d }));
      rec.submit();
      const data = await readF32(ctx, picked);
      return PromptTuningAdapter.withTensors(ctx, base.config, config, new Map([[PROMPT_EMBEDDINGS, { data, shape: [rows.length, d] }]]));
    } finally {
      picked.release();
    }
  }

  static fromTensors(ctx: GpuContext, model: ModelConfig, config: PromptTuningConfig, tensors: ReadonlyMap<string, HostTensor>, source = 'adapter'): PromptTuningAdapter {
    return PromptTuningAdapter.withTensors(ctx, model, config, tensors, source);
  }

  private static withTensors(ctx: GpuContext, model: ModelConfig, config: PromptTuningConfig, tensors: ReadonlyMap<string, HostTensor>, source = 'adapter'): PromptTuningAdapter {
    const inits = savedTensorInits(promptTuningShapes(model, config), tensors, 'prompt tuning', source);
    const adapter = new PromptTuningAdapter(ctx, model, config);
    adapter.build(inits, 'prompt embeddings');
    return adapter;
  }

  buffers(): AdapterBuffers {
    return { layer: [], shared: [] };
  }

  createRuntime(context: RuntimeContext): Promise<AdapterRuntime> {
    return createPromptRuntime(this, context, { tensor: PROMPT_EMBEDDINGS }, { virtualTokens: true });
  }
}
