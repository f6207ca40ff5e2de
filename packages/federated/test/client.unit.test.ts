/**
 * FederatedClient over real HTTP (node:http on 127.0.0.1), without a GPU: the trainer is a double
 * that moves every adapter value by a fixed pattern (so the delta, its norm and the clipped delta
 * are known exactly). The server is a minimal protocol-v1 coordinator written here (decodes and
 * validates uploads with the real codec, deduplicates update ids, counts, checks the norm outside
 * local DP) with knobs for failures; the last block runs the same client against the reference
 * coordinator (packages/coordinator, SQLite). The real inline trainer on Dawn is in client.gpu.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DownloadError, FederatedError, UpdateRejectedError } from '@webtune/errors';
import {
  parseSafetensors, peftAdapterConfig, serializeSafetensors, tensorToFloat32, type AdapterSpec, type HostTensor, type LoraConfig, type ModelConfig,
} from '@webtune/model';
import type { TrainerApi, TrainRequest } from '@webtune/sdk';
import * as privacy from '@webtune/trainer';
import { computeDpEpsilon } from '@webtune/trainer';
import { startCoordinator } from '../../coordinator/src/index.js';
import { FederatedClient, type FederatedClientOptions, type FederatedEvent } from '../src/client.js';
import { decodeUpdate, globalNorm } from '../src/codec.js';
import * as dp from '../src/dp.js';
import type { ErrorResponse, RoundConfig, RoundInfo } from '../src/protocol.js';
import { MemoryRoundStore } from '../src/round-store.js';

vi.mock('../src/dp.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../src/dp.js')>();
  return { ...actual, clipGlobalNorm: vi.fn(actual.clipGlobalNorm) };
});
// The noise is @webtune/trainer's (shared with DP-SGD).
vi.mock('@webtune/trainer', async (importOriginal) => {
  const actual = await importOriginal<typeof import('@webtune/trainer')>();
  return { ...actual, addGaussianNoise: vi.fn(actual.addGaussianNoise) };
});

// ---------------------------------------------------------------------------------------------
// The adapter: rank 8 on q_proj/v_proj of 2 layers of a 256-wide model (16384 values).

const LORA: LoraConfig = { rank: 8, alpha: 16, dropout: 0, targets: ['q_proj', 'v_proj'], rslora: false };
const WIDTH = 256;

function initialAdapter(): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  let seed = 1;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648 - 0.5) * 0.1;
  for (let layer = 0; layer < 2; layer++) {
    for (const m of ['q_proj', 'v_proj']) {
      const base = `base_model.model.model.layers.${layer}.self_attn.${m}`;
      out.set(`${base}.lora_A.weight`, { shape: [LORA.rank, WIDTH], data: Float32Array.from({ length: LORA.rank * WIDTH }, rand) });
      out.set(`${base}.lora_B.weight`, { shape: [WIDTH, LORA.rank], data: new Float32Array(WIDTH * LORA.rank) });
    }
  }
  return out;
}

const toBytes = (tensors: ReadonlyMap<string, HostTensor>) =>
  serializeSafetensors([...tensors].map(([name, t]) => ({ name, dtype: 'F32' as const, shape: t.shape, data: t.data })), { format: 'pt' });

function readTensors(bytes: Uint8Array): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const [name, t] of parseSafetensors(bytes).tensors) out.set(name, { data: tensorToFloat32(t), shape: [...t.shape] });
  return out;
}

/** What the double's training adds to value i of every tensor (norm over the adapter: about 0.7 * AMP * sqrt(16384)). */
const AMP = 0.1;
const shift = (i: number, k: number) => AMP * Math.sin(0.37 * i + 1.3 * k + 0.5);

/** The exact delta the double produces for an adapter with these keys (in order). */
function expectedDelta(keys: string[], sizes: number[]): Float32Array[] {
  return keys.map((_, k) => Float32Array.from({ length: sizes[k]! }, (_, i) => Math.fround(shift(i, k))));
}

class TrainerDouble {
  adapter: Map<string, HostTensor> | undefined;
  imported: Array<{ spec: AdapterSpec; architecture: string | undefined; weights: Uint8Array }> = [];
  requests: TrainRequest[] = [];
  stop: 'completed' | 'cancelled' = 'completed';

  api(): TrainerApi {
    const api: Partial<TrainerApi> = {
      importAdapterState: async (state) => {
        this.imported.push({ spec: state.spec, architecture: state.architecture, weights: state.weights });
        this.adapter = readTensors(state.weights);
      },
      train: async (request, onProgress) => {
        this.requests.push(request);
        if (request.startFrom !== 'current' || !this.adapter) throw new Error('the double expects startFrom: current after an import');
        let k = 0;
        for (const t of this.adapter.values()) {
          // Float64 math, then stored as f32: local - global is then shift up to f32 rounding of the sum.
          for (let i = 0; i < t.data.length; i++) t.data[i] = t.data[i]! + shift(i, k);
          k++;
        }
        for (let s = 1; s <= request.steps; s++) onProgress?.({ runId: request.runId ?? 'run', step: s, totalSteps: request.steps, loss: 1 / s } as never);
        return { runId: request.runId ?? 'run', stopped: this.stop, step: request.steps, totalSteps: request.steps } as never;
      },
      exportAdapterState: async () => ({ spec: this.imported.at(-1)!.spec, architecture: 'llama', weights: toBytes(this.adapter!) }),
      listCheckpoints: async () => [],
      deleteCheckpoint: async () => {},
    };
    return api as TrainerApi;
  }
}

