/**
 * webtune/worker: the trainer's worker entry. Importing it starts serving (a declared side
 * effect): an app's own worker file is `import 'webtune/worker';`, then
 * `createTrainer({ worker: new Worker(new URL('./my-worker.js', import.meta.url), { type: 'module' }) })`.
 * @packageDocumentation
 */
import '@webtune/sdk/worker';
