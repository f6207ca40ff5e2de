/**
 * RoundConfig.localDpSgd without a GPU: the coordinator's validation (ConfigError) and what it
 * serves (protocol 3 in the register answer and RoundInfo, the field advertised and stored with
 * the round), protocolForRound, a client from before protocol 3 refusing such a round, and the
 * client's record-level accountant (separate from the update-level one, persisted across reloads)
 * with a trainer double that reports the privacy of its run as the SDK does (TrainSummary.privacy).
 * The real DP-SGD trainer on Dawn is in dp-sgd-round.gpu.test.ts.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FederatedError, InvalidArgumentError } from '@webtune/errors';
import { parseSafetensors, serializeSafetensors, tensorToFloat32, type AdapterSpec, type HostTensor } from '@webtune/model';
import type { PrivacySummary, TrainerApi, TrainRequest } from '@webtune/sdk';
import { computeDpEpsilon } from '@webtune/trainer';
import { ConfigError, resolveRoundConfig, startCoordinator, type CoordinatorHandle } from '../../coordinator/src/index.js';
import { initialAdapter, query, register, roundInfo, SECRET, tmp } from '../../coordinator/test/helpers.js';
import { FederatedClient } from '../src/client.js';
import { localDpSgdProblem, protocolForRound, SUPPORTED_PROTOCOLS, type RoundConfig, type RoundInfo } from '../src/protocol.js';
import { MemoryRoundStore } from '../src/round-store.js';

const DPSGD = { noiseMultiplier: 1.1, maxGradNorm: 1, delta: 1e-5 };
const LORA_SPEC = { method: 'lora', config: { rank: 2, alpha: 2, dropout: 0, targets: ['q_proj', 'v_proj'], rslora: false } } as unknown as AdapterSpec;
const ADAPTER = { spec: LORA_SPEC, architecture: 'llama' as const };

const open: CoordinatorHandle[] = [];
const dirs: string[] = [];
afterEach(async () => {
  while (open.length) await open.pop()!.close();
  while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
  vi.doUnmock('../src/protocol.js');
  vi.resetModules();
});

async function coordinator(round: Partial<RoundConfig>): Promise<{ handle: CoordinatorHandle; db: string }> {
  const dir = tmp('webtune-dpsgd-');
  dirs.push(dir);
  const db = join(dir, 'c.sqlite');
  const handle = await startCoordinator({
    db, initialAdapter: initialAdapter(), enrolmentSecret: SECRET, log: () => {},
    config: { minClients: 1, maxClients: 1, round: { steps: 5, batchSize: 2, ...round } },
  });
  open.push(handle);
  return { handle, db };
}

const toBytes = (tensors: ReadonlyMap<string, HostTensor>) =>
  serializeSafetensors([...tensors].map(([name, t]) => ({ name, dtype: 'F32' as const, shape: t.shape, data: t.data })), { format: 'pt' });

/** Training rows the double pretends to have; the SDK reports q = batchSize / rows. */
const ROWS = 50;

/** A trainer that moves every adapter value a little and, under DP-SGD, reports TrainSummary.privacy as the SDK does. */
class TrainerDouble {
  adapter: Map<string, HostTensor> | undefined;
  spec: AdapterSpec | undefined;
  requests: TrainRequest[] = [];
  fail: Error | undefined;

  api(): TrainerApi {
    const api: Partial<TrainerApi> = {
      importAdapterState: async (state) => {
        this.spec = state.spec;
        this.adapter = new Map([...parseSafetensors(state.weights).tensors].map(([k, t]) => [k, { data: tensorToFloat32(t), shape: [...t.shape] }]));
      },
      train: async (request) => {
        this.requests.push(request);
        if (this.fail) throw this.fail;
        for (const t of this.adapter!.values()) for (let i = 0; i < t.data.length; i++) t.data[i] = t.data[i]! + 1e-3 * Math.sin(i);
        const p = request.privacy;
        const privacy: PrivacySummary | undefined = p
          ? {
              epsilon: 0, delta: p.delta!, targetEpsilon: undefined, noiseMultiplier: p.noiseMultiplier!, maxGradNorm: p.maxGradNorm!,
              sampleRate: request.batchSize! / ROWS, steps: request.steps, dataSize: ROWS, accountant: 'rdp', mechanism: 'dp-sgd', startedFrom: 'current',
            }
          : undefined;
        return { runId: request.runId ?? 'run', stopped: 'completed', step: request.steps, totalSteps: request.steps, ...(privacy ? { privacy } : {}) } as never;
      },
      exportAdapterState: async () => ({ spec: this.spec!, architecture: 'llama', weights: toBytes(this.adapter!) }),
      listCheckpoints: async () => [],
      deleteCheckpoint: async () => {},
    };
    return api as TrainerApi;
  }
}

