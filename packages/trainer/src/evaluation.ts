/**
 * Held-out evaluation during training and early stopping, as transformers decides them
 * (trainer_callback.py EarlyStoppingCallback, with load_best_model_at_end): the best evaluation
 * is the lowest loss so far; an evaluation counts as an improvement when it is lower than the best
 * before it by more than `minDelta`; after `patience` evaluations in a row without one, training
 * stops. The state is plain data, saved in every checkpoint, so a resumed run stops where an
 * uninterrupted one would.
 */
import { InvalidArgumentError } from '@webtune/errors';

/** One held-out evaluation: when it ran and the loss it measured. */
export interface Evaluation {
  /** Optimizer steps taken when it ran. */
  step: number;
  /** Mean cross-entropy over the held-out target tokens (completion tokens for SFT data). */
  loss: number;
}

export interface EvaluationState {
  history: Evaluation[];
  /** The lowest loss so far, if any. */
  best?: Evaluation;
  /** Evaluations in a row that did not improve on the best by more than minDelta (transformers' patience counter). */
  sinceImprovement: number;
}

export interface EarlyStoppingOptions {
  /** Stop after this many evaluations in a row without improvement. */
  patience: number;
  /** An improvement must lower the best loss by more than this (default 0). */
  minDelta?: number;
}

export const EMPTY_EVALUATION_STATE: EvaluationState = { history: [], sinceImprovement: 0 };

export function checkEarlyStopping(options: EarlyStoppingOptions): void {
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('earlyStopping must be { patience, minDelta? }.');
  if (!Number.isInteger(options.patience) || options.patience < 1) throw new InvalidArgumentError(`earlyStopping.patience must be a positive integer, got ${options.patience}.`);
  const d = options.minDelta ?? 0;
  if (!(d >= 0) || !Number.isFinite(d)) throw new InvalidArgumentError(`earlyStopping.minDelta must be a number >= 0, got ${options.minDelta}.`);
}

/**
 * The state after one more evaluation; `isBest`: it is the new lowest loss (restoreBest keeps it);
 * `improved`: it beat the previous best by more than minDelta (the patience counter restarts).
 */
export function recordEvaluation(state: EvaluationState, e: Evaluation, minDelta = 0): { state: EvaluationState; isBest: boolean; improved: boolean } {
  const isBest = state.best === undefined || e.loss < state.best.loss;
  const improved = state.best === undefined || state.best.loss - e.loss > minDelta;
  return {
    state: { history: [...state.history, e], best: isBest ? e : state.best, sinceImprovement: improved ? 0 : state.sinceImprovement + 1 },
    isBest,
    improved,
  };
}

/** Whether early stopping has already decided to stop (a run resumed from such a state takes no more steps). */
export const shouldStop = (state: EvaluationState, options: EarlyStoppingOptions | undefined): boolean =>
  options !== undefined && state.sinceImprovement >= options.patience;

/** Perplexity of a mean cross-entropy (nats). */
export const perplexity = (loss: number): number => Math.exp(loss);
