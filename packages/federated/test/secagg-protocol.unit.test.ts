/**
 * The SecAgg+ steps end to end without a server: participants built from the client's own steps
 * (secagg/participant.ts) and the coordinator's unmasking (secagg/unmask.ts), with the messages a
 * coordinator would relay. The expected sum is the plain mod-2^32 sum of the survivors' quantized
 * inputs, computed here directly from the inputs (not through any mask code).
 */
import { describe, expect, it } from 'vitest';
import { SecureAggregationError } from '@webtune/errors';
import type { SecAggStatus } from '../src/protocol.js';
import { decodeMaskedInput, neighboursOf, resolveNeighbours, resolveThreshold } from '../src/secagg/masks.js';
import { advertiseRequest, createParticipant, maskInput, receiveShares, shareKeys, unmask, type ParticipantState } from '../src/secagg/participant.js';
import { decodeShareValue } from '../src/secagg/shamir.js';
import { fromBase64, type SecAggCurve } from '../src/secagg/crypto.js';
import { unmaskSum } from '../src/secagg/unmask.js';

const ROUND = 11;
const WORDS = 257;

function inputs(n: number): Uint32Array[] {
  return Array.from({ length: n }, (_, i) => Uint32Array.from({ length: WORDS }, (_, j) => ((i + 1) * 7919 + j * 104729) % 4194304));
}

/** Runs the stages with `n` participants; `dropAfterShares` send shares but no masked input. */
async function run(n: number, configured: number | 'all', dropAfterShares: number[], curve: SecAggCurve = 'P-256', dropBeforeShares: number[] = [], tamper?: (seedShares: { x: number; y: bigint }[]) => void) {
  const k = resolveNeighbours(configured, n);
  const t = resolveThreshold(k, undefined);
  let states: ParticipantState[] = await Promise.all(Array.from({ length: n }, () => createParticipant(ROUND, curve)));
  const keys = states.map(advertiseRequest);
  const base = { roundId: ROUND, stageDeadline: 0, participants: n, neighbours: k, threshold: t, minSurvivors: t, you: { advertised: true, shared: false, masked: false, unmasked: false } };
  const status = (i: number): SecAggStatus => ({ ...base, stage: 'share-keys', index: i + 1, peers: neighboursOf(i + 1, n, k).map((j) => ({ index: j, ...keys[j - 1]! })) });
  const outbox = new Map<string, string>(); // "from->to" -> ciphertext
  const sharers = new Set<number>();
  for (let i = 0; i < n; i++) {
    if (dropBeforeShares.includes(i + 1)) continue;
    const r = await shareKeys(states[i]!, status(i));
    states[i] = r.state;
    for (const s of r.request.shares) outbox.set(`${i + 1}->${s.to}`, s.ciphertext);
    sharers.add(i + 1);
  }
  const x = inputs(n);
  let maskedSum: Uint32Array = new Uint32Array(WORDS);
  const survivors: number[] = [];
  for (let i = 0; i < n; i++) {
    if (!sharers.has(i + 1) || dropAfterShares.includes(i + 1)) continue;
    const inbox = neighboursOf(i + 1, n, k).filter((j) => sharers.has(j)).map((j) => ({ from: j, ciphertext: outbox.get(`${j}->${i + 1}`)! }));
    states[i] = await receiveShares(states[i]!, { ...status(i), stage: 'masked-input', inbox });
    const y = decodeMaskedInput(await maskInput(states[i]!, x[i]!, 3), { roundId: ROUND, baseVersion: 3, words: WORDS });
    if (typeof y === 'string') throw new Error(y);
    for (let w = 0; w < WORDS; w++) maskedSum[w] = (maskedSum[w]! + y[w]!) >>> 0;
    survivors.push(i + 1);
  }
  const dropped = [...sharers].filter((j) => !survivors.includes(j));
  const seedShares = new Map<number, { x: number; y: bigint }[]>();
  const keyShares = new Map<number, { x: number; y: bigint }[]>();
  for (const i of survivors) {
    const nb = neighboursOf(i, n, k).filter((j) => sharers.has(j));
    const r = unmask(states[i - 1]!, { ...status(i - 1), stage: 'unmask', survivors: nb.filter((j) => survivors.includes(j)), dropped: nb.filter((j) => dropped.includes(j)), survivorCount: survivors.length });
    for (const s of r.request.seedShares) seedShares.set(s.of, [...(seedShares.get(s.of) ?? []), { x: i, y: decodeShareValue(fromBase64(s.share, 'share')) }]);
    for (const s of r.request.keyShares) keyShares.set(s.of, [...(keyShares.get(s.of) ?? []), { x: i, y: decodeShareValue(fromBase64(s.share, 'share')) }]);
  }
  if (tamper) tamper(seedShares.get(survivors[0]!)!);
  maskedSum = await unmaskSum({
    curve, roundId: ROUND, threshold: t, maskedSum,
    survivors: survivors.map((i) => ({ index: i, seedShares: seedShares.get(i) ?? [] })),
    dropped: dropped.filter((d) => neighboursOf(d, n, k).some((j) => survivors.includes(j))).map((d) => ({
      index: d, maskKey: fromBase64(keys[d - 1]!.maskKey, 'key'), keyShares: keyShares.get(d) ?? [],
      survivingNeighbours: neighboursOf(d, n, k).filter((j) => survivors.includes(j)).map((j) => ({ index: j, maskKey: fromBase64(keys[j - 1]!.maskKey, 'key') })),
    })),
  });
  const expected = new Uint32Array(WORDS);
  for (const i of survivors) for (let w = 0; w < WORDS; w++) expected[w] = (expected[w]! + x[i - 1]![w]!) >>> 0;
  return { sum: maskedSum, expected, states, k, t };
}

