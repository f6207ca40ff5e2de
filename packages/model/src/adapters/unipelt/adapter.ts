/** UniPELT's tensors on the GPU: the prefix table, and per layer gated LoRA, a prefix gate and a gated adapter. */
import type { GpuContext } from '@webtune/gpu';
import { architectureOf } from '../../arch/index.js';
import type { ModelConfig } from '../../config.js';
import { Rng } from '../../rng.js';
import { peftLoraInit } from '../lora/adapter.js';
import { savedTensorInits, TensorSetAdapter } from '../module-adapter.js';
import { linearInit, normalTensor } from '../prompt-learning.js';
import { prefixTokenDim } from '../prefix-tuning/config.js';
import type { Adapter, AdapterBufferShape, AdapterBuffers, AdapterRuntime, HostTensor, RuntimeContext, SequenceLayout } from '../types.js';
import { adapterKeys, loraKeys, prefixGateKeys, unipeltLoraModules, unipeltShapes, UNIPELT_PREFIX, type UniPeltConfig } from './config.js';
import { unipeltMethod } from './method.js';
import { createUniPeltRuntime } from './runtime.js';

export class UniPeltAdapter extends TensorSetAdapter<UniPeltConfig> implements Adapter {
  readonly method = 'unipelt' as const;

  private constructor(ctx: GpuContext, model: ModelConfig, config: UniPeltConfig) {
    super(ctx, model, config);
    this.touched = new Set(unipeltMethod.modules(model, config).map((t) => t.module));
  }

  /** The gated LoRA's targets and every layer's MLP output linear (the adapter's site). */
  private readonly touched: ReadonlySet<string>;

  override touches(module: string): boolean {
    return this.touched.has(module);
  }

  override get sequence(): SequenceLayout {
    return { virtualTokens: 0, prefixTokens: this.config.numVirtualTokens, gatedPrefix: true };
  }

  /** LoRA as PEFT starts it (B = 0), the prefix N(0, 1), adapters as AdapterHub's "bert" init, gates as nn.Linear. */
  static create(ctx: GpuContext, model: ModelConfig, config: UniPeltConfig, seed = 0): UniPeltAdapter {
    const rng = new Rng(seed);
    const arch = architectureOf(model);
    const tensors = new Map<string, HostTensor>([[UNIPELT_PREFIX, normalTensor([config.numVirtualTokens, model.numLayers * 2 * prefixTokenDim(model)], rng)]]);
    const gate = (weight: string, bias: string, out: number, inp: number) => {
      const init = linearInit(out, inp, rng);
      tensors.set(weight, init.weight).set(bias, init.bias);
    };
    // LoRA's A from its own stream, as a LoRA adapter of this seed would start.
    const loraInit = peftLoraInit(config.rank, seed);
    for (const t of unipeltLoraModules(model, config)) {
      const k = loraKeys(t.module);
      const { a, b } = loraInit(t);
      tensors.set(k.a, { data: a, shape: [config.rank, t.inFeatures] }).set(k.b, { data: b, shape: [t.outFeatures, config.rank] });
      gate(k.gate, k.gateBias, 1, t.inFeatures);
    }
    const d = model.hiddenSize;
    for (let layer = 0; layer < model.numLayers; layer++) {
      const g = prefixGateKeys(arch.layerPrefix(layer));
      gate(g.weight, g.bias, 2, d);
      const k = adapterKeys(arch.layerPrefix(layer));
      const rb = config.bottleneckSize;
      tensors.set(k.down, normalTensor([rb, d], rng, 0.02)).set(k.downBias, { data: new Float32Array(rb), shape: [rb] });
      tensors.set(k.up, normalTensor([d, rb], rng, 0.02)).set(k.upBias, { data: new Float32Array(d), shape: [d] });
      gate(k.gate, k.gateBias, 1, d);
    }
    return UniPeltAdapter.fromTensors(ctx, model, config, tensors);
  }

  static fromTensors(ctx: GpuContext, model: ModelConfig, config: UniPeltConfig, tensors: ReadonlyMap<string, HostTensor>, source = 'adapter'): UniPeltAdapter {
    const inits = savedTensorInits(unipeltShapes(model, config), tensors, 'UniPELT', source);
    const adapter = new UniPeltAdapter(ctx, model, config);
    adapter.build(inits, 'unipelt');
    return adapter;
  }

  /** LoRA's scale alpha / rank. */
  get scale(): number {
    return this.config.alpha / this.config.rank;
  }

  buffers(shape: AdapterBufferShape): AdapterBuffers {
    return unipeltMethod.buffers(this.model, this.config, shape);
  }

  createRuntime(context: RuntimeContext): Promise<AdapterRuntime> {
    return createUniPeltRuntime(this, context);
  }
}
