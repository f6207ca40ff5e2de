/**
 * What a worker entry does: one TrainerSession exposed over Comlink, with checkpoints in
 * IndexedDB and the typed-error transfer installed. worker.ts and onnx-worker.ts call it on import.
 */
import * as Comlink from 'comlink';
import { indexedDbCheckpointStore } from '@webtune/trainer';
import { TrainerSession, type SessionEnvironment } from './session.js';
import { registerErrorTransfer } from './transfer.js';

/** Serves a TrainerSession to the page that started this worker (createTrainer() talks to it). */
export function exposeTrainerSession(env: SessionEnvironment = {}): void {
  registerErrorTransfer();
  Comlink.expose(new TrainerSession({ checkpoints: indexedDbCheckpointStore(), ...env }));
}
