/**
 * Prompt tuning as an adaptation method. Files are PEFT's (`peft_type: PROMPT_TUNING`, one tensor
 * `prompt_embeddings` [num_virtual_tokens, hidden]); there is nothing to merge into the weights.
 */
import { ModelFormatError } from '@webtune/errors';
import type { MethodDefinition } from '../method.js';
import { PROMPT_EMBEDDINGS, promptLearningFields, promptRuntimeBytes, readPromptLearningFields, fullModel } from '../prompt-learning.js';
import { configProblem } from '../targets.js';
import { promptTuningShapes, resolvePromptTuningConfig, type PromptTuningConfig } from './config.js';

export const promptTuningMethod: MethodDefinition<PromptTuningConfig> = {
  method: 'prompt-tuning',
  title: 'Prompt tuning',
  resolve: (model, options) => resolvePromptTuningConfig(model, options as Partial<PromptTuningConfig>),
  invalid(raw) {
    const problem = configProblem(raw, { numVirtualTokens: 'count' });
    if (problem) return problem;
    if (raw['init'] !== 'random' && raw['init'] !== 'text') return `"init" is ${JSON.stringify(raw['init'])}; expected "random" or "text"`;
    return undefined;
  },
  layerSelective: false,
  modules: () => [],
  sequence: (_model, config) => ({ virtualTokens: config.numVirtualTokens, prefixTokens: 0 }),
  parameterCount: (model, config) => config.numVirtualTokens * model.hiddenSize,
  describe: (config) => `prompt tuning, ${config.numVirtualTokens} virtual tokens`,
  smaller: (config) => (config.numVirtualTokens > 4 ? { config: { ...config, numVirtualTokens: Math.ceil(config.numVirtualTokens / 2) }, what: `fewer virtual tokens (${config.numVirtualTokens} -> ${Math.ceil(config.numVirtualTokens / 2)})` } : undefined),
  mismatch: (saved, here) => (saved.numVirtualTokens !== here.numVirtualTokens ? [`prompt tuning has ${saved.numVirtualTokens} virtual tokens in the checkpoint but ${here.numVirtualTokens} here`] : []),
  peftConfig: (partial, config, baseModel) => {
    const model = fullModel(partial, 'Prompt tuning');
    return {
      ...promptLearningFields('PROMPT_TUNING', model, config.numVirtualTokens, model.hiddenSize, model.numHeads, baseModel),
      // PEFT's config refuses TEXT without a tokenizer to name; loading reads the saved rows either way, so without one the file says RANDOM.
      prompt_tuning_init: config.init === 'text' && baseModel ? 'TEXT' : 'RANDOM',
      prompt_tuning_init_text: config.init === 'text' && baseModel ? config.initText ?? null : null,
      tokenizer_name_or_path: config.init === 'text' && baseModel ? baseModel : null,
      tokenizer_kwargs: null,
    };
  },
  fromPeftConfig(model, raw) {
    const numVirtualTokens = readPromptLearningFields(model, raw, model.hiddenSize, 'prompt tuning');
    const text = raw['prompt_tuning_init'] === 'TEXT' && typeof raw['prompt_tuning_init_text'] === 'string' && raw['prompt_tuning_init_text'].length > 0;
    if (raw['prompt_tuning_init'] !== undefined && !['TEXT', 'RANDOM', 'SAMPLE_VOCAB'].includes(raw['prompt_tuning_init'] as string)) {
      throw new ModelFormatError('adapter_config.json', `prompt_tuning_init is ${JSON.stringify(raw['prompt_tuning_init'])}; PEFT writes TEXT, RANDOM or SAMPLE_VOCAB`);
    }
    return resolvePromptTuningConfig(model, text ? { numVirtualTokens, init: 'text', initText: raw['prompt_tuning_init_text'] as string } : { numVirtualTokens });
  },
  keyPattern: new RegExp(`^(${PROMPT_EMBEDDINGS})$`),
  normalizeKey: (key) => key,
  mergeWeight: () => undefined,
  unmergeable: 'prompt tuning adds virtual tokens in front of the input, which a merged model has no place for',
  runtimeBytes: (model, config, dtype) => promptRuntimeBytes(config.numVirtualTokens, model.hiddenSize, dtype),
  buffers: () => ({ layer: [], shared: [] }),
  halfCopies: false,
  tensorShapes: promptTuningShapes,
};
