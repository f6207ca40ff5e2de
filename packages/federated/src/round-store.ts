/**
 * Where the federated client keeps what must survive a reload: its registration (client id and
 * token), its privacy accountant, and the state of the round in progress (phase 'training',
 * 'encoded' with the exact payload bytes and update id, or 'uploaded'). One value per key; the
 * client writes its whole record with one `set`, so a crash leaves the old record or the new one,
 * never a mix.
 *
 *   indexedDbRoundStore(): IndexedDB (database "webtune-federated", object store "rounds") in
 *                          browsers and workers.
 *   MemoryRoundStore:      a Map, for Node and tests. Values are structured-cloned on the way in
 *                          and out, as IndexedDB does, so a caller mutating its copy changes nothing
 *                          stored (and tests that "reload" by building a new client on the same
 *                          store see exactly what IndexedDB would give back).
 */
import { createStore, del, get, set, type UseStore } from 'idb-keyval';
import { StorageFullError } from '@webtune/errors';

/**
 * Key-value storage for what the federated client must keep across reloads (registration, privacy
 * accountant, round in progress). indexedDbRoundStore() and MemoryRoundStore are the built-in ones;
 * implement it to keep that state elsewhere.
 */
export interface RoundStateStore {
  /** The stored value, or undefined. */
  get(key: string): Promise<unknown>;
  /** Replaces the value whole (values are structured-cloneable: plain objects, numbers, strings, Uint8Array). */
  set(key: string, value: unknown): Promise<void>;
  /** Removes the key; removing a missing key does nothing. */
  delete(key: string): Promise<void>;
}

/** The IndexedDB database indexedDbRoundStore() uses by default. */
export const DEFAULT_ROUND_DB = 'webtune-federated';
/** The object store indexedDbRoundStore() uses by default. */
export const DEFAULT_ROUND_STORE = 'rounds';

function isQuotaError(error: unknown): boolean {
  const name = (error as { name?: string } | undefined)?.name;
  return name === 'QuotaExceededError' || (name === 'AbortError' && /quota/i.test(String((error as Error).message)));
}

/** IndexedDB through idb-keyval (its own database, so the object store is created with it). */
export function indexedDbRoundStore(dbName = DEFAULT_ROUND_DB, storeName = DEFAULT_ROUND_STORE): RoundStateStore {
  let store: UseStore | undefined;
  const use = () => (store ??= createStore(dbName, storeName));
  return {
    get: (key) => get(key, use()),
    set: async (key, value) => {
      try {
        await set(key, value, use());
      } catch (error) {
        if (isQuotaError(error)) throw new StorageFullError(`saving federated round state "${key}"`, { cause: error });
        throw error;
      }
    },
    delete: (key) => del(key, use()),
  };
}

/** In memory; values are structured-cloned in and out, as IndexedDB would. */
export class MemoryRoundStore implements RoundStateStore {
  private readonly values = new Map<string, unknown>();

  async get(key: string): Promise<unknown> {
    return this.values.has(key) ? structuredClone(this.values.get(key)) : undefined;
  }

  async set(key: string, value: unknown): Promise<void> {
    this.values.set(key, structuredClone(value));
  }

  async delete(key: string): Promise<void> {
    this.values.delete(key);
  }

  /** The keys held (for tests and debugging). */
  keys(): string[] {
    return [...this.values.keys()];
  }
}

/** IndexedDB where it exists (browsers, workers), memory otherwise (Node). */
export function defaultRoundStore(): RoundStateStore {
  return typeof indexedDB !== 'undefined' ? indexedDbRoundStore() : new MemoryRoundStore();
}
