/**
 * The cost of secure aggregation (SecAgg+, protocol 4) against a plain round, in Node on loopback:
 * n = 10, 50 and 100 simulated FederatedClients in this one process against the real coordinator
 * (startCoordinator, SQLite in a temp dir), on a SmolLM2-135M-shape rank-8 LoRA adapter (q_proj and
 * v_proj of 30 layers, 460,800 values). Trainer doubles stand in for training: training costs the
 * same with or without secure aggregation, so it is left out of both sides.
 *
 * Measured per row:
 *   - per client and stage: bytes sent and received and wall milliseconds (RoundResult.secureAggregation.stages:
 *     from the stage's start to the client's message, waiting for the others included), medians over clients;
 *   - per client and stage, the client's OWN compute: the participant steps timed directly for one client at
 *     the same (n, k), nothing else running (createParticipant; shareKeys; receiveShares + quantize + maskInput;
 *     unmask), with the bytes of the stage's messages and of one status answer (the least a stage moves);
 *   - the coordinator's unmasking time (its "masks removed from the sum of N inputs in X ms" log line) and
 *     the round's wall time (every client's runRound() from the first call to the last answer);
 *   - a plain round (no secureAggregation, dense f32 upload) with the same n and adapter: bytes per client,
 *     the client's encode time and the round's wall time; secure / plain ratios.
 * Rows: classic SecAgg (neighbours 'all') and SecAgg+ (k = 2 ceil(log2 n)) for each n, and at n = 50 one
 * client offline before unmask (its masked input is in the sum) and one client that drops after share-keys
 * (its pairwise masks must be rebuilt by the coordinator: the recovery SecAgg+ exists for).
 *
 * Written to bench/results/secagg.{json,md} by `BENCH_ONLY=secagg npm run bench` (scripts/bench.mjs);
 * BENCH_SECAGG_N=10,50 limits the n, BENCH_SECAGG_POLL_MS sets the clients' poll interval.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import {
  decodeUpdate, encodeUpdate, FederatedClient, globalNorm, MemoryRoundStore, neighboursOf, quantize, quantizationStep, resolveNeighbours, resolveThreshold, toBase64, unmaskSum,
  type RoundResult, type SecAggStage, type SecAggStatus,
} from '@webtune/federated';
import { parseSafetensors, serializeSafetensors, tensorToFloat32, type AdapterSpec, type HostTensor } from '@webtune/model';
import type { TrainerApi } from '@webtune/sdk';
import { startCoordinator, type CoordinatorConfig } from '../packages/coordinator/src/index.js';
import { advertiseRequest, createParticipant, maskInput, receiveShares, shareKeys, unmask, type ParticipantState } from '../packages/federated/src/secagg/participant.js';
import { shareSecret } from '../packages/federated/src/secagg/shamir.js';

const SECRET = 'bench-secagg';
const STAGES = ['advertise-keys', 'share-keys', 'masked-input', 'unmask'] as const satisfies readonly SecAggStage[];
/** The stages a client sends a message in (RoundResult.secureAggregation.stages). */
type ClientStage = (typeof STAGES)[number];
const CLIPPING_RANGE = 8;
const QUANTIZATION_RANGE = 2 ** 22;

// ---------------------------------------------------------------------------------------------
// The adapter: SmolLM2-135M shape, LoRA r8 on q_proj and v_proj of 30 layers.
// ---------------------------------------------------------------------------------------------

const LAYERS = 30;
const RANK = 8;
const HIDDEN = 576;
const KV_OUT = 192; // 3 KV heads of 64

function smolAdapter(): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  let s = 12345;
  const r = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5) * 0.04;
  for (let i = 0; i < LAYERS; i++) {
    for (const [m, outFeatures] of [['q_proj', HIDDEN], ['v_proj', KV_OUT]] as const) {
      const base = `base_model.model.model.layers.${i}.self_attn.${m}`;
      out.set(`${base}.lora_A.weight`, { shape: [RANK, HIDDEN], data: Float32Array.from({ length: RANK * HIDDEN }, r) });
      out.set(`${base}.lora_B.weight`, { shape: [outFeatures, RANK], data: Float32Array.from({ length: outFeatures * RANK }, r) });
    }
  }
  return out;
}

const ADAPTER = smolAdapter();
const VALUES = [...ADAPTER.values()].reduce((n, t) => n + t.data.length, 0);

/** Client c's change to value i: small (the update's norm is about 0.5, under S = 1) and different per client. */
const moveOf = (c: number, i: number) => 1e-3 * Math.sin(0.37 * i + c);

const toBytes = (tensors: ReadonlyMap<string, HostTensor>) =>
  serializeSafetensors([...tensors].map(([name, t]) => ({ name, dtype: 'F32' as const, shape: t.shape, data: t.data })), { format: 'pt' });

