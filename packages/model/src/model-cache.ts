/**
 * Where downloaded model files are kept between loads. The loader keys each file by its source's
 * name plus the file path (`https://host/models/tiny-llama/` + `model.safetensors`), and only
 * puts a file once it arrived whole and parsed, so a cache never holds half a download.
 * `browserModelCache` keeps them in the Cache API; Node has `nodeDirectoryCache` in
 * '@webtune/model/node'.
 */
import { InvalidArgumentError } from '@webtune/errors';

export interface ModelCache {
  /** The bytes stored under `key`, or `undefined` when there are none. */
  get(key: string): Promise<Uint8Array | undefined>;
  /** Stores `bytes` under `key`, replacing what was there. */
  put(key: string, bytes: Uint8Array): Promise<void>;
  /** Removes every entry whose key starts with `prefix` (a source's name removes that model). */
  delete(prefix: string): Promise<void>;
}

export const DEFAULT_BROWSER_CACHE_NAME = 'webtune-models';

// The Cache API only stores http(s) requests; keys become a path on a host that can never
// resolve, so nothing stored here is ever mistaken for (or served as) a real response.
const KEY_ORIGIN = 'https://webtune-model-cache.invalid/';
const keyToUrl = (key: string) => KEY_ORIGIN + encodeURIComponent(key);
const urlToKey = (url: string) => (url.startsWith(KEY_ORIGIN) ? decodeURIComponent(url.slice(KEY_ORIGIN.length)) : undefined);

/**
 * A ModelCache in the Cache API (`caches.open(name)`), one Response per file. Works in pages and
 * workers served from https or localhost; the browser may evict it under storage pressure, in
 * which case the next load downloads again.
 *
 * @example
 * const files = await loadModelFiles('https://huggingface.co/org/model/resolve/main/', { cache: browserModelCache() });
 * await browserModelCache().delete('https://huggingface.co/org/model/resolve/main/'); // forget that model
 */
export function browserModelCache(name = DEFAULT_BROWSER_CACHE_NAME, storage?: CacheStorage): ModelCache {
  let opened: Promise<Cache> | undefined;
  const open = () => {
    const cs = storage ?? (typeof caches === 'undefined' ? undefined : caches);
    if (!cs) {
      throw new InvalidArgumentError(
        'The Cache API (`caches`) is not available here: it needs a page or worker served from https or localhost. ' +
          'Pass `cache: false` to loadModelFiles, or another ModelCache.',
      );
    }
    opened ??= cs.open(name);
    return opened;
  };
  return {
    async get(key) {
      const response = await (await open()).match(keyToUrl(key));
      return response ? new Uint8Array(await response.arrayBuffer()) : undefined;
    },
    async put(key, bytes) {
      const headers = { 'content-type': 'application/octet-stream', 'content-length': String(bytes.byteLength) };
      await (await open()).put(keyToUrl(key), new Response(bytes as Uint8Array<ArrayBuffer>, { headers }));
    },
    async delete(prefix) {
      const cache = await open();
      for (const request of await cache.keys()) {
        const key = urlToKey(request.url);
        if (key !== undefined && key.startsWith(prefix)) await cache.delete(request);
      }
    },
  };
}
