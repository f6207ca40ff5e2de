/**
 * DoRA parameters on the GPU: LoRA's A [r, in] and B [out, r] and the magnitude m [out] per
 * targeted linear, with gradients. Initialised as PEFT does: A kaiming-uniform, B zeros, and
 * m = ||W||_row (so the adapted model starts as the base), which needs the base weights: create
 * DoRA adapters with createAdapterOnBase().
 */
import { createTensor, writeTensor, type GpuContext, type GpuTensor } from '@webtune/gpu';
import { ModelFormatError } from '@webtune/errors';
import type { ModelConfig } from '../../config.js';
import { peftLoraInit } from '../lora/adapter.js';
import type { BaseModel } from '../../weights.js';
import { loraScale, peftKey } from '../lora/config.js';
import { selectModules } from '../targets.js';
import { ModuleAdapter } from '../module-adapter.js';
import type { Adapter, AdapterBufferShape, AdapterBuffers, AdapterRuntime, HostTensor, RuntimeContext, TargetModule, TrainableTensor } from '../types.js';
import { magnitudeKey, type DoraConfig } from './config.js';
import { doraBuffers } from './method.js';
import { baseWeightNorms, createDoraRuntime } from './runtime.js';

export interface DoraParam extends TargetModule {
  a: GpuTensor;
  b: GpuTensor;
  /** [out] f32 */
  m: GpuTensor;
  gradA: GpuTensor;
  gradB: GpuTensor;
  gradM: GpuTensor;
}

export class DoraAdapter extends ModuleAdapter<DoraParam, DoraConfig> implements Adapter {
  readonly method = 'dora' as const;
  readonly scale: number;

  private constructor(ctx: GpuContext, model: ModelConfig, config: DoraConfig) {
    super(ctx, model, config);
    this.scale = loraScale(config);
  }

  /** A fresh adapter on `base`: A random (seeded), B zero, m the base weights' row norms. */
  static async create(ctx: GpuContext, base: BaseModel, config: DoraConfig, seed = 0): Promise<DoraAdapter> {
    const lora = peftLoraInit(config.rank, seed);
    const adapter = DoraAdapter.build(ctx, base.config, config, (t) => ({ ...lora(t), m: new Float32Array(t.outFeatures) }));
    try {
      const norms = await baseWeightNorms(ctx, base, [...adapter.params.values()]);
      for (const p of adapter.params.values()) writeTensor(ctx, p.m, norms.get(p.module)!);
    } catch (error) {
      adapter.release();
      throw error;
    }
    return adapter;
  }

  /** From PEFT-keyed tensors (lora_A, lora_B, lora_magnitude_vector per module); missing, misshapen and extra keys are refused. */
  static fromTensors(ctx: GpuContext, model: ModelConfig, config: DoraConfig, tensors: ReadonlyMap<string, HostTensor>, source = 'adapter'): DoraAdapter {
    const used = new Set<string>();
    const adapter = DoraAdapter.build(ctx, model, config, (t) => {
      const take = (key: string, shape: number[]) => {
        const tensor = tensors.get(key);
        if (!tensor) throw new ModelFormatError(source, `has no "${key}", which DoRA targets ${JSON.stringify(config.targets)} need`);
        const same = tensor.shape.length === shape.length && tensor.shape.every((d, i) => d === shape[i]);
        if (!same) throw new ModelFormatError(source, `"${key}" is [${tensor.shape.join(', ')}]; this model needs [${shape.join(', ')}] (rank ${config.rank})`);
        used.add(key);
        return tensor.data;
      };
      return {
        a: take(peftKey(t.module, 'A'), [config.rank, t.inFeatures]),
        b: take(peftKey(t.module, 'B'), [t.outFeatures, config.rank]),
        m: take(magnitudeKey(t.module), [t.outFeatures]),
      };
    });
    adapter.refuseExtra(tensors, used, source);
    return adapter;
  }

  private static build(ctx: GpuContext, model: ModelConfig, config: DoraConfig, init: (t: TargetModule) => { a: Float32Array; b: Float32Array; m: Float32Array }): DoraAdapter {
    const adapter = new DoraAdapter(ctx, model, config);
    const r = config.rank;
    const tensor = (shape: number[], label: string, data: Float32Array) => adapter.own(createTensor(ctx, { shape, label, data }));
    adapter.fill(selectModules(model, config.targets, config.layers), (t) => {
      const { a, b, m } = init(t);
      return {
        ...t,
        a: tensor([r, t.inFeatures], 'lora A', a),
        b: tensor([t.outFeatures, r], 'lora B', b),
        m: tensor([t.outFeatures], 'dora magnitude', m),
        gradA: tensor([r, t.inFeatures], 'lora grad', new Float32Array(r * t.inFeatures)),
        gradB: tensor([t.outFeatures, r], 'lora grad', new Float32Array(t.outFeatures * r)),
        gradM: tensor([t.outFeatures], 'dora grad', new Float32Array(t.outFeatures)),
      };
    }, 'DoRA', config.targets);
    return adapter;
  }

  *trainable(): Generator<TrainableTensor> {
    for (const p of this.params.values()) {
      yield { key: peftKey(p.module, 'A'), param: p.a, grad: p.gradA };
      yield { key: peftKey(p.module, 'B'), param: p.b, grad: p.gradB };
      yield { key: magnitudeKey(p.module), param: p.m, grad: p.gradM };
    }
  }

  buffers(shape: AdapterBufferShape): AdapterBuffers {
    return doraBuffers(this.model, this.config, shape);
  }

  createRuntime(context: RuntimeContext): Promise<AdapterRuntime> {
    return createDoraRuntime(this, context);
  }
}
