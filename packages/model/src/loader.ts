/**
 * Loading a Hugging Face model folder: `config.json`, `model.safetensors` (or
 * `model.safetensors.index.json` and its shards), and optionally `tokenizer.json` /
 * `tokenizer_config.json`, from a URL, files the user picked, or (in Node, see node.ts) a
 * directory. Downloads stream with progress and land in a ModelCache only once whole and parsed.
 * Everything that makes a model unusable (missing file, corrupt header, unsupported architecture
 * or dtype) fails here, at load, with a typed error, never later as garbage weights.
 *
 * Browser-safe: no Node imports here.
 */
import { ChatTemplateError, DownloadError, InvalidArgumentError, ModelFileMissingError, ModelFormatError, UnsupportedModelError } from '@webtune/errors';
import { parseModelConfig, type ModelConfig } from './config.js';
import { browserModelCache, type ModelCache } from './model-cache.js';
import { parseSafetensors, parseShardIndex, tensorToFloat32, type SafetensorsTensor } from './safetensors.js';
import { createTokenizer, type Tokenizer } from './tokenizer.js';
import { ChatTemplate, shippedChatTemplate } from './chat-template.js';
import type { WeightReader } from './weights.js';

export type { ModelCache } from './model-cache.js';

/**
 * Download progress of a model load, in bytes: the file being read and its share, and the whole load's. A
 * file from the model cache (or already read) is reported once, whole. `totalBytes` is undefined while a
 * file's size is unknown (no Content-Length).
 */
export interface LoadProgress {
  file: string;
  loadedBytes: number;
  totalBytes: number | undefined;
  fromCache: boolean;
  /** All files of this load. */
  overallLoadedBytes: number;
  /** All files of this load; undefined when a source cannot tell a file's size before reading it. */
  overallTotalBytes: number | undefined;
}

/** Where the files come from. */
export interface ModelFileSource {
  /** Names the source in messages, and prefixes cache keys (`name + file`). */
  readonly name: string;
  /** Resolves to the file's bytes, streaming with progress; throws ModelFileMissingError if absent. */
  read(file: string, onBytes?: (loaded: number, total: number | undefined) => void, signal?: AbortSignal): Promise<Uint8Array>;
  /** True if the file exists (HEAD or stat). */
  has(file: string, signal?: AbortSignal): Promise<boolean>;
  /** The file's size in bytes if it can be known without reading it (for overall progress). */
  size?(file: string, signal?: AbortSignal): Promise<number | undefined>;
  /** Whether a ModelCache should keep copies of its files (default true; false for local files). */
  readonly cacheable?: boolean;
}

export interface WeightTensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** The file that holds it (model.safetensors or a shard). */
  file: string;
}

export interface LoadedModelFiles {
  config: ModelConfig;
  /** Undefined if the folder has no tokenizer.json. */
  tokenizer: Tokenizer | undefined;
  /** The chat template the folder ships (chat_template.jinja, or tokenizer_config.json's chat_template); undefined if none. */
  chatTemplate: ChatTemplate | undefined;
  /**
   * Why the shipped template could not be used (it does not parse), if so. Kept instead of thrown:
   * a model whose template is broken still loads and trains on raw text.
   */
  chatTemplateError?: ChatTemplateError;
  tensors: ReadonlyMap<string, WeightTensorInfo>;
  /** A float32 copy of a tensor (F32/F16/BF16 decoded); throws ModelFileMissingError for an unknown name. */
  float32(name: string): Float32Array;
  /** The tensor as stored: dtype, shape and a view of its little-endian bytes (no copy); throws like float32. */
  raw(name: string): SafetensorsTensor;
  /** A linear weight stored in 4 bits the GPU keeps as it is (ONNX MatMulNBits; see WeightReader.fourBit). */
  fourBit?: WeightReader['fourBit'];
  /** Total bytes of weights as stored (tensor data, headers excluded). */
  weightBytes: number;
  /** Every file this load read, in order. */
  files: string[];
  /** The source's name (a URL, a directory, ...). */
  source: string;
  /** The WeightFormat that read the weights ('safetensors', 'onnx'). */
  format: string;
  /** What that format parsed, for format-specific work (the ONNX exporter reads its graph from here). */
  container?: unknown;
}

