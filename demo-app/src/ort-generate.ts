/**
 * Runs the exported ONNX (webtune's exportOnnx()) in onnxruntime-web, as a deployed app would:
 * greedy decoding over the with-past graph (input_ids, attention_mask, position_ids,
 * past_key_values.* -> logits, present.*). Loaded on demand, so the demo's first page load does
 * not pay for onnxruntime-web; its wasm file is part of the build (and the offline precache), never
 * fetched from a CDN.
 */
import * as ort from 'onnxruntime-web/wasm';
import ortWasmUrl from 'onnxruntime-web/ort-wasm-simd-threaded.wasm?url';
import { createTokenizer, parseModelConfig, type ModelConfig } from '@webtune/model';
import { decoderFeeds } from '@webtune/onnx';

ort.env.wasm.wasmPaths = { wasm: new URL(ortWasmUrl, location.href).href };
// Threads need cross-origin isolation, which a plain static host does not give.
ort.env.wasm.numThreads = 1;

export interface OrtGeneration {
  text: string;
  tokens: number[];
  /** Milliseconds per generated token (the first, which also reads the prompt, included). */
  msPerToken: number;
}

/** Greedy continuation of `prompt` by `model` (an ONNX file of the model folder at `folderUrl`, which has its config and tokenizer). */
export async function ortGenerate(model: Uint8Array, folderUrl: string, prompt: string, maxNewTokens: number): Promise<OrtGeneration> {
  const json = (file: string) => fetch(new URL(file, folderUrl)).then((r) => r.text());
  const [config, tokenizer] = await Promise.all([
    json('config.json').then((text) => parseModelConfig(text, 'config.json')),
    Promise.all([json('tokenizer.json'), json('tokenizer_config.json')]).then(([t, c]) => createTokenizer(JSON.parse(t), JSON.parse(c))),
  ]);
  const { tokens, msPerToken } = await ortGreedy(model, config, tokenizer.encode(prompt), maxNewTokens);
  return { text: tokenizer.decode(tokens), tokens, msPerToken };
}

async function ortGreedy(model: Uint8Array, config: ModelConfig, prompt: number[], maxNewTokens: number): Promise<Omit<OrtGeneration, 'text'>> {
  const session = await ort.InferenceSession.create(model, { executionProviders: ['wasm'] });
  try {
    const eos = new Set(config.eosTokenId === undefined ? [] : ([] as number[]).concat(config.eosTokenId));
    const tensor = (type: 'int64' | 'float32', data: BigInt64Array | Float32Array, dims: number[]) => new ort.Tensor(type, data, dims);
    const tokens: number[] = [];
    let input = prompt;
    let past: { length: number; tensors: Record<string, ort.Tensor> } | undefined;
    const start = performance.now();
    while (tokens.length < maxNewTokens && (past?.length ?? 0) + input.length < config.maxPositions) {
      const out = await session.run(decoderFeeds(tensor, config, [input], past));
      const logits = out.logits!.data as Float32Array;
      const row = logits.subarray((input.length - 1) * config.vocabSize, input.length * config.vocabSize);
      let next = 0;
      for (let v = 1; v < row.length; v++) if (row[v]! > row[next]!) next = v;
      if (eos.has(next)) break;
      tokens.push(next);
      past = { length: (past?.length ?? 0) + input.length, tensors: out };
      input = [next];
    }
    return { tokens, msPerToken: (performance.now() - start) / Math.max(1, tokens.length) };
  } finally {
    await session.release();
  }
}
