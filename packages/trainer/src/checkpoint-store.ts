/**
 * Where checkpoints live between page loads: IndexedDB in browsers and workers
 * (indexedDbCheckpointStore), memory in Node and tests (MemoryCheckpointStore). Both keep the same
 * promises:
 *   - put writes a record whole or not at all; a failed put (QuotaExceededError -> StorageFullError)
 *     leaves nothing of the new record and every older record intact.
 *   - list reads only the small meta entries, never tensor bytes.
 *   - latest returns the newest checkpoint of a run that verifies (decodeCheckpoint), reporting
 *     newer ones that do not.
 *
 * IndexedDB layout (one object store, out-of-line string keys; default database
 * "webtune-checkpoints", store "checkpoints"):
 *   meta:<id>  CheckpointMeta as a plain object (a few hundred bytes)
 *   data:<id>  Uint8Array, the record's safetensors bytes (exactly its length: never a view on a
 *              larger buffer, which structured clone would store whole)
 * The meta entries are the index: a run's checkpoints are the meta entries with its runId. A
 * record's data and meta are written in one readwrite transaction (data first), so a crash, a
 * closed tab or a quota abort leaves both or neither; pruning deletes both keys of a record in one
 * transaction too. Give every store its own dbName: idb-keyval creates the object store only when
 * it creates the database.
 */
import { createStore, delMany, getMany, promisifyRequest, type UseStore } from 'idb-keyval';
import { CheckpointCorruptError, CheckpointNotFoundError, CheckpointWriteError, InvalidArgumentError, StorageFullError, formatBytes } from '@webtune/errors';
import {
  decodeCheckpoint,
  migrateCheckpointMeta,
  type CheckpointExpectation,
  type CheckpointMeta,
  type CheckpointRecord,
} from './checkpoint.js';

/**
 * Where a trainer keeps its checkpoints. The worker uses IndexedDB; an inline trainer uses memory unless
 * createTrainer({ inline: true, checkpoints }) passes a store; implement this to keep them elsewhere. An
 * implementation writes each record whole or not at all, and reports a write refused for space as StorageFullError.
 */
export interface CheckpointStore {
  /**
   * Writes the record (meta and data in one transaction: whole or absent), then prunes the run to
   * `keepLast` checkpoints: the one just written and the newest `keepLast - 1` others (by step).
   * QuotaExceededError (or an IndexedDB AbortError caused by it) -> StorageFullError; nothing of
   * the new record remains and older records stay intact. Writing an id that exists replaces it.
   */
  put(record: CheckpointRecord, keepLast: number): Promise<void>;
  /** Metadata of every checkpoint (of one run when given), newest first; reads only the small meta entries. */
  list(runId?: string): Promise<CheckpointMeta[]>;
  /** The stored record, unverified (decodeCheckpoint verifies it). CheckpointNotFoundError when absent. */
  get(id: string): Promise<CheckpointRecord>;
  /** Removes a checkpoint; removing one that does not exist does nothing. */
  delete(id: string): Promise<void>;
  /**
   * The newest checkpoint of the run that decodes cleanly (with `expect`: for this model and LoRA
   * configuration); corrupt newer ones are reported in `skipped`, not deleted. Undefined when the
   * run has no checkpoint. A CheckpointMismatchError (the run's checkpoint is for another model or
   * adapter) is thrown, not skipped; and when the run has checkpoints but none verifies, a
   * CheckpointCorruptError naming the newest is thrown rather than silently starting over.
   */
  latest(runId: string, expect?: CheckpointExpectation): Promise<{ record: CheckpointRecord; skipped: Array<{ id: string; error: Error }> } | undefined>;
}

// ---------------------------------------------------------------------------------------------
// Shared pieces

/**
 * Whether an error means the storage quota ran out: a DOMException named QuotaExceededError (or
 * its legacy code 22 / Firefox's NS_ERROR_DOM_QUOTA_REACHED), or an AbortError / IDB event whose
 * cause, or whose request's or transaction's error, is one.
 */
export function isQuotaExceededError(error: unknown, depth = 0): boolean {
  if (typeof error !== 'object' || error === null || depth > 3) return false;
  const e = error as { name?: unknown; code?: unknown; cause?: unknown; error?: unknown; target?: unknown; transaction?: unknown };
  if (e.name === 'QuotaExceededError' || e.name === 'NS_ERROR_DOM_QUOTA_REACHED') return true;
  if (e.code === 22 && typeof DOMException !== 'undefined' && error instanceof DOMException) return true;
  const nested: unknown[] = [e.cause, e.error];
  if (typeof e.target === 'object' && e.target !== null) {
    const t = e.target as { error?: unknown; transaction?: { error?: unknown } | null };
    nested.push(t.error, t.transaction?.error);
  }
  if (typeof e.transaction === 'object' && e.transaction !== null) nested.push((e.transaction as { error?: unknown }).error);
  return nested.some((n) => n !== error && isQuotaExceededError(n, depth + 1));
}

