/**
 * Prefix tuning as an adaptation method. Files are PEFT's: `peft_type: PREFIX_TUNING` and one
 * tensor `prompt_embeddings` [P, layers * 2 * token_dim] holding the prefixes themselves (with
 * prefix_projection, the MLP's output, as PEFT saves it). Importing a projected file gives prefix
 * tuning without projection over those prefixes (PEFT's inference mode reads it the same way); the
 * MLP lives on in webtune's checkpoints.
 */
import type { MethodDefinition } from '../method.js';
import { encoderForwardHost, PROMPT_EMBEDDINGS, promptEmbeddingsOf, promptLearningFields, promptRuntimeBytes, readPromptLearningFields, fullModel } from '../prompt-learning.js';
import { configProblem } from '../targets.js';
import { PREFIX_EMBEDDING, PREFIX_PROJECTION, prefixTokenDim, prefixTuningShapes, resolvePrefixTuningConfig, type PrefixTuningConfig } from './config.js';

export const prefixTuningMethod: MethodDefinition<PrefixTuningConfig> = {
  method: 'prefix-tuning',
  title: 'Prefix tuning',
  resolve: (model, options) => resolvePrefixTuningConfig(model, options as Partial<PrefixTuningConfig>),
  invalid: (raw) => configProblem(raw, { numVirtualTokens: 'count', prefixProjection: 'boolean', encoderHiddenSize: 'count' }),
  layerSelective: false,
  modules: () => [],
  sequence: (_model, config) => ({ virtualTokens: 0, prefixTokens: config.numVirtualTokens }),
  tensorShapes: prefixTuningShapes,
  parameterCount: (model, config) => prefixTuningShapes(model, config).reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0),
  describe: (config) => `prefix tuning, ${config.numVirtualTokens} prefix tokens${config.prefixProjection ? ` (projection ${config.encoderHiddenSize} wide)` : ''}`,
  smaller: (config) => (config.numVirtualTokens > 4 ? { config: { ...config, numVirtualTokens: Math.ceil(config.numVirtualTokens / 2) }, what: `fewer prefix tokens (${config.numVirtualTokens} -> ${Math.ceil(config.numVirtualTokens / 2)})` } : undefined),
  mismatch(saved, here) {
    const out: string[] = [];
    if (saved.numVirtualTokens !== here.numVirtualTokens) out.push(`prefix tuning has ${saved.numVirtualTokens} prefix tokens in the checkpoint but ${here.numVirtualTokens} here`);
    if (saved.prefixProjection !== here.prefixProjection) out.push(`prefix projection is ${saved.prefixProjection ? 'on' : 'off'} in the checkpoint but ${here.prefixProjection ? 'on' : 'off'} here`);
    else if (saved.prefixProjection && saved.encoderHiddenSize !== here.encoderHiddenSize) out.push(`the prefix projection is ${saved.encoderHiddenSize} wide in the checkpoint but ${here.encoderHiddenSize} here`);
    return out;
  },
  peftConfig: (partial, config, baseModel) => {
    const model = fullModel(partial, 'Prefix tuning');
    return {
      ...promptLearningFields('PREFIX_TUNING', model, config.numVirtualTokens, prefixTokenDim(model), model.numKvHeads, baseModel),
      prefix_projection: config.prefixProjection,
      encoder_hidden_size: config.encoderHiddenSize,
    };
  },
  fromPeftConfig(model, raw) {
    const numVirtualTokens = readPromptLearningFields(model, raw, prefixTokenDim(model), 'prefix tuning');
    // The file holds the prefixes themselves, projected or not.
    return resolvePrefixTuningConfig(model, { numVirtualTokens });
  },
  savedTensors(model, config, trainable) {
    const table = config.prefixProjection ? encoderForwardHost(PREFIX_PROJECTION, trainable.get(PREFIX_EMBEDDING)!, trainable) : trainable.get(PREFIX_EMBEDDING)!;
    return new Map([[PROMPT_EMBEDDINGS, { data: table.data, shape: [config.numVirtualTokens, model.numLayers * 2 * prefixTokenDim(model)] }]]);
  },
  fromSaved: (model, config, saved) => new Map([[PREFIX_EMBEDDING, promptEmbeddingsOf(saved, [config.numVirtualTokens, model.numLayers * 2 * prefixTokenDim(model)], 'adapter_model.safetensors')]]),
  keyPattern: /^(prompt_embeddings|prompt_encoder\.(?:embedding\.weight|transform\.[02]\.(?:weight|bias)))$/,
  normalizeKey: (key) => key,
  mergeWeight: () => undefined,
  unmergeable: 'prefix tuning adds keys and values to every layer\'s attention, which a merged model has no place for',
  runtimeBytes: (model, config, dtype) => {
    const td = prefixTokenDim(model);
    const all = model.numLayers * 2 * td;
    const h = config.encoderHiddenSize;
    return promptRuntimeBytes(config.numVirtualTokens, all, dtype, config.prefixProjection ? [{ in: td, out: h, activation: 'tanh' }, { in: h, out: all, activation: 'none' }] : []);
  },
  buffers: () => ({ layer: [], shared: [] }),
  halfCopies: false,
};
