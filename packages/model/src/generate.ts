/**
 * Text generation with a KV cache: the prompt runs once (prefill), then one token per step
 * reads the cached keys and values. Sampling is greedy, or temperature with top-k and top-p
 * (nucleus) filtering as transformers' logits warpers apply them (temperature, then top-k, then
 * top-p), drawn from a seeded RNG so a run is repeatable.
 */
import { InvalidArgumentError } from '@webtune/errors';
import { Rng } from './rng.js';
import type { Transformer } from './transformer.js';

export interface GenerateOptions {
  maxNewTokens?: number;
  /** 0 (default) is greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  /** Stop at any of these ids (the model's eos by default). */
  stopTokens?: number[];
  /** Called with each new token as it is produced. */
  onToken?: (id: number) => void;
  signal?: AbortSignal;
}

export async function generate(model: Transformer, prompt: ArrayLike<number>, options: GenerateOptions = {}): Promise<number[]> {
  const maxNew = options.maxNewTokens ?? 32;
  if (prompt.length === 0) throw new InvalidArgumentError('generate needs a prompt of at least one token.');
  // An adapter's virtual tokens and key/value prefixes take the first positions (and, except a
  // gated prefix, which is attended to apart, the first rows of the cache).
  const lead = model.leadingTokens;
  const outside = lead - model.cacheLeadingRows;
  const capacity = Math.min(model.config.maxPositions - outside, lead - outside + prompt.length + maxNew);
  if (lead + prompt.length >= model.config.maxPositions) {
    const adapter = lead > 0 ? ` and the adapter adds ${lead} virtual or prefix tokens` : '';
    throw new InvalidArgumentError(`The prompt has ${prompt.length} tokens${adapter}; the model's context is ${model.config.maxPositions}.`);
  }
  const eos = model.config.eosTokenId;
  const stop = new Set(options.stopTokens ?? (eos === undefined ? [] : Array.isArray(eos) ? eos : [eos]));
  const rng = new Rng(options.seed ?? 0);
  const cache = model.createKvCache(capacity);
  const out: number[] = [];
  try {
    let logits = await model.decode(Uint32Array.from(prompt), cache);
    while (out.length < maxNew && cache.length < capacity) {
      options.signal?.throwIfAborted();
      const next = sample(logits, options, rng);
      out.push(next);
      options.onToken?.(next);
      if (stop.has(next) || cache.length >= capacity) break;
      logits = await model.decode(Uint32Array.of(next), cache);
    }
  } finally {
    cache.release();
  }
  return out;
}

/** Picks the next token from one row of logits. */
export function sample(logits: Float32Array, options: Pick<GenerateOptions, 'temperature' | 'topK' | 'topP'>, rng: Rng): number {
  const temperature = options.temperature ?? 0;
  if (temperature < 0 || !Number.isFinite(temperature)) throw new InvalidArgumentError(`temperature must be >= 0, got ${temperature}.`);
  if (temperature === 0) {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
    return best;
  }
  let order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]!);
  const topK = options.topK ?? 0;
  if (topK > 0) order = order.slice(0, topK);
  const max = logits[order[0]!]! / temperature;
  let probs = order.map((i) => Math.exp(logits[i]! / temperature - max));
  let total = probs.reduce((a, b) => a + b, 0);
  const topP = options.topP ?? 1;
  if (topP < 1) {
    // Keep the smallest prefix whose probability reaches topP (at least one token).
    let acc = 0;
    let keep = 0;
    while (keep < probs.length && (keep === 0 || acc < topP * total)) acc += probs[keep++]!;
    order = order.slice(0, keep);
    probs = probs.slice(0, keep);
    total = acc;
  }
  let u = rng.next() * total;
  for (let i = 0; i < order.length; i++) {
    u -= probs[i]!;
    if (u <= 0) return order[i]!;
  }
  return order[order.length - 1]!;
}
