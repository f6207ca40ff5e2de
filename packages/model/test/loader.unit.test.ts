/**
 * Loading model folders from a real `node:http` server (real fetch, real sockets), from disk, and
 * from picked files. Fixture models are written by scripts/make_tiny_models.py (PyTorch); broken
 * variants are built here in temp dirs with serializeSafetensors.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DownloadError, InvalidArgumentError, ModelFileMissingError, ModelFormatError, UnsupportedModelError } from '@webtune/errors';
import { filesSource, loadModelFiles, urlSource, type LoadedModelFiles, type LoadProgress } from '../src/loader.js';
import { browserModelCache } from '../src/model-cache.js';
import { nodeDirectoryCache, nodeDirectorySource } from '../src/node.js';
import { serializeSafetensors } from '../src/safetensors.js';

const MODELS = join(import.meta.dirname, 'fixtures/models');
const LOADED = ['config.json', 'tokenizer_config.json', 'tokenizer.json'];

// ------------------------------------------------------------------------------------- server

interface Hit { method: string; path: string }
/** Return true when the handler answered the request itself. */
type Override = (req: IncomingMessage, res: ServerResponse, path: string) => boolean | Promise<boolean>;

interface TestServer {
  url: string;
  hits: Hit[];
  override: Override | undefined;
  chunked: boolean;
}

let server: Server;
let srv: TestServer;
let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'webtune-loader-'));
  srv = { url: '', hits: [], override: undefined, chunked: false };
  server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url!, 'http://x').pathname);
    srv.hits.push({ method: req.method!, path });
    if (srv.override && (await srv.override(req, res, path))) return;
    // /models/<name>/... serves the fixtures, /tmp/<...> the temp dir; /hf/org/<name>/resolve/main/ like the Hub.
    const hf = /^\/hf\/org\/([^/]+)\/resolve\/main\/(.*)$/.exec(path);
    const file = hf ? join(MODELS, hf[1]!, hf[2]!) : path.startsWith('/models/') ? join(MODELS, path.slice(8)) : path.startsWith('/tmp/') ? join(root, path.slice(5)) : undefined;
    let body: Buffer;
    try {
      if (!file || !(await stat(file)).isFile()) throw new Error('not a file');
      body = await readFile(file);
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    res.writeHead(200, srv.chunked ? { 'content-type': 'application/octet-stream' } : { 'content-type': 'application/octet-stream', 'content-length': body.byteLength });
    if (req.method === 'HEAD') return void res.end();
    // Several writes, so a download has several chunks to report.
    for (let at = 0; at < body.byteLength; at += 32 * 1024) res.write(body.subarray(at, at + 32 * 1024));
    res.end();
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  srv.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((done) => server.close(done));
  await rm(root, { recursive: true, force: true });
});

afterEach(() => {
  srv.override = undefined;
  srv.chunked = false;
  srv.hits.length = 0;
});

const weightHits = () => srv.hits.filter((h) => h.path.endsWith('.safetensors'));
const rejection = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the load to fail');
};

/** A temp model folder: a fixture's files, with changes. */
async function tempModel(name: string, from: string | undefined, files: Record<string, Uint8Array | string | null> = {}) {
  const dir = join(root, name);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  if (from) await cp(join(MODELS, from), dir, { recursive: true });
  for (const [file, content] of Object.entries(files)) {
    if (content === null) await rm(join(dir, file), { force: true });
    else await writeFile(join(dir, file), content);
  }
  return { dir, url: `${srv.url}/tmp/${name}/` };
}

/** Bit-equal bytes (vitest's deep equality walks typed arrays element by element: slow on weights). */
const sameBytes = (a: ArrayBufferView | undefined, b: ArrayBufferView) =>
  a !== undefined && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

function expectSameTensors(a: LoadedModelFiles, b: LoadedModelFiles, opts: { sameFiles?: boolean } = {}) {
  expect([...a.tensors.keys()].sort()).toEqual([...b.tensors.keys()].sort());
  for (const [name, info] of a.tensors) {
    const other = b.tensors.get(name)!;
    expect({ ...other, file: opts.sameFiles === false ? info.file : other.file }).toEqual(info);
    expect(sameBytes(b.float32(name), a.float32(name)), name).toBe(true);
  }
  expect(b.weightBytes).toBe(a.weightBytes);
}

// ------------------------------------------------------------------------------------- tests

