/**
 * Runs the exported ONNX (webtune's exportOnnx()) in onnxruntime-web, as a deployed app would:
 * greedy decoding over the with-past graph (input_ids, attention_mask, position_ids,
 * past_key_values.* -> logits, present.*). Loaded on demand, so the demo's first page load does
 * not pay for onnxruntime-web; its wasm file is part of the build (and the offline precache), never
 * fetched from a CDN.
 */
import * as ort from 'onnxruntime-web/wasm';
import ortWasmUrl from 'onnxruntime-web/ort-wasm-simd-threaded.wasm?url';
import type { ModelConfig } from '@webtune/model';

ort.env.wasm.wasmPaths = { wasm: new URL(ortWasmUrl, location.href).href };
// Threads need cross-origin isolation, which a plain static host does not give.
ort.env.wasm.numThreads = 1;

export interface OrtGeneration {
  tokens: number[];
  /** Milliseconds per generated token (the first, which also reads the prompt, included). */
  msPerToken: number;
}

export async function ortGreedy(model: Uint8Array, config: ModelConfig, prompt: number[], maxNewTokens: number): Promise<OrtGeneration> {
  const session = await ort.InferenceSession.create(model, { executionProviders: ['wasm'] });
  try {
    const eos = new Set(config.eosTokenId === undefined ? [] : ([] as number[]).concat(config.eosTokenId));
    const i64 = (values: number[]) => new ort.Tensor('int64', BigInt64Array.from(values.map(BigInt)), [1, values.length]);
    let past: Record<string, ort.Tensor> = {};
    for (let l = 0; l < config.numLayers; l++) {
      for (const t of ['key', 'value']) past[`past_key_values.${l}.${t}`] = new ort.Tensor('float32', new Float32Array(0), [1, config.numKvHeads, 0, config.headDim]);
    }
    const tokens: number[] = [];
    let input = prompt;
    let position = 0;
    const start = performance.now();
    while (tokens.length < maxNewTokens && position + input.length < config.maxPositions) {
      const out = await session.run({
        input_ids: i64(input),
        attention_mask: i64(Array(position + input.length).fill(1)),
        position_ids: i64(input.map((_, j) => position + j)),
        ...past,
      });
      const logits = out.logits!.data as Float32Array;
      const row = logits.subarray((input.length - 1) * config.vocabSize, input.length * config.vocabSize);
      let next = 0;
      for (let v = 1; v < row.length; v++) if (row[v]! > row[next]!) next = v;
      if (eos.has(next)) break;
      tokens.push(next);
      past = {};
      for (let l = 0; l < config.numLayers; l++) {
        for (const t of ['key', 'value']) past[`past_key_values.${l}.${t}`] = out[`present.${l}.${t}`]!;
      }
      position += input.length;
      input = [next];
    }
    return { tokens, msPerToken: (performance.now() - start) / Math.max(1, tokens.length) };
  } finally {
    await session.release();
  }
}
