/**
 * One client's side of a secure round, as pure steps over a serializable state (the federated client
 * stores it after every step, so a reload goes on where it stopped and never reveals a secret twice
 * in two different ways). No HTTP here: FederatedClient sends what these steps return.
 *
 *   createParticipant      two fresh ECDH key pairs (share encryption, pairwise masks) and a 32-byte self-mask seed b
 *   shareKeys              checks the roster (its neighbours are neighboursOf(index, n, k), keys well formed), splits b
 *                          and the mask private key into Shamir shares at its own and its neighbours' indexes,
 *                          threshold t, keeps its own pair and encrypts each neighbour's pair to it (AES-GCM under
 *                          HKDF(ECDH))
 *   receiveShares          decrypts the shares addressed to it; one that fails authentication, or names another
 *                          round, sender or recipient, stops the round (SecureAggregationError 'bad_share')
 *   maskInput              y = x + PRG(b) + sum of +-PRG(s_ij) over the neighbours whose shares it received
 *   unmask                 its own share of its b; for each neighbour the coordinator lists as surviving, its share of that neighbour's b;
 *                          for each one listed as dropped, its share of that neighbour's mask key; never both for one
 *                          neighbour, even across two requests ('both_secrets'), and only when at least
 *                          max(t, minSurvivors) inputs survive ('too_few_survivors')
 */
import { SecureAggregationError } from '@webtune/errors';
import type { AdvertiseKeysRequest, SecAggStatus, ShareKeysRequest, UnmaskRequest } from '../protocol.js';
import { agree, fromBase64, generateKeyPair, open, publicKeyBytes, seal, toBase64, type KeyPairBytes, type SecAggCurve } from './crypto.js';
import { addMask, decodeSharePlaintext, encodeMaskedInput, encodeSharePlaintext, neighboursOf, pairwiseMask, selfMask, shareAssociatedData, shareEncryptionKey } from './masks.js';
import { encodeShareValue, shareSecret } from './shamir.js';

/** What a participant keeps for a round (structured-cloneable: numbers, strings, Uint8Arrays). */
export interface ParticipantState {
  roundId: number;
  curve: SecAggCurve;
  encryption: KeyPairBytes;
  mask: KeyPairBytes;
  seed: Uint8Array;
  /** From shareKeys on. */
  index?: number;
  participants?: number;
  neighbours?: number;
  threshold?: number;
  minSurvivors?: number;
  peers?: { index: number; encryptionKey: Uint8Array; maskKey: Uint8Array }[];
  /** From shareKeys on: its own share of its seed (revealed in unmask; its own key share is never needed). */
  ownSeedShare?: Uint8Array;
  /** From receiveShares on: the shares each neighbour that completed share-keys sent it. */
  received?: { from: number; seedShare: Uint8Array; keyShare: Uint8Array }[];
  /** Which secret of which neighbour it has revealed (or decided to reveal) in unmask. */
  revealed: { of: number; kind: 'seed' | 'key' }[];
}

export async function createParticipant(roundId: number, curve: SecAggCurve): Promise<ParticipantState> {
  const [encryption, mask] = await Promise.all([generateKeyPair(curve), generateKeyPair(curve)]);
  return { roundId, curve, encryption, mask, seed: crypto.getRandomValues(new Uint8Array(32)), revealed: [] };
}

export function advertiseRequest(state: ParticipantState): AdvertiseKeysRequest {
  return { encryptionKey: toBase64(state.encryption.publicKey), maskKey: toBase64(state.mask.publicKey) };
}