// ---------------------------------------------------------------------------------------------
// A minimal protocol-v1 coordinator.

interface Received {
  roundId: number;
  updateId: string;
  exampleCount: number;
  bytes: Uint8Array;
  duplicate: boolean;
}

class TestCoordinator {
  server!: Server;
  url = '';
  secret = 'let-me-in';
  tokens = new Map<string, string>();
  registrations = 0;
  round: RoundInfo;
  globals = new Map<number, Uint8Array>();
  shapes: Map<string, readonly number[]>;
  accepted = new Map<number, Map<string, Received>>();
  received: Received[] = [];
  requests: string[] = [];
  /** Answer the next N requests whose path starts with `prefix` with this status. */
  faults: Array<{ prefix: string; status: number; body: ErrorResponse | string; times: number }> = [];
  /** After handling an upload, drop the connection instead of answering (the answer is lost). */
  loseUploadAnswers = 0;
  /** The protocol version the register answer names. */
  protocol = 1;

  constructor(config: Partial<RoundConfig> = {}, info: Partial<RoundInfo> = {}) {
    const initial = initialAdapter();
    this.shapes = new Map([...initial].map(([k, t]) => [k, t.shape]));
    this.globals.set(0, toBytes(initial));
    this.round = {
      protocol: 1, roundId: 1, status: 'open', globalVersion: 0, selected: true, deadline: Date.now() + 60_000,
      minClients: 1, maxClients: 10, sampleRate: 1,
      config: {
        steps: 3, batchSize: 4, learningRate: 1e-3, seqLen: 32, lora: LORA, clipNorm: 0.5,
        dp: { mode: 'none', noiseMultiplier: 0, delta: 1e-5 }, proximalMu: 0.01, maxUploadBytes: 1 << 20, ...config,
      },
      ...info,
    };
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  /** Closes the current round and opens the next from the same global version. */
  nextRound(patch: Partial<RoundInfo> = {}): void {
    this.round = { ...this.round, roundId: this.round.roundId + 1, status: 'open', deadline: Date.now() + 60_000, ...patch };
  }

  count(roundId = this.round.roundId): number {
    return this.accepted.get(roundId)?.size ?? 0;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = new Uint8Array(Buffer.concat(chunks));
    const path = req.url ?? '/';
    this.requests.push(`${req.method} ${path}`);
    const json = (status: number, value: unknown) => {
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(value));
    };
    const fail = (status: number, error: ErrorResponse['error'], message: string) => json(status, { error, message });
    const fault = this.faults.find((f) => path.startsWith(f.prefix) && f.times > 0);
    if (fault) {
      fault.times--;
      if (typeof fault.body === 'string') {
        res.writeHead(fault.status);
        res.end(fault.body);
      } else json(fault.status, fault.body);
      return;
    }
    if (req.method === 'POST' && path === '/v1/register') {
      const r = JSON.parse(Buffer.from(body).toString('utf8')) as { enrolmentSecret: string };
      if (r.enrolmentSecret !== this.secret) return fail(401, 'bad_secret', 'wrong enrolment secret');
      this.registrations++;
      const clientId = `c${this.registrations}`;
      const token = `t-${clientId}-${Math.random().toString(36).slice(2)}`;
      this.tokens.set(token, clientId);
      return json(200, { protocol: this.protocol, clientId, token });
    }
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (!token || !this.tokens.has(token)) return fail(401, 'unauthenticated', 'unknown token');
    if (req.method === 'GET' && path === '/v1/round') return json(200, this.round);
    const g = /^\/v1\/global\/(\d+)$/.exec(path);
    if (req.method === 'GET' && g) {
      const bytes = this.globals.get(Number(g[1]));
      if (!bytes) return fail(404, 'not_found', 'no such version');
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      res.end(bytes);
      return;
    }
    const u = /^\/v1\/rounds\/(\d+)\/updates$/.exec(path);
    if (req.method === 'POST' && u) {
      const roundId = Number(u[1]);
      if (roundId !== this.round.roundId) return fail(409, 'wrong_round', `round ${roundId} is not the current round ${this.round.roundId}`);
      if (this.round.status !== 'open') return fail(409, 'round_closed', `round ${roundId} is ${this.round.status}`);
      const updateId = String(req.headers['x-update-id'] ?? '');
      const exampleCount = Number(req.headers['x-example-count']);
      if (!updateId || !(exampleCount > 0)) return fail(400, 'bad_request', 'X-Update-Id and X-Example-Count are required');
      const seen = this.accepted.get(roundId) ?? new Map<string, Received>();
      this.accepted.set(roundId, seen);
      if (seen.has(updateId)) {
        this.received.push({ roundId, updateId, exampleCount, bytes: body, duplicate: true });
        return this.answerUpload(res, { accepted: true, duplicate: true, count: seen.size });
      }
      if (body.byteLength > this.round.config.maxUploadBytes) return fail(413, 'too_large', 'update too large');
      try {
        const decoded = decodeUpdate(body, this.shapes);
        if (decoded.baseVersion !== this.round.globalVersion) return fail(409, 'wrong_round', 'stale base version');
        const S = this.round.config.clipNorm;
        if (this.round.config.dp.mode !== 'local' && globalNorm(decoded.tensors.values()) > S * (1 + 1e-3)) {
          return fail(400, 'norm_exceeded', `norm above clipNorm ${S}`);
        }
      } catch (e) {
        if (e instanceof UpdateRejectedError) return fail(400, e.reason, e.message);
        throw e;
      }
      const r: Received = { roundId, updateId, exampleCount, bytes: body, duplicate: false };
      seen.set(updateId, r);
      this.received.push(r);
      return this.answerUpload(res, { accepted: true, duplicate: false, count: seen.size });
    }
    return fail(404, 'not_found', `${req.method} ${path}`);
  }

