/**
 * Held-out evaluation during training and early stopping, as transformers' EarlyStoppingCallback
 * decides it (trainer_callback.py): an evaluation improves on the best when its loss is lower by
 * more than `minDelta`; after `patience` evaluations in a row without improvement, training stops.
 * The state is plain data, saved in every checkpoint, so a resumed run stops where an
 * uninterrupted one would.
 */
import { InvalidArgumentError } from '@webtune/errors';

export interface Evaluation {
  /** Optimizer steps taken when it ran. */
  step: number;
  /** Mean cross-entropy over the held-out target tokens (completion tokens for SFT data). */
  loss: number;
}

export interface EvaluationState {
  history: Evaluation[];
  /** The lowest loss so far (by more than minDelta), if any. */
  best?: Evaluation;
  /** Evaluations since the best. */
  sinceBest: number;
}

export interface EarlyStoppingOptions {
  /** Stop after this many evaluations in a row without improvement. */
  patience: number;
  /** An improvement must lower the loss by more than this (default 0). */
  minDelta?: number;
}

export const EMPTY_EVALUATION_STATE: EvaluationState = { history: [], sinceBest: 0 };

export function checkEarlyStopping(options: EarlyStoppingOptions): void {
  if (!Number.isInteger(options.patience) || options.patience < 1) throw new InvalidArgumentError(`earlyStopping.patience must be a positive integer, got ${options.patience}.`);
  const d = options.minDelta ?? 0;
  if (!(d >= 0) || !Number.isFinite(d)) throw new InvalidArgumentError(`earlyStopping.minDelta must be a number >= 0, got ${options.minDelta}.`);
}

/** The state after one more evaluation, and whether it is the new best. */
export function recordEvaluation(state: EvaluationState, e: Evaluation, minDelta = 0): { state: EvaluationState; improved: boolean } {
  const improved = state.best === undefined || state.best.loss - e.loss > minDelta;
  return {
    state: { history: [...state.history, e], best: improved ? e : state.best, sinceBest: improved ? 0 : state.sinceBest + 1 },
    improved,
  };
}

/** Perplexity of a mean cross-entropy (nats). */
export const perplexity = (loss: number): number => Math.exp(loss);
