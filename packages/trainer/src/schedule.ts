/**
 * Learning-rate schedules with linear warmup, as transformers' `get_scheduler` defines them
 * (`constant_with_warmup`, `linear`, `cosine` with half a cycle): the multiplier for optimizer
 * step `step` (0-based) of `totalSteps`.
 */
import { InvalidArgumentError } from '@webtune/errors';

export type ScheduleKind = 'constant' | 'linear' | 'cosine';

export interface ScheduleOptions {
  kind: ScheduleKind;
  warmupSteps: number;
  totalSteps: number;
}

export function learningRateFactor(step: number, { kind, warmupSteps, totalSteps }: ScheduleOptions): number {
  if (!(totalSteps > 0) || warmupSteps < 0) throw new InvalidArgumentError(`Schedule needs totalSteps > 0 and warmupSteps >= 0, got ${totalSteps} and ${warmupSteps}.`);
  if (step < warmupSteps) return step / Math.max(1, warmupSteps);
  if (kind === 'constant') return 1;
  const progress = (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps);
  if (kind === 'linear') return Math.max(0, 1 - progress);
  return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
}