  private answerUpload(res: ServerResponse, value: unknown): void {
    if (this.loseUploadAnswers > 0) {
      this.loseUploadAnswers--;
      res.destroy();
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(value));
  }
}

// ---------------------------------------------------------------------------------------------

let server: TestCoordinator;
/** The server afterEach closes. */
let running: TestCoordinator | undefined;
let trainer: TrainerDouble;
let events: FederatedEvent[];

function client(server: TestCoordinator, o: Partial<FederatedClientOptions> = {}): FederatedClient {
  return new FederatedClient({
    url: server.url, enrolmentSecret: server.secret, trainer: trainer.api(), store: new MemoryRoundStore(), name: 'phone-1',
    retry: { attempts: 3, baseDelayMs: 5 }, onEvent: (e) => events.push(e), ...o,
  });
}

async function start(config: Partial<RoundConfig> = {}, info: Partial<RoundInfo> = {}): Promise<TestCoordinator> {
  server = await new TestCoordinator(config, info).start();
  running = server;
  return server;
}

beforeEach(() => {
  trainer = new TrainerDouble();
  events = [];
  vi.mocked(privacy.addGaussianNoise).mockClear();
  vi.mocked(dp.clipGlobalNorm).mockClear();
});

afterEach(async () => {
  await running?.close();
  running = undefined;
});

/** The uploaded update, decoded, in the global's key order. */
function decodedUpload(r: { bytes: Uint8Array }): Float32Array[] {
  const d = decodeUpdate(r.bytes, server.shapes);
  return [...server.shapes.keys()].map((k) => d.tensors.get(k)!);
}

function deltaOfDouble(): Float32Array[] {
  const keys = [...server.shapes.keys()];
  return expectedDelta(keys, keys.map((k) => server.shapes.get(k)!.reduce((a, b) => a * b, 1)));
}

