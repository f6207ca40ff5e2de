/**
 * Helpers for secure-aggregation tests: a trainer double whose delta is known per client (so the
 * expected mean is computed here from the deltas, never through the masking code), a coordinator with
 * secure rounds, and a fetch wrapper that records (and can rewrite or refuse) what a client exchanges.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { parseSafetensors, serializeSafetensors, tensorToFloat32, type AdapterSpec, type HostTensor } from '@webtune/model';
import type { TrainerApi } from '@webtune/sdk';
import { startCoordinator, type CoordinatorHandle } from '../../coordinator/src/index.js';
import { SECRET, tmp } from '../../coordinator/test/helpers.js';
import type { CoordinatorConfig } from '../../coordinator/src/config.js';
import { FederatedClient } from '../src/client.js';
import { MemoryRoundStore } from '../src/round-store.js';

/** An adapter of `width` x 8 LoRA factors on q and v of one layer (4 tensors, 32 width values). */
export function secureAdapter(width = 8): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  let s = 7;
  const r = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5) * 0.1;
  for (const m of ['q_proj', 'v_proj']) {
    const base = `base_model.model.model.layers.0.self_attn.${m}`;
    out.set(`${base}.lora_A.weight`, { shape: [8, width], data: Float32Array.from({ length: 8 * width }, r) });
    out.set(`${base}.lora_B.weight`, { shape: [width, 8], data: Float32Array.from({ length: 8 * width }, r) });
  }
  return out;
}

/** Client c's change to value i of a tensor: amplitude grows with c, so some updates exceed S = 1 and are clipped. */
export const moveOf = (c: number, i: number) => (0.002 + 0.02 * c) * Math.sin(0.37 * i + c);

const toBytes = (tensors: ReadonlyMap<string, HostTensor>) =>
  serializeSafetensors([...tensors].map(([name, t]) => ({ name, dtype: 'F32' as const, shape: t.shape, data: t.data })), { format: 'pt' });

/** A trainer double that adds moveOf(c, i) to every value (in f32, as a trainer would); `fail` makes train() throw (a closed tab). */
export class SecureTrainerDouble {
  adapter: Map<string, HostTensor> | undefined;
  spec: AdapterSpec | undefined;
  fail: Error | undefined;
  constructor(readonly c: number) {}

  api(): TrainerApi {
    const api: Partial<TrainerApi> = {
      importAdapterState: async (state) => {
        this.spec = state.spec;
        this.adapter = new Map([...parseSafetensors(state.weights).tensors].map(([k, t]) => [k, { data: tensorToFloat32(t), shape: [...t.shape] }]));
      },
      train: async (request) => {
        if (this.fail) throw this.fail;
        for (const t of this.adapter!.values()) for (let i = 0; i < t.data.length; i++) t.data[i] = t.data[i]! + moveOf(this.c, i);
        return { runId: request.runId ?? 'run', stopped: 'completed', step: request.steps, totalSteps: request.steps } as never;
      },
      exportAdapterState: async () => ({ spec: this.spec!, architecture: 'llama', weights: toBytes(this.adapter!) }),
      listCheckpoints: async () => [],
      deleteCheckpoint: async () => {},
    };
    return api as TrainerApi;
  }
}

/**
 * The expected new global under FedAvg (lr 1): global + mean over `survivors` of the clipped delta,
 * with each delta formed as the client forms it (f32 local - f32 global) and clipped in f64 to S.
 */
export function expectedGlobal(initial: Map<string, HostTensor>, survivors: number[], S: number): Map<string, Float64Array> {
  const keys = [...initial.keys()].sort();
  const deltas = survivors.map((c) => {
    const d = new Map<string, Float64Array>();
    let sq = 0;
    for (const k of keys) {
      const g = initial.get(k)!.data;
      const v = Float64Array.from(g, (x, i) => Math.fround(Math.fround(x + moveOf(c, i)) - x));
      for (const x of v) sq += x * x;
      d.set(k, v);
    }
    const f = Math.min(1, S / Math.sqrt(sq));
    for (const v of d.values()) for (let i = 0; i < v.length; i++) v[i]! *= f;
    return d;
  });
  return new Map(keys.map((k) => {
    const g = initial.get(k)!.data;
    return [k, Float64Array.from(g, (x, i) => x + deltas.reduce((s, d) => s + d.get(k)![i]!, 0) / survivors.length)];
  }));
}

