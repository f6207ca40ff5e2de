/**
 * One run per browser: a Web Lock (navigator.locks) named after the run is held while train() or
 * resume() runs it, so two tabs of one origin cannot train the same run or write its checkpoints
 * at the same time. Locks are per origin and released by the browser when a tab closes or
 * crashes, so a lock is never left behind. Where the API is missing (Node, older browsers) nothing
 * is locked, and the caller is told so.
 */
import { RunLockedError } from '@webtune/errors';

/** What train() does when another tab holds the run: 'error' (RunLockedError, default) or 'wait'. */
export type IfRunLocked = 'error' | 'wait';

/** The lock's name: one per run id, shared by every tab of the origin. */
export const runLockName = (runId: string) => `webtune:run:${runId}`;

interface LockManagerLike {
  request(name: string, options: { ifAvailable?: boolean; signal?: AbortSignal }, callback: (lock: unknown) => Promise<void> | void): Promise<unknown>;
}

/**
 * How long 'error' waits before it reports the lock as held. A tab that reloads or closes releases
 * its lock when its worker ends, which can trail the new page's first train() by a moment; a run
 * really trained elsewhere holds it far longer.
 */
export const LOCK_GRACE_MS = 2000;

/**
 * Takes the run's lock; resolves to its release function, or undefined where there are no Web
 * Locks. With 'error', a lock still held after LOCK_GRACE_MS rejects with RunLockedError; with
 * 'wait', it resolves when the holder releases it (`onWait` is called first, once).
 */
export function acquireRunLock(runId: string, ifLocked: IfRunLocked, onWait?: () => void): Promise<(() => void) | undefined> {
  const locks = (globalThis as { navigator?: { locks?: LockManagerLike } }).navigator?.locks;
  if (!locks || typeof locks.request !== 'function') return Promise.resolve(undefined);
  const name = runLockName(runId);
  // The lock is held until the callback's promise settles: that promise's resolver is the release function.
  const hold = (resolve: (release: () => void) => void) => new Promise<void>((release) => resolve(release));
  return new Promise((resolve, reject) => {
    void locks.request(name, { ifAvailable: true }, (lock) => {
      if (lock) return hold(resolve);
      if (ifLocked === 'wait') onWait?.();
      const signal = ifLocked === 'error' ? AbortSignal.timeout(LOCK_GRACE_MS) : undefined;
      void locks.request(name, signal ? { signal } : {}, () => hold(resolve)).catch((error: unknown) => {
        reject(signal?.aborted ? new RunLockedError(runId) : error);
      });
      return undefined;
    }).catch(reject);
  });
}
