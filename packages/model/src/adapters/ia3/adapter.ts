/** IA3 vectors on the GPU (f32, with gradients), initialised to ones as PEFT's init_ia3_weights. */
import { createTensor, type GpuContext, type GpuTensor } from '@webtune/gpu';
import { ModelFormatError } from '@webtune/errors';
import type { ModelConfig } from '../../config.js';
import { selectModules } from '../targets.js';
import { ModuleAdapter } from '../module-adapter.js';
import type { Adapter, AdapterBufferShape, AdapterBuffers, AdapterRuntime, HostTensor, RuntimeContext, TargetModule, TrainableTensor } from '../types.js';
import { ia3Key, isFeedforward, type IA3Config } from './config.js';
import { ia3Buffers } from './method.js';
import { createIA3Runtime } from './runtime.js';

export interface IA3Param extends TargetModule {
  /** Scales the input (feed-forward) rather than the output. */
  feedforward: boolean;
  /** [out, 1] or [1, in], f32 */
  l: GpuTensor;
  grad: GpuTensor;
}

export class IA3Adapter extends ModuleAdapter<IA3Param, IA3Config> implements Adapter {
  readonly method = 'ia3' as const;

  private constructor(ctx: GpuContext, model: ModelConfig, config: IA3Config) {
    super(ctx, model, config);
  }

  static create(ctx: GpuContext, model: ModelConfig, config: IA3Config): IA3Adapter {
    return IA3Adapter.build(ctx, model, config, (_t, n) => new Float32Array(n).fill(1));
  }

  /** From PEFT-keyed tensors (`...ia3_l`, [out, 1] or [1, in]); missing, misshapen and extra keys are refused. */
  static fromTensors(ctx: GpuContext, model: ModelConfig, config: IA3Config, tensors: ReadonlyMap<string, HostTensor>, source = 'adapter'): IA3Adapter {
    const used = new Set<string>();
    const adapter = IA3Adapter.build(ctx, model, config, (t, n, shape) => {
      const key = ia3Key(t.module);
      const tensor = tensors.get(key);
      if (!tensor) throw new ModelFormatError(source, `has no "${key}", which IA3 targets ${JSON.stringify(config.targets)} need`);
      if (tensor.shape.length !== 2 || tensor.shape[0] !== shape[0] || tensor.shape[1] !== shape[1] || tensor.data.length !== n) {
        throw new ModelFormatError(source, `"${key}" is [${tensor.shape.join(', ')}]; this model needs [${shape.join(', ')}]`);
      }
      used.add(key);
      return tensor.data;
    });
    adapter.refuseExtra(tensors, used, source);
    return adapter;
  }

  private static build(ctx: GpuContext, model: ModelConfig, config: IA3Config, init: (t: TargetModule, n: number, shape: number[]) => Float32Array): IA3Adapter {
    const adapter = new IA3Adapter(ctx, model, config);
    adapter.fill(selectModules(model, config.targets, config.layers), (t) => {
      const feedforward = isFeedforward(config, t.module);
      const n = feedforward ? t.inFeatures : t.outFeatures;
      const shape = feedforward ? [1, n] : [n, 1];
      return {
        ...t,
        feedforward,
        l: adapter.own(createTensor(ctx, { shape, label: 'ia3 l', data: init(t, n, shape) })),
        grad: adapter.own(createTensor(ctx, { shape, label: 'ia3 grad', data: new Float32Array(n) })),
      };
    }, 'IA3', config.targets);
    return adapter;
  }

  *trainable(): Generator<TrainableTensor> {
    for (const p of this.params.values()) yield { key: ia3Key(p.module), param: p.l, grad: p.grad };
  }

  buffers(shape: AdapterBufferShape): AdapterBuffers {
    return ia3Buffers(this.model, this.config, shape);
  }

  createRuntime(context: RuntimeContext): Promise<AdapterRuntime> {
    return createIA3Runtime(this, context);
  }
}