describe('loadModelFiles: fixture models', () => {
  it.each([
    ['tiny-llama', 'llama', 'F32'],
    ['tiny-qwen2', 'qwen2', 'BF16'],
    ['tiny-gpt2', 'gpt2', 'F16'],
    ['tiny-llama-sharded', 'llama', 'F32'],
  ])('%s: a directory and its URL give identical tensors', async (name, modelType, dtype) => {
    const fromDir = await loadModelFiles(nodeDirectorySource(join(MODELS, name)));
    const fromUrl = await loadModelFiles(`${srv.url}/models/${name}/`, { cache: false });
    expect(fromDir.config.modelType).toBe(modelType);
    expect(fromUrl.config).toEqual(fromDir.config);
    expect(fromDir.tensors.size).toBeGreaterThan(0);
    for (const t of fromDir.tensors.values()) expect(t.dtype).toBe(dtype);
    expectSameTensors(fromDir, fromUrl);
    expect(fromUrl.tokenizer?.vocabSize).toBe(512);
    expect(fromUrl.tokenizer?.eosTokenId).toBe(511);
    expect(fromUrl.tokenizer?.encode('Call me Ishmael.')).toEqual(fromDir.tokenizer?.encode('Call me Ishmael.'));
    // weightBytes counts tensor data as stored (2 bytes per value for f16/bf16).
    let values = 0;
    for (const t of fromDir.tensors.values()) values += t.shape.reduce((x, y) => x * y, 1);
    expect(fromDir.weightBytes).toBe(values * (dtype === 'F32' ? 4 : 2));
    const first = [...fromDir.tensors.keys()][0]!;
    expect(fromDir.float32(first)).toBeInstanceOf(Float32Array);
    expect(fromDir.raw(first).dtype).toBe(dtype);
  });

  it('sharded and unsharded tiny-llama hold the same tensors', async () => {
    const single = await loadModelFiles(nodeDirectorySource(join(MODELS, 'tiny-llama')));
    const sharded = await loadModelFiles(nodeDirectorySource(join(MODELS, 'tiny-llama-sharded')));
    expect(sharded.files).toEqual([
      'config.json', ...LOADED.slice(1), 'model.safetensors.index.json',
      'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors',
    ]);
    expect(new Set([...sharded.tensors.values()].map((t) => t.file))).toEqual(new Set(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']));
    expectSameTensors(single, sharded, { sameFiles: false });
  });

  it('an unknown tensor name throws ModelFileMissingError', async () => {
    const m = await loadModelFiles(nodeDirectorySource(join(MODELS, 'tiny-llama')));
    expect(() => m.float32('no.such.weight')).toThrow(ModelFileMissingError);
    expect(() => m.raw('no.such.weight')).toThrow(/no tensor of that name/);
  });

  it('a Hugging Face repo URL and resolve/main work through a custom fetch', async () => {
    const rewrite: typeof fetch = (input, init) => fetch(String(input).replace('https://huggingface.co', `${srv.url}/hf`), init);
    const viaRepo = await loadModelFiles(urlSource('https://huggingface.co/org/tiny-gpt2', { fetch: rewrite }), { cache: false });
    expect(viaRepo.config.modelType).toBe('gpt2');
    expect(srv.hits.every((h) => h.path.startsWith('/hf/org/tiny-gpt2/resolve/main/'))).toBe(true);
    const viaResolve = await loadModelFiles(`${srv.url}/hf/org/tiny-gpt2/resolve/main`, { cache: false });
    expectSameTensors(viaRepo, viaResolve);
  });

  it('a server that refuses HEAD (405): sizes come from a GET whose body is dropped', async () => {
    srv.override = (req, res) => {
      if (req.method !== 'HEAD') return false;
      res.writeHead(405).end();
      return true;
    };
    const events: LoadProgress[] = [];
    const m = await loadModelFiles(`${srv.url}/models/tiny-llama/`, { cache: false, onProgress: (p) => events.push(p) });
    expect(m.tensors.size).toBeGreaterThan(0);
    expect(events[0]!.overallTotalBytes).toBe(events.at(-1)!.overallLoadedBytes);
  });

  it('a HEAD that fails at the network level (a service worker serving only GETs offline) falls back to GET', async () => {
    const methods: string[] = [];
    const getOnly: typeof fetch = async (input, init) => {
      methods.push(init?.method ?? 'GET');
      if (init?.method === 'HEAD') throw new TypeError('Failed to fetch');
      return fetch(input, init);
    };
    const events: LoadProgress[] = [];
    const m = await loadModelFiles(urlSource(`${srv.url}/models/tiny-llama/`, { fetch: getOnly }), { cache: false, onProgress: (p) => events.push(p) });
    expect(m.tensors.size).toBeGreaterThan(0);
    expect(methods).toContain('HEAD');
    expect(events[0]!.overallTotalBytes).toBe(events.at(-1)!.overallLoadedBytes);
    // Offline without a service worker: the GET fails as well, and that is the error reported.
    const offline: typeof fetch = async () => { throw new TypeError('Failed to fetch'); };
    await expect(loadModelFiles(urlSource(`${srv.url}/models/tiny-llama/`, { fetch: offline }), { cache: false })).rejects.toThrow(DownloadError);
  });

  it('nodeDirectorySource refuses paths outside its folder', async () => {
    const source = nodeDirectorySource(join(MODELS, 'tiny-llama'));
    await expect(source.read('../tiny-gpt2/config.json')).rejects.toThrow(InvalidArgumentError);
    expect(await source.has('config.json')).toBe(true);
    expect(await source.has('nope.json')).toBe(false);
  });

  it('sends the given headers with every request', async () => {
    const seen: (string | undefined)[] = [];
    srv.override = (req) => {
      seen.push(req.headers.authorization);
      return false;
    };
    await loadModelFiles(urlSource(`${srv.url}/models/tiny-llama/`, { headers: { Authorization: 'Bearer hf_test' } }), { cache: false });
    expect(seen.length).toBeGreaterThan(0);
    expect(new Set(seen)).toEqual(new Set(['Bearer hf_test']));
  });

  it('loads files the user picked (File objects or bytes), matched by base name', async () => {
    const dir = join(MODELS, 'tiny-llama-sharded');
    const names = await readdir(dir);
    const asFiles = await Promise.all(names.map(async (n) => new File([await readFile(join(dir, n))], n)));
    const asBytes = await Promise.all(names.map(async (n) => ({ name: `picked/tiny/${n}`, bytes: new Uint8Array(await readFile(join(dir, n))) })));
    const reference = await loadModelFiles(nodeDirectorySource(dir));
    const events: LoadProgress[] = [];
    expectSameTensors(reference, await loadModelFiles(filesSource(asFiles), { onProgress: (p) => events.push(p) }));
    expectSameTensors(reference, await loadModelFiles(filesSource(asBytes)));
    expect(events.at(-1)!.overallLoadedBytes).toBe(events.at(-1)!.overallTotalBytes);
    expect(events.every((e) => !e.fromCache)).toBe(true);
    // Missing pieces name what is missing.
    const err = await rejection(loadModelFiles(filesSource(asFiles.filter((f) => f.name !== 'model-00002-of-00002.safetensors'))));
    expect(err).toBeInstanceOf(ModelFileMissingError);
    expect((err as ModelFileMissingError).file).toBe('model-00002-of-00002.safetensors');
    expect(() => filesSource([...asFiles, asFiles[0]!])).toThrow(InvalidArgumentError);
  });

  it('a string that is not a URL (in Node) points at nodeDirectorySource', async () => {
    const err = await rejection(loadModelFiles('./models/tiny-llama'));
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err.message).toMatch(/nodeDirectorySource/);
  });
});

describe('loadModelFiles: progress', () => {
  async function sizes(dir: string, files: string[]) {
    const out: Record<string, number> = {};
    for (const f of files) out[f] = (await stat(join(dir, f))).size;
    return out;
  }

  function checkEvents(events: LoadProgress[], expected: Record<string, number>) {
    const total = Object.values(expected).reduce((a, b) => a + b, 0);
    expect(new Set(events.map((e) => e.file))).toEqual(new Set(Object.keys(expected)));
    let overall = 0;
    for (const [i, e] of events.entries()) {
      expect(e.overallLoadedBytes, `event ${i}`).toBeGreaterThanOrEqual(overall);
      overall = e.overallLoadedBytes;
      expect(e.overallTotalBytes).toBe(total);
      expect(e.loadedBytes).toBeLessThanOrEqual(e.totalBytes ?? Infinity);
    }
    for (const [file, size] of Object.entries(expected)) {
      const mine = events.filter((e) => e.file === file);
      // Per file: monotonic, ending at the file's size; files come one after another.
      for (let i = 1; i < mine.length; i++) expect(mine[i]!.loadedBytes).toBeGreaterThanOrEqual(mine[i - 1]!.loadedBytes);
      expect(mine.at(-1)).toMatchObject({ loadedBytes: size, totalBytes: size });
      const at = events.indexOf(mine[0]!);
      expect(events.slice(at, at + mine.length).every((e) => e.file === file)).toBe(true);
    }
    expect(events.at(-1)).toMatchObject({ overallLoadedBytes: total, overallTotalBytes: total });
  }

  it.each(['tiny-llama', 'tiny-llama-sharded'])('%s over HTTP: monotonic, per file and overall, ending at the totals', async (name) => {
    const dir = join(MODELS, name);
    const weights = name.endsWith('sharded')
      ? ['model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']
      : ['model.safetensors'];
    const events: LoadProgress[] = [];
    await loadModelFiles(`${srv.url}/models/${name}/`, { cache: false, onProgress: (p) => events.push(p) });
    checkEvents(events, await sizes(dir, [...LOADED, ...weights]));
    // The weights stream in several chunks (the server writes 32 KiB at a time).
    expect(events.filter((e) => e.file === weights.at(-1)).length).toBeGreaterThan(1);
    expect(events.every((e) => !e.fromCache)).toBe(true);
  });

  it('from a directory too', async () => {
    const events: LoadProgress[] = [];
    await loadModelFiles(nodeDirectorySource(join(MODELS, 'tiny-gpt2')), { onProgress: (p) => events.push(p) });
    checkEvents(events, await sizes(join(MODELS, 'tiny-gpt2'), [...LOADED, 'model.safetensors']));
  });

  it('without Content-Length: totals unknown while streaming, each file still ends at its size', async () => {
    srv.chunked = true;
    const events: LoadProgress[] = [];
    await loadModelFiles(`${srv.url}/models/tiny-llama/`, { cache: false, onProgress: (p) => events.push(p) });
    const size = (await stat(join(MODELS, 'tiny-llama/model.safetensors'))).size;
    const weights = events.filter((e) => e.file === 'model.safetensors');
    expect(weights.slice(0, -1).every((e) => e.totalBytes === undefined)).toBe(true);
    expect(weights.at(-1)).toMatchObject({ loadedBytes: size, totalBytes: size });
    expect(events.every((e) => e.overallTotalBytes === undefined)).toBe(true);
  });
});

describe('loadModelFiles: cache', () => {
  it.each(['tiny-qwen2', 'tiny-llama-sharded'])('%s: a second load comes from the Node directory cache, with no request to the server', async (name) => {
    const cacheDir = join(root, `cache-${name}`);
    const cache = nodeDirectoryCache(cacheDir);
    const url = `${srv.url}/models/${name}/`;
    const first = await loadModelFiles(url, { cache });
    expect(weightHits().filter((h) => h.method === 'GET').length).toBe(name.endsWith('sharded') ? 2 : 1);
    srv.hits.length = 0;

    const events: LoadProgress[] = [];
    const second = await loadModelFiles(url, { cache, onProgress: (p) => events.push(p) });
    expect(srv.hits).toEqual([]);
    expectSameTensors(first, second);
    expect(second.tokenizer?.encode('Call me Ishmael.')).toEqual(first.tokenizer?.encode('Call me Ishmael.'));
    expect(events.length).toBe(first.files.length);
    expect(events.every((e) => e.fromCache && e.loadedBytes === e.totalBytes)).toBe(true);
    expect(events.at(-1)!.overallLoadedBytes).toBe(events.at(-1)!.overallTotalBytes);

    // A new cache object on the same directory (a new process) sees the same files.
    srv.hits.length = 0;
    await loadModelFiles(url, { cache: nodeDirectoryCache(cacheDir) });
    expect(srv.hits).toEqual([]);

    // Deleting by the source's prefix forgets the model: the next load downloads again.
    await nodeDirectoryCache(cacheDir).delete(url);
    await loadModelFiles(url, { cache });
    expect(weightHits().length).toBeGreaterThan(0);
  });

  it('a cache that lost a file (evicted) fetches only that file again', async () => {
    const cache = nodeDirectoryCache(join(root, 'cache-evicted'));
    const url = `${srv.url}/models/tiny-llama-sharded/`;
    await loadModelFiles(url, { cache });
    await cache.delete(`${url}model-00002`);
    srv.hits.length = 0;
    const events: LoadProgress[] = [];
    await loadModelFiles(url, { cache, onProgress: (p) => events.push(p) });
    expect(srv.hits.filter((h) => h.method === 'GET').map((h) => h.path)).toEqual(['/models/tiny-llama-sharded/model-00002-of-00002.safetensors']);
    expect(events.filter((e) => !e.fromCache).every((e) => e.file === 'model-00002-of-00002.safetensors')).toBe(true);
    expect(events.at(-1)!.overallLoadedBytes).toBe(events.at(-1)!.overallTotalBytes);
  });

  it('local sources are not copied into the cache', async () => {
    const cacheDir = join(root, 'cache-local');
    await loadModelFiles(nodeDirectorySource(join(MODELS, 'tiny-llama')), { cache: nodeDirectoryCache(cacheDir) });
    await expect(readdir(cacheDir)).rejects.toThrow();
  });

  it('nodeDirectoryCache: odd keys round-trip, prefixes delete, no temp files stay', async () => {
    const dir = join(root, 'cache-keys');
    const cache = nodeDirectoryCache(dir);
    const keys = ['http://h:1/a/b', 'http://h:1/a/b/c', 'http://h:1/../x', '/abs//empty/', 'dots/./..', 'star*?:"<>|', 'ünï/😀', 'a/b.bin', 'a/b.bin.tmp-1'];
    for (const [i, k] of keys.entries()) await cache.put(k, new Uint8Array([i, 1, 2]));
    for (const [i, k] of keys.entries()) expect(await cache.get(k)).toEqual(new Uint8Array([i, 1, 2]));
    expect(await cache.get('http://h:1/a')).toBeUndefined();
    await cache.put('http://h:1/a/b', new Uint8Array([9]));
    expect(await cache.get('http://h:1/a/b')).toEqual(new Uint8Array([9]));
    const all: string[] = [];
    const walk = async (d: string): Promise<void> => {
      for (const e of await readdir(d, { withFileTypes: true })) e.isDirectory() ? await walk(join(d, e.name)) : all.push(e.name);
    };
    await walk(dir);
    expect(all.some((n) => n.includes('.tmp-'))).toBe(false);
    // Everything stays inside the cache directory.
    expect(all.length).toBe(keys.length);
    await cache.delete('http://h:1/a/');
    expect(await cache.get('http://h:1/a/b')).toBeUndefined();
    expect(await cache.get('http://h:1/a/b/c')).toBeUndefined();
    expect(await cache.get('http://h:1/../x')).toEqual(new Uint8Array([2, 1, 2]));
    await cache.delete('');
    for (const k of keys) expect(await cache.get(k)).toBeUndefined();
  });

  it('browserModelCache keeps one Response per key in the Cache API', async () => {
    const stores = new Map<string, Map<string, Response>>();
    const storage = {
      async open(name: string) {
        if (!stores.has(name)) stores.set(name, new Map());
        const m = stores.get(name)!;
        const url = (r: RequestInfo | URL) => (typeof r === 'string' ? r : r instanceof URL ? r.href : r.url);
        return {
          async match(r: RequestInfo | URL) { return m.get(url(r))?.clone(); },
          async put(r: RequestInfo | URL, res: Response) { m.set(url(r), res); },
          async keys() { return [...m.keys()].map((u) => new Request(u)); },
          async delete(r: RequestInfo | URL) { return m.delete(url(r)); },
        };
      },
    } as unknown as CacheStorage;
    const cache = browserModelCache('test-models', storage);
    await cache.put('http://h/m/config.json', new TextEncoder().encode('{}'));
    await cache.put('http://h/m/model.safetensors', new Uint8Array([1, 2, 3]));
    await cache.put('http://h/other/model.safetensors', new Uint8Array([4]));
    expect(await cache.get('http://h/m/model.safetensors')).toEqual(new Uint8Array([1, 2, 3]));
    expect(await cache.get('http://h/m/missing')).toBeUndefined();
    expect(stores.get('test-models')!.size).toBe(3);
    for (const u of stores.get('test-models')!.keys()) expect(u).toMatch(/^https:\/\//);
    await cache.delete('http://h/m/');
    expect(await cache.get('http://h/m/model.safetensors')).toBeUndefined();
    expect(await cache.get('http://h/other/model.safetensors')).toEqual(new Uint8Array([4]));

    // And the loader uses it like any ModelCache.
    const url = `${srv.url}/models/tiny-gpt2/`;
    await loadModelFiles(url, { cache });
    srv.hits.length = 0;
    await loadModelFiles(url, { cache });
    expect(srv.hits).toEqual([]);
    // Without the Cache API, it says so on first use.
    await expect(browserModelCache().get('x')).rejects.toThrow(InvalidArgumentError);
  });
});

describe('loadModelFiles: failures', () => {
  it('404 on config.json: ModelFileMissingError', async () => {
    const err = await rejection(loadModelFiles(`${srv.url}/models/no-such-model/`, { cache: false }));
    expect(err).toBeInstanceOf(ModelFileMissingError);
    expect((err as ModelFileMissingError).file).toBe('config.json');
    expect(err.message).toMatch(/404/);
    const fromDir = await rejection(loadModelFiles(nodeDirectorySource(join(root, 'nowhere'))));
    expect(fromDir).toBeInstanceOf(ModelFileMissingError);
  });

  it('an SPA dev server answering a missing file with index.html (HTTP 200): ModelFileMissingError', async () => {
    srv.override = (_req, res, path) => {
      if (!path.startsWith('/spa/')) return false;
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end('<!doctype html><title>app</title>');
      return true;
    };
    const err = await rejection(loadModelFiles(`${srv.url}/spa/tiny-llama/`, { cache: false }));
    expect(err).toBeInstanceOf(ModelFileMissingError);
    expect((err as ModelFileMissingError).file).toBe('config.json');
    expect(err.message).toMatch(/HTML page/);
  });

  it('no weights file at all: ModelFileMissingError naming both', async () => {
    const { dir, url } = await tempModel('no-weights', 'tiny-llama', { 'model.safetensors': null });
    for (const source of [url, nodeDirectorySource(dir)]) {
      const err = await rejection(loadModelFiles(source, { cache: false }));
      expect(err).toBeInstanceOf(ModelFileMissingError);
      expect(err.message).toContain('model.safetensors');
      expect(err.message).toContain('model.safetensors.index.json');
    }
  });

  it('a missing shard: ModelFileMissingError naming it', async () => {
    const { dir, url } = await tempModel('missing-shard', 'tiny-llama-sharded', { 'model-00002-of-00002.safetensors': null });
    for (const source of [url, nodeDirectorySource(dir)]) {
      const err = await rejection(loadModelFiles(source, { cache: false }));
      expect(err).toBeInstanceOf(ModelFileMissingError);
      expect((err as ModelFileMissingError).file).toBe('model-00002-of-00002.safetensors');
      expect(err.message).toMatch(/index/);
    }
  });

  it('a tensor in the index but not in its shard: ModelFormatError', async () => {
    const index = JSON.parse(await readFile(join(MODELS, 'tiny-llama-sharded/model.safetensors.index.json'), 'utf8'));
    index.weight_map['model.layers.9.extra.weight'] = 'model-00002-of-00002.safetensors';
    const { dir } = await tempModel('index-extra', 'tiny-llama-sharded', { 'model.safetensors.index.json': JSON.stringify(index) });
    const err = await rejection(loadModelFiles(nodeDirectorySource(dir)));
    expect(err).toBeInstanceOf(ModelFormatError);
    expect(err.message).toContain('model.layers.9.extra.weight');
    expect(err.message).toContain('model-00002-of-00002.safetensors');
  });

  it('the connection closing mid-body: DownloadError, nothing cached, a retry succeeds', async () => {
    const cacheDir = join(root, 'cache-cut');
    const cache = nodeDirectoryCache(cacheDir);
    const url = `${srv.url}/models/tiny-llama/`;
    const full = await readFile(join(MODELS, 'tiny-llama/model.safetensors'));
    srv.override = (req, res, path) => {
      if (req.method !== 'GET' || !path.endsWith('/model.safetensors')) return false;
      res.writeHead(200, { 'content-length': full.byteLength });
      res.write(full.subarray(0, full.byteLength >> 1), () => setTimeout(() => res.socket?.destroy(), 20));
      return true;
    };
    const err = await rejection(loadModelFiles(url, { cache }));
    expect(err).toBeInstanceOf(DownloadError);
    expect((err as DownloadError).url).toBe(`${url}model.safetensors`);
    expect(await cache.get(`${url}model.safetensors`)).toBeUndefined();
    expect(await cache.get(`${url}.webtune-manifest.json`)).toBeUndefined();

    srv.override = undefined;
    const events: LoadProgress[] = [];
    const ok = await loadModelFiles(url, { cache, onProgress: (p) => events.push(p) });
    expectSameTensors(await loadModelFiles(nodeDirectorySource(join(MODELS, 'tiny-llama'))), ok);
    expect(events.find((e) => e.file === 'config.json')!.fromCache).toBe(true);
    expect(events.find((e) => e.file === 'model.safetensors')!.fromCache).toBe(false);
    expect(sameBytes(await cache.get(`${url}model.safetensors`), full)).toBe(true);
  });

  it('a body shorter than Content-Length that ends cleanly: DownloadError', async () => {
    srv.override = (req, res, path) => {
      if (req.method !== 'GET' || !path.endsWith('/model.safetensors')) return false;
      // Claims more than it sends, then ends the response as if complete (HTTP/1.0-style close).
      res.socket!.end('HTTP/1.1 200 OK\r\ncontent-length: 1000\r\nconnection: close\r\n\r\n' + 'x'.repeat(10));
      return true;
    };
    const err = await rejection(loadModelFiles(`${srv.url}/models/tiny-llama/`, { cache: false }));
    expect(err).toBeInstanceOf(DownloadError);
  });

  it('a fetch whose body ends short of Content-Length without an error of its own: DownloadError; one event per chunk', async () => {
    const full = new Uint8Array(await readFile(join(MODELS, 'tiny-llama/model.safetensors')));
    const chunks = [full.subarray(0, 1000), full.subarray(1000, 5000), full.subarray(5000, 9000)];
    let short = true;
    const fakeFetch: typeof fetch = async (input, init) => {
      if (!String(input).endsWith('/model.safetensors') || init?.method === 'HEAD') return fetch(input, init);
      const parts = short ? [...chunks] : [...chunks, full.subarray(9000)];
      const body = new ReadableStream<Uint8Array>({
        pull(c) {
          const next = parts.shift();
          if (next) c.enqueue(next.slice());
          else c.close();
        },
      });
      return new Response(body, { headers: { 'content-length': String(full.byteLength) } });
    };
    const events: LoadProgress[] = [];
    const url = `${srv.url}/models/tiny-llama/`;
    const err = await rejection(loadModelFiles(url, { cache: false, fetch: fakeFetch, onProgress: (p) => events.push(p) }));
    expect(err).toBeInstanceOf(DownloadError);
    expect(err.message).toMatch(/9000 of 429336/);
    expect(events.filter((e) => e.file === 'model.safetensors').map((e) => e.loadedBytes)).toEqual([1000, 5000, 9000]);

    short = false;
    events.length = 0;
    await loadModelFiles(url, { cache: false, fetch: fakeFetch, onProgress: (p) => events.push(p) });
    expect(events.filter((e) => e.file === 'model.safetensors').map((e) => e.loadedBytes)).toEqual([1000, 5000, 9000, full.byteLength]);
  });

  it('HTTP 500: DownloadError with the status', async () => {
    srv.override = (_req, res, path) => {
      if (!path.endsWith('.safetensors')) return false;
      res.writeHead(500, 'Internal Server Error').end();
      return true;
    };
    const err = await rejection(loadModelFiles(`${srv.url}/models/tiny-llama/`, { cache: false }));
    expect(err).toBeInstanceOf(DownloadError);
    expect((err as DownloadError).status).toBe(500);
    expect(err.message).toMatch(/500/);
  });

  it('HTTP 403 says how to pass a token', async () => {
    srv.override = (_req, res) => {
      res.writeHead(403).end();
      return true;
    };
    const err = await rejection(loadModelFiles(`${srv.url}/models/tiny-llama/`, { cache: false }));
    expect(err).toBeInstanceOf(DownloadError);
    expect((err as DownloadError).status).toBe(403);
    expect(err.message).toMatch(/Authorization/);
  });

  it('a network error (nothing listening): DownloadError without a status', async () => {
    const dead = createServer();
    await new Promise<void>((done) => dead.listen(0, '127.0.0.1', done));
    const port = (dead.address() as AddressInfo).port;
    await new Promise((done) => dead.close(done));
    const err = await rejection(loadModelFiles(`http://127.0.0.1:${port}/m/`, { cache: false }));
    expect(err).toBeInstanceOf(DownloadError);
    expect((err as DownloadError).status).toBeUndefined();
  });

  it('a corrupt safetensors header: ModelFormatError naming the file', async () => {
    const good = await readFile(join(MODELS, 'tiny-llama/model.safetensors'));
    const bad = new Uint8Array(good);
    bad.fill(0x7b, 8, 40); // '{{{{...' : not JSON
    const cache = nodeDirectoryCache(join(root, 'cache-corrupt'));
    const { dir, url } = await tempModel('corrupt', 'tiny-llama', { 'model.safetensors': bad });
    for (const source of [url, nodeDirectorySource(dir)]) {
      const err = await rejection(loadModelFiles(source, { cache }));
      expect(err).toBeInstanceOf(ModelFormatError);
      expect(err.message).toContain('model.safetensors');
    }
    // A file that failed to parse is not cached.
    expect(await cache.get(`${url}model.safetensors`)).toBeUndefined();
    const truncated = await tempModel('truncated', 'tiny-llama', { 'model.safetensors': good.subarray(0, good.byteLength - 100) });
    const err = await rejection(loadModelFiles(nodeDirectorySource(truncated.dir)));
    expect(err).toBeInstanceOf(ModelFormatError);
    expect(err.message).toMatch(/truncated/);
  });

  it('an unsupported model_type: UnsupportedModelError before any weight is requested', async () => {
    const config = JSON.parse(await readFile(join(MODELS, 'tiny-llama/config.json'), 'utf8'));
    const { url } = await tempModel('bert', 'tiny-llama', { 'config.json': JSON.stringify({ ...config, model_type: 'bert', architectures: ['BertModel'] }) });
    const err = await rejection(loadModelFiles(url, { cache: false }));
    expect(err).toBeInstanceOf(UnsupportedModelError);
    expect(err.message).toContain('bert');
    expect(weightHits()).toEqual([]);
  });

  it('a pre-quantized model (quantization_config): UnsupportedModelError at load', async () => {
    const config = JSON.parse(await readFile(join(MODELS, 'tiny-llama/config.json'), 'utf8'));
    const { url } = await tempModel('gptq', 'tiny-llama', { 'config.json': JSON.stringify({ ...config, quantization_config: { quant_method: 'gptq', bits: 4 } }) });
    const err = await rejection(loadModelFiles(url, { cache: false }));
    expect(err).toBeInstanceOf(UnsupportedModelError);
    expect(err.message).toContain('gptq');
    expect(weightHits()).toEqual([]);
  });

  it.each(['I8', 'F8_E4M3', 'F64'] as const)('a %s tensor: UnsupportedModelError naming the tensor and dtype', async (dtype) => {
    const weights = serializeSafetensors([
      { name: 'model.embed_tokens.weight', dtype: 'F32', shape: [2, 2], data: new Float32Array(4) },
      { name: 'model.layers.0.mlp.down_proj.weight', dtype, shape: [2, 2], data: new Uint8Array(4 * (dtype === 'F64' ? 8 : 1)) },
    ]);
    const { dir } = await tempModel(`dtype-${dtype}`, 'tiny-llama', { 'model.safetensors': weights });
    const err = await rejection(loadModelFiles(nodeDirectorySource(dir)));
    expect(err).toBeInstanceOf(UnsupportedModelError);
    expect(err.message).toContain('model.layers.0.mlp.down_proj.weight');
    expect(err.message).toContain(dtype);
  });

  it('a malformed tokenizer.json: ModelFormatError naming it; a folder without one loads with tokenizer undefined', async () => {
    const bad = await tempModel('bad-tokenizer', 'tiny-llama', { 'tokenizer.json': '{"model": ' });
    const err = await rejection(loadModelFiles(nodeDirectorySource(bad.dir)));
    expect(err).toBeInstanceOf(ModelFormatError);
    expect(err.message).toContain('tokenizer.json');
    const none = await tempModel('no-tokenizer', 'tiny-llama', { 'tokenizer.json': null, 'tokenizer_config.json': null });
    const m = await loadModelFiles(none.url, { cache: false });
    expect(m.tokenizer).toBeUndefined();
    expect(m.files).toEqual(['config.json', 'model.safetensors']);
  });

  it('aborting: the AbortError comes out as is, and the partial file is not cached', async () => {
    const cache = nodeDirectoryCache(join(root, 'cache-abort'));
    const url = `${srv.url}/models/tiny-llama/`;
    const controller = new AbortController();
    const err = await rejection(loadModelFiles(url, {
      cache,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.file === 'model.safetensors' && p.loadedBytes < (p.totalBytes ?? 0)) controller.abort();
      },
    }));
    expect(err.name).toBe('AbortError');
    expect(err).toBe(controller.signal.reason);
    expect(await cache.get(`${url}model.safetensors`)).toBeUndefined();

    const before = new AbortController();
    before.abort();
    const early = await rejection(loadModelFiles(url, { cache: false, signal: before.signal }));
    expect(early.name).toBe('AbortError');

    // An abort while waiting for the server's answer.
    srv.override = () => true; // never answers
    const waiting = new AbortController();
    const pending = loadModelFiles(url, { cache: false, signal: waiting.signal });
    setTimeout(() => waiting.abort(), 50);
    expect((await rejection(pending)).name).toBe('AbortError');
  });
});