/** A trainer double: import the global, "train" by adding moveOf(c, i), export. `fail` drops the client after share-keys. */
function trainerDouble(c: number, fail: () => boolean): TrainerApi {
  let adapter: Map<string, HostTensor> | undefined;
  let spec: AdapterSpec | undefined;
  const api: Partial<TrainerApi> = {
    importAdapterState: async (state) => {
      spec = state.spec;
      adapter = new Map([...parseSafetensors(state.weights).tensors].map(([k, t]) => [k, { data: tensorToFloat32(t), shape: [...t.shape] }]));
    },
    train: async (request) => {
      if (fail()) throw new Error('the tab was closed (bench: a dropout after share-keys)');
      for (const t of adapter!.values()) for (let i = 0; i < t.data.length; i++) t.data[i] = t.data[i]! + moveOf(c, i);
      return { runId: request.runId ?? 'run', stopped: 'completed', step: request.steps, totalSteps: request.steps } as never;
    },
    exportAdapterState: async () => ({ spec: spec!, architecture: 'llama', weights: toBytes(adapter!) }),
    listCheckpoints: async () => [],
    deleteCheckpoint: async () => {},
  };
  return api as TrainerApi;
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const median = (xs: number[]) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const max = (xs: number[]) => xs.reduce((a, b) => Math.max(a, b), -Infinity);

/**
 * Per-client byte counts over a fetch: request bodies and response Content-Length (the coordinator
 * always sets it), and the size of the first secure-round status answer seen in each stage.
 */
interface Counter { sent: number; received: number; status: Partial<Record<string, number>> }
function countingFetch(counter: Counter, refuse?: (path: string) => boolean): typeof fetch {
  return async (input, init) => {
    const path = new URL(String(input)).pathname;
    if (refuse?.(path)) throw new TypeError('fetch failed (bench: this device went offline)');
    const body = init?.body;
    counter.sent += body instanceof Uint8Array ? body.byteLength : typeof body === 'string' ? Buffer.byteLength(body) : 0;
    const res = await fetch(input, init);
    const bytes = Number(res.headers.get('content-length') ?? 0);
    counter.received += bytes;
    if ((init?.method ?? 'GET') === 'GET' && path.endsWith('/secagg') && res.ok) {
      const stage = (JSON.parse(await res.clone().text()) as SecAggStatus).stage;
      counter.status[stage] ??= bytes;
    }
    return res;
  };
}

// ---------------------------------------------------------------------------------------------
// The coordinator, in a worker thread of this process (one per round): its work runs beside the
// clients' instead of on their thread, and every round starts from a fresh coordinator (module
// state included: shamir.ts caches Lagrange coefficients across rounds).
// ---------------------------------------------------------------------------------------------

interface CoordinatorWorkerData { role: 'secagg-coordinator'; db: string; config: Partial<CoordinatorConfig> }

interface WorkerCoordinator {
  url: string;
  logs: string[];
  idle(): Promise<void>;
  close(): Promise<void>;
}

function startCoordinatorWorker(db: string, config: Partial<CoordinatorConfig>): Promise<WorkerCoordinator> {
  const data: CoordinatorWorkerData = { role: 'secagg-coordinator', db, config };
  const worker = new Worker(fileURLToPath(import.meta.url), { workerData: data });
  const logs: string[] = [];
  const waiting = new Map<number, () => void>();
  let seq = 0;
  const ask = (type: 'idle' | 'close') => new Promise<void>((resolve) => {
    const id = ++seq;
    waiting.set(id, resolve);
    worker.postMessage({ type, id });
  });
  return new Promise((resolve, reject) => {
    worker.once('error', reject);
    worker.on('message', (m: { type: 'log'; line: string } | { type: 'ready'; url: string } | { type: 'done'; id: number }) => {
      if (m.type === 'log') logs.push(m.line);
      else if (m.type === 'done') waiting.get(m.id)?.();
      else resolve({ url: m.url, logs, idle: () => ask('idle'), close: async () => { await ask('close'); await worker.terminate(); } });
    });
  });
}

async function coordinatorWorkerMain(data: CoordinatorWorkerData): Promise<void> {
  const port = parentPort!;
  const handle = await startCoordinator({
    db: data.db, initialAdapter: ADAPTER, enrolmentSecret: SECRET, tickMs: 50, limits: LIMITS, config: data.config,
    log: (line) => port.postMessage({ type: 'log', line }),
  });
  port.on('message', async (m: { type: 'idle' | 'close'; id: number }) => {
    if (m.type === 'idle') await handle.idle();
    else await handle.close();
    port.postMessage({ type: 'done', id: m.id });
  });
  port.postMessage({ type: 'ready', url: handle.url });
}

const POLL_MS = Number(process.env.BENCH_SECAGG_POLL_MS ?? 200);
const LIMITS = { registerPerMinute: 100_000, registerBurst: 100_000, maxConcurrentUploads: 1024, maxConnections: 4096 };

interface RoundSetup {
  n: number;
  /** undefined: a plain round. */
  neighbours?: number | 'all';
  /** A client (1-based) whose training fails: it drops after share-keys. */
  dropAfterShares?: number;
  /** A client (1-based) that goes offline before unmask (its masked input is in the sum). */
  offlineBeforeUnmask?: number;
  stageTimeoutMs?: number;
  roundDurationMs?: number;
}

interface RoundRun {
  roundMs: number;
  unmaskMs?: number;
  k?: number;
  t?: number;
  survivors?: number;
  /** Medians over the clients that finished the round. */
  sentBytes: number;
  receivedBytes: number;
  uploadBytes: number;
  /** statusBytes: the first status answer a client read in the stage (median over clients). */
  stages?: Record<string, { sentBytes: number; receivedBytes: number; ms: number; maxMs: number; statusBytes: number }>;
}

/** One round with n clients on a fresh coordinator; all clients register first (not timed). */
async function runRound(setup: RoundSetup): Promise<RoundRun> {
  const { n } = setup;
  const dir = mkdtempSync(join(os.tmpdir(), 'webtune-bench-secagg-'));
  const secure = setup.neighbours !== undefined;
  const handle = await startCoordinatorWorker(join(dir, 'c.sqlite'), {
    minClients: Math.min(n, 3), maxClients: n, roundDurationMs: setup.roundDurationMs ?? 600_000, maxRounds: 1,
    round: {
      steps: 1, batchSize: 1, clipNorm: 1,
      ...(secure ? { secureAggregation: { neighbours: setup.neighbours!, stageTimeoutMs: setup.stageTimeoutMs ?? 600_000, clippingRange: CLIPPING_RANGE, quantizationRange: QUANTIZATION_RANGE } } : {}),
    },
  });
  const logs = handle.logs;
  try {
    const counters: Counter[] = Array.from({ length: n }, () => ({ sent: 0, received: 0, status: {} }));
    const clients = counters.map((counter, i) => {
      const c = i + 1;
      return new FederatedClient({
        url: handle.url, enrolmentSecret: SECRET, trainer: trainerDouble(c, () => c === setup.dropAfterShares), store: new MemoryRoundStore(),
        fetch: countingFetch(counter, (path) => c === setup.offlineBeforeUnmask && path.endsWith('/secagg/unmask')),
        name: `c${c}`, retry: { attempts: 1 }, secureAggregation: { pollIntervalMs: POLL_MS },
      });
    });
    for (const client of clients) await client.register();
    for (const counter of counters) Object.assign(counter, { sent: 0, received: 0, status: {} });
    const t0 = performance.now();
    const results = await Promise.allSettled(clients.map((client) => client.runRound()));
    const roundMs = performance.now() - t0;
    await handle.idle();
    const dropped = new Set([setup.dropAfterShares, setup.offlineBeforeUnmask].filter((c): c is number => c !== undefined));
    const done: { c: number; r: RoundResult }[] = [];
    for (const [i, r] of results.entries()) {
      const c = i + 1;
      if (dropped.has(c)) {
        if (r.status !== 'rejected') throw new Error(`client ${c} was to drop out, but its round ended ${JSON.stringify((r as PromiseFulfilledResult<RoundResult>).value)}`);
        continue;
      }
      if (r.status === 'rejected') throw new Error(`client ${c} failed: ${(r.reason as Error)?.stack ?? String(r.reason)}\n${logs.join('\n')}`);
      if (r.value.status !== 'uploaded') throw new Error(`client ${c}: ${JSON.stringify(r.value)}`);
      done.push({ c, r: r.value });
    }
    // The round must have published the mean of the survivors' updates (within the quantization step, secure or not).
    const error = await publishedError(handle.url, done.map(({ c }) => c).concat(setup.offlineBeforeUnmask !== undefined ? [setup.offlineBeforeUnmask] : []));
    const step = quantizationStep(CLIPPING_RANGE, QUANTIZATION_RANGE);
    if (!(error <= step + 1e-6)) throw new Error(`the published version 1 is ${error} from the survivors' mean (allowed ${step + 1e-6})`);
    const out: RoundRun = {
      roundMs,
      sentBytes: median(done.map(({ c }) => counters[c - 1]!.sent)),
      receivedBytes: median(done.map(({ c }) => counters[c - 1]!.received)),
      uploadBytes: median(done.map(({ r }) => r.uploadBytes!)),
    };
    if (secure) {
      const line = logs.map((l) => /masks removed from the sum of (\d+) inputs in (\d+) ms/.exec(l)).find(Boolean);
      if (!line) throw new Error(`no unmasking line in the coordinator's log:\n${logs.join('\n')}`);
      const report = done[0]!.r.secureAggregation!;
      const expectedSurvivors = n - (setup.dropAfterShares !== undefined ? 1 : 0);
      if (report.survivors !== expectedSurvivors || Number(line[1]) !== expectedSurvivors) throw new Error(`expected ${expectedSurvivors} inputs in the sum, the round reports ${report.survivors}, the log ${line[1]}`);
      Object.assign(out, { unmaskMs: Number(line[2]), k: report.neighbours, t: report.threshold, survivors: report.survivors });
      out.stages = Object.fromEntries(STAGES.map((stage) => {
        const per = done.map(({ r }) => r.secureAggregation!.stages[stage]!);
        return [stage, {
          sentBytes: median(per.map((p) => p.sentBytes)), receivedBytes: median(per.map((p) => p.receivedBytes)), ms: median(per.map((p) => p.ms)), maxMs: max(per.map((p) => p.ms)),
          statusBytes: median(done.map(({ c }) => counters[c - 1]!.status[stage] ?? NaN)),
        }];
      }));
    } else if (!logs.some((l) => /round 1: \d+ updates aggregated/.test(l))) {
      throw new Error(`the plain round did not aggregate:\n${logs.join('\n')}`);
    }
    return out;
  } finally {
    await handle.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The largest difference between the coordinator's version 1 and global + the mean of the survivors' deltas (as the clients form them, in f32). */
async function publishedError(url: string, survivors: number[]): Promise<number> {
  const reg = await fetch(`${url}/v1/register`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ enrolmentSecret: SECRET, name: 'observer' }) });
  const { token } = (await reg.json()) as { token: string };
  const res = await fetch(`${url}/v1/global/1`, { headers: { Authorization: `Bearer ${token}` } });
  if (!res.ok) throw new Error(`GET /v1/global/1 answered ${res.status}: ${await res.text()}`);
  const published = parseSafetensors(new Uint8Array(await res.arrayBuffer())).tensors;
  // mean over c of 1e-3 sin(0.37 i + c) = 1e-3 (sin(0.37 i) mean cos c + cos(0.37 i) mean sin c); the f32 rounding of each
  // client's delta (below 1e-8 here) is left out, far under the tolerance.
  const meanCos = survivors.reduce((a, c) => a + Math.cos(c), 0) / survivors.length;
  const meanSin = survivors.reduce((a, c) => a + Math.sin(c), 0) / survivors.length;
  let worst = 0;
  for (const [key, g] of ADAPTER) {
    const got = tensorToFloat32(published.get(key)!);
    for (let i = 0; i < g.data.length; i++) {
      const mean = 1e-3 * (Math.sin(0.37 * i) * meanCos + Math.cos(0.37 * i) * meanSin);
      worst = Math.max(worst, Math.abs(got[i]! - (g.data[i]! + mean)));
    }
  }
  return worst;
}

