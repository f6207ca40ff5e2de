/**
 * The masks of SecAgg+ (Bell et al. 2020, over Bonawitz et al. 2017's protocol) and everything that
 * both sides compute the same way: the neighbour graph, the keys derived from ECDH secrets and
 * seeds, the plaintext and associated data of an encrypted share, and the masked input.
 *
 * Neighbours: the n participants of a round hold indexes 1..n, assigned by the coordinator in a
 * random order. Participant i's neighbours are the k/2 indexes before and after it on a ring
 * (a Harary graph, k even), or everyone else when k >= n - 1 (classic SecAgg). Both sides compute
 * it from (n, k): the coordinator chooses the order of the indexes, but a client checks that the
 * neighbours it is given are the ring's (it refuses an arbitrary, e.g. smaller, neighbourhood).
 *
 * Masked input of i (Bonawitz et al. sec. 4): y_i = x_i + PRG(b_i) + sum over neighbours j that
 * shared keys of sign(i, j) PRG(s_ij), mod 2^32, with sign +1 for j > i and -1 for j < i, so every
 * pairwise mask cancels in the sum of the survivors; b_i is i's self-mask seed, s_ij the key both
 * derive from ECDH of their mask keys.
 */
import { InvalidArgumentError } from '@webtune/errors';
import { agree, hkdf, keystreamWords, type KeyPairBytes, type SecAggCurve } from './crypto.js';
import { SHARE_BYTES } from './shamir.js';

/** The neighbourhood size used for n participants when `neighbours` is configured as k ('all': n - 1). */
export function resolveNeighbours(configured: number | 'all', n: number): number {
  if (configured === 'all' || configured >= n - 1) return n - 1;
  const k = Math.max(2, configured);
  return Math.min(n - 1, k % 2 === 0 ? k : k + 1);
}

/**
 * The Shamir threshold t for a neighbourhood of k: each client's secrets are shared among its k
 * neighbours and itself (k + 1 holders; it keeps one share, as Flower's num_shares counts), and t is
 * more than half of them, so two disjoint sets of holders can never both reach it (each honest
 * holder reveals one kind of secret per client, so the coordinator cannot collect both), at least
 * `fraction` of them, and at most k (a dropped client's own share is gone).
 */
export function resolveThreshold(k: number, fraction: number | undefined): number {
  if (!(Number.isInteger(k) && k >= 2)) throw new InvalidArgumentError(`a neighbourhood has at least 2 neighbours (3 participants), got ${k}`);
  if (fraction !== undefined && !(fraction > 0 && fraction <= 1)) throw new InvalidArgumentError(`the threshold share must be in (0, 1], got ${fraction}`);
  const holders = k + 1;
  // The 1e-9: 0.55 * 100 is 55.00000000000001 in floating point, which must not round up to 56.
  return Math.min(k, Math.max(Math.floor(holders / 2) + 1, Math.ceil((fraction ?? 0) * holders - 1e-9)));
}

/** The neighbours of index i among 1..n with neighbourhood size k (resolveNeighbours), ascending. */
export function neighboursOf(i: number, n: number, k: number): number[] {
  if (!(Number.isInteger(i) && i >= 1 && i <= n)) throw new InvalidArgumentError(`index ${i} is not in 1..${n}`);
  if (k >= n - 1) return Array.from({ length: n }, (_, j) => j + 1).filter((j) => j !== i);
  if (k % 2 !== 0 || k < 2) throw new InvalidArgumentError(`a ring neighbourhood below n - 1 has an even k >= 2 (resolveNeighbours), got ${k}`);
  const out = new Set<number>();
  for (let d = 1; d <= k / 2; d++) {
    out.add(((i - 1 + d) % n) + 1);
    out.add(((i - 1 - d + n) % n) + 1);
  }
  return [...out].sort((a, b) => a - b);
}

const encoder = new TextEncoder();
const salt = (roundId: number) => encoder.encode(`webtune-secagg/v1/round/${roundId}`);

/** The AES-GCM key for shares between two participants (from the ECDH secret of their encryption keys). */
export function shareEncryptionKey(sharedSecret: Uint8Array, roundId: number): Promise<Uint8Array> {
  return hkdf(sharedSecret, salt(roundId), 'share-encryption', 32);
}

/** The AES-CTR key of the pairwise mask of two participants (from the ECDH secret of their mask keys). */
export function pairwiseMaskKey(sharedSecret: Uint8Array, roundId: number): Promise<Uint8Array> {
  return hkdf(sharedSecret, salt(roundId), 'pairwise-mask', 32);
}

/** The AES-CTR key of a participant's self mask (from its 32-byte seed b). */
export function selfMaskKey(seed: Uint8Array, roundId: number): Promise<Uint8Array> {
  return hkdf(seed, salt(roundId), 'self-mask', 32);
}

