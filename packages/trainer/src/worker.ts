/**
 * The worker entry: one TrainerSession exposed over Comlink, with checkpoints in IndexedDB.
 * createTrainer() (client.ts) starts it; an app with its own bundler setup can start it itself:
 * `new Worker(new URL('@webtune/trainer/worker', import.meta.url), { type: 'module' })`.
 */
import * as Comlink from 'comlink';
import { indexedDbCheckpointStore } from './checkpoint-store.js';
import { TrainerSession } from './session.js';
import { registerErrorTransfer } from './transfer.js';

registerErrorTransfer();
Comlink.expose(new TrainerSession({ checkpoints: indexedDbCheckpointStore() }));