function roster(state: ParticipantState, status: SecAggStatus): Required<Pick<ParticipantState, 'index' | 'participants' | 'neighbours' | 'threshold' | 'minSurvivors' | 'peers'>> {
  const bad = (detail: string) => new SecureAggregationError('bad_roster', state.roundId, detail);
  const { index, participants: n, neighbours: k, threshold: t, minSurvivors } = status;
  for (const [name, v] of Object.entries({ index, participants: n, neighbours: k, threshold: t, minSurvivors })) {
    if (!Number.isSafeInteger(v) || (v as number) < 1) throw bad(`the coordinator's ${name} is ${JSON.stringify(v)}, not a positive integer`);
  }
  if (index! > n! || k! > n! - 1) throw bad(`index ${index} / ${k} neighbours do not fit ${n} participants`);
  if (k! < n! - 1 && k! % 2 !== 0) throw bad(`a neighbourhood below n - 1 has an even k, got ${k}`);
  // Majority of the k + 1 holders: two disjoint sets of holders cannot each reconstruct one of a client's secrets.
  if (!(t! > (k! + 1) / 2 && t! <= k!)) throw bad(`threshold ${t} is not more than half of the ${k! + 1} share holders (${k} neighbours and the client)`);
  if (minSurvivors! < t! || minSurvivors! > n!) throw bad(`minSurvivors ${minSurvivors} is not between the threshold ${t} and the ${n} participants`);
  const expected = neighboursOf(index!, n!, k!);
  const peers = status.peers ?? [];
  const got = peers.map((p) => p.index).sort((a, b) => a - b);
  if (got.length !== expected.length || got.some((v, i) => v !== expected[i])) {
    throw bad(`the neighbours listed (${got.join(', ')}) are not index ${index}'s neighbours among ${n} with k = ${k} (${expected.join(', ')})`);
  }
  const size = publicKeyBytes(state.curve);
  const decoded = peers.map((p) => {
    const encryptionKey = fromBase64(p.encryptionKey, `peer ${p.index}'s encryption key`);
    const maskKey = fromBase64(p.maskKey, `peer ${p.index}'s mask key`);
    if (encryptionKey.length !== size || maskKey.length !== size) throw bad(`peer ${p.index}'s keys are not ${size}-byte ${state.curve} keys`);
    return { index: p.index, encryptionKey, maskKey };
  });
  return { index: index!, participants: n!, neighbours: k!, threshold: t!, minSurvivors: minSurvivors!, peers: decoded };
}

/** Stage share-keys: the encrypted shares for every neighbour, and the state with the roster fixed. */
export async function shareKeys(state: ParticipantState, status: SecAggStatus): Promise<{ state: ParticipantState; request: ShareKeysRequest }> {
  const fixed = roster(state, status);
  // Shares at [own index, ...neighbours]: the first is kept.
  const xs = [fixed.index, ...fixed.peers.map((p) => p.index)];
  const seedShares = shareSecret(state.seed, fixed.threshold, xs);
  const keyShares = shareSecret(state.mask.privateKey, fixed.threshold, xs).slice(1);
  const ownSeedShare = encodeShareValue(seedShares.shift()!.y);
  const shares = await Promise.all(fixed.peers.map(async (peer, i) => {
    const key = await shareEncryptionKey(await agreeWith(state, state.encryption, peer.index, peer.encryptionKey), state.roundId);
    const plaintext = encodeSharePlaintext(state.roundId, fixed.index, peer.index, encodeShareValue(seedShares[i]!.y), encodeShareValue(keyShares[i]!.y));
    return { to: peer.index, ciphertext: toBase64(await seal(key, plaintext, shareAssociatedData(state.roundId, fixed.index, peer.index))) };
  }));
  return { state: { ...state, ...fixed, ownSeedShare }, request: { shares } };
}

/** ECDH with a peer's key; a key the curve refuses (e.g. an X25519 small-order point) stops the round as 'bad_roster'. */
async function agreeWith(state: ParticipantState, own: KeyPairBytes, peer: number, key: Uint8Array): Promise<Uint8Array> {
  try {
    return await agree(state.curve, own, key);
  } catch (cause) {
    throw new SecureAggregationError('bad_roster', state.roundId, `neighbour ${peer}'s public key is unusable: ${(cause as Error).message}`, { cause });
  }
}

/**
 * Stage masked-input: opens the shares addressed to this participant ('bad_share' if any fails).
 * Fewer than t - 1 of them ('bad_roster') is refused: with its own, fewer than t clients would hold
 * its secrets, and a coordinator that withheld its neighbours' shares would leave its input masked
 * by little more than its own seed (Bonawitz et al.: |U2| >= t).
 */
export async function receiveShares(state: ParticipantState, status: SecAggStatus): Promise<ParticipantState> {
  const me = state.index!;
  const inbox = status.inbox ?? [];
  if (inbox.length < state.threshold! - 1) {
    throw new SecureAggregationError('bad_roster', state.roundId, `only ${inbox.length} neighbours' shares arrived; at least ${state.threshold! - 1} are needed (threshold ${state.threshold} with this client's own); nothing is masked or sent`);
  }
  const received: NonNullable<ParticipantState['received']> = [];
  const seen = new Set<number>();
  for (const item of inbox) {
    const peer = state.peers!.find((p) => p.index === item.from);
    if (!peer || seen.has(item.from)) throw new SecureAggregationError('bad_roster', state.roundId, `the inbox holds a share from ${item.from}, which is not a neighbour or appears twice`);
    seen.add(item.from);
    const key = await shareEncryptionKey(await agreeWith(state, state.encryption, item.from, peer.encryptionKey), state.roundId);
    let sealed: Uint8Array;
    try {
      sealed = fromBase64(item.ciphertext, 'a share ciphertext');
    } catch {
      throw new SecureAggregationError('bad_share', state.roundId, `the share from neighbour ${item.from} is not base64`);
    }
    const plain = await open(key, sealed, shareAssociatedData(state.roundId, item.from, me));
    const share = plain && decodeSharePlaintext(plain);
    if (!share) throw new SecureAggregationError('bad_share', state.roundId, `the share from neighbour ${item.from} fails AES-GCM authentication (tampered, or not encrypted to this client); nothing more is sent for this round`);
    if (share.from !== item.from || share.to !== me || share.roundId !== state.roundId) {
      throw new SecureAggregationError('bad_share', state.roundId, `the share from neighbour ${item.from} names sender ${share.from}, recipient ${share.to}, round ${share.roundId}`);
    }
    received.push({ from: item.from, seedShare: share.seedShare, keyShare: share.keyShare });
  }
  return { ...state, received };
}

