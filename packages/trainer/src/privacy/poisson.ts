/**
 * Poisson sampling of a step's examples, as the RDP accountant of the sampled Gaussian mechanism
 * assumes and as Opacus' DPDataLoader samples (`opacus/data_loader.py` with
 * `opacus/utils/uniform_sampler.py` UniformWithReplacementSampler: `torch.rand(n) < sample_rate`,
 * the indexes of the true entries): every example joins a step independently with probability q,
 * so a batch's size is Binomial(N, q) and may be 0.
 *
 * The random numbers come from xoshiro128** (`Rng` of @webtune/model), whose whole state is four
 * u32 words: a checkpoint stores `state` and a resumed run draws the same batches it would have
 * drawn. A fresh sampler is seeded from crypto.getRandomValues. That state is as secret as the data:
 * whoever holds it can replay which examples were in which step, and the guarantee's amplification
 * by sampling assumes nobody can. xoshiro128** is not a cryptographic generator (Opacus' secure mode
 * samples with a CSPRNG); what it gives up is unpredictability to someone who sees its outputs, and
 * the batches' membership is never published.
 */
import { InvalidArgumentError } from '@webtune/errors';
import { Rng, type RngState } from '@webtune/model';

const TWO_POW_M53 = 2 ** -53;
const TWO_POW_26 = 2 ** 26;

function checkSampleRate(q: number): void {
  if (typeof q !== 'number' || !(q > 0 && q <= 1)) {
    throw new InvalidArgumentError(
      `PoissonSampler: sampleRate must be a number in (0, 1] (the probability that an example joins a step, usually ` +
        `expected batch size / dataset size), got ${String(q)}.`,
    );
  }
}

function checkState(state: unknown): asserts state is RngState {
  const ok =
    Array.isArray(state) &&
    state.length === 4 &&
    state.every((w) => typeof w === 'number' && Number.isInteger(w) && w >= 0 && w <= 0xffffffff);
  if (!ok) {
    throw new InvalidArgumentError(
      'PoissonSampler: state must be four u32 words as the sampler\'s `state` gives them (from a checkpoint), got ' +
        `${JSON.stringify(state)}; leave it out to start a fresh sampler.`,
    );
  }
  if (state.every((w) => w === 0)) {
    throw new InvalidArgumentError('PoissonSampler: state is all zeros, which xoshiro128** cannot leave; pass the state a sampler saved, or leave it out.');
  }
}

function freshState(): RngState {
  if (typeof globalThis.crypto?.getRandomValues !== 'function') {
    throw new InvalidArgumentError(
      'PoissonSampler: crypto.getRandomValues is unavailable to seed the sampler; run where Web Crypto exists (browsers, workers, ' +
        'Node >= 20) or pass a saved state.',
    );
  }
  const words = new Uint32Array(4);
  do crypto.getRandomValues(words);
  while (words.every((w) => w === 0));
  return [words[0]!, words[1]!, words[2]!, words[3]!];
}

/**
 * Draws the examples of each DP-SGD step: every index 0..dataSize-1 independently with probability
 * `sampleRate`, compared against a 53-bit uniform (two u32 draws per index). The returned indexes
 * ascend; an empty step is possible and must be taken (noise only), not skipped, for the accounting
 * to hold.
 *
 * @example
 * ```ts
 * const sampler = new PoissonSampler(batchSize / rows.length);
 * const batch = sampler.sample(rows.length).map((i) => rows[i]);
 * checkpoint.samplerState = sampler.state;            // resume: new PoissonSampler(q, saved)
 * ```
 */
export class PoissonSampler {
  /** q: the probability that any one example joins a step. */
  readonly sampleRate: number;
  readonly #rng: Rng;

  /** `state`: the words a previous sampler's `state` returned; left out, fresh ones from crypto.getRandomValues. */
  constructor(sampleRate: number, state?: RngState) {
    checkSampleRate(sampleRate);
    if (state !== undefined) checkState(state);
    this.sampleRate = sampleRate;
    this.#rng = new Rng(state !== undefined ? [...state] as RngState : freshState());
  }

  /** The indexes, ascending, of the examples in the next step out of `dataSize` (possibly none). */
  sample(dataSize: number): number[] {
    if (typeof dataSize !== 'number' || !Number.isSafeInteger(dataSize) || dataSize < 1) {
      throw new InvalidArgumentError(`PoissonSampler.sample: dataSize must be a positive integer (the number of examples), got ${String(dataSize)}.`);
    }
    const q = this.sampleRate;
    const out: number[] = [];
    for (let i = 0; i < dataSize; i++) {
      const hi = this.#rng.nextU32() >>> 5; // 27 bits
      const lo = this.#rng.nextU32() >>> 6; // 26 bits
      if ((hi * TWO_POW_26 + lo) * TWO_POW_M53 < q) out.push(i);
    }
    return out;
  }

  /** The generator's four words now: save them with the checkpoint to draw the same next steps after a resume. */
  get state(): RngState {
    return this.#rng.state;
  }
}
