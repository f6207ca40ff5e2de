/**
 * Bottleneck adapters on the GPU: per adapted sublayer output, down [r, d] and up [d, r] weights
 * with biases (f32, with gradients). Init as AdapterHub's init_weights "bert": weights N(0, 0.02^2),
 * biases 0, so the adapted model starts near the base (the residual branch is small).
 */
import { createTensor, type GpuContext, type GpuTensor } from '@webtune/gpu';
import type { ModelConfig } from '../../config.js';
import { Rng } from '../../rng.js';
import { ModuleAdapter, savedTensorInits } from '../module-adapter.js';
import { normalTensor } from '../prompt-learning.js';
import type { Adapter, AdapterBufferShape, AdapterBuffers, AdapterRuntime, HostTensor, RuntimeContext, TargetModule, TrainableTensor } from '../types.js';
import { bottleneckModules, bottleneckTensors, type BottleneckConfig, type BottleneckModule } from './config.js';
import { bottleneckMethod } from './method.js';
import { createBottleneckRuntime } from './runtime.js';

export interface BottleneckParam extends BottleneckModule {
  /** [r, d], [r], [d, r], [d] in f32, with gradients of the same shapes. */
  down: GpuTensor;
  downBias: GpuTensor;
  up: GpuTensor;
  upBias: GpuTensor;
  gradDown: GpuTensor;
  gradDownBias: GpuTensor;
  gradUp: GpuTensor;
  gradUpBias: GpuTensor;
  keys: string[];
}

export class BottleneckAdapter extends ModuleAdapter<BottleneckParam, BottleneckConfig> implements Adapter {
  readonly method = 'bottleneck' as const;

  private constructor(ctx: GpuContext, model: ModelConfig, config: BottleneckConfig) {
    super(ctx, model, config);
  }

  static create(ctx: GpuContext, model: ModelConfig, config: BottleneckConfig, seed = 0): BottleneckAdapter {
    const rng = new Rng(seed);
    const tensors = new Map<string, HostTensor>();
    for (const m of bottleneckModules(model, config)) {
      for (const { key, shape } of bottleneckTensors(model, config, m)) {
        tensors.set(key, shape.length === 2 ? normalTensor(shape, rng, 0.02) : { data: new Float32Array(shape[0]!), shape });
      }
    }
    return BottleneckAdapter.fromTensors(ctx, model, config, tensors);
  }

  static fromTensors(ctx: GpuContext, model: ModelConfig, config: BottleneckConfig, tensors: ReadonlyMap<string, HostTensor>, source = 'adapter'): BottleneckAdapter {
    const inits = new Map(savedTensorInits(bottleneckMethod.tensorShapes!(model, config), tensors, 'bottleneck adapter', source).map((t) => [t.key, t]));
    const adapter = new BottleneckAdapter(ctx, model, config);
    const modules = bottleneckModules(model, config);
    adapter.fill(modules, (t: TargetModule) => {
      const m = t as BottleneckModule;
      const keys = bottleneckTensors(model, config, m).map((s) => s.key);
      const [down, downBias, up, upBias] = keys.map((k) => adapter.own(createTensor(ctx, { shape: inits.get(k)!.shape, label: 'bottleneck adapter', data: inits.get(k)!.data })));
      const [gradDown, gradDownBias, gradUp, gradUpBias] = keys.map((k) => adapter.own(createTensor(ctx, { shape: inits.get(k)!.shape, label: 'bottleneck adapter grad', data: new Float32Array(inits.get(k)!.data.length) })));
      return { ...m, down: down!, downBias: downBias!, up: up!, upBias: upBias!, gradDown: gradDown!, gradDownBias: gradDownBias!, gradUp: gradUp!, gradUpBias: gradUpBias!, keys };
    }, 'Bottleneck adapter', [config.variant]);
    return adapter;
  }

  *trainable(): Generator<TrainableTensor> {
    for (const p of this.params.values()) {
      const [down, downBias, up, upBias] = p.keys as [string, string, string, string];
      yield { key: down, param: p.down, grad: p.gradDown };
      yield { key: downBias, param: p.downBias, grad: p.gradDownBias };
      yield { key: up, param: p.up, grad: p.gradUp };
      yield { key: upBias, param: p.upBias, grad: p.gradUpBias };
    }
  }

  buffers(shape: AdapterBufferShape): AdapterBuffers {
    return bottleneckMethod.buffers(this.model, this.config, shape);
  }

  createRuntime(context: RuntimeContext): Promise<AdapterRuntime> {
    return createBottleneckRuntime(this, context);
  }
}
