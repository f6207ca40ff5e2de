import * as Comlink from 'comlink';
import { runKernelSuite, type SuiteReport } from './kernel-suite.js';
import type { KernelWorkerApi } from './kernel-worker.js';

declare global {
  interface Window {
    kernelReports?: SuiteReport[];
    kernelError?: string;
  }
}

async function main() {
  const status = document.getElementById('status')!;
  const page = await runKernelSuite('page');
  status.textContent = `page: ${page.checks.filter((c) => c.ok).length}/${page.checks.length}; worker running…`;
  const worker = new Worker(new URL('./kernel-worker.ts', import.meta.url), { type: 'module' });
  const api = Comlink.wrap<KernelWorkerApi>(worker);
  const inWorker = await api.run();
  worker.terminate();
  window.kernelReports = [page, inWorker];
  status.textContent = JSON.stringify(window.kernelReports, null, 2);
}

main().catch((error: unknown) => {
  window.kernelError = String((error as Error)?.stack ?? error);
});
window.addEventListener('error', (event) => {
  window.kernelError = `${event.message} (${event.filename}:${event.lineno})`;
});
