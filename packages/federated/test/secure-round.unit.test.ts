/**
 * Secure aggregation end to end in Node: FederatedClients (trainer doubles with known deltas) and the
 * reference coordinator (SQLite) on loopback. The expected global is computed in this file from the
 * clients' deltas (secure-helpers.ts expectedGlobal), never through masks; the tolerance is the stated
 * quantization error: the mean of quantized values is within one step 2c / (Q - 1) of the true mean.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { SecureAggregationError } from '@webtune/errors';
import { download, roundStatus } from '../../coordinator/test/helpers.js';
import { quantizationStep } from '../src/secagg/quantize.js';
import { closeAll, expectedGlobal, recordingFetch, secureClients, secureCoordinator, type SecureSetup } from './secure-helpers.js';

const open: SecureSetup[] = [];
afterEach(() => closeAll(open));

const STEP = quantizationStep(8, 2 ** 22);

async function setup(n: number, ...rest: Parameters<typeof secureCoordinator> extends [number, ...infer R] ? R : never): Promise<SecureSetup> {
  const s = await secureCoordinator(n, ...rest);
  open.push(s);
  return s;
}

/** Runs one secure round with n clients; `offlineAfterShares` fail training (drop after share-keys), `offlineBeforeUnmask` lose the network before unmask. */
async function secureRound(s: SecureSetup, n: number, offlineAfterShares: number[], offlineBeforeUnmask: number[] = []) {
  const clients = secureClients(s.handle.url, n, (c) => recordingFetch({ refuse: (path) => offlineBeforeUnmask.includes(c) && path.endsWith('/secagg/unmask') }));
  for (const k of clients) if (offlineAfterShares.includes(k.c)) k.trainer.fail = new Error('the tab was closed');
  const results = await Promise.allSettled(clients.map((k) => k.client.runRound()));
  await s.handle.idle();
  return { clients, results };
}

function maxError(got: Map<string, Float32Array>, want: Map<string, Float64Array>): number {
  let worst = 0;
  for (const [k, w] of want) {
    const g = got.get(k)!;
    for (let i = 0; i < w.length; i++) worst = Math.max(worst, Math.abs(g[i]! - w[i]!));
  }
  return worst;
}