/** The update a client of this bench sends (client 1's clipped delta, flattened in ascending key order as the client does). */
function clientDelta(): { delta: Map<string, HostTensor>; flat: Float32Array } {
  const delta = new Map<string, HostTensor>();
  for (const [k, t] of ADAPTER) delta.set(k, { shape: t.shape, data: Float32Array.from(t.data, (_, i) => Math.fround(Math.fround(t.data[i]! + moveOf(1, i)) - t.data[i]!)) });
  const flat = new Float32Array(VALUES);
  let at = 0;
  for (const k of [...delta.keys()].sort()) {
    flat.set(delta.get(k)!.data, at);
    at += delta.get(k)!.data.length;
  }
  return { delta, flat };
}

interface OwnCompute {
  /** Median ms per stage of client 1's own steps. */
  ms: Record<ClientStage, number>;
  /** masked-input split: receiveShares, quantize, maskInput. */
  maskedParts: { receiveShares: number; quantize: number; maskInput: number };
  repeats: number;
}

/**
 * Client 1's participant steps at (n, k), timed alone: its neighbours' states and the shares they
 * address to it are made first (untimed), then each step runs `repeats` times on the same inputs.
 */
async function ownCompute(n: number, k: number, repeats: number): Promise<OwnCompute> {
  const roundId = 1;
  const t = resolveThreshold(k, undefined);
  const minSurvivors = Math.max(t, Math.min(n, 3));
  const me = 1;
  const around = neighboursOf(me, n, k);
  // Only client 1 and its neighbours need states (each neighbour's shareKeys needs its own neighbours' keys: all n).
  const states: ParticipantState[] = [];
  for (let i = 0; i < n; i++) states.push(await createParticipant(roundId, 'P-256'));
  const peersOf = (i: number) => neighboursOf(i, n, k).map((j) => ({ index: j, encryptionKey: toBase64(states[j - 1]!.encryption.publicKey), maskKey: toBase64(states[j - 1]!.mask.publicKey) }));
  const statusOf = (i: number, stage: SecAggStage, extra: Partial<SecAggStatus> = {}): SecAggStatus => ({
    roundId, stage, stageDeadline: Date.now() + 60_000, you: { advertised: true, shared: stage !== 'share-keys', masked: stage === 'unmask', unmasked: false },
    participants: n, neighbours: k, threshold: t, minSurvivors, index: i, peers: peersOf(i), ...extra,
  });
  const inbox: { from: number; ciphertext: string }[] = [];
  for (const j of around) {
    const r = await shareKeys(states[j - 1]!, statusOf(j, 'share-keys'));
    inbox.push({ from: j, ciphertext: r.request.shares.find((s) => s.to === me)!.ciphertext });
  }
  const { flat } = clientDelta();
  const share = statusOf(me, 'share-keys');
  const masked = statusOf(me, 'masked-input', { inbox });
  const unmaskStatus = statusOf(me, 'unmask', { survivors: around, dropped: [], survivorCount: n });
  const times = { advertise: [] as number[], share: [] as number[], receive: [] as number[], quantize: [] as number[], mask: [] as number[], unmask: [] as number[] };
  // One warm-up run (not counted), then `repeats` timed runs.
  for (let r = -1; r < repeats; r++) {
    if (r === 0) for (const list of Object.values(times)) list.length = 0;
    let t0 = performance.now();
    advertiseRequest(await createParticipant(roundId, 'P-256'));
    times.advertise.push(performance.now() - t0);
    t0 = performance.now();
    const shared = await shareKeys(states[0]!, share);
    JSON.stringify(shared.request);
    times.share.push(performance.now() - t0);
    t0 = performance.now();
    const received = await receiveShares(shared.state, masked);
    times.receive.push(performance.now() - t0);
    t0 = performance.now();
    const { quantized } = quantize(flat, CLIPPING_RANGE, QUANTIZATION_RANGE);
    times.quantize.push(performance.now() - t0);
    t0 = performance.now();
    await maskInput(received, quantized, 0);
    times.mask.push(performance.now() - t0);
    t0 = performance.now();
    JSON.stringify(unmask(received, unmaskStatus).request);
    times.unmask.push(performance.now() - t0);
  }
  const receiveShares_ = median(times.receive);
  const quantize_ = median(times.quantize);
  const maskInput_ = median(times.mask);
  return {
    ms: {
      'advertise-keys': median(times.advertise), 'share-keys': median(times.share),
      'masked-input': median(times.receive.map((v, i) => v + times.quantize[i]! + times.mask[i]!)), unmask: median(times.unmask),
    },
    maskedParts: { receiveShares: receiveShares_, quantize: quantize_, maskInput: maskInput_ },
    repeats,
  };
}