describe('FederatedClient: a round', () => {
  it('registers, downloads, trains from the global, clips to S and uploads; the server accepts it', async () => {
    await start();
    const c = client(server);
    const result = await c.runRound();
    expect(result).toMatchObject({ status: 'uploaded', roundId: 1, duplicate: false, resumed: false, accepted: 1 });
    expect(result.privacy).toEqual({ mode: 'none', noiseMultiplier: 0, delta: 1e-5, clipNorm: 0.5 });
    expect(result.epsilon).toBeUndefined();
    expect(server.count()).toBe(1);
    expect(server.registrations).toBe(1);

    // The trainer got the global as the round's LoRA adapter (an older coordinator's round: `lora` only) and trained from it.
    expect(trainer.imported).toHaveLength(1);
    expect(trainer.imported[0]!.spec).toEqual({ method: 'lora', config: LORA });
    expect(trainer.imported[0]!.architecture).toBeUndefined();
    expect(trainer.imported[0]!.weights).toEqual(server.globals.get(0));
    expect(trainer.requests[0]).toMatchObject({ steps: 3, batchSize: 4, learningRate: 1e-3, startFrom: 'current', proximalMu: 0.01, lora: LORA });

    // delta = local - global, clipped to S: the server received exactly delta * S / ||delta||.
    const [r] = server.received;
    expect(r!.exampleCount).toBe(3 * 4);
    expect(r!.updateId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const want = deltaOfDouble();
    const norm = globalNorm(want);
    expect(norm).toBeGreaterThan(0.5 * 10); // well above S: clipping is active
    const got = decodedUpload(r!);
    expect(globalNorm(got)).toBeLessThanOrEqual(0.5);
    expect(globalNorm(got)).toBeCloseTo(0.5, 4);
    for (let k = 0; k < want.length; k++) {
      for (let i = 0; i < want[k]!.length; i += 97) expect(got[k]![i]).toBeCloseTo((want[k]![i]! * 0.5) / norm, 5);
    }
    expect(result.norm).toBeCloseTo(norm, 3);
    expect(result.clippedNorm).toBeCloseTo(0.5, 5);
    expect(result.uploadBytes).toBe(r!.bytes.byteLength);
    expect(result.denseBytes).toBe(result.uploadBytes);
    expect(privacy.addGaussianNoise).not.toHaveBeenCalled();
    expect(vi.mocked(dp.clipGlobalNorm).mock.calls[0]![1]).toBe(0.5);

    const phases = events.map((e) => e.phase);
    expect(phases[0]).toBe('register');
    expect(phases.filter((p) => p === 'train')).toHaveLength(3);
    expect(phases.slice(-2)).toEqual(['upload', 'done']);
    expect(events.find((e) => e.phase === 'download')!.bytes).toBe(server.globals.get(0)!.byteLength);

    // A second call in the same round does nothing.
    expect(await c.runRound()).toMatchObject({ status: 'skipped', reason: 'already_uploaded', roundId: 1 });
    expect(server.count()).toBe(1);
  });

  it('a reload does not register again (the store keeps the id and token)', async () => {
    await start();
    const store = new MemoryRoundStore();
    const a = client(server, { store });
    await a.register();
    const b = client(server, { store });
    await b.register();
    await b.runRound();
    expect(server.registrations).toBe(1);
    expect(b.clientId).toBe(a.clientId);
  });

  it('skips when not selected, when the round is not open, or when there is no round', async () => {
    await start({}, { selected: false });
    const c = client(server);
    expect(await c.runRound()).toMatchObject({ status: 'skipped', reason: 'not_selected', roundId: 1 });
    server.round = { ...server.round, selected: true, status: 'aggregating' };
    expect(await c.runRound()).toMatchObject({ status: 'skipped', reason: 'round_not_open' });
    server.faults.push({ prefix: '/v1/round', status: 404, body: { error: 'not_found', message: 'no round is open' }, times: 1 });
    expect(await c.runRound()).toMatchObject({ status: 'skipped', reason: 'no_round' });
    expect(trainer.requests).toHaveLength(0);
    expect(events.filter((e) => e.phase === 'skipped')).toHaveLength(3);
  });
});

describe('FederatedClient: local DP', () => {
  it('adds N(0, (sigma S)^2) to the clipped delta and accounts for the release', async () => {
    const sigma = 1.5;
    const S = 0.5;
    await start({ clipNorm: S, dp: { mode: 'local', noiseMultiplier: sigma, delta: 1e-5 } }, { sampleRate: 0.1 });
    const c = client(server);
    const result = await c.runRound();
    expect(result.status).toBe('uploaded');

    // The client called the DP helper with std = sigma * S ...
    expect(privacy.addGaussianNoise).toHaveBeenCalledTimes(1);
    expect(vi.mocked(privacy.addGaussianNoise).mock.calls[0]![1]).toBeCloseTo(sigma * S, 12);

    // ... and the upload minus the clipped delta looks like that noise (16384 draws).
    const want = deltaOfDouble();
    const scale = S / globalNorm(want);
    const got = decodedUpload(server.received[0]!);
    let n = 0;
    let sum = 0;
    let sum2 = 0;
    for (let k = 0; k < want.length; k++) {
      for (let i = 0; i < want[k]!.length; i++) {
        const e = got[k]![i]! - want[k]![i]! * scale;
        n++;
        sum += e;
        sum2 += e * e;
      }
    }
    const mean = sum / n;
    const std = Math.sqrt(sum2 / n - mean * mean);
    expect(n).toBe(16384);
    expect(Math.abs(mean)).toBeLessThan((5 * sigma * S) / Math.sqrt(n));
    expect(std / (sigma * S)).toBeGreaterThan(0.97);
    expect(std / (sigma * S)).toBeLessThan(1.03);

    // Epsilon: one subsampled-Gaussian release with q = 0.1, z = 1.5.
    const one = computeDpEpsilon({ noiseMultiplier: sigma, sampleRate: 0.1, steps: 1, delta: 1e-5 }).epsilon;
    expect(result.epsilon).toBeCloseTo(one, 9);
    expect(c.privacySpent()).toEqual({ epsilon: result.epsilon, rounds: 1, centralRounds: 0, distributedRounds: 0 });

    // The accountant survives a reload (it lives in the store).
    server.nextRound();
    const store = new MemoryRoundStore();
    const a = client(server, { store });
    await a.runRound();
    server.nextRound();
    const b = client(server, { store });
    const second = await b.runRound();
    const two = computeDpEpsilon({ noiseMultiplier: sigma, sampleRate: 0.1, steps: 2, delta: 1e-5 }).epsilon;
    expect(second.epsilon).toBeCloseTo(two, 9);
    expect(b.privacySpent(1e-5)).toMatchObject({ rounds: 2 });
  });

  it('refuses a round that would exceed the privacy budget (nothing downloaded or trained)', async () => {
    const sigma = 1;
    await start({ dp: { mode: 'local', noiseMultiplier: sigma, delta: 1e-5 } }, { sampleRate: 0.2 });
    const e1 = computeDpEpsilon({ noiseMultiplier: sigma, sampleRate: 0.2, steps: 1, delta: 1e-5 }).epsilon;
    const e2 = computeDpEpsilon({ noiseMultiplier: sigma, sampleRate: 0.2, steps: 2, delta: 1e-5 }).epsilon;
    const c = client(server, { privacyBudget: { epsilon: (e1 + e2) / 2, delta: 1e-5 } });
    expect(await c.runRound()).toMatchObject({ status: 'uploaded', roundId: 1 });
    server.nextRound();
    const refused = await c.runRound();
    expect(refused).toMatchObject({ status: 'skipped', reason: 'privacy_budget', roundId: 2 });
    expect(events.at(-1)).toMatchObject({ phase: 'skipped', roundId: 2 });
    expect(events.at(-1)!.detail).toMatch(/epsilon would reach/);
    expect(trainer.requests).toHaveLength(1);
    expect(server.requests.filter((r) => r.startsWith('GET /v1/global'))).toHaveLength(1);
    expect(c.privacySpent().epsilon).toBeCloseTo(e1, 9);

    // With a budget, an un-noised round is refused too; a central-DP round is the coordinator's to account.
    server.nextRound({ config: { ...server.round.config, dp: { mode: 'none', noiseMultiplier: 0, delta: 1e-5 } } });
    expect(await c.runRound()).toMatchObject({ status: 'skipped', reason: 'no_dp' });
    server.nextRound({ config: { ...server.round.config, dp: { mode: 'central', noiseMultiplier: 1, delta: 1e-5 } } });
    const central = await c.runRound();
    expect(central).toMatchObject({ status: 'uploaded', roundId: 4 });
    expect(central.epsilon).toBeUndefined();
    expect(privacy.addGaussianNoise).toHaveBeenCalledTimes(1); // round 1 only
    expect(c.privacySpent()).toMatchObject({ rounds: 1, centralRounds: 1 });
  });
});

describe('FederatedClient: compression', () => {
  it('q8 makes the upload about 4x smaller; top-k smaller still; both stay within S', async () => {
    await start();
    const dense = await client(server).runRound();
    server.nextRound();
    const q8 = await client(server, { compression: { encoding: 'q8' } }).runRound();
    server.nextRound();
    const sparse = await client(server, { compression: { encoding: 'q8', topK: 0.1 } }).runRound();
    console.log(`upload bytes for a 16384-value delta: f32 ${dense.uploadBytes}, q8 ${q8.uploadBytes}, q8 + top-10% ${sparse.uploadBytes} (dense ${q8.denseBytes})`);
    expect(q8.denseBytes).toBe(dense.uploadBytes);
    expect(dense.uploadBytes! / q8.uploadBytes!).toBeGreaterThan(3.5);
    expect(dense.uploadBytes! / q8.uploadBytes!).toBeLessThan(4.1);
    // Top-k keeps 10% of the values but adds a 4-byte index to each kept 1-byte code.
    expect(sparse.uploadBytes!).toBeLessThan(q8.uploadBytes! * 0.7);
    for (const r of server.received) expect(globalNorm(decodedUpload(r))).toBeLessThanOrEqual(0.5 * (1 + 1e-6));
    expect(decodeUpdate(server.received[1]!.bytes, server.shapes).encoding).toBe('q8');
    expect(decodeUpdate(server.received[2]!.bytes, server.shapes).sparse).toBe(true);
  });

  it('refuses to send an update larger than the round allows', async () => {
    await start({ maxUploadBytes: 4096 });
    const c = client(server);
    const error = await c.runRound().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FederatedError);
    expect(error).toMatchObject({ reason: 'too_large', code: 'INVALID_ARGUMENT' });
    expect((error as Error).message).toMatch(/compression/);
    expect(server.requests.some((r) => r.startsWith('POST /v1/rounds'))).toBe(false);
  });
});

