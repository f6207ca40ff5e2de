/**
 * LoRA adapter parameters on the GPU: A [r, in] and B [out, r] for every targeted linear, with
 * their gradients (accumulated across micro-batches, cleared by the optimizer). Initialised as
 * PEFT does (A kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in)); B zeros), or
 * loaded from PEFT-named tensors to continue training or to generate.
 */
import { createTensor, readF32, writeTensor, type GpuContext, type GpuTensor } from '@webtune/gpu';
import { InvalidArgumentError, ModelFormatError } from '@webtune/errors';
import type { ModelConfig } from './config.js';
import { LINEAR_MODULES, loraScale, matchesTarget, modulePath, peftKey, type LoraConfig } from './lora-config.js';
import { Rng } from './rng.js';
import { linearShape } from './weights.js';
import { readPeftAdapter } from './peft.js';

export interface LoraParam {
  /** HF module path, e.g. model.layers.0.self_attn.q_proj */
  module: string;
  layer: number;
  /** Suffix within the layer, e.g. self_attn.q_proj */
  name: string;
  inFeatures: number;
  outFeatures: number;
  a: GpuTensor;
  b: GpuTensor;
  gradA: GpuTensor;
  gradB: GpuTensor;
}

export interface HostTensor {
  data: Float32Array;
  shape: number[];
}

export class LoraAdapter {
  readonly scale: number;
  /** Bumped whenever A or B change (optimizer step, write); models keeping f16 copies re-sync on change. */
  version = 0;

  private constructor(
    private readonly ctx: GpuContext,
    readonly model: ModelConfig,
    readonly config: LoraConfig,
    /** By module path, in layer order. */
    readonly params: Map<string, LoraParam>,
  ) {
    this.scale = loraScale(config);
  }

  /** The modules `config.targets` selects, in layer order. */
  static targets(model: ModelConfig, config: LoraConfig): Array<{ module: string; layer: number; name: string; inFeatures: number; outFeatures: number }> {
    const out = [];
    for (let layer = 0; layer < model.numLayers; layer++) {
      for (const name of LINEAR_MODULES[model.architecture]) {
        const module = modulePath(model.architecture, layer, name);
        if (!config.targets.some((t) => matchesTarget(module, t))) continue;
        const { inFeatures, outFeatures } = linearShape(model, name);
        out.push({ module, layer, name, inFeatures, outFeatures });
      }
    }
    return out;
  }

  /** A fresh adapter, initialised as PEFT's `init_lora_weights=True` with `seed`. */
  static create(ctx: GpuContext, model: ModelConfig, config: LoraConfig, seed = 0): LoraAdapter {
    const rng = new Rng(seed);
    return LoraAdapter.build(ctx, model, config, (t) => {
      const bound = 1 / Math.sqrt(t.inFeatures);
      const a = new Float32Array(config.rank * t.inFeatures);
      for (let i = 0; i < a.length; i++) a[i] = (rng.next() * 2 - 1) * bound;
      return { a, b: new Float32Array(t.outFeatures * config.rank) };
    });
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
    const extra = [...tensors.keys()].filter((k) => !used.has(k));
    if (extra.length > 0) {
      adapter.release();
      throw new ModelFormatError(source, `has tensors this model does not have: ${extra.slice(0, 3).join(', ')}${extra.length > 3 ? ', ...' : ''} (an adapter for another model or other targets?)`);
    }
    return adapter;
  }

  private static build(
    ctx: GpuContext,
    model: ModelConfig,
    config: LoraConfig,
    init: (t: { module: string; inFeatures: number; outFeatures: number }) => { a: Float32Array; b: Float32Array },
  ): LoraAdapter {
    const params = new Map<string, LoraParam>();
    const adapter = new LoraAdapter(ctx, model, config, params);
    try {
      for (const t of LoraAdapter.targets(model, config)) {
        const { a, b } = init(t);
        const r = config.rank;
        params.set(t.module, {
          ...t,
          a: createTensor(ctx, { shape: [r, t.inFeatures], label: 'lora A', data: a }),
          b: createTensor(ctx, { shape: [t.outFeatures, r], label: 'lora B', data: b }),
          gradA: createTensor(ctx, { shape: [r, t.inFeatures], label: 'lora grad', data: new Float32Array(r * t.inFeatures) }),
          gradB: createTensor(ctx, { shape: [t.outFeatures, r], label: 'lora grad', data: new Float32Array(t.outFeatures * r) }),
        });
      }
    } catch (error) {
      adapter.release();
      throw error;
    }
    if (params.size === 0) throw new InvalidArgumentError(`LoRA targets ${JSON.stringify(config.targets)} select no module.`);
    return adapter;
  }

  /** Number of trainable parameters. */
  get parameterCount(): number {
    let n = 0;
    for (const p of this.params.values()) n += p.a.size + p.b.size;
    return n;
  }

  /** Every trainable tensor with its gradient, in a fixed order (the optimizer's and checkpoints' order). */
  *trainable(): Generator<{ key: string; param: GpuTensor; grad: GpuTensor }> {
    for (const p of this.params.values()) {
      yield { key: peftKey(p.module, 'A'), param: p.a, grad: p.gradA };
      yield { key: peftKey(p.module, 'B'), param: p.b, grad: p.gradB };
    }
  }

  /** Reads A and B back under PEFT's key names. */
  async read(): Promise<Map<string, HostTensor>> {
    const out = new Map<string, HostTensor>();
    for (const t of this.trainable()) out.set(t.key, { data: await readF32(this.ctx, t.param), shape: [...t.param.shape] });
    return out;
  }

  /** Reads the accumulated gradients under the parameters' PEFT key names. */
  async readGradients(): Promise<Map<string, HostTensor>> {
    const out = new Map<string, HostTensor>();
    for (const t of this.trainable()) out.set(t.key, { data: await readF32(this.ctx, t.grad), shape: [...t.grad.shape] });
    return out;
  }

  /** Overwrites A and B (same keys and shapes as `read()` returns). */
  write(tensors: ReadonlyMap<string, HostTensor>): void {
    for (const t of this.trainable()) {
      const h = tensors.get(t.key);
      if (!h) throw new InvalidArgumentError(`LoraAdapter.write: no tensor "${t.key}".`);
      writeTensor(this.ctx, t.param, h.data);
    }
    this.version++;
  }

  /** Sets every gradient to zero. */
  zeroGradients(): void {
    for (const t of this.trainable()) writeTensor(this.ctx, t.grad, new Float32Array(t.grad.size));
  }

  release(): void {
    for (const p of this.params.values()) for (const t of [p.a, p.b, p.gradA, p.gradB]) t.release();
    this.params.clear();
  }
}

/** A GPU adapter from PEFT files, to continue training or to generate. */
export function importPeftAdapter(ctx: GpuContext, model: ModelConfig, files: { config: string; weights: Uint8Array }): LoraAdapter {
  const { lora, tensors } = readPeftAdapter(model, files);
  return LoraAdapter.fromTensors(ctx, model, lora, tensors, 'adapter_model.safetensors');
}