export interface LoadModelOptions {
  onProgress?: (p: LoadProgress) => void;
  /**
   * Where to keep downloaded files. Default: `browserModelCache()` where the Cache API exists
   * (pages and workers on https or localhost), none elsewhere; in Node pass `nodeDirectoryCache()`
   * from '@webtune/model/node'. `false`: no cache.
   */
  cache?: ModelCache | false;
  signal?: AbortSignal;
  /** Used when `source` is a URL string. */
  fetch?: typeof fetch;
  /** Called when the cache refuses a file (quota, storage errors); the load goes on. Default: console.warn. */
  onCacheError?: (error: unknown, key: string) => void;
  /**
   * Where the folder keeps its weights and how to read them. Default: safetensors
   * (`model.safetensors`, or `model.safetensors.index.json` and its shards). `@webtune/onnx`'s
   * `onnxWeightFormat()` reads an ONNX export (transformers.js / Optimum layout) instead.
   */
  weights?: WeightFormat;
}

/**
 * A weight container the loader can read: it names the files (the loader fetches them with
 * progress and caching) and turns their bytes into tensors under Hugging Face parameter names.
 */
export interface WeightFormat {
  /** Names the format in the cache's manifest, so one folder read two ways keeps two plans. */
  readonly id: string;
  /** Decides which files hold the weights, after config.json; one plan per load (it may keep state). */
  plan(context: WeightPlanContext): Promise<WeightPlan>;
}

export interface WeightPlanContext {
  config: ModelConfig;
  /** The source's name (for messages). */
  source: string;
  /** Whether the source (or the cache) has the file. */
  exists(file: string): Promise<boolean>;
  /** Reads a file whole, without progress; it is kept, so reading it again in the load costs nothing. */
  read(file: string): Promise<Uint8Array>;
  /** The file list the cache's manifest recorded for this format, when there is one (skips probing). */
  cached: string[] | undefined;
}

export interface WeightPlan {
  /** Every file to read, in order (small index files first). */
  files: string[];
  /** Checks and parses one file as it arrives whole, before it is cached; throws a typed error to refuse it. */
  accept(file: string, bytes: Uint8Array): void;
  /** Once every file has arrived: the tensors by Hugging Face parameter name. */
  finish(): WeightTensors;
  /** The message for a listed file the source does not have (default: a generic one). */
  missing?(file: string): string | undefined;
}

export interface WeightTensors {
  tensors: ReadonlyMap<string, WeightTensorInfo>;
  float32(name: string): Float32Array;
  raw(name: string): SafetensorsTensor;
  /** Linear weights stored in 4 bits the GPU keeps as they are (see WeightReader.fourBit). */
  fourBit?: WeightReader['fourBit'];
  /** Bytes of weights as stored. */
  weightBytes: number;
  /** Format-specific result passed on as LoadedModelFiles.container. */
  container?: unknown;
}

const CONFIG = 'config.json';
const WEIGHTS = 'model.safetensors';
const INDEX = 'model.safetensors.index.json';
const TOKENIZER = 'tokenizer.json';
const TOKENIZER_CONFIG = 'tokenizer_config.json';
const CHAT_TEMPLATE = 'chat_template.jinja';
/** Written last, once every file of a load is cached: lets the next load skip probing the server. */
const MANIFEST = '.webtune-manifest.json';

const SUPPORTED_DTYPES = new Set(['F32', 'F16', 'BF16']);

// ---------------------------------------------------------------------------------------------
// Streaming

/**
 * Reads a byte stream into one Uint8Array, calling `onBytes` once per chunk. With a known total the
 * buffer is allocated once. `fail` builds the error for a stream that breaks; an abort throws the
 * signal's reason (the AbortError) as is.
 */
