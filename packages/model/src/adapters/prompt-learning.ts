/**
 * What PEFT's "prompt learning" methods share (prompt tuning, P-tuning, prefix tuning;
 * peft/tuners/{prompt_tuning,p_tuning,prefix_tuning}): the adapter_config.json fields, the one
 * saved tensor (`prompt_embeddings`), PyTorch's default initialisations, and the small encoder MLPs
 * that P-tuning and prefix projection train, both on the host (export) and on the GPU (training).
 * Host-side parts only here; the GPU encoder is in prompt-encoder.ts.
 */
import { InvalidArgumentError, ModelFormatError } from '@webtune/errors';
import type { ModelConfig } from '../config.js';
import type { Rng } from '../rng.js';
import type { HostTensor } from './types.js';

/** The key PEFT saves every prompt-learning adapter under (`get_peft_model_state_dict`). */
export const PROMPT_EMBEDDINGS = 'prompt_embeddings';

/** Largest number of virtual tokens accepted (they take positions of the context, and PEFT's examples use 8 to 100). */
export const MAX_VIRTUAL_TOKENS = 512;

/** num_virtual_tokens checked against the model's context. */
export function checkVirtualTokens(model: ModelConfig, n: unknown, title: string): number {
  if (!Number.isSafeInteger(n) || (n as number) < 1 || (n as number) > MAX_VIRTUAL_TOKENS) {
    throw new InvalidArgumentError(`${title} numVirtualTokens must be an integer from 1 to ${MAX_VIRTUAL_TOKENS}, got ${JSON.stringify(n)}.`);
  }
  if ((n as number) >= model.maxPositions) {
    throw new InvalidArgumentError(`${title} numVirtualTokens (${n as number}) leaves no room in the model's context of ${model.maxPositions} positions.`);
  }
  return n as number;
}

/** A positive integer setting (an encoder's hidden size), or its default. */
export function checkSize(value: unknown, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || (value as number) < 1 || (value as number) > 65536) {
    throw new InvalidArgumentError(`${what} must be an integer from 1 to 65536, got ${JSON.stringify(value)}.`);
  }
  return value as number;
}

/** The model's whole config, which prompt methods' files describe (token_dim, num_layers, heads). */
export function fullModel(model: Partial<ModelConfig>, title: string): ModelConfig {
  if (model.numLayers === undefined || model.hiddenSize === undefined || model.numHeads === undefined || model.numKvHeads === undefined || model.headDim === undefined) {
    throw new InvalidArgumentError(`${title}'s adapter_config.json records the model's shape; pass the whole ModelConfig.`);
  }
  return model as ModelConfig;
}

/** The fields PEFT's PromptLearningConfig writes for a decoder-only model (one transformer submodule). */
export function promptLearningFields(
  peftType: 'PROMPT_TUNING' | 'P_TUNING' | 'PREFIX_TUNING', model: Pick<ModelConfig, 'numLayers'>, numVirtualTokens: number, tokenDim: number, heads: number, baseModel: string,
): Record<string, unknown> {
  return {
    peft_type: peftType,
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: baseModel,
    revision: null,
    inference_mode: true,
    num_virtual_tokens: numVirtualTokens,
    token_dim: tokenDim,
    num_transformer_submodules: 1,
    num_attention_heads: heads,
    num_layers: model.numLayers,
  };
}

/** num_virtual_tokens (and, where PEFT wrote them, token_dim and num_layers) of a file, checked against the model. */
export function readPromptLearningFields(model: ModelConfig, raw: Record<string, unknown>, tokenDim: number, title: string): number {
  const n = raw['num_virtual_tokens'];
  if (!Number.isSafeInteger(n)) throw new ModelFormatError('adapter_config.json', `${title}: num_virtual_tokens is ${JSON.stringify(n)}, not an integer`);
  for (const [field, want] of [['token_dim', tokenDim], ['num_layers', model.numLayers]] as const) {
    const v = raw[field];
    if (v !== undefined && v !== null && v !== want) {
      throw new ModelFormatError('adapter_config.json', `${title}: ${field} is ${JSON.stringify(v)} but this model needs ${want} (an adapter for another model?)`);
    }
  }
  const t = raw['num_transformer_submodules'];
  if (t !== undefined && t !== null && t !== 1) throw new ModelFormatError('adapter_config.json', `${title}: num_transformer_submodules is ${JSON.stringify(t)}; a decoder-only model has 1`);
  return n as number;
}

