/**
 * One run per browser: a Web Lock (navigator.locks) named after the run is held while train() or
 * resume() runs it, so two tabs of one origin cannot train the same run or write its checkpoints
 * at the same time. Locks are per origin and released by the browser when a tab closes or
 * crashes, so a lock is never left behind. Where the API is missing (Node, older browsers) or
 * refused (an opaque origin, such as a sandboxed iframe) nothing is locked.
 */
import { InvalidArgumentError, RunLockedError } from '@webtune/errors';

/** What train() does when another tab holds the run: 'error' (RunLockedError, default) or 'wait'. */
export type IfRunLocked = 'error' | 'wait';

/** Throws InvalidArgumentError for anything but undefined, 'error' or 'wait' (a typo would otherwise wait forever). */
export function checkIfRunLocked(value: unknown): void {
  if (value !== undefined && value !== 'error' && value !== 'wait') throw new InvalidArgumentError(`ifRunLocked must be 'error' or 'wait', got ${JSON.stringify(value)}.`);
}

interface LockManagerLike {
  request(name: string, options: { ifAvailable?: boolean; signal?: AbortSignal }, callback: (lock: unknown) => Promise<void> | void): Promise<unknown>;
}

/**
 * How long 'error' waits before it reports the lock as held. A tab that reloads or closes releases
 * its lock when its worker ends, which can trail the new page's first train() by a moment; a run
 * really trained elsewhere holds it far longer.
 */
const LOCK_GRACE_MS = 2000;

/**
 * Takes the run's lock (named `webtune:run:<runId>`, one per run id, shared by every tab of the
 * origin); resolves to its release function, or undefined where there are no Web Locks. With
 * 'error', a lock still held after LOCK_GRACE_MS rejects with RunLockedError; with 'wait', it
 * resolves when the holder releases it (`onWait` is called first, once). Aborting `signal` ends
 * either wait with RunLockedError.
 */
export function acquireRunLock(runId: string, ifLocked: IfRunLocked, options: { onWait?: () => void; signal?: AbortSignal } = {}): Promise<(() => void) | undefined> {
  const locks = (globalThis as { navigator?: { locks?: LockManagerLike } }).navigator?.locks;
  if (!locks || typeof locks.request !== 'function') return Promise.resolve(undefined);
  const name = `webtune:run:${runId}`;
  // The lock is held until the callback's promise settles: that promise's resolver is the release function.
  const hold = (resolve: (release: () => void) => void) => new Promise<void>((release) => resolve(release));
  return new Promise((resolve, reject) => {
    locks.request(name, { ifAvailable: true }, (lock) => {
      if (lock) return hold(resolve);
      if (ifLocked === 'wait') options.onWait?.();
      const signals = [options.signal, ifLocked === 'error' ? AbortSignal.timeout(LOCK_GRACE_MS) : undefined].filter((x): x is AbortSignal => x !== undefined);
      const signal = signals.length > 1 ? AbortSignal.any(signals) : signals[0];
      locks.request(name, signal ? { signal } : {}, () => hold(resolve)).catch((error: unknown) => {
        reject(signal?.aborted ? new RunLockedError(runId, options.signal?.aborted ? 'the wait for it was stopped' : undefined) : error);
      });
      return undefined;
    }).catch((error: unknown) => {
      // An opaque origin (a sandboxed iframe) may not use locks: train without one, as where the API is missing.
      if (error instanceof Error && error.name === 'SecurityError') resolve(undefined);
      else reject(error);
    });
  });
}