/**
 * The coordinator's unmasking alone (unmaskSum, as its unmask job calls it) at (n, k), nothing else
 * running: every survivor's self-mask seed rebuilt from t shares and its mask removed; with
 * `dropped`, client 2 sent no masked input, so its mask key is rebuilt from t shares and one
 * pairwise mask per surviving neighbour is regenerated. Median of `repeats` runs.
 */
async function coordinatorAlone(n: number, k: number, dropped: boolean, repeats: number): Promise<number> {
  const roundId = 1;
  const t = resolveThreshold(k, undefined);
  const states: ParticipantState[] = [];
  for (let i = 0; i < n; i++) states.push(await createParticipant(roundId, 'P-256'));
  const d = dropped ? 2 : undefined;
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) {
    // The coordinator reads each secret's shares in its holders' index order. Each run relabels the
    // share points (a random permutation of 1..n), so shamir.ts' Lagrange cache starts cold as in a
    // fresh coordinator: in classic SecAgg every seed then has the same first t holders (one set of
    // coefficients), in SecAgg+ each neighbourhood its own.
    const label = Array.from({ length: n }, (_, i) => i + 1);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [label[i], label[j]] = [label[j]!, label[i]!];
    }
    const at = (holders: number[]) => holders.map((j) => label[j - 1]!).sort((a, b) => a - b);
    const input = {
      curve: 'P-256' as const, roundId, threshold: t, maskedSum: new Uint32Array(VALUES),
      survivors: states.map((_, i) => i + 1).filter((i) => i !== d).map((i) => ({
        index: i, seedShares: shareSecret(states[i - 1]!.seed, t, at([i, ...neighboursOf(i, n, k)].filter((j) => j !== d))),
      })),
      dropped: d === undefined ? [] : [{
        index: d, maskKey: states[d - 1]!.mask.publicKey, keyShares: shareSecret(states[d - 1]!.mask.privateKey, t, at(neighboursOf(d, n, k))),
        survivingNeighbours: neighboursOf(d, n, k).map((j) => ({ index: j, maskKey: states[j - 1]!.mask.publicKey })),
      }],
    };
    const t0 = performance.now();
    await unmaskSum(input);
    times.push(performance.now() - t0);
  }
  return median(times);
}

