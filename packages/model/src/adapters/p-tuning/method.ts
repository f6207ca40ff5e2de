/**
 * P-tuning as an adaptation method. Its files are PEFT's: `peft_type: P_TUNING` and one tensor,
 * `prompt_embeddings` = the encoder's output (what PEFT saves outside inference mode), so PEFT
 * loads them as it loads its own. The encoder itself lives in webtune's checkpoints; importing a
 * P-tuning file gives prompt tuning with those embeddings (PEFT's inference mode does the same).
 */
import { ModelFormatError } from '@webtune/errors';
import type { MethodDefinition } from '../method.js';
import { encoderForwardHost, PROMPT_EMBEDDINGS, promptLearningFields, promptRuntimeBytes, fullModel } from '../prompt-learning.js';
import { configProblem } from '../targets.js';
import { pTuningShapes, PTUNING_EMBEDDING, PTUNING_LAYERS, resolvePTuningConfig, type PTuningConfig } from './config.js';

export const pTuningMethod: MethodDefinition<PTuningConfig> = {
  method: 'p-tuning',
  title: 'P-tuning',
  resolve: (model, options) => resolvePTuningConfig(model, options as Partial<PTuningConfig>),
  invalid: (raw) => configProblem(raw, { numVirtualTokens: 'count', encoderHiddenSize: 'count' }) ?? (raw['encoderReparameterizationType'] === 'MLP' ? undefined : `"encoderReparameterizationType" is ${JSON.stringify(raw['encoderReparameterizationType'])}; expected "MLP"`),
  layerSelective: false,
  modules: () => [],
  sequence: (_model, config) => ({ virtualTokens: config.numVirtualTokens, prefixTokens: 0 }),
  tensorShapes: pTuningShapes,
  parameterCount: (model, config) => pTuningShapes(model, config).reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0),
  describe: (config) => `P-tuning, ${config.numVirtualTokens} virtual tokens (MLP encoder ${config.encoderHiddenSize} wide)`,
  smaller: (config) => (config.encoderHiddenSize > 16 ? { config: { ...config, encoderHiddenSize: Math.ceil(config.encoderHiddenSize / 2) }, what: `a narrower encoder (${config.encoderHiddenSize} -> ${Math.ceil(config.encoderHiddenSize / 2)})` } : undefined),
  mismatch(saved, here) {
    const out: string[] = [];
    if (saved.numVirtualTokens !== here.numVirtualTokens) out.push(`P-tuning has ${saved.numVirtualTokens} virtual tokens in the checkpoint but ${here.numVirtualTokens} here`);
    if (saved.encoderHiddenSize !== here.encoderHiddenSize) out.push(`the P-tuning encoder is ${saved.encoderHiddenSize} wide in the checkpoint but ${here.encoderHiddenSize} here`);
    return out;
  },
  peftConfig: (partial, config, baseModel) => {
    const model = fullModel(partial, 'P-tuning');
    return {
      ...promptLearningFields('P_TUNING', model, config.numVirtualTokens, model.hiddenSize, model.numHeads, baseModel),
      encoder_reparameterization_type: 'MLP',
      encoder_hidden_size: config.encoderHiddenSize,
      encoder_num_layers: 2,
      encoder_dropout: 0,
    };
  },
  fromPeftConfig() {
    // methodOfConfig maps P_TUNING files to prompt tuning: they hold the encoder's output only.
    throw new ModelFormatError('adapter_config.json', 'a P-tuning file holds only the encoder\'s output; it is read as prompt tuning');
  },
  savedTensors: (model, config, trainable) => {
    const input = trainable.get(PTUNING_EMBEDDING)!;
    const out = encoderForwardHost(PTUNING_LAYERS, input, trainable);
    return new Map([[PROMPT_EMBEDDINGS, { data: out.data, shape: [config.numVirtualTokens, model.hiddenSize] }]]);
  },
  keyPattern: /^(prompt_encoder\.(?:embedding\.weight|mlp_head\.[024]\.(?:weight|bias)))$/,
  normalizeKey: (key) => key,
  mergeWeight: () => undefined,
  unmergeable: 'P-tuning adds virtual tokens in front of the input, which a merged model has no place for',
  runtimeBytes: (model, config, dtype) => {
    const d = model.hiddenSize;
    const h = config.encoderHiddenSize;
    return promptRuntimeBytes(config.numVirtualTokens, d, dtype, [{ in: d, out: h, activation: 'relu' }, { in: h, out: h, activation: 'relu' }, { in: h, out: d, activation: 'none' }]);
  },
  buffers: () => ({ layer: [], shared: [] }),
  halfCopies: false,
};