/** The associated data of the share ciphertext from `from` to `to` in a round: the server cannot move it to another pair or round. */
export function shareAssociatedData(roundId: number, from: number, to: number): Uint8Array {
  const out = new Uint8Array(20 + 12);
  out.set(encoder.encode('webtune-secagg-share'));
  const v = new DataView(out.buffer);
  v.setUint32(20, roundId);
  v.setUint32(24, from);
  v.setUint32(28, to);
  return out;
}

/** Bytes of a share plaintext: from, to, round (u32 BE each), then the seed share and the key share. */
export const SHARE_PLAINTEXT_BYTES = 12 + 2 * SHARE_BYTES;

export function encodeSharePlaintext(roundId: number, from: number, to: number, seedShare: Uint8Array, keyShare: Uint8Array): Uint8Array {
  if (seedShare.length !== SHARE_BYTES || keyShare.length !== SHARE_BYTES) throw new InvalidArgumentError(`share values are ${SHARE_BYTES} bytes`);
  const out = new Uint8Array(SHARE_PLAINTEXT_BYTES);
  const v = new DataView(out.buffer);
  v.setUint32(0, from);
  v.setUint32(4, to);
  v.setUint32(8, roundId);
  out.set(seedShare, 12);
  out.set(keyShare, 12 + SHARE_BYTES);
  return out;
}

export function decodeSharePlaintext(bytes: Uint8Array): { from: number; to: number; roundId: number; seedShare: Uint8Array; keyShare: Uint8Array } | undefined {
  if (bytes.length !== SHARE_PLAINTEXT_BYTES) return undefined;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    from: v.getUint32(0), to: v.getUint32(4), roundId: v.getUint32(8),
    seedShare: bytes.slice(12, 12 + SHARE_BYTES), keyShare: bytes.slice(12 + SHARE_BYTES),
  };
}

/** target = target + sign * mask (mod 2^32), in place. */
export function addMask(target: Uint32Array, mask: Uint32Array, sign: 1 | -1): void {
  if (sign === 1) for (let i = 0; i < target.length; i++) target[i] = (target[i]! + mask[i]!) >>> 0;
  else for (let i = 0; i < target.length; i++) target[i] = (target[i]! - mask[i]!) >>> 0;
}

/** The pairwise mask participant `i` adds for peer `j`, with its sign, from i's mask key pair and j's mask public key. */
export async function pairwiseMask(curve: SecAggCurve, roundId: number, words: number, own: KeyPairBytes, i: number, j: number, peerMaskKey: Uint8Array): Promise<{ mask: Uint32Array; sign: 1 | -1 }> {
  const key = await pairwiseMaskKey(await agree(curve, own, peerMaskKey), roundId);
  return { mask: await keystreamWords(key, words), sign: j > i ? 1 : -1 };
}

/** The self mask PRG(b) of a seed. */
export async function selfMask(seed: Uint8Array, roundId: number, words: number): Promise<Uint32Array> {
  return keystreamWords(await selfMaskKey(seed, roundId), words);
}

/** Bytes of the masked-input header: magic "WTSM", round id, base version, words (u32 LE each). */
export const MASKED_HEADER_BYTES = 16;
const MAGIC = 0x4d535457; // "WTSM" read as a little-endian u32

/** A masked input as the coordinator receives it: header, then the words (u32 little-endian). */
export function encodeMaskedInput(roundId: number, baseVersion: number, words: Uint32Array): Uint8Array {
  const out = new Uint8Array(MASKED_HEADER_BYTES + words.length * 4);
  const v = new DataView(out.buffer);
  v.setUint32(0, MAGIC, true);
  v.setUint32(4, roundId, true);
  v.setUint32(8, baseVersion, true);
  v.setUint32(12, words.length, true);
  for (let i = 0; i < words.length; i++) v.setUint32(MASKED_HEADER_BYTES + 4 * i, words[i]!, true);
  return out;
}

/**
 * Reads a masked input's header and words, checking its size and round, never its content (which
 * is uniform to anyone without the masks). Returns why it is refused instead, as a phrase.
 */
export function decodeMaskedInput(bytes: Uint8Array, expected: { roundId: number; baseVersion: number; words: number }): Uint32Array | string {
  if (bytes.length !== MASKED_HEADER_BYTES + expected.words * 4) return `a masked input of this round is ${MASKED_HEADER_BYTES + expected.words * 4} bytes (${expected.words} words), got ${bytes.length}`;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (v.getUint32(0, true) !== MAGIC) return 'the body is not a masked input (no "WTSM" header)';
  if (v.getUint32(4, true) !== expected.roundId) return `the masked input is for round ${v.getUint32(4, true)}, not ${expected.roundId}`;
  if (v.getUint32(8, true) !== expected.baseVersion) return `the masked input was trained from version ${v.getUint32(8, true)}; the round trains from ${expected.baseVersion}`;
  if (v.getUint32(12, true) !== expected.words) return `the masked input has ${v.getUint32(12, true)} words; the adapter has ${expected.words}`;
  const out = new Uint32Array(expected.words);
  for (let i = 0; i < out.length; i++) out[i] = v.getUint32(MASKED_HEADER_BYTES + 4 * i, true);
  return out;
}