function storageFull(meta: CheckpointMeta, cause: unknown): StorageFullError {
  return new StorageFullError(`checkpoint "${meta.id}" (${formatBytes(meta.byteLength)}) did not fit and nothing of it was kept`, { cause });
}

/** Validates what put is given: a current-schema meta and bytes of the meta's length. */
function checkPut(record: CheckpointRecord, keepLast: number): CheckpointMeta {
  if (!(keepLast >= 1 && (Number.isInteger(keepLast) || keepLast === Infinity))) {
    throw new InvalidArgumentError(`keepLast must be a positive integer, got ${keepLast}.`);
  }
  const meta = migrateCheckpointMeta(record?.meta);
  if (!(record.bytes instanceof Uint8Array) || record.bytes.byteLength !== meta.byteLength) {
    throw new CheckpointCorruptError(meta.id, `refusing to store it: its data is ${record.bytes?.byteLength ?? 'missing'} bytes but its meta says ${meta.byteLength}`);
  }
  return meta;
}

/** Newest first: within a run by step; across runs by creation time. Ties by id, so the order is stable. */
function newestFirst(a: CheckpointMeta, b: CheckpointMeta): number {
  if (a.runId === b.runId && a.step !== b.step) return b.step - a.step;
  if (a.createdAt !== b.createdAt) return b.createdAt - a.createdAt;
  if (a.step !== b.step) return b.step - a.step;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

function sortMetas(metas: CheckpointMeta[], runId?: string): CheckpointMeta[] {
  const chosen = runId === undefined ? metas : metas.filter((m) => m.runId === runId);
  // One run: by step (creation time breaks ties); all runs: by creation time.
  return chosen.sort(runId === undefined ? newestFirst : (a, b) => b.step - a.step || b.createdAt - a.createdAt || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
}

/** Ids of the run's checkpoints that pruning removes: all but `kept` and the newest keepLast - 1 others. */
function pruned(runMetas: CheckpointMeta[], kept: string, keepLast: number): string[] {
  const others = sortMetas(runMetas.filter((m) => m.id !== kept), runMetas[0]?.runId);
  return others.slice(Math.max(0, keepLast - 1)).map((m) => m.id);
}

async function latestOf(store: CheckpointStore, runId: string, expect?: CheckpointExpectation) {
  const metas = await store.list(runId);
  const skipped: Array<{ id: string; error: Error }> = [];
  for (const m of metas) {
    try {
      const record = await store.get(m.id);
      await decodeCheckpoint(record, expect);
      return { record, skipped };
    } catch (error) {
      // Deleted since the listing (another tab): not corrupt, just gone.
      if (error instanceof CheckpointCorruptError || error instanceof CheckpointNotFoundError) {
        skipped.push({ id: m.id, error });
        continue;
      }
      throw error;
    }
  }
  const corrupt = skipped.filter((s) => s.error instanceof CheckpointCorruptError);
  if (corrupt.length > 0) {
    throw new CheckpointCorruptError(
      corrupt[0]!.id,
      `none of run "${runId}"'s ${metas.length} checkpoint(s) verifies (newest: ${corrupt[0]!.error.message}); ` +
        'delete them (or use another runId) to start the run over',
    );
  }
  return undefined;
}

/** Exactly the bytes, in a buffer of their own. */
const tight = (bytes: Uint8Array): Uint8Array => (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice());

// ---------------------------------------------------------------------------------------------
// IndexedDB

const META = 'meta:';
const DATA = 'data:';

export const DEFAULT_CHECKPOINT_DB = 'webtune-checkpoints';
export const DEFAULT_CHECKPOINT_STORE = 'checkpoints';

/** Checkpoints in IndexedDB (browsers and workers); see the file header for the key layout. */
export function indexedDbCheckpointStore(options: { dbName?: string; storeName?: string } = {}): CheckpointStore {
  if (typeof indexedDB === 'undefined') {
    throw new InvalidArgumentError('IndexedDB is not available here (Node, or a context without storage); use MemoryCheckpointStore or another CheckpointStore.');
  }
  const idb: UseStore = createStore(options.dbName ?? DEFAULT_CHECKPOINT_DB, options.storeName ?? DEFAULT_CHECKPOINT_STORE);

  const list = async (runId?: string): Promise<CheckpointMeta[]> => {
    // Every key starting "meta:" (':' + 1 is ';'), values only: no tensor bytes are read.
    const raw = await idb('readonly', (s) => promisifyRequest(s.getAll(IDBKeyRange.bound(META, 'meta;', false, true))));
    const metas: CheckpointMeta[] = [];
    for (const r of raw as unknown[]) {
      try {
        metas.push(migrateCheckpointMeta(r));
      } catch {
        // An unreadable meta entry belongs to no run we can name; get(id) reports it.
      }
    }
    return sortMetas(metas, runId);
  };

  const store: CheckpointStore = {
    async put(record, keepLast) {
      const meta = checkPut(record, keepLast);
      const data = tight(record.bytes);
      const write = () => idb('readwrite', (s) => new Promise<void>((resolve, reject) => {
        const tx = s.transaction;
        tx.oncomplete = () => resolve();
        // tx.error is the request error that aborted it (QuotaExceededError), null after abort().
        tx.onabort = () => reject(tx.error ?? new DOMException(`The transaction writing checkpoint "${meta.id}" was aborted.`, 'AbortError'));
        try {
          s.put(data, DATA + meta.id);
          s.put(meta, META + meta.id);
        } catch (error) {
          // e.g. DataCloneError: nothing of this transaction may commit.
          reject(error);
          try {
            tx.abort();
          } catch {
            // already finished
          }
        }
      }));
      for (let attempt = 1; ; attempt++) {
        try {
          await write();
          break;
        } catch (error) {
          if (isQuotaExceededError(error)) throw storageFull(meta, error);
          // A transaction the browser aborted (a frozen page's write timed out while another tab used
          // the database) left nothing behind: write it once more before giving up.
          const name = (error as { name?: unknown } | null)?.name;
          if (attempt === 1 && (name === 'TimeoutError' || name === 'AbortError')) continue;
          throw new CheckpointWriteError(meta.id, `${String(name ?? 'Error')}: ${(error as Error)?.message ?? String(error)}`, { cause: error });
        }
      }
      const remove = pruned(await list(meta.runId), meta.id, keepLast);
      if (remove.length > 0) await delMany(remove.flatMap((id) => [META + id, DATA + id]), idb);
    },

    list,

    async get(id) {
      const [rawMeta, bytes] = await getMany<unknown>([META + id, DATA + id], idb);
      if (rawMeta === undefined) throw new CheckpointNotFoundError(id);
      const meta = migrateCheckpointMeta(rawMeta, id);
      if (meta.id !== id) throw new CheckpointCorruptError(id, `its meta entry names checkpoint "${meta.id}"`);
      if (!(bytes instanceof Uint8Array)) throw new CheckpointCorruptError(id, 'its data entry is missing');
      return { meta, bytes };
    },

    async delete(id) {
      await delMany([META + id, DATA + id], idb);
    },

    latest(runId, expect) {
      return latestOf(store, runId, expect);
    },
  };
  return store;
}

// ---------------------------------------------------------------------------------------------
// Memory

/**
 * Checkpoints in memory, with the IndexedDB store's semantics (records are copied in and out, so
 * callers cannot change what is stored). `quotaBytes` limits the total data bytes held, like a
 * browser's storage quota: a put that would exceed it fails with a QuotaExceededError DOMException,
 * mapped to StorageFullError, before anything is written (the only way to cause that fault in Node).
 */
export class MemoryCheckpointStore implements CheckpointStore {
  readonly quotaBytes: number;
  private readonly records = new Map<string, CheckpointRecord>();

  constructor(options: { quotaBytes?: number } = {}) {
    this.quotaBytes = options.quotaBytes ?? Infinity;
  }

  /** Data bytes held. */
  get usedBytes(): number {
    let n = 0;
    for (const r of this.records.values()) n += r.bytes.byteLength;
    return n;
  }

  async put(record: CheckpointRecord, keepLast: number): Promise<void> {
    const meta = checkPut(record, keepLast);
    const replaced = this.records.get(meta.id)?.bytes.byteLength ?? 0;
    if (this.usedBytes - replaced + record.bytes.byteLength > this.quotaBytes) {
      const quota = new DOMException(
        `Storing ${formatBytes(record.bytes.byteLength)} would exceed the quota of ${formatBytes(this.quotaBytes)}.`,
        'QuotaExceededError',
      );
      throw storageFull(meta, quota);
    }
    this.records.set(meta.id, { meta: structuredClone(meta), bytes: record.bytes.slice() });
    for (const id of pruned([...this.records.values()].filter((r) => r.meta.runId === meta.runId).map((r) => r.meta), meta.id, keepLast)) {
      this.records.delete(id);
    }
  }

  async list(runId?: string): Promise<CheckpointMeta[]> {
    return sortMetas([...this.records.values()].map((r) => structuredClone(r.meta)), runId);
  }

  async get(id: string): Promise<CheckpointRecord> {
    const r = this.records.get(id);
    if (!r) throw new CheckpointNotFoundError(id);
    return { meta: structuredClone(r.meta), bytes: r.bytes.slice() };
  }

  async delete(id: string): Promise<void> {
    this.records.delete(id);
  }

  latest(runId: string, expect?: CheckpointExpectation): ReturnType<CheckpointStore['latest']> {
    return latestOf(this, runId, expect);
  }
}
