/** IA3 vectors on the GPU (f32, with gradients), initialised to ones as PEFT's init_ia3_weights. */
import { createTensor, type GpuContext, type GpuTensor } from '@webtune/gpu';
import { InvalidArgumentError, ModelFormatError } from '@webtune/errors';
import type { ModelConfig } from '../../config.js';
import { selectModules } from '../targets.js';
import { TensorSet } from '../tensor-set.js';
import type { Adapter, AdapterBufferShape, AdapterBuffers, AdapterRuntime, AdapterSpec, HostTensor, RuntimeContext, TargetModule, TrainableTensor } from '../types.js';
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

export class IA3Adapter extends TensorSet implements Adapter {
  readonly method = 'ia3' as const;
  readonly learningRateScale = 1;

  private constructor(
    ctx: GpuContext,
    readonly model: ModelConfig,
    readonly config: IA3Config,
    readonly params: Map<string, IA3Param>,
  ) {
    super(ctx);
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
    const params = new Map<string, IA3Param>();
    const adapter = new IA3Adapter(ctx, model, config, params);
    try {
      for (const t of selectModules(model, config.targets, config.layers)) {
        const feedforward = isFeedforward(config, t.module);
        const n = feedforward ? t.inFeatures : t.outFeatures;
        const shape = feedforward ? [1, n] : [n, 1];
        params.set(t.module, {
          ...t,
          feedforward,
          l: adapter.own(createTensor(ctx, { shape, label: 'ia3 l', data: init(t, n, shape) })),
          grad: adapter.own(createTensor(ctx, { shape, label: 'ia3 grad', data: new Float32Array(n) })),
        });
      }
    } catch (error) {
      adapter.release();
      throw error;
    }
    if (params.size === 0) throw new InvalidArgumentError(`IA3 targets ${JSON.stringify(config.targets)} select no module.`);
    return adapter;
  }

  get lowestLayer(): number {
    return Math.min(...[...this.params.values()].map((p) => p.layer));
  }

  spec(): AdapterSpec {
    return { method: 'ia3', config: JSON.parse(JSON.stringify(this.config)) as AdapterSpec['config'] };
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

  override release(): void {
    super.release();
    this.params.clear();
  }
}
