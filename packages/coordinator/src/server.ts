/**
 * The reference coordinator's HTTP server (protocols 1 to 4, packages/federated/src/protocol.ts) over
 * node:http. Every upload is checked before it can change anything: token (401), round (409),
 * selection (403), size (413: Content-Length, then the streamed byte count, never buffering past
 * the limit), payload (400 via decodeUpdate against the global adapter's keys and shapes), base
 * version (409), central-DP norm (400 norm_exceeded); only then one transaction adds it to the
 * round's running sum, committed before the 200.
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  decodeMaskedInput, decodeUpdate, globalNorm, MASKED_HEADER_BYTES, protocolForRound, UpdateRejectedError,
  type ErrorCode, type ErrorResponse, type RegisterResponse, type SecAggAck, type UploadResponse,
} from '@webtune/federated';
import type { Architecture, HostTensor } from '@webtune/model';
import { flatten, inferAdapter, layoutOf, readAdapter, trainableTensors } from './adapter.js';
import { checkAggregation, resolveConfig, resolveRoundConfig, type CoordinatorConfig } from './config.js';
import { CoordinatorCore, maxUpdateNorm, type Client } from './core.js';
import type { SecAggRejection } from './secure-rounds.js';
import { openDatabase, type RoundRow } from './store.js';

export interface CoordinatorOptions {
  /** SQLite file (created if missing). */
  db: string;
  /** Default 0 (any free port). */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /**
   * The global adapter's version 0, needed only when the database is new: safetensors bytes, a
   * path to them, or tensors, under the adapter's trainable keys (exportAdapterState()'s weights;
   * for LoRA, DoRA, IA3, BitFit and bottleneck adapters their files' keys are the same, and a PEFT
   * prefix-tuning file without projection is read too). Ignored (with a log line) for an existing database.
   */
  initialAdapter?: Uint8Array | string | ReadonlyMap<string, HostTensor>;
  /**
   * What the clients train, beside what the tensors say: adapter_config.json text as exportAdapter()
   * writes it (alpha, dropout, targets, virtual tokens, ...), or a webtune spec JSON
   * `{ "method", "config", "architecture"? }` (exportAdapterState()'s spec). Needed for prompt
   * tuning, P-tuning and prefix tuning, whose keys do not name the method. Default: the
   * adapter_config.json next to a path initialAdapter, else the one this database was started with,
   * else inferred from the tensors. Kept in the database.
   */
  adapterConfig?: string;
  /**
   * The model family, for adapters whose keys name no module (prompt tuning, P-tuning, prefix
   * tuning); for the others it must agree with their module paths. Kept in the database.
   */
  architecture?: Architecture;
  enrolmentSecret: string;
  /** Partial CoordinatorConfig; applies to rounds opened from now on. */
  config?: Partial<CoordinatorConfig>;
  /** How often deadlines are checked (ms). Default 1000. */
  tickMs?: number;
  /** Clock (ms since the epoch); default Date.now. */
  now?: () => number;
  /** Standard normal source for central-DP noise; default crypto.getRandomValues Box-Muller. */
  gaussian?: () => number;
  log?: (line: string) => void;
  /**
   * Origins whose pages may call the coordinator (CORS): browsers run the client on the app's
   * origin, not the coordinator's. '*' allows any; default none (same-origin and non-browser
   * clients only).
   */
  allowOrigins?: string[] | '*';
  /** Resource limits (see ServerLimits); each field defaults to DEFAULT_LIMITS. */
  limits?: Partial<ServerLimits>;
}

/**
 * What one client, or all of them, may hold of the server at once. Defaults in DEFAULT_LIMITS.
 * Memory for request bodies is at most maxConcurrentUploads x the round's maxUploadBytes.
 */
export interface ServerLimits {
  /** A request's headers must arrive within this (slow-header connections are closed). */
  headersTimeoutMs: number;
  /** A whole request, body included, must arrive within this. */
  requestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
  /** Open connections at once; more are refused by the socket layer. */
  maxConnections: number;
  /** Uploads being received at once, from all clients; more get 429 with Retry-After. */
  maxConcurrentUploads: number;
  /** Uploads being received at once under one token; more get 429 with Retry-After. */
  maxUploadsPerToken: number;
  /** Registrations per source address: a bucket of `burst`, refilled at `perMinute`; beyond it 429. */
  registerPerMinute: number;
  registerBurst: number;
}