/** The plain client's own work on the same update: f32 encode and the decode that checks the norm (FederatedClient.encode). */
function plainEncode(repeats: number): { ms: number; bytes: number } {
  const { delta } = clientDelta();
  const expected = new Map([...delta].map(([k, t]) => [k, t.shape] as const));
  const times: number[] = [];
  let bytes = 0;
  for (let r = -1; r < repeats; r++) {
    const t0 = performance.now();
    const payload = encodeUpdate(delta, { encoding: 'f32', topK: 1, baseVersion: 0 });
    globalNorm(decodeUpdate(payload, expected).tensors.values());
    if (r >= 0) times.push(performance.now() - t0); // the first run warms up
    bytes = payload.byteLength;
  }
  return { ms: median(times), bytes };
}

// ---------------------------------------------------------------------------------------------
// The rows
// ---------------------------------------------------------------------------------------------

export interface SecAggRow {
  n: number;
  mode: 'plain' | 'classic SecAgg' | 'SecAgg+';
  /** What happened besides a full round. */
  dropout?: 'offline before unmask' | 'dropped after share-keys';
  k?: number;
  t?: number;
  survivors?: number;
  repeats: number;
  /** Medians over repeats of the per-round values (each a median over clients). */
  roundMs: number;
  roundMsAll: number[];
  /** The coordinator's log line: unmaskSum's wall time inside the running coordinator. */
  unmaskMs?: number;
  unmaskMsAll?: number[];
  /** unmaskSum at the same (n, k, dropout) with nothing else running. */
  unmaskAloneMs?: number;
  sentBytes: number;
  receivedBytes: number;
  uploadBytes: number;
  stages?: Record<string, { sentBytes: number; receivedBytes: number; ms: number; maxMs: number; ownMs: number; statusBytes: number }>;
  own?: Omit<OwnCompute, 'ms'> & { totalMs: number };
  stageTimeoutMs?: number;
  roundDurationMs?: number;
}

export interface SecAggBench {
  command: string;
  machine: { node: string; cpu: string; cores: number; memoryGiB: number; platform: string; loadAverage: number[] };
  adapter: { description: string; tensors: number; values: number };
  pollIntervalMs: number;
  /** The plain client's own work on its update (f32 encode + the decode that checks the norm), independent of n. */
  plainEncode: { ms: number; bytes: number; repeats: number };
  rows: SecAggRow[];
  totalSeconds: number;
}

async function repeatRound(setup: RoundSetup, repeats: number, log: (line: string) => void): Promise<RoundRun[]> {
  const runs: RoundRun[] = [];
  for (let r = 0; r < repeats; r++) {
    const run = await runRound(setup);
    runs.push(run);
    log(`  n=${setup.n} ${setup.neighbours === undefined ? 'plain' : `k=${run.k}`}${setup.dropAfterShares ? ' drop-after-shares' : ''}${setup.offlineBeforeUnmask ? ' offline-before-unmask' : ''}: round ${run.roundMs.toFixed(0)} ms${run.unmaskMs !== undefined ? `, unmask ${run.unmaskMs} ms` : ''}, sent ${run.sentBytes} B, received ${run.receivedBytes} B`);
  }
  return runs;
}

function rowOf(n: number, mode: SecAggRow['mode'], runs: RoundRun[], own?: OwnCompute, extra: Partial<SecAggRow> = {}): SecAggRow {
  const row: SecAggRow = {
    n, mode, repeats: runs.length,
    roundMs: median(runs.map((r) => r.roundMs)), roundMsAll: runs.map((r) => Math.round(r.roundMs)),
    sentBytes: median(runs.map((r) => r.sentBytes)), receivedBytes: median(runs.map((r) => r.receivedBytes)), uploadBytes: median(runs.map((r) => r.uploadBytes)),
    ...extra,
  };
  if (runs[0]!.stages) {
    Object.assign(row, { k: runs[0]!.k, t: runs[0]!.t, survivors: runs[0]!.survivors, unmaskMs: median(runs.map((r) => r.unmaskMs!)), unmaskMsAll: runs.map((r) => r.unmaskMs!) });
    row.stages = Object.fromEntries(STAGES.map((s) => [s, {
      sentBytes: median(runs.map((r) => r.stages![s]!.sentBytes)), receivedBytes: median(runs.map((r) => r.stages![s]!.receivedBytes)),
      ms: median(runs.map((r) => r.stages![s]!.ms)), maxMs: median(runs.map((r) => r.stages![s]!.maxMs)),
      ownMs: own!.ms[s], statusBytes: median(runs.map((r) => r.stages![s]!.statusBytes)),
    }]));
    row.own = { maskedParts: own!.maskedParts, repeats: own!.repeats, totalMs: STAGES.reduce((a, s) => a + own!.ms[s], 0) };
  }
  return row;
}

/** SecAgg+'s k for n: 2 ceil(log2 n), even and below n - 1 (resolveNeighbours would raise an odd k). */
export const secAggPlusK = (n: number) => Math.min(2 * Math.ceil(Math.log2(n)), n % 2 === 0 ? n - 2 : n - 3);