describe('FederatedClient: errors and retries', () => {
  it('retries 503 twice with backoff, then succeeds', async () => {
    await start();
    server.faults.push({ prefix: '/v1/rounds/1/updates', status: 503, body: 'busy', times: 2 });
    const c = client(server, { retry: { attempts: 4, baseDelayMs: 40 } });
    const t0 = performance.now();
    const result = await c.runRound();
    const elapsed = performance.now() - t0;
    expect(result).toMatchObject({ status: 'uploaded', accepted: 1 });
    expect(server.requests.filter((r) => r === 'POST /v1/rounds/1/updates')).toHaveLength(3);
    // Waits of 20..40 ms then 40..80 ms.
    expect(elapsed).toBeGreaterThanOrEqual(60);
    expect(server.count()).toBe(1);
  });

  it('gives up after the attempts with a DownloadError; the saved payload goes up on the next call', async () => {
    await start();
    server.faults.push({ prefix: '/v1/rounds/1/updates', status: 500, body: 'down', times: 3 });
    const c = client(server, { retry: { attempts: 3, baseDelayMs: 1 } });
    const error = await c.runRound().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DownloadError);
    expect(error).toMatchObject({ code: 'DOWNLOAD_FAILED', status: 500 });
    expect((error as Error).message).toMatch(/after 3 attempts/);
    const again = await c.runRound();
    expect(again).toMatchObject({ status: 'uploaded', resumed: true, duplicate: false });
    expect(trainer.requests).toHaveLength(1);
  });

  it('surfaces a 4xx rejection with the server code and message, without retrying', async () => {
    await start();
    server.faults.push({ prefix: '/v1/rounds/1/updates', status: 400, body: { error: 'wrong_tensors', message: 'missing tensor "x"' }, times: 1 });
    const c = client(server);
    const error = await c.runRound().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FederatedError);
    expect(error).toMatchObject({ reason: 'wrong_tensors', status: 400, code: 'INVALID_ARGUMENT' });
    expect((error as Error).message).toMatch(/missing tensor "x"/);
    expect(server.requests.filter((r) => r.startsWith('POST /v1/rounds'))).toHaveLength(1);
  });

  it('a wrong enrolment secret is a FederatedError (bad_secret), not retried', async () => {
    await start();
    const c = client(server, { enrolmentSecret: 'nope' });
    await expect(c.register()).rejects.toMatchObject({ reason: 'bad_secret', status: 401 });
    expect(server.requests).toEqual(['POST /v1/register']);
  });

  it('a global adapter with a non-finite value is refused before training (FederatedError bad_global), nothing uploaded', async () => {
    await start();
    const poisoned = initialAdapter();
    const [firstKey, first] = [...poisoned][0]!;
    first.data[3] = Number.POSITIVE_INFINITY;
    poisoned.set(firstKey, first);
    server.globals.set(0, toBytes(poisoned));
    const c = client(server);
    const error = await c.runRound().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FederatedError);
    expect(error).toMatchObject({ reason: 'bad_global', code: 'MODEL_FORMAT' });
    expect((error as Error).message).toMatch(/non-finite value \(Infinity\)/);
    expect(trainer.imported).toHaveLength(0);
    expect(server.count()).toBe(0);
  });

  it('a round whose adapter spec or architecture the client cannot use is refused (FederatedError bad_config) before anything is imported', async () => {
    const cases: Array<Partial<RoundConfig>> = [
      { lora: undefined, adapter: { method: 'constructor' as never, config: {} } },
      { lora: undefined, adapter: { method: 'lora', config: {} } },
      { lora: undefined, adapter: { method: 'ia3', config: { targets: ['k_proj'], feedforward: 5 } } as never },
      { lora: undefined },
      { architecture: 'mamba' as never },
      { lora: undefined, adapter: { method: 'p-tuning', config: { numVirtualTokens: 4, encoderHiddenSize: 8, encoderReparameterizationType: 'LSTM' } } },
      { lora: undefined, adapter: { method: 'prefix-tuning', config: { numVirtualTokens: 4 } } },
      { lora: undefined, adapter: { method: 'prompt-tuning', config: { numVirtualTokens: 0, init: 'random' } } },
      { lora: undefined, adapter: { method: 'bottleneck', config: { variant: 'parallel', bottleneckSize: 4, nonLinearity: 'relu' } } },
    ];
    for (const config of cases) {
      await start(config);
      const error = await client(server).runRound().catch((e: unknown) => e);
      expect(error, JSON.stringify(config)).toBeInstanceOf(FederatedError);
      expect(error).toMatchObject({ reason: 'bad_config' });
      expect(trainer.imported).toHaveLength(0);
      await server.close();
    }
  });

  it('a round with adapter and architecture (this coordinator) trains that spec; one with only lora (an older coordinator) trains LoRA', async () => {
    await start({ lora: undefined, adapter: { method: 'lora', config: { ...LORA } as never }, architecture: 'llama' });
    expect(await client(server).runRound()).toMatchObject({ status: 'uploaded' });
    expect(trainer.requests.at(-1)).toMatchObject({ lora: LORA });
    expect(trainer.imported.at(-1)).toMatchObject({ spec: { method: 'lora', config: LORA }, architecture: 'llama' });
  });

  it('protocol 2 (every method, this coordinator) is taken; a version this client does not speak is refused at register (unsupported_protocol)', async () => {
    const spec = { method: 'p-tuning' as const, config: { numVirtualTokens: 4, encoderHiddenSize: 8, encoderReparameterizationType: 'MLP' } };
    await start({ lora: undefined, adapter: spec, architecture: 'llama' }, { protocol: 2 });
    server.protocol = 2;
    expect(await client(server).runRound()).toMatchObject({ status: 'uploaded' });
    expect(trainer.imported.at(-1)).toMatchObject({ spec, architecture: 'llama' });
    expect(trainer.requests.at(-1)).toMatchObject({ adapter: spec, startFrom: 'current' });
    await server.close();

    await start({}, { protocol: 5 });
    server.protocol = 5;
    const error = await client(server).runRound().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FederatedError);
    expect(error).toMatchObject({ reason: 'unsupported_protocol' });
    expect((error as Error).message).toMatch(/protocol 5; this client speaks 1, 2, 3 and 4/);
    expect(server.requests.filter((r) => r.startsWith('GET /v1/global'))).toHaveLength(0);
    expect(trainer.imported).toHaveLength(1); // the protocol-2 round's only
  });

  it('a network failure on every attempt is a DownloadError', async () => {
    await start();
    const url = server.url;
    await server.close();
    const c = client(server, { url, retry: { attempts: 2, baseDelayMs: 1 } });
    const error = await c.register().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DownloadError);
    expect((error as Error).message).toMatch(/network error.*after 2 attempts/);
    running = undefined;
  });

  it('a coordinator that forgot the token gets one new registration', async () => {
    await start();
    const c = client(server);
    await c.register();
    server.tokens.clear();
    expect(await c.runRound()).toMatchObject({ status: 'uploaded' });
    expect(server.registrations).toBe(2);
  });

  it('validates options', () => {
    const base = { url: 'http://127.0.0.1:1', enrolmentSecret: 's', trainer: trainer.api() };
    expect(() => new FederatedClient({ ...base, url: 'ftp://x' })).toThrowError(/http/);
    expect(() => new FederatedClient({ ...base, compression: { topK: 0 } })).toThrowError(/topK/);
    expect(() => new FederatedClient({ ...base, privacyBudget: { epsilon: 1, delta: 2 } })).toThrowError(/privacyBudget/);
    expect(() => new FederatedClient({ ...base, retry: { attempts: 0 } })).toThrowError(/attempts/);
  });
});

