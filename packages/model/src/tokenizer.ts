/**
 * Tokenizers: a thin wrapper over `@huggingface/tokenizers` (Tokenizers.js), which reads the
 * `tokenizer.json` that the Rust `tokenizers` crate writes (BPE, WordPiece, Unigram; byte-level,
 * Metaspace, ...) plus `tokenizer_config.json`. webtune only needs ids in, ids out, and the
 * special ids that training cares about.
 */
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { ModelFormatError } from '@webtune/errors';

export interface Tokenizer {
  /** Token ids of `text`; special tokens (BOS, ...) are added as the tokenizer's post-processor says, unless `addSpecialTokens: false`. */
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  /** Text of `ids` (an empty list gives ''). */
  decode(ids: number[], options?: { skipSpecialTokens?: boolean }): string;
  /** Highest token id + 1, added tokens included (Python's `len(tokenizer)`). */
  readonly vocabSize: number;
  readonly eosTokenId: number | undefined;
  readonly bosTokenId: number | undefined;
  /** pad_token's id from tokenizer_config.json, if it names one. */
  readonly padTokenId: number | undefined;
  /**
   * The special tokens' text as tokenizer_config.json names them (`bos_token`, `eos_token`,
   * `pad_token`, `unk_token`): chat templates print them (`{{ bos_token }}`).
   */
  readonly specialTokens: Readonly<Partial<Record<'bos_token' | 'eos_token' | 'pad_token' | 'unk_token', string>>>;
  /** The id of the added token with this exact text (`<|im_end|>`, ...), if it is one marked special. */
  specialTokenId(content: string): number | undefined;
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** tokenizer_config.json writes special tokens as a string or as a serialized AddedToken `{content, ...}`. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v['content'] === 'string') return v['content'];
  return undefined;
}

// Used only when tokenizer_config.json does not say (or is absent): the names these families use.
const EOS_FALLBACK = ['</s>', '<|endoftext|>', '<|end_of_text|>'];
const BOS_FALLBACK = ['<s>', '<|begin_of_text|>'];

/**
 * Builds a Tokenizer from the parsed `tokenizer.json` and, optionally, `tokenizer_config.json`.
 * Throws ModelFormatError when tokenizer.json is not one the library can read.
 *
 * @example
 * const tok = createTokenizer(JSON.parse(tokenizerJsonText), JSON.parse(tokenizerConfigText));
 * const ids = tok.encode('Hello world');
 * tok.decode(ids, { skipSpecialTokens: true }); // 'Hello world'
 */
export function createTokenizer(tokenizerJson: object, tokenizerConfig?: object, source = 'tokenizer.json'): Tokenizer {
  if (!isObject(tokenizerJson)) throw new ModelFormatError(source, 'expected a JSON object (the tokenizer.json the Hugging Face tokenizers library writes)');
  const model = tokenizerJson['model'];
  if (!isObject(model) || (typeof model['type'] !== 'string' && model['vocab'] === undefined)) {
    throw new ModelFormatError(source, 'has no "model" with a "type" (BPE, WordPiece, Unigram); is this a tokenizer.json from the tokenizers library?');
  }
  if (tokenizerJson['added_tokens'] !== undefined && !Array.isArray(tokenizerJson['added_tokens'])) {
    throw new ModelFormatError(source, '"added_tokens" is not a list');
  }
  if (tokenizerConfig !== undefined && !isObject(tokenizerConfig)) {
    throw new ModelFormatError('tokenizer_config.json', 'expected a JSON object');
  }
  const config: Json = tokenizerConfig ?? {};
  // The library requires these keys to be present; files written by older tokenizers versions may omit null ones.
  const json: Json = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, ...tokenizerJson, added_tokens: tokenizerJson['added_tokens'] ?? [] };

  let hf: HfTokenizer;
  let vocab: Map<string, number>;
  try {
    hf = new HfTokenizer(json, config);
    vocab = hf.get_vocab(true);
  } catch (cause) {
    throw new ModelFormatError(source, `Tokenizers.js cannot build a tokenizer from it (${(cause as Error).message})`, { cause });
  }
  let vocabSize = 0;
  for (const id of vocab.values()) if (id + 1 > vocabSize) vocabSize = id + 1;

  const specialId = (key: 'eos_token' | 'bos_token', fallback: string[]): number | undefined => {
    const named = tokenContent(config[key]);
    if (named !== undefined) return hf.token_to_id(named);
    if (key in config) return undefined; // explicitly null: the model has none
    for (const t of fallback) {
      const id = hf.token_to_id(t);
      if (id !== undefined) return id;
    }
    return undefined;
  };
  const eosTokenId = specialId('eos_token', EOS_FALLBACK);
  const bosTokenId = specialId('bos_token', BOS_FALLBACK);
  const padName = tokenContent(config['pad_token']);
  const padTokenId = padName === undefined ? undefined : hf.token_to_id(padName);
  const specialTokens: Partial<Record<'bos_token' | 'eos_token' | 'pad_token' | 'unk_token', string>> = {};
  for (const key of ['bos_token', 'eos_token', 'pad_token', 'unk_token'] as const) {
    const named = tokenContent(config[key]);
    if (named !== undefined) specialTokens[key] = named;
  }
  const added = new Map<string, number>();
  for (const t of (json['added_tokens'] as unknown[])) {
    if (isObject(t) && t['special'] === true && typeof t['content'] === 'string' && typeof t['id'] === 'number') added.set(t['content'], t['id']);
  }

  return {
    encode(text, options) {
      return hf.encode(text, { add_special_tokens: options?.addSpecialTokens ?? true }).ids;
    },
    decode(ids, options) {
      if (ids.length === 0) return '';
      return hf.decode(ids, { skip_special_tokens: options?.skipSpecialTokens ?? false });
    },
    vocabSize,
    eosTokenId,
    bosTokenId,
    padTokenId,
    specialTokens,
    specialTokenId: (content) => added.get(content),
  };
}
