/**
 * The coordinator's last step of a secure round: from the sum of the survivors' masked inputs and the
 * shares the survivors revealed, the sum of their quantized inputs (mod 2^32). It reconstructs each
 * survivor's self-mask seed b_i and each dropped client's mask private key, and removes PRG(b_i) and
 * the pairwise masks the survivors added for dropped neighbours. It never forms one client's input:
 * only the running sum of masked inputs exists, and the masks come off that sum.
 */
import { InvalidArgumentError } from '@webtune/errors';
import type { SecAggCurve } from './crypto.js';
import { addMask, pairwiseMask, selfMask } from './masks.js';
import { combineShares, type Share } from './shamir.js';

/** What unmaskSum needs: the round, its threshold, the sum of masked inputs and the shares the survivors revealed. */
export interface UnmaskInput {
  curve: SecAggCurve;
  roundId: number;
  threshold: number;
  /** sum of y_i over the survivors, mod 2^32 (consumed: the result is computed in place). */
  maskedSum: Uint32Array;
  /** Every survivor, with the shares of its self-mask seed its neighbours revealed. */
  survivors: { index: number; seedShares: Share[] }[];
  /** Every dropped client whose masks are in the sum: its mask public key, the shares of its mask private key, and its surviving neighbours' mask public keys. */
  dropped: { index: number; maskKey: Uint8Array; keyShares: Share[]; survivingNeighbours: { index: number; maskKey: Uint8Array }[] }[];
}

/** The sum of the survivors' quantized inputs mod 2^32 (UnmaskInput.maskedSum, unmasked in place). */
export async function unmaskSum(input: UnmaskInput): Promise<Uint32Array> {
  const { curve, roundId, threshold: t, maskedSum: sum } = input;
  for (const s of input.survivors) {
    if (s.seedShares.length < t) throw new InvalidArgumentError(`survivor ${s.index}: ${s.seedShares.length} seed shares, ${t} needed`);
    const seed = combineShares(s.seedShares, t, 32);
    addMask(sum, await selfMask(seed, roundId, sum.length), -1);
  }
  for (const d of input.dropped) {
    if (d.keyShares.length < t) throw new InvalidArgumentError(`dropped client ${d.index}: ${d.keyShares.length} key shares, ${t} needed`);
    const own = { publicKey: d.maskKey, privateKey: combineShares(d.keyShares, t, 32) };
    for (const peer of d.survivingNeighbours) {
      // The survivor added sign(peer, d) PRG(s) = -sign(d, peer) PRG(s); adding sign(d, peer) PRG(s) removes it.
      const { mask, sign } = await pairwiseMask(curve, roundId, sum.length, own, d.index, peer.index, peer.maskKey);
      addMask(sum, mask, sign);
    }
  }
  return sum;
}
