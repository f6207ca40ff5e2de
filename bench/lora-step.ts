/**
 * One LoRA training step as the benchmarks run it: a base model uploaded in a format, a LoRA
 * adapter (alpha = 2 x rank), AdamW, and random tokens; `step()` is forward + backward + AdamW.
 * No Node imports: the training and step-efficiency benchmarks share it, in Node and in the browser.
 */
import type { GpuContext } from '@webtune/gpu';
import {
  LoraAdapter, resolveLoraConfig, Rng, Transformer, uploadBaseModel,
  type BaseFormat, type BaseModel, type LoraConfig, type ModelConfig, type WeightReader,
} from '@webtune/model';
import { AdamW } from '@webtune/trainer';

export interface LoraStepSpec {
  config: ModelConfig;
  reader: WeightReader;
  format: BaseFormat;
  dtype: 'f32' | 'f16';
  rank: number;
  batch: number;
  seq: number;
  targets?: string[];
  recompute?: boolean;
}

export interface LoraStep {
  lora: LoraConfig;
  base: BaseModel;
  tokens: number;
  step(): Promise<void>;
  release(): void;
}

export function benchLoraConfig(spec: Pick<LoraStepSpec, 'config' | 'rank' | 'targets'>): LoraConfig {
  return resolveLoraConfig(spec.config, { rank: spec.rank, alpha: 2 * spec.rank, targets: spec.targets });
}

export async function setUpLoraStep(ctx: GpuContext, spec: LoraStepSpec): Promise<LoraStep> {
  const lora = benchLoraConfig(spec);
  const base = await uploadBaseModel(ctx, spec.config, spec.reader, { format: spec.format, dtype: spec.dtype });
  const model = await Transformer.create(ctx, base);
  const adapter = LoraAdapter.create(ctx, spec.config, lora, 1);
  model.setAdapter(adapter);
  const optimizer = await AdamW.create(ctx, adapter);
  const rng = new Rng(5);
  const tokens = spec.batch * spec.seq;
  return {
    lora,
    base,
    tokens,
    async step() {
      const ids = Uint32Array.from({ length: tokens }, () => rng.int(spec.config.vocabSize));
      const targets = Uint32Array.from({ length: tokens }, () => rng.int(spec.config.vocabSize));
      await model.trainStep({ ids, targets, batch: spec.batch, seq: spec.seq }, { recompute: spec.recompute ?? false });
      await optimizer.update(1e-4);
    },
    release() {
      optimizer.release();
      adapter.release();
      model.release();
      base.release();
    },
  };
}