export interface Traffic {
  path: string;
  method: string;
  body: Uint8Array | string | undefined;
}

/**
 * A fetch for one client that records every request, can rewrite a JSON answer (`rewrite(path, json)`:
 * a hostile coordinator) and can refuse requests (`refuse(path)`: the device went offline; the one
 * fault here that is simulated, since a real network cut of one client on loopback is not possible).
 */
export function recordingFetch(options: { rewrite?: (path: string, json: unknown) => unknown; refuse?: (path: string, method: string) => boolean } = {}): { fetch: typeof fetch; log: Traffic[] } {
  const log: Traffic[] = [];
  const f: typeof fetch = async (input, init) => {
    const url = new URL(String(input));
    const method = init?.method ?? 'GET';
    log.push({ path: url.pathname, method, body: init?.body as Uint8Array | string | undefined });
    if (options.refuse?.(url.pathname, method)) throw new TypeError('fetch failed (the test took this device offline)');
    const res = await fetch(input, init);
    if (!options.rewrite || !res.ok || !(res.headers.get('content-type') ?? '').includes('json')) return res;
    const json = options.rewrite(url.pathname, await res.json());
    return new Response(JSON.stringify(json), { status: res.status, headers: { 'Content-Type': 'application/json' } });
  };
  return { fetch: f, log };
}

export interface SecureSetup {
  handle: CoordinatorHandle;
  db: string;
  initial: Map<string, HostTensor>;
  logs: string[];
  /** A second connection to the coordinator's database (read-only use). */
  inspect(): Database.Database;
}

/** Closes the coordinators a test opened (call from afterEach). */
export async function closeAll(open: SecureSetup[]): Promise<void> {
  while (open.length) {
    const s = open.pop()!;
    s.inspect().close();
    await s.handle.close();
  }
}

/** A coordinator whose rounds are secure (minClients 3 and maxClients n unless given). */
export async function secureCoordinator(n: number, config: Partial<CoordinatorConfig> = {}, width = 8, onLog?: (line: string) => void): Promise<SecureSetup> {
  const dir = tmp('webtune-secagg-');
  const db = join(dir, 'c.sqlite');
  const initial = secureAdapter(width);
  const logs: string[] = [];
  const handle = await startCoordinator({
    db, initialAdapter: initial, enrolmentSecret: SECRET, tickMs: 50,
    log: (line) => {
      logs.push(line);
      onLog?.(line);
    },
    config: {
      minClients: 3, maxClients: n, roundDurationMs: 4_000, maxRounds: 1,
      ...config,
      round: { steps: 1, batchSize: 1, clipNorm: 1, secureAggregation: { stageTimeoutMs: 4_000 }, ...(config.round ?? {}) },
    },
  });
  let conn: Database.Database | undefined;
  return { handle, db, initial, logs, inspect: () => (conn ??= new Database(db, { readonly: true, fileMustExist: true })) };
}

/** n federated clients with trainer doubles 1..n on the coordinator, each with its own store and recording fetch. */
export function secureClients(url: string, n: number, fetches: (c: number) => ReturnType<typeof recordingFetch> = () => recordingFetch()) {
  return Array.from({ length: n }, (_, i) => {
    const c = i + 1;
    const trainer = new SecureTrainerDouble(c);
    const rec = fetches(c);
    const client = new FederatedClient({
      url, enrolmentSecret: SECRET, trainer: trainer.api(), store: new MemoryRoundStore(), fetch: rec.fetch, name: `c${c}`,
      retry: { attempts: 1 }, secureAggregation: { pollIntervalMs: 25 },
    });
    return { c, trainer, client, log: rec.log };
  });
}
