/**
 * What every training bench row sets up and tears down: its own device (so the accounted peak is
 * that row's alone), the f32 base, a fresh adapter and a Trainer; release() frees them all.
 */
import { createGpuContext, type GpuContext } from '@webtune/gpu';
import { createAdapterOnBase, Transformer, uploadBaseModel, type Adapter, type AdapterSpec, type ModelConfig, type WeightReader } from '@webtune/model';
import { Trainer, type PlanCheckOptions, type TrainConfig } from '@webtune/trainer';

export interface TrainingRun {
  ctx: GpuContext;
  adapter: Adapter;
  trainer: Trainer;
  /** Frees the trainer, adapter, model and base, then the device. */
  release(): void;
}

/** A device with `config`'s weights from `reader` (f32), the adapter of `spec` (seeded) and a Trainer for `train`. */
export async function openTrainingRun(
  gpu: GPU, config: ModelConfig, reader: WeightReader, spec: AdapterSpec, adapterSeed: number,
  train: Partial<TrainConfig> & Pick<TrainConfig, 'steps'>, plan?: PlanCheckOptions,
): Promise<TrainingRun> {
  const ctx = await createGpuContext({ gpu });
  const parts: Array<{ release(): void }> = [];
  const release = () => {
    for (const p of parts.reverse()) p.release();
    ctx.destroy();
  };
  try {
    const base = await uploadBaseModel(ctx, config, reader, { format: 'f32', dtype: 'f32' });
    parts.push(base);
    const model = await Transformer.create(ctx, base);
    parts.push(model);
    const adapter = await createAdapterOnBase(ctx, base, spec, adapterSeed);
    parts.push(adapter);
    const trainer = await Trainer.create(ctx, model, adapter, train, plan);
    parts.push(trainer);
    return { ctx, adapter, trainer, release };
  } catch (error) {
    release();
    throw error;
  }
}
