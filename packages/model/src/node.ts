/**
 * Node-only parts of model loading: a model folder on disk as a ModelFileSource, and a ModelCache
 * in a directory. Import from '@webtune/model/node'; the main entry stays browser-safe.
 */
/// <reference types="@webgpu/types" preserve="true" />
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, rmdir, stat, unlink, writeFile, readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { InvalidArgumentError, ModelFileMissingError, ModelFormatError } from '@webtune/errors';
import type { ModelFileSource } from './loader.js';
import type { ModelCache } from './model-cache.js';

const CHUNK_BYTES = 8 * 1024 * 1024;

const isNotFound = (e: unknown) => (e as NodeJS.ErrnoException)?.code === 'ENOENT' || (e as NodeJS.ErrnoException)?.code === 'ENOTDIR';

/**
 * A model folder on disk (config.json, model.safetensors or shards, tokenizer.json). Its files are
 * read in chunks with progress; they are not copied into a cache.
 *
 * @example
 * import { loadModelFiles } from '@webtune/model';
 * import { nodeDirectorySource } from '@webtune/model/node';
 * const model = await loadModelFiles(nodeDirectorySource('./models/tiny-llama'));
 */
export function nodeDirectorySource(dir: string): ModelFileSource {
  if (typeof dir !== 'string' || dir === '') throw new InvalidArgumentError('nodeDirectorySource needs the path of a model folder');
  const root = resolve(dir);
  const pathOf = (file: string) => {
    const path = resolve(root, file);
    const rel = relative(root, path);
    if (rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) throw new InvalidArgumentError(`"${file}" is outside the model folder ${root}`);
    return path;
  };
  return {
    name: root.endsWith(sep) ? root : root + sep,
    cacheable: false,
    async read(file, onBytes, signal) {
      signal?.throwIfAborted();
      const path = pathOf(file);
      let handle;
      try {
        handle = await open(path, 'r');
      } catch (error) {
        if (isNotFound(error)) throw new ModelFileMissingError(file, `not found in ${root}`, { cause: error });
        throw error;
      }
      try {
        const { size } = await handle.stat();
        const bytes = new Uint8Array(size);
        let loaded = 0;
        while (loaded < size) {
          signal?.throwIfAborted();
          const { bytesRead } = await handle.read(bytes, loaded, Math.min(CHUNK_BYTES, size - loaded), loaded);
          if (bytesRead === 0) throw new ModelFormatError(file, `${path} shrank while being read (${loaded} of ${size} bytes)`);
          loaded += bytesRead;
          onBytes?.(loaded, size);
        }
        if (size === 0) onBytes?.(0, 0);
        return bytes;
      } finally {
        await handle.close();
      }
    },
    async has(file) {
      try {
        return (await stat(pathOf(file))).isFile();
      } catch (error) {
        if (isNotFound(error)) return false;
        throw error;
      }
    },
    async size(file) {
      try {
        const s = await stat(pathOf(file));
        return s.isFile() ? s.size : undefined;
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw error;
      }
    },
  };
}

// Keys (URLs, mostly) become paths: one directory level per "/"-separated segment, each segment
// percent-encoded with "." encoded too, and files named <segment>.bin. So no key can name "..",
// a file never collides with a directory another key needs, and temp files (which contain an
// unencoded ".tmp-") are never mistaken for entries.
const SUFFIX = '.bin';
const encodeSegment = (s: string) => (s === '' ? '%' : encodeURIComponent(s).replace(/[.*]/g, (c) => (c === '.' ? '%2E' : '%2A')));
const decodeSegment = (s: string) => (s === '%' ? '' : decodeURIComponent(s));

/**
 * A ModelCache in a directory (default `node_modules/.cache/webtune-models` under the working
 * directory). Each file is written to a temp file and renamed into place, so a crash or a full
 * disk never leaves half a file under a key.
 *
 * @example
 * const model = await loadModelFiles('https://huggingface.co/org/model/resolve/main/', { cache: nodeDirectoryCache() });
 */
export function nodeDirectoryCache(dir: string = join(process.cwd(), 'node_modules', '.cache', 'webtune-models')): ModelCache {
  const root = resolve(dir);
  const pathOf = (key: string) => {
    const segments = key.split('/').map(encodeSegment);
    segments[segments.length - 1] += SUFFIX;
    return join(root, ...segments);
  };
  const keyOf = (path: string): string | undefined => {
    const segments = relative(root, path).split(sep);
    const last = segments[segments.length - 1]!;
    if (!last.endsWith(SUFFIX) || last.slice(0, -SUFFIX.length).includes('.')) return undefined;
    segments[segments.length - 1] = last.slice(0, -SUFFIX.length);
    try {
      return segments.map(decodeSegment).join('/');
    } catch {
      return undefined;
    }
  };

  async function* walk(path: string): AsyncGenerator<string> {
    let entries;
    try {
      entries = await readdir(path, { withFileTypes: true });
    } catch (error) {
      if (isNotFound(error)) return;
      throw error;
    }
    for (const entry of entries) {
      const child = join(path, entry.name);
      if (entry.isDirectory()) yield* walk(child);
      else if (entry.isFile()) yield child;
    }
  }

  return {
    async get(key) {
      try {
        const buffer = await readFile(pathOf(key));
        return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw error;
      }
    },
    async put(key, bytes) {
      const path = pathOf(key);
      await mkdir(dirname(path), { recursive: true });
      const temp = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
      try {
        await writeFile(temp, bytes);
        await rename(temp, path);
      } catch (error) {
        await unlink(temp).catch(() => {});
        throw error;
      }
    },
    async delete(prefix) {
      const emptied = new Set<string>();
      for await (const path of walk(root)) {
        const key = keyOf(path);
        if (key !== undefined && key.startsWith(prefix)) {
          await rm(path, { force: true });
          emptied.add(dirname(path));
        }
      }
      // Tidy directories left empty, deepest first; one still in use simply refuses.
      for (const d of [...emptied].sort((a, b) => b.length - a.length)) {
        for (let p = d; p !== root && p.startsWith(root); p = dirname(p)) {
          try {
            await rmdir(p);
          } catch {
            break;
          }
        }
      }
    },
  };
}
