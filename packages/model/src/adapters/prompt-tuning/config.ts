/**
 * Prompt tuning (Lester et al., 2021; PEFT PROMPT_TUNING, peft/tuners/prompt_tuning): a few
 * trainable embeddings ("virtual tokens") in front of every sequence; the model is untouched.
 */
import { InvalidArgumentError } from '@webtune/errors';
import type { ModelConfig } from '../../config.js';
import { checkVirtualTokens, PROMPT_EMBEDDINGS } from '../prompt-learning.js';
import type { TensorShape } from '../module-adapter.js';

/** Prompt tuning's settings: how many virtual tokens, and where they start. */
export interface PromptTuningConfig {
  /** Virtual tokens in front of every sequence (PEFT num_virtual_tokens). Default 20. */
  numVirtualTokens: number;
  /**
   * 'random': N(0, 1) as PEFT's RANDOM; 'text': the base model's embeddings of `initText`'s tokens,
   * repeated or cut to numVirtualTokens (PEFT's TEXT, which usually trains faster). Default 'random'.
   */
  init: 'random' | 'text';
  /** The init text (PEFT prompt_tuning_init_text); with init 'text'. */
  initText?: string;
  /** Its token ids; the SDK fills them from initText with the model's tokenizer. */
  initTokenIds?: number[];
}

export function resolvePromptTuningConfig(model: ModelConfig, options: Partial<PromptTuningConfig> = {}): PromptTuningConfig {
  const numVirtualTokens = checkVirtualTokens(model, options.numVirtualTokens ?? 20, 'Prompt tuning');
  const init = options.init ?? (options.initText !== undefined || options.initTokenIds !== undefined ? 'text' : 'random');
  if (init !== 'random' && init !== 'text') throw new InvalidArgumentError(`Prompt tuning init must be 'random' or 'text', got ${JSON.stringify(init)}.`);
  const config: PromptTuningConfig = { numVirtualTokens, init };
  if (init === 'text') {
    if (options.initText !== undefined) {
      if (typeof options.initText !== 'string' || options.initText.length === 0) throw new InvalidArgumentError('Prompt tuning initText must be a non-empty string.');
      config.initText = options.initText;
    }
    const ids = options.initTokenIds;
    if (ids !== undefined) {
      if (!Array.isArray(ids) || ids.length === 0 || !ids.every((i) => Number.isSafeInteger(i) && i >= 0 && i < model.vocabSize)) {
        throw new InvalidArgumentError(`Prompt tuning initTokenIds must be a non-empty list of token ids below the vocabulary size (${model.vocabSize}).`);
      }
      config.initTokenIds = [...ids];
    }
    if (config.initText === undefined && config.initTokenIds === undefined) throw new InvalidArgumentError("Prompt tuning with init 'text' needs initText (or its initTokenIds).");
  } else if (options.initText !== undefined || options.initTokenIds !== undefined) {
    throw new InvalidArgumentError("Prompt tuning initText and initTokenIds go with init 'text', not 'random'.");
  }
  return config;
}

/** PEFT's TEXT init: the init text's ids repeated until there are enough, then cut to the number of virtual tokens. */
export function initTokenRows(ids: readonly number[], count: number): number[] {
  const reps = Math.ceil(count / ids.length);
  return Array.from({ length: reps }, () => ids).flat().slice(0, count);
}

export function promptTuningShapes(model: ModelConfig, config: PromptTuningConfig): TensorShape[] {
  return [{ key: PROMPT_EMBEDDINGS, shape: [config.numVirtualTokens, model.hiddenSize] }];
}