describe('FederatedClient: crash safety', () => {
  it("a payload saved in phase 'encoded' whose answer was lost is re-sent after a reload with the same id and counted once", async () => {
    await start({ dp: { mode: 'local', noiseMultiplier: 1, delta: 1e-5 } });
    const store = new MemoryRoundStore();
    server.loseUploadAnswers = 1;
    const a = client(server, { store, retry: { attempts: 1 } });
    await expect(a.runRound()).rejects.toBeInstanceOf(DownloadError);
    expect(server.count()).toBe(1); // the server has it; the client does not know
    const saved = (await store.get(store.keys()[0]!)) as { round: { phase: string; updateId: string; payload: Uint8Array } };
    expect(saved.round.phase).toBe('encoded');
    expect(saved.round.payload).toEqual(server.received[0]!.bytes);

    // "Reload": a new client on the same store.
    const b = client(server, { store });
    const result = await b.runRound();
    expect(result).toMatchObject({ status: 'uploaded', roundId: 1, resumed: true, duplicate: true, accepted: 1 });
    expect(server.received).toHaveLength(2);
    expect(server.received[1]!.updateId).toBe(server.received[0]!.updateId);
    expect(server.received[1]!.bytes).toEqual(server.received[0]!.bytes);
    expect(server.count()).toBe(1);
    expect(trainer.requests).toHaveLength(1); // no second training
    expect(privacy.addGaussianNoise).toHaveBeenCalledTimes(1); // no second noise draw
    expect(b.privacySpent()).toMatchObject({ rounds: 1 }); // one release
    expect(((await store.get(store.keys()[0]!)) as { round: { phase: string } }).round.phase).toBe('uploaded');
  });

  it("a crash before the upload: the saved payload goes up after the reload (not a duplicate)", async () => {
    await start();
    const store = new MemoryRoundStore();
    const crash: typeof fetch = async (input, init) => {
      if (String(input).includes('/updates')) throw new TypeError('the tab closed');
      return fetch(input, init);
    };
    await expect(client(server, { store, fetch: crash, retry: { attempts: 1 } }).runRound()).rejects.toBeInstanceOf(DownloadError);
    expect(server.count()).toBe(0);
    const result = await client(server, { store }).runRound();
    expect(result).toMatchObject({ status: 'uploaded', resumed: true, duplicate: false, accepted: 1 });
    expect(trainer.requests).toHaveLength(1);
  });

  it("phase 'training' after a reload is abandoned: the round starts fresh", async () => {
    await start();
    const store = new MemoryRoundStore();
    const a = client(server, { store });
    await a.register();
    const key = store.keys()[0]!;
    const record = (await store.get(key)) as Record<string, unknown>;
    await store.set(key, { ...record, round: { phase: 'training', roundId: 1, startedAt: Date.now() - 1000 } });
    const result = await client(server, { store }).runRound();
    expect(result).toMatchObject({ status: 'uploaded', roundId: 1, resumed: false, duplicate: false });
    expect(trainer.requests).toHaveLength(1);
    expect(server.count()).toBe(1);
  });

  it("a saved payload whose round has closed is dropped; the current round is trained", async () => {
    await start();
    const store = new MemoryRoundStore();
    server.faults.push({ prefix: '/v1/rounds/1/updates', status: 503, body: 'down', times: 1 });
    await expect(client(server, { store, retry: { attempts: 1 } }).runRound()).rejects.toBeInstanceOf(DownloadError);
    server.nextRound();
    const result = await client(server, { store }).runRound();
    expect(result).toMatchObject({ status: 'uploaded', roundId: 2, resumed: false });
    expect(server.count(1)).toBe(0);
    expect(server.count(2)).toBe(1);
    expect(trainer.requests).toHaveLength(2);
  });

  it('a training run the app stopped is not uploaded', async () => {
    await start();
    trainer.stop = 'cancelled';
    expect(await client(server).runRound()).toMatchObject({ status: 'skipped', reason: 'training_stopped' });
    expect(server.count()).toBe(0);
  });
});