export async function readStream(
  stream: ReadableStream<Uint8Array>,
  total: number | undefined,
  onBytes: ((loaded: number, total: number | undefined) => void) | undefined,
  signal: AbortSignal | undefined,
  fail: (detail: string, cause?: unknown) => Error,
): Promise<Uint8Array> {
  const reader = stream.getReader();
  let buffer = new Uint8Array(total ?? 64 * 1024);
  let loaded = 0;
  try {
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (cause) {
        if (signal?.aborted) throw signal.reason ?? cause;
        throw fail(`the connection broke after ${loaded}${total === undefined ? '' : ` of ${total}`} bytes (${(cause as Error)?.message ?? String(cause)})`, cause);
      }
      signal?.throwIfAborted();
      if (chunk.done) break;
      const bytes = chunk.value;
      if (loaded + bytes.byteLength > buffer.byteLength) {
        const grown = new Uint8Array(Math.max(buffer.byteLength * 2, loaded + bytes.byteLength));
        grown.set(buffer.subarray(0, loaded));
        buffer = grown;
      }
      buffer.set(bytes, loaded);
      loaded += bytes.byteLength;
      onBytes?.(loaded, total === undefined ? undefined : Math.max(total, loaded));
    }
  } finally {
    reader.releaseLock();
  }
  if (total !== undefined && loaded < total) {
    await stream.cancel().catch(() => {});
    throw fail(`the body ended after ${loaded} of ${total} bytes (Content-Length); the download was cut short`);
  }
  if (loaded === 0) onBytes?.(0, total);
  return loaded === buffer.byteLength ? buffer : buffer.slice(0, loaded);
}

// ---------------------------------------------------------------------------------------------
// Sources

/** Content-Length when it gives the size of the body fetch hands over (not a compressed one). */
function bodyLength(response: Response): number | undefined {
  const encoding = response.headers.get('content-encoding');
  if (encoding && encoding !== 'identity') return undefined;
  const text = response.headers.get('content-length');
  if (text === null || !/^\d+$/.test(text.trim())) return undefined;
  return Number(text);
}