describe('SecAgg+ steps without a server', () => {
  it('classic SecAgg (k = n - 1): the unmasked sum is the sum of the inputs', async () => {
    const { sum, expected, k } = await run(5, 'all', []);
    expect(k).toBe(4);
    expect([...sum]).toEqual([...expected]);
  });

  it('SecAgg+ (k = 4 of 12) with two dropouts after share-keys, each in its own neighbourhood', async () => {
    const { sum, expected, k, t } = await run(12, 4, [2, 8]);
    expect([k, t]).toEqual([4, 3]); // 5 holders (4 neighbours and self): a majority is 3
    expect([...sum]).toEqual([...expected]);
  });

  it('a client that drops before share-keys takes no part; one after is unmasked out', async () => {
    const { sum, expected } = await run(6, 'all', [2], 'P-256', [5]);
    expect([...sum]).toEqual([...expected]);
  });

  it('too few surviving neighbours: unmasking cannot proceed (fewer than t seed shares)', async () => {
    await expect(run(9, 4, [1, 2, 3], 'P-256')).rejects.toThrow(/shares, 3 needed/);
  });

  it('X25519 with one dropout', async () => {
    const { sum, expected } = await run(4, 'all', [3], 'X25519');
    expect([...sum]).toEqual([...expected]);
  });

  it('a tampered revealed share gives a wrong sum (so the equality above can fail)', async () => {
    const { sum, expected } = await run(4, 'all', [], 'P-256', [], (shares) => {
      shares[0]!.y ^= 1n; // one bit of one survivor's seed share
    });
    expect([...sum]).not.toEqual([...expected]);
  });

  it('a participant refuses to reveal both secrets of one neighbour, and to unmask too few inputs', async () => {
    const n = 5;
    const { states, k, t } = await run(n, 'all', []);
    const s = states[0]!;
    const base: SecAggStatus = { roundId: ROUND, stage: 'unmask', stageDeadline: 0, participants: n, neighbours: k, threshold: t, minSurvivors: t, index: 1, you: { advertised: true, shared: true, masked: true, unmasked: false } };
    const first = unmask(s, { ...base, survivors: [2, 3, 4], dropped: [5], survivorCount: 4 });
    expect(first.request.keyShares.map((x) => x.of)).toEqual([5]);
    expect(() => unmask(first.state, { ...base, survivors: [2, 3, 4, 5], dropped: [], survivorCount: 5 })).toThrow(expect.objectContaining({ reason: 'both_secrets' }));
    expect(() => unmask(s, { ...base, survivors: [2, 3], dropped: [3, 4, 5], survivorCount: 3 })).toThrow(SecureAggregationError);
    expect(() => unmask(s, { ...base, survivors: [2], dropped: [3, 4, 5], survivorCount: 2 })).toThrow(expect.objectContaining({ reason: 'too_few_survivors' }));
  });
});
