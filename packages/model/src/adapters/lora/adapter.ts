/**
 * LoRA adapter parameters on the GPU: A [r, in] and B [out, r] for every targeted linear, with
 * their gradients (accumulated across micro-batches, cleared by the optimizer). Initialised as
 * PEFT does (A kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in)); B zeros), or
 * loaded from PEFT-named tensors to continue training or to generate.
 */
import { createTensor, type GpuContext, type GpuTensor } from '@webtune/gpu';
import { ModelFormatError } from '@webtune/errors';
import type { ModelConfig } from '../../config.js';
import { Rng } from '../../rng.js';
import { selectModules } from '../targets.js';
import { ModuleAdapter } from '../module-adapter.js';
import type { Adapter, AdapterBufferShape, AdapterBuffers, AdapterRuntime, HostTensor, RuntimeContext, TargetModule, TrainableTensor } from '../types.js';
import { loraScale, peftKey, type LoraConfig } from './config.js';
import { createLoraRuntime } from './runtime.js';
import { loraBuffers } from './method.js';

export interface LoraParam extends TargetModule {
  a: GpuTensor;
  b: GpuTensor;
  gradA: GpuTensor;
  gradB: GpuTensor;
}

export class LoraAdapter extends ModuleAdapter<LoraParam, LoraConfig> implements Adapter {
  readonly method = 'lora' as const;
  readonly scale: number;

  private constructor(ctx: GpuContext, model: ModelConfig, config: LoraConfig) {
    super(ctx, model, config);
    this.scale = loraScale(config);
  }

  /** The modules `config.targets` (and `config.layers`) select, in layer order. */
  static targets(model: ModelConfig, config: Pick<LoraConfig, 'targets' | 'layers'>): TargetModule[] {
    return selectModules(model, config.targets, config.layers);
  }

  /** A fresh adapter, initialised as PEFT's `init_lora_weights=True` with `seed`. */
  static create(ctx: GpuContext, model: ModelConfig, config: LoraConfig, seed = 0): LoraAdapter {
    const init = peftLoraInit(config.rank, seed);
    return LoraAdapter.build(ctx, model, config, init);
  }

  /**
   * An adapter from PEFT-named tensors (adapter_model.safetensors). Every targeted module must be
   * present with A [r, in] and B [out, r]; extra keys are refused, so an adapter for another
   * model is caught here rather than silently half-applied.
   */
  static fromTensors(ctx: GpuContext, model: ModelConfig, config: LoraConfig, tensors: ReadonlyMap<string, HostTensor>, source = 'adapter'): LoraAdapter {
    const used = new Set<string>();
    const adapter = LoraAdapter.build(ctx, model, config, (t) => {
      const take = (which: 'A' | 'B', shape: number[]) => {
        const key = peftKey(t.module, which);
        const tensor = tensors.get(key);
        if (!tensor) throw new ModelFormatError(source, `has no "${key}", which LoRA targets ${JSON.stringify(config.targets)} need`);
        if (tensor.shape.length !== 2 || tensor.shape[0] !== shape[0] || tensor.shape[1] !== shape[1]) {
          throw new ModelFormatError(source, `"${key}" is [${tensor.shape.join(', ')}]; this model needs [${shape.join(', ')}] (rank ${config.rank})`);
        }
        used.add(key);
        return tensor.data;
      };
      return { a: take('A', [config.rank, t.inFeatures]), b: take('B', [t.outFeatures, config.rank]) };
    });
    adapter.refuseExtra(tensors, used, source);
    return adapter;
  }

  private static build(
    ctx: GpuContext,
    model: ModelConfig,
    config: LoraConfig,
    init: (t: TargetModule) => { a: Float32Array; b: Float32Array },
  ): LoraAdapter {
    const adapter = new LoraAdapter(ctx, model, config);
    const r = config.rank;
    const tensor = (shape: number[], label: string, data: Float32Array) => adapter.own(createTensor(ctx, { shape, label, data }));
    adapter.fill(LoraAdapter.targets(model, config), (t) => {
      const { a, b } = init(t);
      return {
        ...t,
        a: tensor([r, t.inFeatures], 'lora A', a),
        b: tensor([t.outFeatures, r], 'lora B', b),
        gradA: tensor([r, t.inFeatures], 'lora grad', new Float32Array(r * t.inFeatures)),
        gradB: tensor([t.outFeatures, r], 'lora grad', new Float32Array(t.outFeatures * r)),
      };
    }, 'LoRA', config.targets);
    return adapter;
  }

  *trainable(): Generator<TrainableTensor> {
    for (const p of this.params.values()) {
      yield { key: peftKey(p.module, 'A'), param: p.a, grad: p.gradA };
      yield { key: peftKey(p.module, 'B'), param: p.b, grad: p.gradB };
    }
  }

  buffers(shape: AdapterBufferShape): AdapterBuffers {
    return loraBuffers(this.model, this.config, shape);
  }

  createRuntime(context: RuntimeContext): Promise<AdapterRuntime> {
    return createLoraRuntime(this, context);
  }
}

/**
 * PEFT's `init_lora_weights=True` from one seeded stream over the modules in order: A
 * kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in)); B zeros. Shared by LoRA and DoRA.
 */
export function peftLoraInit(rank: number, seed: number): (t: TargetModule) => { a: Float32Array; b: Float32Array } {
  const rng = new Rng(seed);
  return (t) => {
    const bound = 1 / Math.sqrt(t.inFeatures);
    const a = new Float32Array(rank * t.inFeatures);
    for (let i = 0; i < a.length; i++) a[i] = (rng.next() * 2 - 1) * bound;
    return { a, b: new Float32Array(t.outFeatures * rank) };
  };
}
