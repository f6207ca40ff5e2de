/**
 * What the coordinator of a secure round can and cannot see, and how clients and coordinator refuse
 * what they cannot check. Real coordinator (SQLite) and FederatedClients on loopback; the hostile
 * coordinator is the real one behind a fetch that rewrites its answers to one client (the only way to
 * make it lie), said where used.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { SecureAggregationError } from '@webtune/errors';
import { download, register, roundStatus } from '../../coordinator/test/helpers.js';
import type { SecAggStatus } from '../src/protocol.js';
import { toBase64 } from '../src/secagg/crypto.js';
import { encodeMaskedInput, MASKED_HEADER_BYTES } from '../src/secagg/masks.js';
import { advertiseRequest, createParticipant, maskInput, receiveShares, shareKeys, type ParticipantState } from '../src/secagg/participant.js';
import { quantizationStep, quantize } from '../src/secagg/quantize.js';
import { closeAll, expectedGlobal, moveOf, recordingFetch, secureClients, secureCoordinator, type SecureSetup } from './secure-helpers.js';

const open: SecureSetup[] = [];
afterEach(() => closeAll(open));

/**
 * Chi-square statistic of one byte of every word over 256 buckets, as a z-score (Wilson-Hilferty):
 * about N(0, 1) for uniform words; above 5 is a p below 3e-7.
 */
function uniformityZ(words: Uint32Array, shift: number): number {
  const counts = new Array<number>(256).fill(0);
  for (const w of words) counts[(w >>> shift) & 0xff]!++;
  const e = words.length / 256;
  const chi2 = counts.reduce((s, c) => s + (c - e) ** 2 / e, 0);
  const df = 255;
  return (Math.cbrt(chi2 / df) - (1 - 2 / (9 * df))) / Math.sqrt(2 / (9 * df));
}

const wordsOf = (body: Uint8Array) => new Uint32Array(body.slice(MASKED_HEADER_BYTES).buffer);

describe('what the coordinator holds', () => {
  it('every masked input it receives and every sum it stores is uniform mod 2^32; it never holds both secrets of one client', { timeout: 60_000 }, async () => {
    const n = 5;
    const stored: Uint32Array[] = [];
    const reveals: { of_idx: number; kind: string }[][] = [];
    let s!: SecureSetup;
    // At this log line the unmask stage is complete and its shares are still in the database.
    s = await secureCoordinator(n, {}, 512, (line) => {
      if (/masks removed/.test(line)) reveals.push(s.inspect().prepare('SELECT of_idx, kind FROM secagg_reveals').all() as never);
    });
    open.push(s);
    const readSum = () => {
      const row = s.inspect().prepare('SELECT masked_sum FROM secagg_rounds WHERE round_id = 1').get() as { masked_sum: Buffer };
      stored.push(new Uint32Array(new Uint8Array(row.masked_sum).buffer));
    };
    const clients = secureClients(s.handle.url, n, () => recordingFetch({ rewrite: (path, json) => (path.endsWith('/secagg/masked') && readSum(), json) }));
    clients[4]!.trainer.fail = new Error('the tab was closed'); // client 5 drops after share-keys: its key is reconstructed
    const results = await Promise.allSettled(clients.map((k) => k.client.runRound()));
    await s.handle.idle();
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'rejected']);

    const bodies = clients.slice(0, 4).map((k) => k.log.find((t) => t.path.endsWith('/secagg/masked'))!.body as Uint8Array);
    expect(bodies).toHaveLength(4);
    expect(stored).toHaveLength(4);
    expect(stored[0]!.length).toBe(4 * 8 * 512);
    for (const words of [...bodies.map(wordsOf), ...stored]) {
      for (const shift of [0, 8, 16, 24]) expect(Math.abs(uniformityZ(words, shift))).toBeLessThan(5);
    }
    // The check can fail: the same client's quantized update without masks is far from uniform.
    const plain = quantize(Float32Array.from({ length: 4 * 8 * 512 }, (_, i) => moveOf(1, i % 4096)), 8, 2 ** 22).quantized;
    expect(uniformityZ(plain, 24)).toBeGreaterThan(100);

    // Unmasking needs, for every client, either its seed (survivors) or its mask key (the dropped), never both.
    expect(reveals).toHaveLength(1);
    const kinds = new Map<number, Set<string>>();
    for (const r of reveals[0]!) kinds.set(r.of_idx, (kinds.get(r.of_idx) ?? new Set()).add(r.kind));
    const both = [...kinds].filter(([, k]) => k.size > 1);
    expect(both).toEqual([]);
    expect([...kinds.values()].filter((k) => k.has('key'))).toHaveLength(1); // the dropped client only
    // And nothing is kept once the round closed.
    expect((s.inspect().prepare('SELECT COUNT(*) AS c FROM secagg_reveals').get() as { c: number }).c).toBe(0);
    expect((s.inspect().prepare('SELECT COUNT(*) AS c FROM secagg_shares').get() as { c: number }).c).toBe(0);
    expect((s.inspect().prepare('SELECT masked_sum FROM secagg_rounds WHERE round_id = 1').get() as { masked_sum: Buffer | null }).masked_sum).toBeNull();
    // Plain uploads never happened.
    for (const k of clients) expect(k.log.some((t) => t.path.endsWith('/updates'))).toBe(false);
  });
});