export async function runSecAggBench(log: (line: string) => void): Promise<SecAggBench> {
  const started = performance.now();
  const ns = (process.env.BENCH_SECAGG_N ?? '10,50,100').split(',').map(Number);
  const cpus = os.cpus();
  const machine = {
    node: process.version, cpu: cpus[0]?.model.trim() ?? 'unknown', cores: cpus.length, memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    platform: `${os.type()} ${os.release()} ${os.arch()}`, loadAverage: os.loadavg().map((v) => Math.round(v * 100) / 100),
  };
  log(`secagg bench: ${machine.cpu} x ${machine.cores}, node ${machine.node}, load ${machine.loadAverage.join(' ')}; adapter ${ADAPTER.size} tensors, ${VALUES} values; poll ${POLL_MS} ms`);
  /** Repeats per round row (a round of 100 clients with classic SecAgg takes the longest: one). */
  const repeatsFor = (n: number, mode: SecAggRow['mode']) => (n <= 10 ? 5 : n <= 50 ? 3 : mode === 'classic SecAgg' ? 1 : 3);
  const ownRepeats = (n: number, k: number) => (k >= 90 ? 3 : 5);
  const rows: SecAggRow[] = [];
  const owns = new Map<string, { own: OwnCompute; unmaskAlone: number }>();
  const plainEncoded = { ...plainEncode(9), repeats: 9 };
  for (const n of ns) {
    log(`n=${n} plain`);
    rows.push(rowOf(n, 'plain', await repeatRound({ n }, repeatsFor(n, 'plain'), log)));
    for (const [mode, neighbours] of [['SecAgg+', secAggPlusK(n)], ['classic SecAgg', 'all']] as const) {
      const k = resolveNeighbours(neighbours, n);
      const own = await ownCompute(n, k, ownRepeats(n, k));
      const unmaskAlone = await coordinatorAlone(n, k, false, k >= 90 ? 1 : 3);
      log(`n=${n} ${mode} k=${k}: own compute ${STAGES.map((s) => `${s} ${own.ms[s].toFixed(1)}`).join(', ')} ms; coordinator unmasking alone ${unmaskAlone.toFixed(0)} ms`);
      rows.push(rowOf(n, mode, await repeatRound({ n, neighbours }, repeatsFor(n, mode), log), own, { unmaskAloneMs: unmaskAlone }));
      owns.set(`${n}/${k}`, { own, unmaskAlone });
    }
    if (n === 50) {
      const k = secAggPlusK(n);
      const stageTimeoutMs = 5_000;
      const roundDurationMs = 15_000;
      // A survivor's own steps are those of the full round (measured there): the same messages, and in unmask
      // a key share instead of a seed share for a dropped neighbour, the same size.
      const full = owns.get(`${n}/${k}`)!;
      log(`n=${n} SecAgg+ k=${k}, one client offline before unmask (unmask stage deadline ${stageTimeoutMs} ms)`);
      rows.push(rowOf(n, 'SecAgg+', await repeatRound({ n, neighbours: k, offlineBeforeUnmask: 17, stageTimeoutMs }, 3, log), full.own, { dropout: 'offline before unmask', stageTimeoutMs, unmaskAloneMs: full.unmaskAlone }));
      const unmaskAlone = await coordinatorAlone(n, k, true, 3);
      log(`n=${n} SecAgg+ k=${k}, one client dropped after share-keys (masked-input deadline ${roundDurationMs} ms); coordinator unmasking alone ${unmaskAlone.toFixed(0)} ms`);
      rows.push(rowOf(n, 'SecAgg+', await repeatRound({ n, neighbours: k, dropAfterShares: 17, stageTimeoutMs: 60_000, roundDurationMs }, 3, log), full.own, { dropout: 'dropped after share-keys', roundDurationMs, unmaskAloneMs: unmaskAlone }));
    }
  }
  return {
    command: 'BENCH_ONLY=secagg npm run bench',
    machine,
    adapter: { description: `SmolLM2-135M shape, LoRA r${RANK} on q_proj and v_proj of ${LAYERS} layers (lora_A [8, 576]; lora_B [576, 8] for q, [192, 8] for v)`, tensors: ADAPTER.size, values: VALUES },
    pollIntervalMs: POLL_MS,
    plainEncode: plainEncoded,
    rows,
    totalSeconds: Math.round((performance.now() - started) / 1000),
  };
}

// ---------------------------------------------------------------------------------------------
// Markdown
// ---------------------------------------------------------------------------------------------

const kb = (b: number) => (b >= 10 * 1024 * 1024 ? `${(b / 2 ** 20).toFixed(1)} MiB` : b >= 10 * 1024 ? `${(b / 1024).toFixed(1)} KiB` : `${Math.round(b)} B`);
const ms = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
const x = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
const label = (r: SecAggRow) => (r.mode === 'plain' ? 'plain (f32)' : `${r.mode}, k = ${r.k}, t = ${r.t}${r.dropout ? `, 1 ${r.dropout}` : ''}`);

