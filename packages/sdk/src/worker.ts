/**
 * The trainer's worker entry (safetensors models). Importing it starts serving: it is a side
 * effect, and package.json's `sideEffects` says so, so that an app's own worker file
 * (`import 'webtune/worker';`) keeps it in production builds. createTrainer() starts it itself.
 */
import { exposeTrainerSession } from './expose.js';

exposeTrainerSession();
