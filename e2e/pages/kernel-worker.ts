import * as Comlink from 'comlink';
import { runKernelSuite } from './kernel-suite.js';

const api = { run: () => runKernelSuite('worker') };
export type KernelWorkerApi = typeof api;
Comlink.expose(api);