export function secAggMarkdown(b: SecAggBench): string {
  const plainOf = (n: number) => b.rows.find((r) => r.n === n && r.mode === 'plain')!;
  const lines = [
    '# Secure aggregation (SecAgg+) vs a plain round',
    '',
    `Written by \`${b.command}\` (scripts/bench.mjs, bench/secagg.ts) in ${b.totalSeconds} s.`,
    '',
    `Machine: ${b.machine.cpu}, ${b.machine.cores} cores, ${b.machine.memoryGiB} GiB, ${b.machine.platform}; Node ${b.machine.node}; load average ${b.machine.loadAverage.join(', ')} at the start.`,
    '',
    `- Setup: n FederatedClients in one Node process on loopback against the reference coordinator (startCoordinator, SQLite in a temp dir, one round), which runs in a worker thread of the same process, a fresh one per round. Adapter: ${b.adapter.description}, ${b.adapter.tensors} tensors, ${b.adapter.values.toLocaleString('en-US')} values. P-256, c = ${CLIPPING_RANGE}, Q = 2^22, clipNorm 1, minClients 3, maxClients n, clients poll the secure round's status every ${b.pollIntervalMs} ms (the client's default is 1000). The coordinator's upload and registration limits are raised so that n clients on one address are not rate-limited.`,
    '- Training is a trainer double (import the global, add a fixed small change, export): training costs the same with or without secure aggregation, so neither side includes it. Both sides include downloading the global adapter (1.8 MiB), the delta, clipping and the upload.',
    '- k: SecAgg+ uses k = 2 ceil(log2 n) neighbours (Bell et al.); classic SecAgg uses every other client (k = n - 1). t = the majority threshold (resolveThreshold).',
    '- Wall times: the n clients share one JavaScript thread (their WebCrypto work runs on libuv\'s thread pool), the coordinator has its own, and all of it shares this machine\'s 2 cores, so a round\'s wall time here is close to the SUM of all clients\' work, not what one device waits on a real network where clients compute in parallel. The round wall time runs from every client\'s runRound() call (all registered before) to the last answer: a secure client answers after the coordinator published the aggregate, a plain one when its upload is accepted (the last upload aggregates the round before it is answered). The per-stage "wall" column is RoundResult.secureAggregation.stages[stage].ms (from the stage\'s start to the client\'s message, waiting for the others and for the next poll included), median over clients. The "own" column is the client\'s own compute for the stage, timed directly for one client at the same (n, k) with nothing else running: advertise-keys = createParticipant (two P-256 key pairs); share-keys = shareKeys (Shamir shares of the seed and the mask key, one ECDH + AES-GCM per neighbour); masked-input = receiveShares + quantize + maskInput (one ECDH + AES-CTR mask of the whole adapter per neighbour, plus the self mask); unmask = unmask (choosing and encoding shares).',
    '- Coordinator unmasking: "log" = the coordinator\'s own line ("masks removed from the sum of N inputs in X ms", unmaskSum inside the running coordinator, which keeps answering the clients\' polls meanwhile); "alone" = unmaskSum at the same (n, k, dropout) with nothing else running. Every round runs on a fresh coordinator (a new worker), so shamir.ts\' cache of Lagrange coefficients starts empty; "alone" relabels the share points every run to start cold too. In classic SecAgg every seed has the same first t holders (one set of coefficients, one set of t modular inversions); in SecAgg+ each neighbourhood needs its own. A long-running coordinator with rounds of the same n and k reuses them (the cache keeps 64 point sets): not measured here. Every round\'s published version 1 was checked against global + the mean of the survivors\' updates (within one quantization step, 2c / (Q - 1) = 3.8e-6).',
    '- Bytes: per client, medians over clients. "Measured" bytes are what the client sent and received during runRound() (request bodies; response Content-Length), registration excluded. A status answer carries the lists of its stage only (the neighbours\' keys in share-keys, the inbox of k ciphertexts in masked-input until the client has masked, survivors and dropped neighbours in unmask), so polling while the others work adds little; received bytes in masked-input include the global adapter\'s download. "Least" = the stage\'s message plus the first status answer the client read in that stage (both measured): what a client must move at the least.',
    `- Medians over repeats: ${[...new Set(b.rows.map((r) => r.n))].map((n) => `n = ${n}: ${b.rows.filter((r) => r.n === n).map((r) => `${r.mode === 'plain' ? 'plain' : r.dropout ? `${r.dropout}` : r.mode} ${r.repeats}`).join(', ')}`).join('; ')} (classic SecAgg at n = 100 is the slowest row: one repeat, so its figures are single measurements). Own compute: median of ${[...new Set(b.rows.filter((r) => r.own).map((r) => r.own!.repeats))].join(' or ')} runs of the steps. bench/results/secagg.json has every repeat's round and unmask times.`,
    '',
    '## Round: secure vs plain',
    '',
    '| n | round | per-client sent | per-client received | sent / plain | received / plain | client own compute ms (plain: encode + check) | own / plain | round wall ms | round / plain | coordinator unmasking ms (log; alone) |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of b.rows) {
    const p = plainOf(r.n);
    const plainOwn = b.plainEncode.ms;
    const own = r.own ? r.own.totalMs : plainOwn;
    const ratio = (a: number, c: number) => (r.mode === 'plain' ? '' : x(a, c));
    lines.push(`| ${r.n} | ${label(r)} | ${kb(r.sentBytes)} | ${kb(r.receivedBytes)} | ${ratio(r.sentBytes, p.sentBytes)} | ${ratio(r.receivedBytes, p.receivedBytes)} | ${ms(own)} | ${ratio(own, plainOwn)} | ${ms(r.roundMs)} | ${ratio(r.roundMs, p.roundMs)} | ${r.unmaskMs !== undefined ? `${ms(r.unmaskMs)}; ${ms(r.unmaskAloneMs!)}` : ''} |`);
  }
  lines.push(
    '',
    '## Per client, per stage (secure rounds)',
    '',
    '| n | round | stage | sent (measured) | received (measured) | least bytes (message + one status) | wall ms (median client) | wall ms (slowest client) | own compute ms |',
    '|---:|---|---|---:|---:|---:|---:|---:|---:|',
  );
  for (const r of b.rows.filter((o) => o.stages)) {
    for (const s of STAGES) {
      const st = r.stages![s]!;
      lines.push(`| ${r.n} | ${label(r)} | ${s} | ${kb(st.sentBytes)} | ${kb(st.receivedBytes)} | ${kb(st.sentBytes + st.statusBytes)} | ${ms(st.ms)} | ${ms(st.maxMs)} | ${ms(st.ownMs)} |`);
    }
  }
  lines.push(
    '',
    '## masked-input, own compute split',
    '',
    '| n | k | receiveShares ms | quantize ms | maskInput ms (k + 1 masks of the whole adapter) |',
    '|---:|---:|---:|---:|---:|',
  );
  const seen = new Set<string>();
  for (const r of b.rows.filter((o) => o.own && !o.dropout)) {
    const key = `${r.n}/${r.k}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const m = r.own!.maskedParts;
    lines.push(`| ${r.n} | ${r.k} | ${ms(m.receiveShares)} | ${ms(m.quantize)} | ${ms(m.maskInput)} |`);
  }
  const off = b.rows.find((r) => r.dropout === 'offline before unmask');
  const drop = b.rows.find((r) => r.dropout === 'dropped after share-keys');
  lines.push('', '## Dropouts (n = 50, SecAgg+)', '');
  const base = b.rows.find((r) => r.n === 50 && r.mode === 'SecAgg+' && !r.dropout);
  const unmasking = (r: SecAggRow) => `${ms(r.unmaskMs!)} ms in the log, ${ms(r.unmaskAloneMs!)} ms alone`;
  if (base) lines.push(`- No dropout (k = ${base.k}, t = ${base.t}): unmasking ${unmasking(base)}; round ${ms(base.roundMs)} ms.`);
  if (off) lines.push(`- One client offline before unmask: its masked input is in the sum, so nothing is rebuilt but its self-mask seed, from its neighbours' shares, as for every survivor: unmasking ${unmasking(off)}, the same work. What it costs is time: the unmask stage waits for the missing answer until its deadline (stageTimeoutMs = ${off.stageTimeoutMs} ms here; 60 s by default), so the round takes ${ms(off.roundMs)} ms${base ? ` (${x(off.roundMs, base.roundMs)} the round without dropout)` : ''}.`);
  if (drop) lines.push(`- One client dropped after share-keys (its training failed; no masked input): its neighbours' masked inputs carry pairwise masks with it that no longer cancel, so the coordinator rebuilds its mask key from ${drop.t} key shares and regenerates one mask of the whole adapter per surviving neighbour (${drop.k}), besides the ${drop.survivors} self masks: unmasking ${unmasking(drop)}. The masked-input stage waits for the missing input until its deadline (roundDurationMs = ${drop.roundDurationMs} ms here), so the round takes ${ms(drop.roundMs)} ms${base ? ` (${x(drop.roundMs, base.roundMs)})` : ''}, and the survivors poll meanwhile (received bytes above).`);
  if (off || drop) lines.push('- A surviving client\'s own steps are those of the full round (the "own" column repeats that row\'s measurement): the same messages, and in unmask a key share instead of a seed share for a dropped neighbour, the same size.');
  // Reading the tables (computed from the rows above).
  const secureRows = b.rows.filter((r) => r.mode !== 'plain' && !r.dropout);
  const notes: string[] = [];
  const masked = secureRows[0]?.uploadBytes;
  if (masked) notes.push(`- Upload: a masked input is ${masked.toLocaleString('en-US')} B (a 16-byte header and 4 bytes a value), the plain f32 update ${b.plainEncode.bytes.toLocaleString('en-US')} B (safetensors, whose JSON header names the ${b.adapter.tensors} tensors), so the secure client sends about as much; what it adds is one share ciphertext per neighbour in share-keys and its unmask answer, both proportional to k and small next to the adapter.`);
  const perMask = secureRows.filter((r) => r.own).map((r) => r.own!.maskedParts.maskInput / (r.k! + 1));
  if (perMask.length) notes.push(`- Client compute: maskInput dominates, one AES-CTR mask of the whole adapter per neighbour plus the self mask (${ms(Math.min(...perMask))} to ${ms(Math.max(...perMask))} ms a mask here, ECDH and addition mod 2^32 included), so a client's cost grows with k, not n: ${secureRows.filter((r) => r.own).map((r) => `${ms(r.own!.totalMs)} ms at n = ${r.n}, k = ${r.k}`).join('; ')}.`);
  for (const n of [...new Set(secureRows.map((r) => r.n))]) {
    const plus = secureRows.find((r) => r.n === n && r.mode === 'SecAgg+');
    const classic = secureRows.find((r) => r.n === n && r.mode === 'classic SecAgg');
    if (plus && classic && plus.unmaskAloneMs! > classic.unmaskAloneMs!) {
      notes.push(`- Coordinator at n = ${n}: unmasking SecAgg+ (${ms(plus.unmaskAloneMs!)} ms alone) costs more than classic SecAgg (${ms(classic.unmaskAloneMs!)} ms), though both remove the same ${n} self masks and no pairwise mask. The difference is Shamir reconstruction: each set of first-t holders needs its own Lagrange coefficients (t modular inversions over 2^521 - 1); in classic SecAgg every seed has the same holders, one set for the round, while in SecAgg+ every neighbourhood is its own set, ${n} sets of ${plus.t}.`);
    }
  }
  if (notes.length) lines.push('', '## Reading the tables', '', ...notes);
  return lines.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// Entry (scripts/bench.mjs bundles and runs this file)
// ---------------------------------------------------------------------------------------------

const outDir = process.env.BENCH_SECAGG_DIR;
if (!isMainThread && (workerData as CoordinatorWorkerData | undefined)?.role === 'secagg-coordinator') {
  await coordinatorWorkerMain(workerData as CoordinatorWorkerData);
} else if (outDir) {
  const result = await runSecAggBench((line) => console.error(line));
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'secagg.json'), JSON.stringify(result, null, 2) + '\n');
  writeFileSync(join(outDir, 'secagg.md'), secAggMarkdown(result));
  console.log(secAggMarkdown(result));
  process.exit(0);
}
