/**
 * Typed errors across the worker boundary. Comlink's own handler sends only name, message and
 * stack, so a `ModelFileMissingError` thrown in the worker would arrive as a plain Error. This
 * replaces Comlink's "throw" handler on both sides: a WebtuneError travels with its literal `name`,
 * `code` and its own data fields (file, url, status, suggestions, ...), and is rebuilt from
 * @webtune/errors' ERROR_CLASSES registry, so `instanceof` and `error.code` work on the main thread
 * in minified builds too (class names differ between a page's and a worker's bundle; the literal
 * `name` does not). Other errors keep Comlink's behaviour.
 */
import * as Comlink from 'comlink';
import { ERROR_CLASSES, WebtuneError } from '@webtune/errors';

/** A WebtuneError as it crosses postMessage. */
export interface SerializedWebtuneError {
  webtune: true;
  name: string;
  message: string;
  stack: string | undefined;
  fields: Record<string, unknown>;
}

function cloneable(value: unknown): boolean {
  try {
    structuredClone(value);
    return true;
  } catch {
    return false;
  }
}

/** The error as plain, cloneable data: its name, message, stack and every cloneable own field. */
export function serializeWebtuneError(error: WebtuneError): SerializedWebtuneError {
  const fields: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(error)) {
    if (key !== 'cause' && cloneable(value)) fields[key] = value;
  }
  return { webtune: true, name: error.name, message: error.message, stack: error.stack, fields };
}

/** The same class (WebtuneError for a name this build does not know), with the same fields. */
export function deserializeWebtuneError(s: SerializedWebtuneError): WebtuneError {
  const cls = Object.hasOwn(ERROR_CLASSES, s.name) ? ERROR_CLASSES[s.name]! : WebtuneError;
  const error = Object.create(cls.prototype as object) as WebtuneError;
  Object.defineProperty(error, 'message', { value: s.message, writable: true, configurable: true });
  Object.defineProperty(error, 'stack', { value: s.stack, writable: true, configurable: true });
  Object.assign(error, s.fields);
  return error;
}

let registered = false;

/** Installs the handler (idempotent); the worker entries and createTrainer() both call it. */
export function registerErrorTransfer(): void {
  if (registered) return;
  registered = true;
  const base = Comlink.transferHandlers.get('throw')!;
  Comlink.transferHandlers.set('throw', {
    canHandle: base.canHandle,
    serialize(thrown) {
      const value = (thrown as { value: unknown }).value;
      if (value instanceof WebtuneError) return [{ isError: true, webtune: serializeWebtuneError(value) }, []];
      return base.serialize(thrown);
    },
    deserialize(serialized) {
      const s = serialized as { webtune?: SerializedWebtuneError };
      if (s.webtune) throw deserializeWebtuneError(s.webtune);
      return base.deserialize(serialized);
    },
  });
}