describe('FederatedClient against the reference coordinator', () => {
  async function coordinator(round: Partial<RoundConfig>, config: Record<string, unknown> = {}) {
    const dir = mkdtempSync(join(tmpdir(), 'webtune-fed-'));
    const handle = await startCoordinator({
      db: join(dir, 'state.sqlite'), enrolmentSecret: 'secret', initialAdapter: initialAdapter(),
      adapterConfig: JSON.stringify(peftAdapterConfig({ architecture: 'llama' } as ModelConfig, LORA)),
      config: { minClients: 1, maxClients: 2, round: { steps: 3, batchSize: 2, ...round }, ...config }, log: () => {},
    });
    return {
      handle, dir,
      close: async () => {
        await handle.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }

  it('a central-DP round: uploaded, norm within S, aggregated into version 1; a lost answer is re-sent once after a reload', async () => {
    const c = await coordinator({ clipNorm: 0.25, dp: { mode: 'central', noiseMultiplier: 0.5, delta: 1e-5 } });
    try {
      const bodies: Uint8Array[] = [];
      let lose = 1;
      const spy: typeof fetch = async (input, init) => {
        const url = String(input);
        if (url.includes('/updates')) bodies.push(new Uint8Array(init!.body as Uint8Array));
        const res = await fetch(input, init);
        if (url.includes('/updates') && lose-- > 0) throw new TypeError('connection reset'); // the answer is lost
        return res;
      };
      const store = new MemoryRoundStore();
      const a = new FederatedClient({ url: c.handle.url, enrolmentSecret: 'secret', trainer: trainer.api(), store, fetch: spy, retry: { attempts: 1 } });
      await expect(a.runRound()).rejects.toBeInstanceOf(DownloadError);
      // Reload: the same bytes and id go up again; the coordinator says duplicate and counts one.
      const b = new FederatedClient({ url: c.handle.url, enrolmentSecret: 'secret', trainer: trainer.api(), store, fetch: spy });
      const result = await b.runRound();
      expect(result).toMatchObject({ status: 'uploaded', roundId: 1, resumed: true, duplicate: true, accepted: 1 });
      expect(bodies).toHaveLength(2);
      expect(bodies[1]).toEqual(bodies[0]);
      const shapes = new Map([...initialAdapter()].map(([k, t]) => [k, t.shape] as const));
      expect(globalNorm(decodeUpdate(bodies[0]!, shapes).tensors.values())).toBeLessThanOrEqual(0.25 * (1 + 1e-6));
      expect(result.epsilon).toBeUndefined();
      expect(b.privacySpent()).toMatchObject({ epsilon: 0, rounds: 0, centralRounds: 1 });

      // A second client fills the round (maxClients 2): it is aggregated into version 1 and round 2 opens.
      const second = new FederatedClient({ url: c.handle.url, enrolmentSecret: 'secret', trainer: new TrainerDouble().api(), store: new MemoryRoundStore(), name: 'two' });
      expect(await second.runRound()).toMatchObject({ status: 'uploaded', roundId: 1, accepted: 2 });
      const next = await b.runRound();
      expect(next).toMatchObject({ status: 'uploaded', roundId: 2 });
      expect(trainer.imported.at(-1)!.weights).not.toEqual(toBytes(initialAdapter())); // trained from version 1
    } finally {
      await c.close();
    }
  });

  it('local DP with q8: accepted, and a rejected upload surfaces the coordinator error', async () => {
    const c = await coordinator({ clipNorm: 0.5, dp: { mode: 'local', noiseMultiplier: 1.1, delta: 1e-5 } }, { sampleRate: 1 });
    try {
      const client = new FederatedClient({
        url: c.handle.url, enrolmentSecret: 'secret', trainer: trainer.api(), store: new MemoryRoundStore(), compression: { encoding: 'q8' },
      });
      const result = await client.runRound();
      expect(result).toMatchObject({ status: 'uploaded', roundId: 1 });
      expect(result.denseBytes! / result.uploadBytes!).toBeGreaterThan(3.5);
      expect(result.epsilon).toBeCloseTo(computeDpEpsilon({ noiseMultiplier: 1.1, sampleRate: 1, steps: 1, delta: 1e-5 }).epsilon, 9);
      // A malformed upload (another client's id scheme) is refused with the coordinator's code.
      const bad = new FederatedClient({
        url: c.handle.url, enrolmentSecret: 'secret', trainer: new TrainerDouble().api(), store: new MemoryRoundStore(), name: 'bad',
        fetch: async (input, init) => {
          if (String(input).includes('/updates')) init = { ...init, headers: { ...(init!.headers as Record<string, string>), 'X-Example-Count': '0' } };
          return fetch(input, init);
        },
      });
      const error = await bad.runRound().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(FederatedError);
      expect(error).toMatchObject({ reason: 'bad_request', status: 400 });
      expect((error as Error).message).toMatch(/X-Example-Count must be a positive integer/);
    } finally {
      await c.close();
    }
  });
});