describe('secure rounds on loopback (SecAgg+)', () => {
  it.each([
    { n: 10, neighbours: 'all' as const, afterShares: [] as number[], beforeUnmask: [] as number[] },
    { n: 10, neighbours: 'all' as const, afterShares: [3], beforeUnmask: [] },
    { n: 10, neighbours: 'all' as const, afterShares: [2, 5, 9], beforeUnmask: [] },
    { n: 10, neighbours: 'all' as const, afterShares: [1, 2, 3, 4], beforeUnmask: [] }, // n - t = 10 - 6
    { n: 10, neighbours: 'all' as const, afterShares: [], beforeUnmask: [7] },
    { n: 10, neighbours: 'all' as const, afterShares: [], beforeUnmask: [1, 4, 8] },
    { n: 10, neighbours: 'all' as const, afterShares: [], beforeUnmask: [2, 3, 6, 10] }, // n - t
    { n: 50, neighbours: 8, afterShares: [], beforeUnmask: [] },
    { n: 50, neighbours: 8, afterShares: [4, 20, 33], beforeUnmask: [11] },
    { n: 50, neighbours: 'all' as const, afterShares: [7, 8, 9], beforeUnmask: [30] },
  ] as { n: number; neighbours: number | 'all'; afterShares: number[]; beforeUnmask: number[] }[])('n = $n, k = $neighbours, dropouts after share-keys $afterShares, before unmask $beforeUnmask: the new global is the mean of the survivors\' clipped updates', { timeout: 120_000 }, async ({ n, neighbours, afterShares, beforeUnmask }) => {
    // A stage waits out its deadline only when someone drops in it; otherwise it ends when all answered,
    // so the deadlines are long where nobody drops (a loaded CI machine must not make honest clients late).
    const wait = n > 10 ? 8_000 : 4_000;
    const s = await setup(n, {
      roundDurationMs: afterShares.length ? wait : 60_000,
      round: { steps: 1, batchSize: 1, clipNorm: 1, secureAggregation: { neighbours, stageTimeoutMs: beforeUnmask.length ? wait : 60_000 } },
    });
    const { clients, results } = await secureRound(s, n, afterShares, beforeUnmask);
    const token = (await (clients[0]!.client as unknown as { load(): Promise<{ token: string }> }).load()).token;
    expect(await roundStatus(s.handle.url, token, 1)).toMatchObject({ status: 'closed', outcome: 'aggregated', resultVersion: 1 });
    // Clients that sent a masked input are in the sum, those offline before unmask included.
    const survivors = clients.map((k) => k.c).filter((c) => !afterShares.includes(c));
    const global = await download(s.handle.url, token, 1);
    const want = expectedGlobal(s.initial, survivors, 1);
    const error = maxError(global, want);
    expect(error).toBeLessThanOrEqual(STEP + 1e-6);
    // The deltas are far larger than the tolerance, so a wrong set of survivors would show.
    const wrong = expectedGlobal(s.initial, clients.map((k) => k.c), 1);
    if (afterShares.length) expect(maxError(global, wrong)).toBeGreaterThan(100 * STEP);
    for (const [i, r] of results.entries()) {
      const c = i + 1;
      if (afterShares.includes(c)) expect(r.status).toBe('rejected');
      else if (beforeUnmask.includes(c)) expect(r.status).toBe('rejected'); // offline: a network error
      else {
        expect(r.status).toBe('fulfilled');
        const v = (r as PromiseFulfilledResult<Awaited<ReturnType<typeof clients[0]['client']['runRound']>>>).value;
        expect(v.secureAggregation).toMatchObject({ participants: n, survivors: survivors.length, resultVersion: 1, rangeClipped: 0 });
      }
    }
  });

  it.each(['central', 'distributed'] as const)('%s DP on a secure round: the published mean carries the stated noise, and epsilon is recorded', { timeout: 60_000 }, async (mode) => {
    const n = 10;
    const z = 0.02;
    const s = await setup(n, { roundDurationMs: 60_000, round: { steps: 1, batchSize: 1, clipNorm: 1, dp: { mode, noiseMultiplier: z, delta: 1e-5 }, secureAggregation: { stageTimeoutMs: 60_000 } } }, 64);
    const { clients, results } = await secureRound(s, n, []);
    expect(results.every((r) => r.status === 'fulfilled')).toBe(true);
    const token = (await (clients[0]!.client as unknown as { load(): Promise<{ token: string }> }).load()).token;
    const global = await download(s.handle.url, token, 1);
    const want = expectedGlobal(s.initial, clients.map((k) => k.c), 1);
    let sq = 0;
    let count = 0;
    for (const [k, w] of want) for (let i = 0; i < w.length; i++, count++) sq += (global.get(k)![i]! - w[i]!) ** 2;
    const residual = Math.sqrt(sq / count);
    // central: N(0, (z S / m)^2) on the mean; distributed: each of the m = n clients adds N(0, (zS)^2 / minSurvivors), minSurvivors = 6.
    const expected = mode === 'central' ? z / n : (z * Math.sqrt(n / 6)) / n;
    expect(residual).toBeGreaterThan(expected * 0.85);
    expect(residual).toBeLessThan(expected * 1.15 + STEP);
    const epsilon = (s.inspect().prepare('SELECT dp_epsilon FROM rounds WHERE id = 1').get() as { dp_epsilon: number | null }).dp_epsilon;
    expect(epsilon).toBeGreaterThan(0);
    if (mode === 'distributed') expect(clients[0]!.client.privacySpent().distributedRounds).toBe(1);
  });

  it('fewer than minSurvivors masked inputs: the round fails, no share is revealed, the clients get round_failed', { timeout: 60_000 }, async () => {
    const n = 10;
    const s = await setup(n);
    const revealedDuring: number[] = [];
    const { clients, results } = await secureRound(s, n, [1, 2, 3, 4, 5]); // 5 left; t = 6
    revealedDuring.push((s.inspect().prepare('SELECT COUNT(*) AS c FROM secagg_reveals').get() as { c: number }).c);
    const token = (await (clients[5]!.client as unknown as { load(): Promise<{ token: string }> }).load()).token;
    expect(await roundStatus(s.handle.url, token, 1)).toMatchObject({ status: 'closed', outcome: 'failed' });
    expect(revealedDuring).toEqual([0]);
    for (const k of clients.slice(5)) expect(k.log.some((t) => t.path.endsWith('/secagg/unmask'))).toBe(false);
    for (const r of results.slice(5)) {
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toBeInstanceOf(SecureAggregationError);
      expect((r as PromiseRejectedResult).reason).toMatchObject({ reason: 'round_failed' });
    }
    expect(s.logs.join('\n')).toMatch(/fewer than the 6 the round needs survived; nothing was unmasked/);
    expect((s.inspect().prepare('SELECT COUNT(*) AS c FROM global_versions').get() as { c: number }).c).toBe(1);
  });
});