/** `https://huggingface.co/org/name` (a repo page) means its files at `resolve/main/`. */
function normalizeBaseUrl(baseUrl: string): URL {
  let url: URL;
  try {
    url = typeof location !== 'undefined' ? new URL(baseUrl, location.href) : new URL(baseUrl);
  } catch {
    throw new InvalidArgumentError(`"${baseUrl}" is not a URL; pass the URL of the model folder, e.g. https://huggingface.co/org/model/resolve/main/`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidArgumentError(`urlSource needs an http(s) URL, got "${baseUrl}"`);
  }
  const segments = url.pathname.split('/').filter(Boolean);
  if ((url.hostname === 'huggingface.co' || url.hostname === 'hf.co') && segments.length === 2) {
    url.pathname = `/${segments.join('/')}/resolve/main/`;
  }
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  url.search = '';
  url.hash = '';
  return url;
}

/**
 * Files under a base URL: a folder on any static server, or a Hugging Face `resolve/<revision>/`
 * URL. 404 means the file is absent; other HTTP errors, network errors and short bodies throw
 * DownloadError. `headers` go with every request (e.g. `Authorization: Bearer hf_...` for gated
 * models).
 *
 * @example
 * const files = await loadModelFiles(urlSource('https://huggingface.co/Qwen/Qwen2.5-0.5B/resolve/main/'));
 */
export function urlSource(baseUrl: string, options: { fetch?: typeof fetch; headers?: Record<string, string> } = {}): ModelFileSource {
  const base = normalizeBaseUrl(baseUrl);
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const headers = options.headers ?? {};
  const heads = new Map<string, Promise<{ exists: boolean; size: number | undefined }>>();
  const urlOf = (file: string) => new URL(file, base).href;

  async function request(file: string, method: 'GET' | 'HEAD', signal?: AbortSignal): Promise<Response> {
    const url = urlOf(file);
    try {
      return await doFetch(url, { method, headers, signal });
    } catch (cause) {
      if (signal?.aborted) throw signal.reason ?? cause;
      throw new DownloadError(url, `network error (${(cause as Error)?.message ?? String(cause)})`, undefined, { cause });
    }
  }

  function httpError(file: string, response: Response): DownloadError {
    const hint = response.status === 401 || response.status === 403
      ? '; for a gated or private Hugging Face model pass headers: { Authorization: "Bearer hf_..." } to urlSource'
      : '';
    return new DownloadError(urlOf(file), `the server answered HTTP ${response.status} ${response.statusText}${hint}`, response.status);
  }

  /**
   * Model files are never HTML. Single-page-app dev servers (Vite, webpack-dev-server) answer a
   * missing path with index.html and HTTP 200; that is a missing file, not a corrupt one.
   */
  function htmlFallback(response: Response): boolean {
    return (response.headers.get('content-type') ?? '').toLowerCase().startsWith('text/html');
  }

  function head(file: string, signal?: AbortSignal) {
    let p = heads.get(file);
    if (!p) {
      p = (async () => {
        // A server without HEAD (405/501), or a HEAD that fails outright while a GET would not
        // (an offline service worker serves only GETs from its precache): start a GET and drop
        // the body. When the GET fails too, that failure is the one reported.
        let response = await request(file, 'HEAD', signal).catch((error: unknown) => {
          if (error instanceof DownloadError) return undefined;
          throw error;
        });
        if (!response || response.status === 405 || response.status === 501) {
          response = await request(file, 'GET', signal);
          await response.body?.cancel().catch(() => {});
        }
        if (response.status === 404 || (response.ok && htmlFallback(response))) return { exists: false, size: undefined };
        if (!response.ok) throw httpError(file, response);
        return { exists: true, size: bodyLength(response) };
      })();
      heads.set(file, p);
      p.catch(() => heads.delete(file));
    }
    return p;
  }

  return {
    name: base.href,
    cacheable: true,
    async read(file, onBytes, signal) {
      const response = await request(file, 'GET', signal);
      if (response.status === 404) {
        await response.body?.cancel().catch(() => {});
        throw new ModelFileMissingError(file, `not found at ${urlOf(file)} (HTTP 404)`);
      }
      if (response.ok && htmlFallback(response)) {
        await response.body?.cancel().catch(() => {});
        throw new ModelFileMissingError(file, `not found at ${urlOf(file)}: the server answered with an HTML page (a dev server's fallback for a missing file)`);
      }
      if (!response.ok) {
        await response.body?.cancel().catch(() => {});
        throw httpError(file, response);
      }
      const total = bodyLength(response);
      if (!response.body) {
        const bytes = new Uint8Array(await response.arrayBuffer());
        onBytes?.(bytes.byteLength, total);
        return bytes;
      }
      return readStream(response.body, total, onBytes, signal, (detail, cause) => new DownloadError(urlOf(file), detail, undefined, { cause }));
    },
    async has(file, signal) {
      return (await head(file, signal)).exists;
    },
    async size(file, signal) {
      return (await head(file, signal)).size;
    },
  };
}

type PickedFile = File | { name: string; bytes: Uint8Array };
// A File has a bytes() method too; only the plain form has a Uint8Array there.
const isPlain = (f: PickedFile): f is { name: string; bytes: Uint8Array } => f.bytes instanceof Uint8Array;
const basename = (path: string) => path.slice(Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\')) + 1);

/**
 * Files the user dropped or picked (`File` objects, or `{ name, bytes }`), matched by base name,
 * so picking a whole folder (`webkitdirectory`) works as well as picking the files themselves.
 *
 * @example
 * input.onchange = async () => { const files = await loadModelFiles(filesSource(input.files!)); };
 */
export function filesSource(files: Iterable<PickedFile>): ModelFileSource {
  const byName = new Map<string, PickedFile>();
  for (const f of files) {
    const name = basename(f.name);
    if (byName.has(name)) {
      throw new InvalidArgumentError(`two of the files given are named "${name}"; pick the files of one model folder only`);
    }
    byName.set(name, f);
  }
  const get = (file: string) => {
    const f = byName.get(file);
    if (!f) {
      throw new ModelFileMissingError(
        file,
        `not among the ${byName.size} files given (${[...byName.keys()].join(', ') || 'none'}); pick the whole model folder`,
      );
    }
    return f;
  };
  return {
    name: `files:${[...byName.keys()].sort().join(',')}/`,
    cacheable: false,
    async read(file, onBytes, signal) {
      const f = get(file);
      signal?.throwIfAborted();
      if (isPlain(f)) {
        onBytes?.(f.bytes.byteLength, f.bytes.byteLength);
        return f.bytes;
      }
      return readStream(f.stream(), f.size, onBytes, signal, (detail, cause) => new ModelFormatError(file, `reading the picked file failed: ${detail}`, { cause }));
    },
    async has(file) {
      return byName.has(file);
    },
    async size(file) {
      const f = byName.get(file);
      return f === undefined ? undefined : isPlain(f) ? f.bytes.byteLength : f.size;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Loading

interface Manifest {
  version: 1;
  /** The WeightFormat's id (absent in manifests written before formats: safetensors). */
  format?: string;
  /** The weight files its plan listed (safetensors: model.safetensors, or the index and its shards). */
  weights: string[];
  tokenizer: boolean;
  tokenizerConfig: boolean;
  /** Absent in manifests written before chat templates: the load probes for the file. */
  chatTemplate?: boolean;
}

function parseManifest(bytes: Uint8Array | undefined): Manifest | undefined {
  if (!bytes) return undefined;
  try {
    const m = JSON.parse(new TextDecoder().decode(bytes)) as Manifest;
    if (m.version === 1 && Array.isArray(m.weights) && m.weights.every((w) => typeof w === 'string') && m.weights.length > 0) return m;
  } catch {
    // A manifest the cache mangled is ignored: the load probes the source instead.
  }
  return undefined;
}

function parseJson(bytes: Uint8Array, file: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch (cause) {
    throw new ModelFormatError(file, `not valid JSON (${(cause as Error).message})`, { cause });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ModelFormatError(file, 'not a JSON object');
  return json as Record<string, unknown>;
}

function resolveSource(source: string | ModelFileSource, options: LoadModelOptions): ModelFileSource {
  if (typeof source !== 'string') return source;
  const isUrl = /^https?:\/\//i.test(source);
  if (isUrl || typeof location !== 'undefined') {
    return urlSource(source, options.fetch ? { fetch: options.fetch } : {});
  }
  throw new InvalidArgumentError(
    `"${source}" is not an http(s) URL. To load a local folder in Node use ` +
      `loadModelFiles(nodeDirectorySource("${source}")) with nodeDirectorySource from '@webtune/model/node'; ` +
      'in a browser use filesSource(pickedFiles) or a URL.',
  );
}

function defaultCache(): ModelCache | undefined {
  return typeof caches === 'undefined' ? undefined : browserModelCache();
}

/**
 * Loads a model folder: config (validated, unsupported architectures refused), weights (every
 * tensor's header checked; dtypes other than F32/F16/BF16 refused), tokenizer if present.
 *
 * @example
 * const model = await loadModelFiles('https://huggingface.co/HuggingFaceTB/SmolLM2-135M/resolve/main/', {
 *   onProgress: (p) => bar.value = p.overallLoadedBytes / (p.overallTotalBytes ?? Infinity),
 * });
 * model.config.hiddenSize; model.float32('model.embed_tokens.weight'); model.tokenizer?.encode('hi');
 */
export async function loadModelFiles(source: string | ModelFileSource, options: LoadModelOptions = {}): Promise<LoadedModelFiles> {
  const src = resolveSource(source, options);
  const { signal, onProgress } = options;
  const cache = options.cache === false || src.cacheable === false ? undefined : (options.cache ?? defaultCache());
  const key = (file: string) => src.name + file;
  const onCacheError = options.onCacheError ?? ((error: unknown, k: string) => console.warn(`webtune: could not cache ${k}:`, error));
  signal?.throwIfAborted();

  const cacheGet = async (file: string): Promise<Uint8Array | undefined> => {
    if (!cache) return undefined;
    try {
      return await cache.get(key(file));
    } catch (error) {
      onCacheError(error, key(file));
      return undefined;
    }
  };
  const cachePut = async (file: string, bytes: Uint8Array) => {
    if (!cache) return;
    try {
      await cache.put(key(file), bytes);
    } catch (error) {
      onCacheError(error, key(file));
    }
  };

  // Files already in memory (read while planning), and where they came from.
  const have = new Map<string, { bytes: Uint8Array; fromCache: boolean }>();
  const inMemoryOrCache = async (file: string) => {
    if (!have.has(file)) {
      const bytes = await cacheGet(file);
      if (bytes) have.set(file, { bytes, fromCache: true });
    }
    return have.get(file);
  };
  // Small files needed to plan the load are read whole, without progress; it is reported once the plan is known.
  const readQuietly = async (file: string) => {
    const known = await inMemoryOrCache(file);
    if (known) return known.bytes;
    const bytes = await src.read(file, undefined, signal);
    have.set(file, { bytes, fromCache: false });
    return bytes;
  };
  const exists = async (file: string) => (await inMemoryOrCache(file)) !== undefined || (await src.has(file, signal));

  // 1. config.json: refuse an unsupported model before downloading its weights.
  const manifest = parseManifest(await cacheGet(MANIFEST));
  const configBytes = await readQuietly(CONFIG);
  const rawConfig = parseJson(configBytes, CONFIG);
  const config = parseModelConfig(rawConfig, CONFIG);
  const quantization = rawConfig['quantization_config'];
  if (quantization !== undefined && quantization !== null) {
    const method = (quantization as Record<string, unknown>)['quant_method'] ?? 'unknown';
    throw new UnsupportedModelError(
      CONFIG,
      `the model is pre-quantized (quantization_config.quant_method "${String(method)}"); load the unquantized model, webtune quantizes frozen weights to NF4 itself`,
    );
  }

  // 2. Which weight files (the format decides), and the tokenizer's.
  const format = options.weights ?? safetensorsFormat;
  const weights = await format.plan({
    config, source: src.name, exists, read: readQuietly, cached: (manifest?.format ?? 'safetensors') === format.id ? manifest?.weights : undefined,
  });
  const weightFiles = weights.files;
  const tokenizerFiles: string[] = [];
  for (const [file, known] of [[TOKENIZER_CONFIG, manifest?.tokenizerConfig], [TOKENIZER, manifest?.tokenizer]] as const) {
    if (known ?? (await exists(file))) tokenizerFiles.push(file);
  }
  // chat_template.jinja is optional and newer than most folders. A probe that fails outright counts
  // as absent: an offline page whose service worker serves only the files it precached must still
  // load (the template then comes from tokenizer_config.json, if it has one).
  const hasJinja = manifest?.chatTemplate ?? (await exists(CHAT_TEMPLATE).catch((error: unknown) => {
    if (error instanceof DownloadError) return false;
    throw error;
  }));
  if (hasJinja) tokenizerFiles.push(CHAT_TEMPLATE);

  // 3. Sizes, for overall progress: cached files are read now, the rest asked of the source.
  const files = [CONFIG, ...tokenizerFiles, ...weightFiles];
  const sizes = new Map<string, number | undefined>();
  for (const file of files) {
    signal?.throwIfAborted();
    const known = await inMemoryOrCache(file);
    if (known) {
      sizes.set(file, known.bytes.byteLength);
    } else {
      sizes.set(file, await src.size?.(file, signal));
    }
  }
  let overallTotal: number | undefined = 0;
  for (const s of sizes.values()) overallTotal = s === undefined || overallTotal === undefined ? undefined : overallTotal + s;
  let overallDone = 0;

  // 4. Read (or report) every file in order; cache what arrived whole and parsed.
  const contents = new Map<string, Uint8Array>();
  for (const file of files) {
    signal?.throwIfAborted();
    const emit = (loaded: number, total: number | undefined, cached: boolean) => {
      onProgress?.({
        file,
        loadedBytes: loaded,
        totalBytes: total,
        fromCache: cached,
        overallLoadedBytes: overallDone + loaded,
        overallTotalBytes: overallTotal,
      });
    };
    // A size that differs from the planned one (a changed file, a HEAD that disagrees with the GET) moves the overall total.
    const resize = (size: number) => {
      if (overallTotal !== undefined) overallTotal += size - (sizes.get(file) ?? 0);
      sizes.set(file, size);
    };
    let bytes: Uint8Array;
    const got = have.get(file);
    const cached = got?.fromCache ?? false;
    if (got) {
      bytes = got.bytes;
      resize(bytes.byteLength);
      emit(bytes.byteLength, bytes.byteLength, cached);
    } else {
      let lastTotal: number | undefined;
      try {
        bytes = await src.read(file, (loaded, total) => {
          if (total !== undefined && total !== sizes.get(file)) resize(total);
          lastTotal = total;
          emit(loaded, total, false);
        }, signal);
      } catch (error) {
        const why = error instanceof ModelFileMissingError && weightFiles.includes(file) ? weights.missing?.(file) : undefined;
        if (why) throw new ModelFileMissingError(file, why, { cause: error });
        throw error;
      }
      if (bytes.byteLength !== sizes.get(file)) resize(bytes.byteLength);
      // Without a Content-Length the last chunk could not say it was the last; say it once.
      if (lastTotal !== bytes.byteLength) emit(bytes.byteLength, bytes.byteLength, false);
    }

    if (file === TOKENIZER || file === TOKENIZER_CONFIG) parseJson(bytes, file);
    if (weightFiles.includes(file)) weights.accept(file, bytes);
    if (!cached) await cachePut(file, bytes);
    contents.set(file, bytes);
    overallDone += bytes.byteLength;
  }

  // 5. Tensors, by name.
  const { tensors, float32, raw, fourBit, weightBytes, container } = weights.finish();

  // 6. Tokenizer (optional).
  const tokenizerBytes = contents.get(TOKENIZER);
  const tokenizerConfigBytes = contents.get(TOKENIZER_CONFIG);
  const tokenizerConfig = tokenizerConfigBytes ? parseJson(tokenizerConfigBytes, TOKENIZER_CONFIG) : undefined;
  const tokenizer = tokenizerBytes ? createTokenizer(parseJson(tokenizerBytes, TOKENIZER), tokenizerConfig) : undefined;
  const jinjaBytes = contents.get(CHAT_TEMPLATE);
  const shipped = shippedChatTemplate(tokenizerConfig, jinjaBytes ? new TextDecoder().decode(jinjaBytes) : undefined);
  let chatTemplate: ChatTemplate | undefined;
  let chatTemplateError: ChatTemplateError | undefined;
  try {
    chatTemplate = shipped ? ChatTemplate.parse(shipped.text, tokenizer?.specialTokens ?? {}, shipped.source) : undefined;
  } catch (error) {
    if (!(error instanceof ChatTemplateError)) throw error;
    chatTemplateError = error;
  }

  if (cache && !manifest) {
    const m: Manifest = {
      version: 1,
      format: format.id,
      weights: weightFiles,
      tokenizer: tokenizerFiles.includes(TOKENIZER),
      tokenizerConfig: tokenizerFiles.includes(TOKENIZER_CONFIG),
      chatTemplate: tokenizerFiles.includes(CHAT_TEMPLATE),
    };
    await cachePut(MANIFEST, new TextEncoder().encode(JSON.stringify(m)));
  }

  return { config, tokenizer, chatTemplate, ...(chatTemplateError ? { chatTemplateError } : {}), tensors, float32, raw, ...(fourBit ? { fourBit } : {}), weightBytes, files, source: src.name, format: format.id, container };
}

/**
 * The default WeightFormat: `model.safetensors`, or `model.safetensors.index.json` and the shards
 * it lists. F32, F16 and BF16 tensors; anything else (quantized or integer checkpoints) is refused.
 */
export const safetensorsFormat: WeightFormat = {
  id: 'safetensors',
  async plan({ exists, read, source, cached }) {
    let index: ReturnType<typeof parseShardIndex> | undefined;
    const sharded = cached ? cached[0] === INDEX : !(await exists(WEIGHTS));
    if (sharded) {
      let indexBytes: Uint8Array;
      try {
        indexBytes = await read(INDEX);
      } catch (error) {
        if (!(error instanceof ModelFileMissingError)) throw error;
        throw new ModelFileMissingError(
          WEIGHTS,
          `the model has no weights in ${source}: looked for ${WEIGHTS} and ${INDEX} (sharded), found neither`,
          { cause: error },
        );
      }
      index = parseShardIndex(new TextDecoder().decode(indexBytes), INDEX);
      if (index.files.length === 0) throw new ModelFormatError(INDEX, 'weight_map is empty');
    }
    const parsed = new Map<string, Map<string, SafetensorsTensor>>();
    return {
      files: index ? [INDEX, ...index.files] : [WEIGHTS],
      missing: (file) => (index && file !== INDEX ? `shard listed in ${INDEX} is missing from ${source}` : undefined),
      accept(file, bytes) {
        if (file === INDEX) return;
        const tensors = parseSafetensors(bytes, file).tensors;
        for (const t of tensors.values()) {
          if (!SUPPORTED_DTYPES.has(t.dtype)) {
            throw new UnsupportedModelError(
              file,
              `tensor "${t.name}" is ${t.dtype}; webtune loads F32, F16 and BF16 weights (quantized or integer checkpoints are not supported, load the unquantized model)`,
            );
          }
        }
        parsed.set(file, tensors);
      },
      finish() {
        const byName = new Map<string, SafetensorsTensor>();
        const infos = new Map<string, WeightTensorInfo>();
        const add = (t: SafetensorsTensor, file: string) => {
          byName.set(t.name, t);
          infos.set(t.name, { name: t.name, dtype: t.dtype, shape: t.shape, file });
        };
        if (index) {
          for (const [name, file] of index.weightMap) {
            const t = parsed.get(file)?.get(name);
            if (!t) throw new ModelFormatError(file, `${INDEX} maps tensor "${name}" to this shard, but the shard does not contain it`);
            add(t, file);
          }
        } else {
          for (const t of parsed.get(WEIGHTS)!.values()) add(t, WEIGHTS);
        }
        let weightBytes = 0;
        for (const t of byName.values()) weightBytes += t.bytes.byteLength;
        const lookup = (name: string) => {
          const t = byName.get(name);
          if (!t) {
            const known = [...byName.keys()];
            throw new ModelFileMissingError(
              name,
              `no tensor of that name in the model's weights (${known.length} tensors, e.g. ${known.slice(0, 3).join(', ')})`,
            );
          }
          return t;
        };
        return { tensors: infos, float32: (name) => tensorToFloat32(lookup(name), infos.get(name)?.file), raw: lookup, weightBytes };
      },
    };
  },
};

/** The loaded weights as the GPU upload and the merged exporter read them. */
export function weightReader(files: LoadedModelFiles): WeightReader & { names(): string[] } {
  return {
    has: (name) => files.tensors.has(name),
    read: (name) => ({ data: files.float32(name), shape: files.tensors.get(name)!.shape }),
    ...(files.fourBit ? { fourBit: files.fourBit } : {}),
    names: () => [...files.tensors.keys()],
  };
}
