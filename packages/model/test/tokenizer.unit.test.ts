/**
 * The tokenizer wrapper against ids from the Python byte-level BPE encoder that wrote the fixture
 * tokenizer (scripts/make_tiny_models.py), and its handling of malformed files.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ModelFormatError } from '@webtune/errors';
import { createTokenizer } from '../src/tokenizer.js';

const FIXTURES = join(import.meta.dirname, 'fixtures');
const GOLDENS = join(FIXTURES, 'goldens/tokenizer.json');
const readJson = (path: string) => JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;

describe.runIf(existsSync(GOLDENS))('createTokenizer: goldens from the Python encoder', () => {
  const golden = readJson(GOLDENS) as { vocabSize: number; eosTokenId: number; cases: { text: string; ids: number[] }[] };
  const dir = join(FIXTURES, 'models/tiny-llama');
  const tok = createTokenizer(readJson(join(dir, 'tokenizer.json')), readJson(join(dir, 'tokenizer_config.json')));

  it('vocabulary size and special ids', () => {
    expect(tok.vocabSize).toBe(golden.vocabSize);
    expect(tok.eosTokenId).toBe(golden.eosTokenId);
    expect(tok.bosTokenId).toBe(golden.eosTokenId); // GPT-2 style: <|endoftext|> is both
  });

  it.each(golden.cases.map((c) => [JSON.stringify(c.text).slice(0, 40), c] as const))('encode %s matches, decode round-trips', (_, c) => {
    expect(tok.encode(c.text)).toEqual(c.ids);
    expect(tok.encode(c.text, { addSpecialTokens: false })).toEqual(c.ids); // this tokenizer adds none
    expect(tok.decode(c.ids)).toBe(c.text);
  });

  it('skipSpecialTokens drops <|endoftext|>', () => {
    const ids = tok.encode('<|endoftext|>Call me Ishmael.<|endoftext|>');
    expect(ids[0]).toBe(golden.eosTokenId);
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('Call me Ishmael.');
  });

  it('without tokenizer_config.json the special ids come from the vocabulary', () => {
    const bare = createTokenizer(readJson(join(dir, 'tokenizer.json')));
    expect(bare.eosTokenId).toBe(golden.eosTokenId);
    expect(bare.encode('Call me Ishmael.')).toEqual(tok.encode('Call me Ishmael.'));
  });
});

describe('createTokenizer: a small WordPiece tokenizer built here', () => {
  const json = {
    version: '1.0',
    added_tokens: [
      { id: 0, content: '[UNK]', special: true, single_word: false, lstrip: false, rstrip: false, normalized: false },
      { id: 1, content: '[CLS]', special: true, single_word: false, lstrip: false, rstrip: false, normalized: false },
      { id: 2, content: '[SEP]', special: true, single_word: false, lstrip: false, rstrip: false, normalized: false },
    ],
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
      pair: [],
      special_tokens: { '[CLS]': { id: '[CLS]', ids: [1], tokens: ['[CLS]'] }, '[SEP]': { id: '[SEP]', ids: [2], tokens: ['[SEP]'] } },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab: { '[UNK]': 0, '[CLS]': 1, '[SEP]': 2, hello: 3, world: 4, '##s': 5 } },
  };

  it('adds special tokens unless told not to; decode skips them on request; [] decodes to ""', () => {
    const tok = createTokenizer(json, { cls_token: '[CLS]', sep_token: '[SEP]', eos_token: '[SEP]', bos_token: null });
    expect(tok.encode('Hello worlds')).toEqual([1, 3, 4, 5, 2]);
    expect(tok.encode('Hello worlds', { addSpecialTokens: false })).toEqual([3, 4, 5]);
    expect(tok.decode([1, 3, 4, 5, 2], { skipSpecialTokens: true })).toBe('hello worlds');
    expect(tok.decode([])).toBe('');
    expect(tok.vocabSize).toBe(6);
    expect(tok.eosTokenId).toBe(2);
    expect(tok.bosTokenId).toBeUndefined();
  });

  it('tokenizer_config special tokens written as AddedToken objects', () => {
    const tok = createTokenizer(json, { eos_token: { __type: 'AddedToken', content: '[SEP]' } });
    expect(tok.eosTokenId).toBe(2);
  });

  it('files from older tokenizers versions without the null keys still load', () => {
    const { normalizer: _n, decoder: _d, added_tokens: _a, ...minimal } = json;
    expect(createTokenizer(minimal).encode('hello', { addSpecialTokens: false })).toEqual([3]);
  });
});

describe('createTokenizer: malformed tokenizer.json', () => {
  it.each([
    ['not an object', [1, 2, 3]],
    ['null', null],
    ['no model', { version: '1.0', added_tokens: [] }],
    ['model of an unknown type', { model: { type: 'Bogus' } }],
    ['added_tokens not a list', { model: { type: 'BPE', vocab: {}, merges: [] }, added_tokens: 5 }],
    ['BPE without vocab', { model: { type: 'BPE' }, added_tokens: [] }],
    ['a pre-tokenizer the library does not know', { model: { type: 'BPE', vocab: { a: 0 }, merges: [] }, pre_tokenizer: { type: 'Nope' } }],
  ])('%s -> ModelFormatError', (_, json) => {
    expect(() => createTokenizer(json as object)).toThrow(ModelFormatError);
    expect(() => createTokenizer(json as object)).toThrow(/tokenizer\.json/);
  });

  it('tokenizer_config.json that is not an object -> ModelFormatError', () => {
    expect(() => createTokenizer({ model: { type: 'BPE', vocab: { a: 0 }, merges: [] } }, [] as unknown as object)).toThrow(/tokenizer_config\.json/);
  });
});