export const DEFAULT_LIMITS: ServerLimits = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 120_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 512,
  maxConcurrentUploads: 32,
  maxUploadsPerToken: 1,
  registerPerMinute: 30,
  registerBurst: 60,
};

export interface CoordinatorHandle {
  url: string;
  /** Applies deadlines now (the timer does this every tickMs). */
  tick(): void;
  /** Resolves when no secure round is being unmasked (the unmasking runs in the background). */
  idle(): Promise<void>;
  close(): Promise<void>;
}

const REGISTER_LIMIT = 16 * 1024;
const DRAIN_LIMIT = 64 * 1024 * 1024;

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly error: ErrorCode,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** Token buckets keyed by a string (a source address), forgetting full buckets so memory stays small. */
class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  constructor(
    private readonly perMinute: number,
    private readonly burst: number,
    private readonly now: () => number,
  ) {}

  /** Takes one token; returns 0, or the seconds until one is available. */
  take(key: string): number {
    const now = this.now();
    const b = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 60_000) * this.perMinute);
    b.at = now;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      this.buckets.set(key, b);
      if (this.buckets.size > 100_000) this.forgetFull(now);
      return 0;
    }
    this.buckets.set(key, b);
    return Math.ceil(((1 - b.tokens) / this.perMinute) * 60);
  }

  private forgetFull(now: number): void {
    for (const [k, b] of this.buckets) if (b.tokens + ((now - b.at) / 60_000) * this.perMinute >= this.burst) this.buckets.delete(k);
  }
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store', ...headers });
  res.end(text);
}

function sendError(req: IncomingMessage, res: ServerResponse, e: HttpError): void {
  const body: ErrorResponse = { error: e.error, message: e.message };
  // An unread request body: answer, then discard what is still coming (bounded) and close.
  const unread = !req.complete;
  send(res, e.status, body, { ...e.headers, ...(unread ? { Connection: 'close' } : {}) });
  if (unread) {
    let drained = 0;
    req.on('data', (c: Buffer) => {
      drained += c.length;
      if (drained > DRAIN_LIMIT) req.socket.destroy();
    });
    req.resume();
  }
}

/** Reads a body of at most `limit` bytes: 413 from Content-Length before reading, or as soon as the stream passes the limit. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    return Promise.reject(new HttpError(413, 'too_large', `the body is ${declared} bytes; the limit is ${limit}`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let failed = false;
    const onData = (c: Buffer) => {
      if (failed) return;
      total += c.length;
      if (total > limit) {
        failed = true;
        chunks.length = 0;
        req.off('data', onData);
        reject(new HttpError(413, 'too_large', `the body passed the limit of ${limit} bytes`));
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.once('end', () => {
      if (!failed) resolve(Buffer.concat(chunks, total));
    });
    const gone = () => {
      // The client closed the connection mid-body (or the request timed out): nobody to answer,
      // nothing to log but one line.
      if (!failed && !req.complete) reject(new ClientGoneError(total));
      failed = true;
      chunks.length = 0;
    };
    req.once('error', gone);
    req.once('close', gone);
  });
}

/** The request's connection closed before its body ended. */
class ClientGoneError extends Error {
  constructor(readonly receivedBytes: number) {
    super(`the client closed the connection after ${receivedBytes} bytes of the body`);
  }
}

function bearer(req: IncomingMessage): string {
  const h = req.headers.authorization;
  const m = h ? /^Bearer\s+(\S+)$/i.exec(h) : null;
  if (!m) throw new HttpError(401, 'unauthenticated', 'missing "Authorization: Bearer <token>"; register with POST /v1/register');
  return m[1]!;
}