describe('a hostile coordinator (its answers to one client rewritten)', () => {
  const rewriting = (n: number, target: number, rewrite: (status: SecAggStatus) => SecAggStatus | undefined) => async () => {
    const s = await secureCoordinator(n, {});
    open.push(s);
    const clients = secureClients(s.handle.url, n, (c) => recordingFetch({
      rewrite: (path, json) => (c === target && /\/secagg$/.test(path) ? rewrite(json as SecAggStatus) ?? json : json),
    }));
    const results = await Promise.allSettled(clients.map((k) => k.client.runRound()));
    await s.handle.idle();
    return { s, clients, results };
  };

  it('a share that fails AES-GCM authentication: that client stops (bad_share) and sends no masked input; the others complete the round', { timeout: 60_000 }, async () => {
    const { s, clients, results } = await rewriting(5, 1, (status) => {
      if (status.stage !== 'masked-input' || !status.inbox?.length) return undefined;
      const ct = Buffer.from(status.inbox[0]!.ciphertext, 'base64');
      ct[20]! ^= 1;
      return { ...status, inbox: [{ ...status.inbox[0]!, ciphertext: ct.toString('base64') }, ...status.inbox.slice(1)] };
    })();
    expect(results[0]!.status).toBe('rejected');
    expect((results[0] as PromiseRejectedResult).reason).toBeInstanceOf(SecureAggregationError);
    expect((results[0] as PromiseRejectedResult).reason).toMatchObject({ reason: 'bad_share' });
    expect(clients[0]!.log.some((t) => t.path.endsWith('/secagg/masked'))).toBe(false);
    // A reload does not take part again.
    expect(await clients[0]!.client.runRound()).toMatchObject({ status: 'skipped', reason: 'stage_passed' });
    expect(results.slice(1).every((r) => r.status === 'fulfilled')).toBe(true);
    const token = (await register(s.handle.url)).token;
    expect(await roundStatus(s.handle.url, token, 1)).toMatchObject({ outcome: 'aggregated', resultVersion: 1 });
    const global = await download(s.handle.url, token, 1);
    const want = expectedGlobal(s.initial, [2, 3, 4, 5], 1);
    for (const [k, w] of want) for (let i = 0; i < w.length; i++) expect(Math.abs(global.get(k)![i]! - w[i]!)).toBeLessThanOrEqual(quantizationStep(8, 2 ** 22) + 1e-6);
  });

  it('a neighbour listed as both surviving and dropped: both_secrets, no unmask message; the round still completes', { timeout: 60_000 }, async () => {
    const { clients, results } = await rewriting(5, 2, (status) => (status.stage === 'unmask' && status.survivors?.length ? { ...status, dropped: [...(status.dropped ?? []), status.survivors[0]!] } : undefined))();
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ name: 'SecureAggregationError', reason: 'both_secrets' });
    expect(clients[1]!.log.some((t) => t.path.endsWith('/secagg/unmask'))).toBe(false);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(4);
  });

  it('asked to unmask fewer inputs than the threshold: too_few_survivors, nothing revealed', { timeout: 60_000 }, async () => {
    const { clients, results } = await rewriting(5, 3, (status) => (status.stage === 'unmask' ? { ...status, survivorCount: 2 } : undefined))();
    expect((results[2] as PromiseRejectedResult).reason).toMatchObject({ name: 'SecureAggregationError', reason: 'too_few_survivors' });
    expect(clients[2]!.log.some((t) => t.path.endsWith('/secagg/unmask'))).toBe(false);
  });

  it('an inbox withholding the neighbours\' shares (below t - 1): bad_roster, and the input is never sent under its own seed alone', { timeout: 60_000 }, async () => {
    const { clients, results } = await rewriting(5, 4, (status) => (status.stage === 'masked-input' ? { ...status, inbox: [] } : undefined))();
    expect((results[3] as PromiseRejectedResult).reason).toMatchObject({ name: 'SecureAggregationError', reason: 'bad_roster' });
    expect(clients[3]!.log.some((t) => t.path.endsWith('/secagg/masked'))).toBe(false);
  });

  it('a secure round announced with local DP: bad_config before anything is sent', { timeout: 60_000 }, async () => {
    const s = await secureCoordinator(3, {});
    open.push(s);
    const [k] = secureClients(s.handle.url, 1, () => recordingFetch({
      rewrite: (path, json) => (path === '/v1/round' ? { ...(json as object), config: { ...(json as { config: object }).config, dp: { mode: 'local', noiseMultiplier: 1, delta: 1e-5 } } } : json),
    }));
    await expect(k!.client.runRound()).rejects.toMatchObject({ name: 'FederatedError', reason: 'bad_config' });
    expect(k!.log.some((t) => t.path.includes('/secagg/'))).toBe(false);
  });

  it('a roster whose neighbours are not the ring the parameters give: bad_roster before any share leaves', { timeout: 60_000 }, async () => {
    const { clients, results } = await rewriting(6, 1, (status) => (status.stage === 'share-keys' && status.peers ? { ...status, neighbours: 2, peers: status.peers.slice(0, 2) } : undefined))();
    expect((results[0] as PromiseRejectedResult).reason).toMatchObject({ name: 'SecureAggregationError', reason: 'bad_roster' });
    expect(clients[0]!.log.some((t) => t.path.endsWith('/secagg/shares'))).toBe(false);
  });
});