/** A fetch that answers register and GET /v1/round with these bodies (nothing else is expected). */
function stubFetch(protocol: number, round: Omit<Partial<RoundInfo>, 'config'> & { config: unknown }): typeof fetch {
  return async (input) => {
    const path = new URL(String(input)).pathname;
    const body = path === '/v1/register'
      ? { protocol, clientId: 'c1', token: 't1' }
      : { protocol, roundId: 1, status: 'open', globalVersion: 0, selected: true, deadline: Date.now() + 60_000, minClients: 1, maxClients: 1, sampleRate: 1, ...round };
    if (path !== '/v1/register' && path !== '/v1/round') return new Response(JSON.stringify({ error: 'not_found', message: path }), { status: 404 });
    return new Response(JSON.stringify(body), { status: 200, headers: { 'Content-Type': 'application/json' } });
  };
}

describe('localDpSgd in the coordinator config', () => {
  it('is validated with ConfigError: finite sigma >= 0, C > 0, delta in (0, 1), no other fields', () => {
    const resolve = (localDpSgd: unknown) => resolveRoundConfig({ localDpSgd } as Partial<RoundConfig>, ADAPTER, 32);
    expect(resolve(DPSGD).localDpSgd).toEqual(DPSGD);
    expect(resolve({ ...DPSGD, noiseMultiplier: 0 }).localDpSgd).toEqual({ ...DPSGD, noiseMultiplier: 0 });
    // null or absent: no DP-SGD, and no field sent.
    expect('localDpSgd' in resolve(null)).toBe(false);
    expect('localDpSgd' in resolveRoundConfig({}, ADAPTER, 32)).toBe(false);
    const bad: Array<[unknown, RegExp]> = [
      [{ ...DPSGD, noiseMultiplier: -0.1 }, /noiseMultiplier must be a finite number >= 0/],
      [{ ...DPSGD, noiseMultiplier: Infinity }, /noiseMultiplier/],
      [{ ...DPSGD, noiseMultiplier: Number.NaN }, /noiseMultiplier/],
      [{ ...DPSGD, noiseMultiplier: '1' }, /noiseMultiplier/],
      [{ maxGradNorm: 1, delta: 1e-5 }, /noiseMultiplier/],
      [{ ...DPSGD, maxGradNorm: 0 }, /maxGradNorm must be a finite number > 0/],
      [{ ...DPSGD, maxGradNorm: -1 }, /maxGradNorm/],
      [{ ...DPSGD, maxGradNorm: Infinity }, /maxGradNorm/],
      [{ ...DPSGD, delta: 0 }, /delta must be a number in \(0, 1\)/],
      [{ ...DPSGD, delta: 1 }, /delta/],
      [{ noiseMultiplier: 1, maxGradNorm: 1 }, /delta/],
      [{ ...DPSGD, epsilon: 3 }, /fields this client does not know \(epsilon\)/],
      [[1, 2], /must be an object/],
      [true, /must be an object/],
    ];
    for (const [value, message] of bad) {
      expect(() => resolve(value)).toThrow(ConfigError);
      expect(() => resolve(value)).toThrow(message);
      expect(localDpSgdProblem(value)).toMatch(message);
    }
    expect(localDpSgdProblem(DPSGD)).toBeUndefined();
  });

  it('an unknown round field (a misspelt localDpSgd) is refused, not sent and ignored', async () => {
    expect(() => resolveRoundConfig({ localDPSGD: DPSGD } as unknown as Partial<RoundConfig>, ADAPTER, 32)).toThrow(/unknown round field "localDPSGD"/);
    await expect(coordinator({ localDPSGD: DPSGD } as unknown as Partial<RoundConfig>)).rejects.toThrow(ConfigError);
    await expect(coordinator({ localDpSgd: { ...DPSGD, delta: 2 } })).rejects.toThrow(/round\.localDpSgd delta/);
  });

  it('protocolForRound: 3 with localDpSgd, else the method\'s version', () => {
    expect(protocolForRound('lora', {})).toBe(1);
    expect(protocolForRound('ia3', {})).toBe(2);
    expect(protocolForRound('lora', { localDpSgd: DPSGD })).toBe(3);
    expect(protocolForRound('prefix-tuning', { localDpSgd: DPSGD })).toBe(3);
    expect(SUPPORTED_PROTOCOLS).toContain(3);
  });

  it('a coordinator with localDpSgd speaks protocol 3, advertises the field in RoundInfo and stores it with the round', async () => {
    const { handle, db } = await coordinator({ localDpSgd: DPSGD, dp: { mode: 'local', noiseMultiplier: 0.5, delta: 1e-6 } });
    const reg = await register(handle.url);
    expect(reg.protocol).toBe(3);
    const info = await roundInfo(handle.url, reg.token);
    expect(info.protocol).toBe(3);
    expect(info.config.localDpSgd).toEqual(DPSGD);
    // Update-level DP is untouched by it.
    expect(info.config.dp).toEqual({ mode: 'local', noiseMultiplier: 0.5, delta: 1e-6 });
    const rows = query<{ config: string }>(db, 'SELECT config FROM rounds WHERE id = 1');
    expect((JSON.parse(rows[0]!.config) as { client: RoundConfig }).client.localDpSgd).toEqual(DPSGD);
  });

  it('a coordinator without it speaks its method\'s version and sends no localDpSgd', async () => {
    const { handle } = await coordinator({});
    const reg = await register(handle.url);
    const info = await roundInfo(handle.url, reg.token);
    expect([reg.protocol, info.protocol]).toEqual([1, 1]);
    expect('localDpSgd' in info.config).toBe(false);
  });
});