export async function startCoordinator(options: CoordinatorOptions): Promise<CoordinatorHandle> {
  const log = options.log ?? ((line: string) => console.log(`[coordinator] ${line}`));
  const now = options.now ?? Date.now;
  const limits: ServerLimits = { ...DEFAULT_LIMITS, ...(options.limits ?? {}) };
  const registrations = new RateLimiter(limits.registerPerMinute, limits.registerBurst, now);
  let uploadsInFlight = 0;
  const uploadsByToken = new Map<string, number>();
  /**
   * Runs `receive` holding one upload slot of the client's (plain updates and masked inputs alike):
   * bodies are buffered (bounded by the round's size), so how many are in flight bounds memory.
   */
  const inUploadSlot = async (client: Client, receive: () => Promise<void>): Promise<void> => {
    const mine = uploadsByToken.get(client.id) ?? 0;
    if (mine >= limits.maxUploadsPerToken || uploadsInFlight >= limits.maxConcurrentUploads) {
      const busy = mine >= limits.maxUploadsPerToken ? 'this client already has an upload in progress' : 'the coordinator is receiving as many uploads as it takes at once';
      throw new HttpError(429, 'rate_limited', `${busy}; try again shortly`, { 'Retry-After': '5' });
    }
    uploadsByToken.set(client.id, mine + 1);
    uploadsInFlight++;
    try {
      await receive();
    } finally {
      uploadsInFlight--;
      const left = (uploadsByToken.get(client.id) ?? 1) - 1;
      if (left > 0) uploadsByToken.set(client.id, left);
      else uploadsByToken.delete(client.id);
    }
  };
  const config = resolveConfig(options.config ?? {});
  const db = openDatabase(options.db);
  try {
    // Version 0 defines the layout; for an existing database it is read from there.
    const stored = db.prepare('SELECT weights FROM global_versions WHERE version = 0').get() as { weights: Buffer } | undefined;
    let initialTensors: Map<string, HostTensor> | undefined;
    let adapterConfig = options.adapterConfig;
    if (stored) {
      if (options.initialAdapter !== undefined) log('database already has version 0; --initial-adapter ignored');
      initialTensors = readAdapter(new Uint8Array(stored.weights), 'global adapter version 0');
    } else if (options.initialAdapter !== undefined) {
      const a = options.initialAdapter;
      if (typeof a === 'string') {
        initialTensors = readAdapter(new Uint8Array(readFileSync(a)), a);
        if (adapterConfig === undefined) {
          try {
            adapterConfig = readFileSync(a.replace(/[^/\\]*$/, 'adapter_config.json'), 'utf8');
          } catch {
            // None next to it: LoRA settings are inferred from the tensors.
          }
        }
      } else if (a instanceof Uint8Array) initialTensors = readAdapter(a, 'initial adapter');
      else initialTensors = new Map([...a].map(([k, t]) => [k, { data: Float32Array.from(t.data), shape: [...t.shape] }]));
    } else {
      throw new Error(`${options.db} is a new database: give the initial adapter (--initial-adapter adapter.safetensors)`);
    }
    // The description and architecture given now, else those the database was started with; kept only once they are accepted.
    const meta = (key: string) => (db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value;
    const givenConfig = adapterConfig;
    adapterConfig ??= meta('adapter_config');
    const architecture = options.architecture ?? (meta('architecture') as Architecture | undefined);
    initialTensors = trainableTensors(initialTensors, adapterConfig);
    const layout = layoutOf(initialTensors);
    const adapter = inferAdapter(layout, adapterConfig, architecture);
    const keep = db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
    if (givenConfig !== undefined) keep.run('adapter_config', givenConfig);
    if (options.architecture !== undefined) keep.run('architecture', options.architecture);
    const roundConfig = resolveRoundConfig(config.round, adapter, layout.size); // fail at start, not at the first round
    checkAggregation(config, roundConfig, layout.size);
    // What registration answers: the version of the rounds this configuration opens (3 with localDpSgd).
    const protocol = protocolForRound(adapter.spec.method, roundConfig);
    const core = new CoordinatorCore(db, layout, adapter, config, options.enrolmentSecret, now, log, options.gaussian);
    core.initialize(stored ? undefined : flatten(layout, initialTensors));
    core.maintain();

    const expected = new Map(layout.keys.map((k) => [k, layout.shapes.get(k)!] as const));

    const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
      // Origin-form targets only ("/v1/..."): an absolute-form or malformed target is the client's error.
      const target = req.url ?? '';
      if (!target.startsWith('/') || target.startsWith('//')) throw new HttpError(400, 'bad_request', 'the request target must be a path such as /v1/round');
      let url: URL;
      try {
        url = new URL(target, 'http://coordinator');
      } catch {
        throw new HttpError(400, 'bad_request', 'the request target is not a valid path');
      }
      const path = url.pathname;
      const method = req.method ?? 'GET';
      try {
        core.maintain();
      } catch (e) {
        log(`maintenance failed: ${(e as Error).stack}`);
      }

      if (method === 'POST' && path === '/v1/register') {
        const wait = registrations.take(req.socket.remoteAddress ?? 'unknown');
        if (wait > 0) throw new HttpError(429, 'rate_limited', `too many registrations from this address; try again in ${wait} s`, { 'Retry-After': String(wait) });
        const body = await readBody(req, REGISTER_LIMIT);
        let json: { enrolmentSecret?: unknown; name?: unknown };
        try {
          json = JSON.parse(body.toString('utf8'));
        } catch {
          throw new HttpError(400, 'bad_request', 'the body must be JSON {"enrolmentSecret": "...", "name"?: "..."}');
        }
        if (typeof json !== 'object' || json === null || typeof json.enrolmentSecret !== 'string') throw new HttpError(400, 'bad_request', 'the body needs "enrolmentSecret" (a string)');
        if (json.name !== undefined && (typeof json.name !== 'string' || json.name.length > 200)) throw new HttpError(400, 'bad_request', '"name" must be a string of at most 200 characters');
        const enrolled = core.enrol(json.enrolmentSecret, json.name as string | undefined);
        if ('refused' in enrolled) throw new HttpError(enrolled.refused === 'bad_secret' ? 401 : 403, 'bad_secret', enrolled.message);
        const { clientId, token } = enrolled;
        const out: RegisterResponse = { protocol, clientId, token };
        send(res, 200, out);
        return;
      }

      // Everything else needs a client. Bodies other than uploads are not expected.
      const token = bearer(req);
      const auth = core.authenticate(token);
      if ('refused' in auth) throw new HttpError(401, auth.refused, auth.message);
      const client = auth;

      if (method === 'GET' && path === '/v1/round') {
        const round = core.currentRound();
        if (!round) throw new HttpError(404, 'not_found', 'no round has been opened');
        send(res, 200, core.roundInfo(round, client.id));
        return;
      }
      let m = /^\/v1\/global\/(\d+)$/.exec(path);
      if (method === 'GET' && m) {
        const blob = core.versionBlob(Number(m[1]));
        if (!blob) throw new HttpError(404, 'not_found', `there is no global version ${m[1]}; the latest is ${core.latestVersion()}`);
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': blob.byteLength, 'Cache-Control': 'private, max-age=31536000, immutable' });
        res.end(blob);
        return;
      }
      m = /^\/v1\/rounds\/(\d+)$/.exec(path);
      if (method === 'GET' && m) {
        const round = core.round(Number(m[1]));
        if (!round) throw new HttpError(404, 'not_found', `there is no round ${m[1]}`);
        send(res, 200, core.roundStatus(round, client.id));
        return;
      }
      m = /^\/v1\/rounds\/(\d+)\/secagg(?:\/(keys|shares|masked|unmask))?$/.exec(path);
      if (m) {
        await secureRoute(req, res, client, Number(m[1]), method, m[2] as 'keys' | 'shares' | 'masked' | 'unmask' | undefined);
        return;
      }
      m = /^\/v1\/rounds\/(\d+)\/updates$/.exec(path);
      if (method === 'POST' && m) {
        await inUploadSlot(client, () => upload(req, res, client, Number(m![1])));
        return;
      }
      throw new HttpError(404, 'not_found', `no route ${method} ${path}`);
    };

    /** A JSON body of at most `limit` bytes (400 if it is not JSON). */
    const readJson = async (req: IncomingMessage, limit: number): Promise<unknown> => {
      const body = await readBody(req, limit);
      try {
        return JSON.parse(body.toString('utf8'));
      } catch {
        throw new HttpError(400, 'malformed', 'the body must be JSON');
      }
    };
    const answer = (res: ServerResponse, result: SecAggAck | SecAggRejection): void => {
      if ('error' in result) throw new HttpError(result.status, result.error, result.message);
      try {
        core.maintain(); // the message may complete its stage
      } catch (e) {
        log(`maintenance after a secure-round message failed: ${(e as Error).stack}`);
      }
      send(res, 200, result);
    };

    /** The secure-round routes (SECAGG_ROUTES in @webtune/federated, secure-rounds.ts for the stages). */
    const secureRoute = async (req: IncomingMessage, res: ServerResponse, client: Client, roundId: number, method: string, action: 'keys' | 'shares' | 'masked' | 'unmask' | undefined): Promise<void> => {
      const round = core.round(roundId);
      if (!round) throw new HttpError(404, 'not_found', `there is no round ${roundId}`);
      const secure = core.snapshot(round).client.secureAggregation;
      if (!secure || !core.secure.stageRow(roundId)) throw new HttpError(409, 'wrong_stage', `round ${roundId} is not a secure-aggregation round; upload with POST /v1/rounds/${roundId}/updates`);
      if (action === undefined) {
        if (method !== 'GET') throw new HttpError(404, 'not_found', `no route ${method} ${req.url}`);
        send(res, 200, core.secure.status(round, client.id));
        return;
      }
      if (method !== 'POST') throw new HttpError(404, 'not_found', `no route ${method} ${req.url}`);
      if (round.status === 'closed') throw new HttpError(409, 'round_closed', `round ${roundId} is closed; fetch GET /v1/round for the current one`);
      // Bounded by the roster: a share ciphertext is 200 bytes, about 280 in base64 JSON.
      const jsonLimit = 16 * 1024 + 400 * round.max_clients;
      if (action === 'keys') {
        const rejected = core.checkRound(client, roundId);
        if (rejected && !(rejected.error === 'bad_request')) throw new HttpError(rejected.status, rejected.error, rejected.message);
        answer(res, core.secure.advertise(round, client.id, secure, (await readJson(req, REGISTER_LIMIT)) as never));
        return;
      }
      if (action === 'shares') {
        answer(res, core.secure.shareKeys(round, client.id, (await readJson(req, jsonLimit)) as never));
        return;
      }
      if (action === 'unmask') {
        answer(res, core.secure.unmask(round, client.id, (await readJson(req, jsonLimit)) as never));
        return;
      }
      await maskedInput(req, res, client, round);
    };

    /** A masked input: checked for stage, membership and size before it is read, for round, version and words after; never for content. */
    const maskedInput = async (req: IncomingMessage, res: ServerResponse, client: Client, round: RoundRow): Promise<void> => {
      const updateId = req.headers['x-update-id'];
      if (typeof updateId !== 'string' || !/^[A-Za-z0-9_-]{1,128}$/.test(updateId)) throw new HttpError(400, 'bad_request', 'X-Update-Id must be a client-chosen id (a UUID), 1 to 128 characters of [A-Za-z0-9_-]');
      const words = layout.size;
      const check = core.secure.checkMasked(round, client.id, updateId);
      if (check && check !== 'duplicate') throw new HttpError(check.status, check.error, check.message);
      await inUploadSlot(client, async () => {
        const body = await readBody(req, MASKED_HEADER_BYTES + 4 * words);
        const decoded = decodeMaskedInput(new Uint8Array(body.buffer, body.byteOffset, body.byteLength), { roundId: round.id, baseVersion: round.base_version, words });
        if (typeof decoded === 'string') throw new HttpError(400, 'malformed', decoded);
        answer(res, core.secure.acceptMasked(round, client.id, updateId, decoded));
      });
    };

    const upload = async (req: IncomingMessage, res: ServerResponse, client: Client, roundId: number): Promise<void> => {
      const updateId = req.headers['x-update-id'];
      if (typeof updateId !== 'string' || !/^[A-Za-z0-9_-]{1,128}$/.test(updateId)) throw new HttpError(400, 'bad_request', 'X-Update-Id must be a client-chosen id (a UUID), 1 to 128 characters of [A-Za-z0-9_-]');
      const countHeader = req.headers['x-example-count'];
      const exampleCount = Number(countHeader);
      if (typeof countHeader !== 'string' || !/^\d+$/.test(countHeader) || !Number.isSafeInteger(exampleCount) || exampleCount < 1) {
        throw new HttpError(400, 'bad_request', 'X-Example-Count must be a positive integer');
      }
      // A replay (the first answer was lost) is answered before the round checks: its round may have closed since.
      const previous = core.findUpdate(updateId);
      if (previous) {
        if (previous.client_id !== client.id) throw new HttpError(409, 'bad_request', `X-Update-Id ${updateId} was used by another client`);
        const out: UploadResponse = { accepted: true, duplicate: true, count: core.acceptedCount(previous.round_id) };
        await readBody(req, core.snapshot(core.round(previous.round_id)!).client.maxUploadBytes).catch(() => undefined);
        send(res, 200, out);
        return;
      }
      const rejected = core.checkRound(client, roundId);
      if (rejected) throw new HttpError(rejected.status, rejected.error, rejected.message);
      const round = core.round(roundId)!;
      const snap = core.snapshot(round);
      if (snap.client.secureAggregation) throw new HttpError(409, 'wrong_stage', `round ${roundId} is a secure-aggregation round: updates go masked through POST /v1/rounds/${roundId}/secagg/masked, never in the clear`);
      const body = await readBody(req, snap.client.maxUploadBytes);
      let decoded;
      try {
        decoded = decodeUpdate(new Uint8Array(body.buffer, body.byteOffset, body.byteLength), expected);
      } catch (e) {
        if (e instanceof UpdateRejectedError) throw new HttpError(400, e.reason, e.message);
        throw e;
      }
      if (decoded.baseVersion !== round.base_version) {
        throw new HttpError(409, 'wrong_round', `the update was trained from version ${decoded.baseVersion}; round ${roundId} trains from ${round.base_version}`);
      }
      const norm = globalNorm(decoded.tensors.values());
      const bound = maxUpdateNorm(snap, layout.size);
      if (!(norm <= bound)) {
        throw new HttpError(400, 'norm_exceeded', `the update's L2 norm ${norm} is above ${bound}, what the round's clip norm ${snap.client.clipNorm} allows in DP mode '${snap.client.dp.mode}'; clip the update before sending it`);
      }
      const delta = flatten(layout, decoded.tensors);
      const result = core.accept(client, roundId, updateId, exampleCount, delta, norm, decoded.encoding, body.byteLength);
      if (result.kind === 'rejected') throw new HttpError(result.status, result.error, result.message);
      const out: UploadResponse = { accepted: true, duplicate: result.kind === 'duplicate', count: result.count };
      send(res, 200, out);
    };

    const allowed = options.allowOrigins ?? [];
    const cors = (req: IncomingMessage, res: ServerResponse): boolean => {
      const origin = req.headers.origin;
      if (!origin || (allowed !== '*' && !allowed.includes(origin))) return false;
      res.setHeader('Access-Control-Allow-Origin', origin);
      res.setHeader('Vary', 'Origin');
      res.setHeader('Access-Control-Allow-Headers', 'Authorization, Content-Type, X-Update-Id, X-Example-Count');
      res.setHeader('Access-Control-Allow-Methods', 'GET, POST, OPTIONS');
      res.setHeader('Access-Control-Max-Age', '600');
      return true;
    };

    // connectionsCheckingInterval: how often Node enforces headersTimeout and requestTimeout.
    const server = createServer({
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      connectionsCheckingInterval: Math.max(50, Math.min(1_000, limits.headersTimeoutMs / 4)),
    }, (req, res) => {
      const corsOk = cors(req, res);
      if (req.method === 'OPTIONS') {
        res.writeHead(corsOk ? 204 : 403).end();
        return;
      }
      handle(req, res).catch((e: unknown) => {
        if (e instanceof HttpError) {
          sendError(req, res, e);
          return;
        }
        if (e instanceof ClientGoneError) {
          log(`${req.method} ${req.url}: ${e.message}`);
          return;
        }
        log(`internal error on ${req.method} ${req.url}: ${(e as Error).stack ?? e}`);
        sendError(req, res, new HttpError(500, 'bad_request', 'internal error'));
      });
    });
    server.maxConnections = limits.maxConnections;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
    });
    const timer = setInterval(() => {
      try {
        core.maintain();
      } catch (e) {
        log(`maintenance failed: ${(e as Error).stack}`);
      }
    }, options.tickMs ?? 1000);
    timer.unref();
    const address = server.address() as AddressInfo;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    return {
      url: `http://${host}:${address.port}`,
      tick: () => core.maintain(),
      idle: () => core.secure.idle(),
      close: async () => {
        clearInterval(timer);
        await core.secure.idle();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        db.close();
      },
    };
  } catch (e) {
    db.close();
    throw e;
  }
}