describe('X25519 rounds', () => {
  it('complete on loopback, and the coordinator refuses small-order keys that would break every neighbour', { timeout: 60_000 }, async () => {
    const s = await secureCoordinator(4, { round: { steps: 1, batchSize: 1, clipNorm: 1, secureAggregation: { curve: 'X25519', stageTimeoutMs: 60_000 } } });
    open.push(s);
    const intruder = await register(s.handle.url);
    const good = advertiseRequest(await createParticipant(1, 'X25519'));
    const order1 = new Uint8Array(32);
    order1[0] = 1; // u = 1, a point of order 1 (RFC 7748 sec. 6.1: such agreements give all zeros)
    for (const bad of [new Uint8Array(32), order1]) {
      const res = await fetch(`${s.handle.url}/v1/rounds/1/secagg/keys`, {
        method: 'POST', headers: { Authorization: `Bearer ${intruder.token}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ ...good, maskKey: toBase64(bad) }),
      });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ error: 'malformed', message: expect.stringMatching(/small order/) });
    }
    const clients = secureClients(s.handle.url, 4);
    const results = await Promise.all(clients.map((k) => k.client.runRound()));
    expect(results.map((r) => r.secureAggregation?.resultVersion)).toEqual([1, 1, 1, 1]);
    const global = await download(s.handle.url, intruder.token, 1);
    const want = expectedGlobal(s.initial, [1, 2, 3, 4], 1);
    for (const [k, w] of want) for (let i = 0; i < w.length; i++) expect(Math.abs(global.get(k)![i]! - w[i]!)).toBeLessThanOrEqual(quantizationStep(8, 2 ** 22) + 1e-6);
  });
});

describe('the coordinator refuses malformed, replayed and out-of-stage messages without a state change', () => {
  it('keys, shares, masked inputs and unmask messages', { timeout: 60_000 }, async () => {
    const s = await secureCoordinator(3, { roundDurationMs: 60_000, round: { steps: 1, batchSize: 1, clipNorm: 1, secureAggregation: { stageTimeoutMs: 60_000 } } });
    open.push(s);
    const url = s.handle.url;
    const regs = [await register(url), await register(url), await register(url)];
    const call = async (token: string, route: string, body: unknown, headers: Record<string, string> = {}) => {
      const res = await fetch(`${url}/v1/rounds/1/${route}`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': body instanceof Uint8Array ? 'application/octet-stream' : 'application/json', ...headers },
        body: body instanceof Uint8Array ? (body as Uint8Array<ArrayBuffer>) : JSON.stringify(body),
      });
      return { status: res.status, json: (await res.json()) as { error?: string; duplicate?: boolean } };
    };
    const status = async (token: string) => (await (await fetch(`${url}/v1/rounds/1/secagg`, { headers: { Authorization: `Bearer ${token}` } })).json()) as SecAggStatus;
    const db = s.inspect();
    const snapshot = () => JSON.stringify([
      db.prepare('SELECT round_id, client_id, idx, shared, masked_update_id, unmasked FROM secagg_clients ORDER BY client_id').all(),
      db.prepare('SELECT stage, masked_count, hex(masked_sum) AS sum FROM secagg_rounds').all(),
      db.prepare('SELECT from_idx, to_idx FROM secagg_shares ORDER BY 1, 2').all(),
    ]);
    const refused = async (token: string, route: string, body: unknown, expected: { status: number; error: string }, headers?: Record<string, string>) => {
      const before = snapshot();
      expect(await call(token, route, body, headers)).toMatchObject({ status: expected.status, json: { error: expected.error } });
      expect(snapshot()).toBe(before);
    };

    const parts: ParticipantState[] = await Promise.all([0, 1, 2].map(() => createParticipant(1, 'P-256')));
    const t0 = regs[0]!.token;
    // Out of stage: nothing but keys is taken while keys are collected; plain uploads never in a secure round.
    await refused(t0, 'secagg/shares', { shares: [] }, { status: 403, error: 'not_selected' });
    await refused(t0, 'secagg/masked', encodeMaskedInput(1, 0, new Uint32Array(256)), { status: 409, error: 'wrong_stage' }, { 'X-Update-Id': 'u0' });
    await refused(t0, 'updates', new Uint8Array(8), { status: 409, error: 'wrong_stage' }, { 'X-Update-Id': 'p0', 'X-Example-Count': '1' });
    // Malformed keys.
    await refused(t0, 'secagg/keys', { encryptionKey: '***', maskKey: 'AAAA' }, { status: 400, error: 'malformed' });
    await refused(t0, 'secagg/keys', { ...advertiseRequest(parts[0]!), maskKey: toBase64(new Uint8Array(33)) }, { status: 400, error: 'malformed' });
    const offCurve = new Uint8Array(65).fill(1);
    offCurve[0] = 4;
    await refused(t0, 'secagg/keys', { ...advertiseRequest(parts[0]!), encryptionKey: toBase64(offCurve) }, { status: 400, error: 'malformed' });
    // Accepted once; the same keys again are a duplicate, other keys a conflict.
    expect(await call(t0, 'secagg/keys', advertiseRequest(parts[0]!))).toMatchObject({ status: 200, json: { duplicate: false } });
    expect(await call(t0, 'secagg/keys', advertiseRequest(parts[0]!))).toMatchObject({ status: 200, json: { duplicate: true } });
    await refused(t0, 'secagg/keys', advertiseRequest(parts[1]!), { status: 409, error: 'bad_request' });
    expect((await call(regs[1]!.token, 'secagg/keys', advertiseRequest(parts[1]!))).status).toBe(200);
    expect((await call(regs[2]!.token, 'secagg/keys', advertiseRequest(parts[2]!))).status).toBe(200);
    // Three of three: the roster is fixed.
    const views = await Promise.all(regs.map((r) => status(r.token)));
    expect(views.map((v) => v.stage)).toEqual(['share-keys', 'share-keys', 'share-keys']);
    const shared = await Promise.all(views.map((v, i) => shareKeys(parts[i]!, v)));
    await refused(t0, 'secagg/shares', { shares: shared[0]!.request.shares.slice(1) }, { status: 400, error: 'malformed' });
    await refused(t0, 'secagg/shares', { shares: [...shared[0]!.request.shares.slice(1), { to: views[0]!.index, ciphertext: shared[0]!.request.shares[0]!.ciphertext }] }, { status: 400, error: 'malformed' });
    await refused(t0, 'secagg/shares', { shares: shared[0]!.request.shares.map((x) => ({ ...x, ciphertext: toBase64(new Uint8Array(20)) })) }, { status: 400, error: 'malformed' });
    await refused(t0, 'secagg/keys', advertiseRequest(await createParticipant(1, 'P-256')), { status: 409, error: 'bad_request' });
    expect(await call(t0, 'secagg/shares', shared[0]!.request)).toMatchObject({ status: 200, json: { duplicate: false } });
    expect(await call(t0, 'secagg/shares', shared[0]!.request)).toMatchObject({ status: 200, json: { duplicate: true } });
    await refused(t0, 'secagg/shares', (await shareKeys(parts[0]!, views[0]!)).request, { status: 409, error: 'bad_request' }); // other randomness: other shares
    for (const i of [1, 2]) expect((await call(regs[i]!.token, 'secagg/shares', shared[i]!.request)).status).toBe(200);
    // Masked inputs: size, round and version are checked, content cannot be.
    const v0 = await status(t0);
    expect(v0.stage).toBe('masked-input');
    const p0 = await receiveShares(shared[0]!.state, v0);
    const good = await maskInput(p0, new Uint32Array(256), 0);
    await refused(t0, 'secagg/masked', good.slice(0, good.length - 4), { status: 400, error: 'malformed' }, { 'X-Update-Id': 'm0' });
    await refused(t0, 'secagg/masked', encodeMaskedInput(2, 0, new Uint32Array(256)), { status: 400, error: 'malformed' }, { 'X-Update-Id': 'm0' });
    await refused(t0, 'secagg/masked', encodeMaskedInput(1, 7, new Uint32Array(256)), { status: 400, error: 'malformed' }, { 'X-Update-Id': 'm0' });
    await refused(t0, 'secagg/unmask', { seedShares: [], keyShares: [] }, { status: 403, error: 'not_selected' });
    expect(await call(t0, 'secagg/masked', good, { 'X-Update-Id': 'm0' })).toMatchObject({ status: 200, json: { duplicate: false } });
    const count = () => (db.prepare('SELECT masked_count AS c FROM secagg_rounds').get() as { c: number }).c;
    expect(count()).toBe(1);
    expect(await call(t0, 'secagg/masked', good, { 'X-Update-Id': 'm0' })).toMatchObject({ status: 200, json: { duplicate: true } });
    expect(count()).toBe(1);
    await refused(t0, 'secagg/masked', good, { status: 409, error: 'bad_request' }, { 'X-Update-Id': 'm1' });
    // Unmask before its stage, and a message for a round that does not exist.
    await refused(t0, 'secagg/unmask', { seedShares: [], keyShares: [] }, { status: 409, error: 'wrong_stage' });
    expect((await call(t0, '../9/secagg/keys', advertiseRequest(parts[0]!))).status).toBe(404);
  });
});