describe('the client and localDpSgd', () => {
  it('a client from before protocol 3 (speaks 1 and 2) refuses a localDpSgd coordinator with unsupported_protocol, training nothing', async () => {
    vi.resetModules();
    vi.doMock('../src/protocol.js', async (importOriginal) => ({ ...(await importOriginal<typeof import('../src/protocol.js')>()), SUPPORTED_PROTOCOLS: [1, 2] }));
    const { FederatedClient: OldClient } = await import('../src/client.js');
    const { handle } = await coordinator({ localDpSgd: DPSGD });
    const trainer = new TrainerDouble();
    const old = new OldClient({ url: handle.url, enrolmentSecret: SECRET, trainer: trainer.api(), store: new MemoryRoundStore() });
    const error = await old.runRound().catch((e: unknown) => e);
    // (A fresh module graph: its FederatedError is another class object, so compare by name.)
    expect(error).toMatchObject({ name: 'FederatedError', reason: 'unsupported_protocol' });
    expect((error as Error).message).toMatch(/speaks protocol 3; this client speaks 1 and 2/);
    expect(trainer.requests).toHaveLength(0);
  });

  it('trains with privacy { sigma, C, delta }; the record-level accountant is separate from the update-level one and survives a reload', async () => {
    const dp = { mode: 'local' as const, noiseMultiplier: 0.7, delta: 1e-6 };
    const { handle } = await coordinator({ localDpSgd: DPSGD, dp, clipNorm: 0.5 });
    const trainer = new TrainerDouble();
    const store = new MemoryRoundStore();
    const make = () => new FederatedClient({ url: handle.url, enrolmentSecret: SECRET, trainer: trainer.api(), store });
    const client = make();
    expect(client.privacySpent().recordLevel).toBeUndefined();

    const r1 = await client.runRound();
    expect(r1).toMatchObject({ status: 'uploaded', roundId: 1, privacy: { mode: 'local', noiseMultiplier: 0.7, clipNorm: 0.5, delta: 1e-6, localDpSgd: DPSGD } });
    expect(trainer.requests[0]).toMatchObject({ steps: 5, batchSize: 2, privacy: DPSGD });
    const q = 2 / ROWS;
    const record1 = computeDpEpsilon({ noiseMultiplier: DPSGD.noiseMultiplier, sampleRate: q, steps: 5, delta: DPSGD.delta }).epsilon;
    expect(r1.recordLevel).toEqual({ epsilon: record1, delta: DPSGD.delta, steps: 5, rounds: 1 });
    const update1 = computeDpEpsilon({ noiseMultiplier: 0.7, sampleRate: 1, steps: 1, delta: 1e-6 }).epsilon;
    expect(r1.epsilon).toBe(update1);
    expect(client.privacySpent()).toEqual({ epsilon: update1, rounds: 1, centralRounds: 0, distributedRounds: 0, recordLevel: r1.recordLevel });

    // Round 2 (the coordinator aggregated round 1 with one client): the record-level steps compose.
    const r2 = await client.runRound();
    expect(r2).toMatchObject({ status: 'uploaded', roundId: 2 });
    const record2 = computeDpEpsilon({ noiseMultiplier: DPSGD.noiseMultiplier, sampleRate: q, steps: 10, delta: DPSGD.delta }).epsilon;
    expect(r2.recordLevel!.epsilon).toBeCloseTo(record2, 12);
    expect(r2.recordLevel).toMatchObject({ steps: 10, rounds: 2 });
    expect(r2.recordLevel!.epsilon).toBeGreaterThan(record1);

    // A reload: the same store, a new client object.
    const reloaded = make();
    await reloaded.register();
    expect(reloaded.privacySpent()).toEqual(client.privacySpent());
    // At another delta on request.
    expect(reloaded.privacySpent(undefined, 1e-3).recordLevel!.epsilon).toBeCloseTo(
      computeDpEpsilon({ noiseMultiplier: DPSGD.noiseMultiplier, sampleRate: q, steps: 10, delta: 1e-3 }).epsilon, 12,
    );
  });

  it('a round without localDpSgd trains without privacy and reports no record level', async () => {
    const { handle } = await coordinator({ clipNorm: 0.5 });
    const trainer = new TrainerDouble();
    const client = new FederatedClient({ url: handle.url, enrolmentSecret: SECRET, trainer: trainer.api(), store: new MemoryRoundStore() });
    const r = await client.runRound();
    expect(r.status).toBe('uploaded');
    expect(trainer.requests[0]!.privacy).toBeUndefined();
    expect(r.recordLevel).toBeUndefined();
    expect(r.privacy).not.toHaveProperty('localDpSgd');
    expect(client.privacySpent().recordLevel).toBeUndefined();
  });

  it('refuses (bad_config) a round whose localDpSgd it cannot honour, before training', async () => {
    const base = { steps: 2, batchSize: 2, learningRate: 1e-3, seqLen: 16, clipNorm: 1, dp: { mode: 'none', noiseMultiplier: 0, delta: 1e-5 }, proximalMu: 0, maxUploadBytes: 1 << 20 };
    for (const localDpSgd of [{ ...DPSGD, maxGradNorm: 0 }, { ...DPSGD, delta: 1 }, { ...DPSGD, noiseMultiplier: -1 }, { ...DPSGD, clip: 'per-layer' }]) {
      const trainer = new TrainerDouble();
      const client = new FederatedClient({ url: 'http://127.0.0.1:1', enrolmentSecret: 's', trainer: trainer.api(), store: new MemoryRoundStore(), fetch: stubFetch(3, { config: { ...base, localDpSgd } }) });
      const error = await client.runRound().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(FederatedError);
      expect(error).toMatchObject({ reason: 'bad_config' });
      expect((error as Error).message).toMatch(/localDpSgd/);
      expect(trainer.requests).toHaveLength(0);
    }
  });

  it('data DP-SGD cannot protect row by row (the trainer refuses) is bad_config, and nothing is sent or accounted', async () => {
    const { handle } = await coordinator({ localDpSgd: DPSGD });
    const trainer = new TrainerDouble();
    trainer.fail = new InvalidArgumentError('DP-SGD protects one training row, but this text data packs 3 documents into windows');
    const uploads: string[] = [];
    const spy: typeof fetch = async (input, init) => {
      if (String(input).includes('/updates')) uploads.push(String(input));
      return fetch(input, init);
    };
    const client = new FederatedClient({ url: handle.url, enrolmentSecret: SECRET, trainer: trainer.api(), store: new MemoryRoundStore(), fetch: spy });
    const error = await client.runRound().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FederatedError);
    expect(error).toMatchObject({ reason: 'bad_config' });
    expect((error as Error).message).toMatch(/packs 3 documents/);
    expect(uploads).toHaveLength(0);
    expect(client.privacySpent().recordLevel).toBeUndefined();
  });
});