/** Stage masked-input: the masked input (secagg/masks.ts format) of quantized values. */
export async function maskInput(state: ParticipantState, quantized: Uint32Array, baseVersion: number): Promise<Uint8Array> {
  const y = Uint32Array.from(quantized);
  addMask(y, await selfMask(state.seed, state.roundId, y.length), 1);
  for (const r of state.received!) {
    const peer = state.peers!.find((p) => p.index === r.from)!;
    let pair;
    try {
      pair = await pairwiseMask(state.curve, state.roundId, y.length, state.mask, state.index!, peer.index, peer.maskKey);
    } catch (cause) {
      throw new SecureAggregationError('bad_roster', state.roundId, `neighbour ${peer.index}'s mask key is unusable: ${(cause as Error).message}`, { cause });
    }
    addMask(y, pair.mask, pair.sign);
  }
  return encodeMaskedInput(state.roundId, baseVersion, y);
}

/**
 * Stage unmask: the shares the coordinator asks for, after the checks in the file comment. The
 * returned state records what is revealed; store it BEFORE sending, so that a second, different
 * request after a reload is refused.
 */
export function unmask(state: ParticipantState, status: SecAggStatus): { state: ParticipantState; request: UnmaskRequest } {
  const survivors = status.survivors ?? [];
  const dropped = status.dropped ?? [];
  const received = new Map((state.received ?? []).map((r) => [r.from, r] as const));
  const all = [...survivors, ...dropped];
  if (new Set(all).size !== all.length) throw new SecureAggregationError('both_secrets', state.roundId, `the coordinator lists neighbour(s) ${all.filter((v, i) => all.indexOf(v) !== i).join(', ')} as both surviving and dropped`);
  const unknown = all.filter((v) => !received.has(v));
  if (unknown.length) throw new SecureAggregationError('bad_roster', state.roundId, `the coordinator asks about ${unknown.join(', ')}, which sent this client no shares`);
  if (all.length !== received.size) throw new SecureAggregationError('bad_roster', state.roundId, 'the coordinator does not say of every neighbour that shared keys whether it survived');
  const needed = Math.max(state.threshold!, state.minSurvivors!);
  if (!(Number.isSafeInteger(status.survivorCount) && status.survivorCount! >= needed && survivors.length + 1 >= state.threshold!)) {
    throw new SecureAggregationError('too_few_survivors', state.roundId, `the coordinator would unmask ${status.survivorCount} inputs (${survivors.length + 1} in this neighbourhood); the round needs at least ${needed} (threshold ${state.threshold}); nothing is revealed`);
  }
  const before = new Map(state.revealed.map((r) => [r.of, r.kind] as const));
  const wanted = [...survivors.map((of) => ({ of, kind: 'seed' as const })), ...dropped.map((of) => ({ of, kind: 'key' as const }))];
  for (const w of wanted) {
    const was = before.get(w.of);
    if (was !== undefined && was !== w.kind) {
      throw new SecureAggregationError('both_secrets', state.roundId, `the coordinator asked before for neighbour ${w.of}'s ${was === 'seed' ? 'self-mask seed' : 'mask key'} share and now for its ${w.kind === 'seed' ? 'self-mask seed' : 'mask key'} share; with both it could unmask that neighbour's update, so neither more is sent`);
    }
  }
  const request: UnmaskRequest = {
    seedShares: [{ of: state.index!, share: toBase64(state.ownSeedShare!) }, ...survivors.map((of) => ({ of, share: toBase64(received.get(of)!.seedShare) }))],
    keyShares: dropped.map((of) => ({ of, share: toBase64(received.get(of)!.keyShare) })),
  };
  const revealed = [...state.revealed, ...wanted.filter((w) => !before.has(w.of))];
  return { state: { ...state, revealed }, request };
}
