/** BitFit bias offsets on the GPU ([out] f32 with gradients), zero-initialised. */
import { createTensor, type GpuContext, type GpuTensor } from '@webtune/gpu';
import { ModelFormatError } from '@webtune/errors';
import type { ModelConfig } from '../../config.js';
import { selectModules } from '../targets.js';
import { ModuleAdapter } from '../module-adapter.js';
import type { Adapter, AdapterBuffers, AdapterRuntime, HostTensor, RuntimeContext, TargetModule, TrainableTensor } from '../types.js';
import { bitfitKey, type BitFitConfig } from './config.js';
import { createBitFitRuntime } from './runtime.js';

export interface BitFitParam extends TargetModule {
  /** [out] f32, added to the base bias (or the bias, where the base has none). */
  delta: GpuTensor;
  grad: GpuTensor;
}

export class BitFitAdapter extends ModuleAdapter<BitFitParam, BitFitConfig> implements Adapter {
  readonly method = 'bitfit' as const;

  private constructor(ctx: GpuContext, model: ModelConfig, config: BitFitConfig) {
    super(ctx, model, config);
  }

  override get learningRateScale(): number {
    return this.config.learningRateScale;
  }

  /** Zero offsets: the adapted model starts as the base. (`seed` is unused: nothing is random.) */
  static create(ctx: GpuContext, model: ModelConfig, config: BitFitConfig, _seed = 0): BitFitAdapter {
    return BitFitAdapter.build(ctx, model, config, (t) => new Float32Array(t.outFeatures));
  }

  static fromTensors(ctx: GpuContext, model: ModelConfig, config: BitFitConfig, tensors: ReadonlyMap<string, HostTensor>, source = 'adapter'): BitFitAdapter {
    const used = new Set<string>();
    const adapter = BitFitAdapter.build(ctx, model, config, (t) => {
      const key = bitfitKey(t.module);
      const tensor = tensors.get(key);
      if (!tensor) throw new ModelFormatError(source, `has no "${key}", which BitFit targets ${JSON.stringify(config.targets)} need`);
      if (tensor.shape.length !== 1 || tensor.shape[0] !== t.outFeatures) throw new ModelFormatError(source, `"${key}" is [${tensor.shape.join(', ')}]; this model needs [${t.outFeatures}]`);
      used.add(key);
      return tensor.data;
    });
    adapter.refuseExtra(tensors, used, source);
    return adapter;
  }

  private static build(ctx: GpuContext, model: ModelConfig, config: BitFitConfig, init: (t: TargetModule) => Float32Array): BitFitAdapter {
    const adapter = new BitFitAdapter(ctx, model, config);
    adapter.fill(selectModules(model, config.targets, config.layers), (t) => ({
      ...t,
      delta: adapter.own(createTensor(ctx, { shape: [t.outFeatures], label: 'bitfit bias', data: init(t) })),
      grad: adapter.own(createTensor(ctx, { shape: [t.outFeatures], label: 'bitfit grad', data: new Float32Array(t.outFeatures) })),
    }), 'BitFit', config.targets);
    return adapter;
  }

  *trainable(): Generator<TrainableTensor> {
    for (const p of this.params.values()) yield { key: bitfitKey(p.module), param: p.delta, grad: p.grad };
  }

  buffers(): AdapterBuffers {
    return { layer: [], shared: [] };
  }

  createRuntime(context: RuntimeContext): Promise<AdapterRuntime> {
    return createBitFitRuntime(this, context);
  }
}