/** nn.Embedding's default initialisation: N(0, 1). */
export function normalTensor(shape: number[], rng: Rng, std = 1): HostTensor {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = rng.normal() * std;
  return { data, shape };
}

/** nn.Linear's default initialisation (kaiming_uniform with a = sqrt(5)): weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)). */
export function linearInit(outFeatures: number, inFeatures: number, rng: Rng): { weight: HostTensor; bias: HostTensor } {
  const bound = 1 / Math.sqrt(inFeatures);
  const uniform = (n: number) => Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * bound);
  return { weight: { data: uniform(outFeatures * inFeatures), shape: [outFeatures, inFeatures] }, bias: { data: uniform(outFeatures), shape: [outFeatures] } };
}

/**
 * Fresh encoder tensors, as PyTorch initialises them: the input embeddings N(0, 1) (nn.Embedding),
 * then each layer's weight and bias (nn.Linear), drawn in that order from `rng`.
 */
export function initEncoder(input: { key: string; shape: number[] }, layers: readonly EncoderLayer[], shapes: readonly { key: string; shape: number[] }[], rng: Rng): Map<string, HostTensor> {
  const tensors = new Map<string, HostTensor>([[input.key, normalTensor(input.shape, rng)]]);
  for (const layer of layers) {
    const [out, inp] = shapes.find((s) => s.key === layer.weight)!.shape as [number, number];
    const { weight, bias } = linearInit(out, inp, rng);
    tensors.set(layer.weight, weight).set(layer.bias, bias);
  }
  return tensors;
}

/**
 * What prompt-runtime.ts and prompt-encoder.ts allocate for a table of `rows` x `cols`: in f16 a
 * half copy and a half gradient (and, behind an encoder, an f32 gradient); in f32 an encoder's
 * table needs a gradient of its own (a trainable table takes its gradient directly). An encoder
 * keeps per layer its pre-activation, activation (when it has one), output gradient and (past the
 * first layer) input gradient, all f32.
 */
export function promptRuntimeBytes(rows: number, cols: number, dtype: 'f32' | 'f16', encoder: ReadonlyArray<{ in: number; out: number; activation: EncoderLayer['activation'] }> = []): number {
  const table = rows * cols;
  let bytes = dtype === 'f16' ? table * 2 * 2 + (encoder.length > 0 ? table * 4 : 0) : encoder.length > 0 ? table * 4 : 0;
  encoder.forEach((l, i) => {
    bytes += rows * l.out * 4 * (l.activation === 'none' ? 2 : 3) + (i > 0 ? rows * l.in * 4 : 0);
  });
  return bytes;
}

/** One layer of an encoder MLP: y = act(x W^T + b). */
export interface EncoderLayer {
  /** Keys of its weight [out, in] and bias [out]. */
  weight: string;
  bias: string;
  activation: 'relu' | 'tanh' | 'none';
}

/** The encoder's output on the host (float64 sums): what the PEFT file saves for P-tuning and prefix projection. */
export function encoderForwardHost(layers: readonly EncoderLayer[], input: HostTensor, tensors: ReadonlyMap<string, HostTensor>): HostTensor {
  let x = input;
  for (const layer of layers) {
    const w = tensors.get(layer.weight)!;
    const b = tensors.get(layer.bias)!;
    const [out, inp] = w.shape as [number, number];
    const rows = x.shape[0]!;
    const y = new Float32Array(rows * out);
    for (let r = 0; r < rows; r++) {
      for (let o = 0; o < out; o++) {
        let sum = b.data[o]!;
        for (let i = 0; i < inp; i++) sum += x.data[r * inp + i]! * w.data[o * inp + i]!;
        y[r * out + o] = layer.activation === 'relu' ? Math.max(0, sum) : layer.activation === 'tanh' ? Math.tanh(sum) : sum;
      }
    }
    x = { data: y, shape: [rows, out] };
  }
  return x;
}

/** The one tensor a PEFT prompt-learning file holds, checked for shape. */
export function promptEmbeddingsOf(tensors: ReadonlyMap<string, HostTensor>, shape: [number, number], source: string): HostTensor {
  const t = tensors.get(PROMPT_EMBEDDINGS);
  if (!t) throw new ModelFormatError(source, `has no "${PROMPT_EMBEDDINGS}"`);
  if (t.shape.length !== 2 || t.shape[0] !== shape[0] || t.shape[1] !== shape[1]) {
    throw new ModelFormatError(source, `"${PROMPT_EMBEDDINGS}" is [${t.shape.join(', ')}]; this adapter needs [${shape.join(', ')}]`);
  }
  return t;
}
