import * as Comlink from 'comlink';
import { createGpuContext, formatBytes, WebGPUUnavailableError } from '@webtune/gpu';
import type { MatmulWorkerApi } from './matmul-worker.js';

const adapterSection = document.getElementById('adapter')!;
const runButton = document.getElementById('run') as HTMLButtonElement;
const sizeSelect = document.getElementById('size') as HTMLSelectElement;
const result = document.getElementById('matmul-result')!;

function row(name: string, value: string | boolean): string {
  const cell = typeof value === 'boolean' ? `<span class="${value ? 'yes' : 'no'}">${value ? 'yes' : 'no'}</span>` : value;
  return `<tr><td>${name}</td><td>${cell}</td></tr>`;
}

async function showAdapter() {
  try {
    const ctx = await createGpuContext();
    const { adapter, features, limits } = ctx;
    adapterSection.innerHTML = `<h2>Adapter</h2><table>
      ${row('Device', [adapter.vendor, adapter.architecture, adapter.description].filter(Boolean).join(' · ') || 'unnamed')}
      ${row('Software renderer (timings are not GPU timings)', adapter.isSoftware)}
      ${row('shader-f16', features.shaderF16)}
      ${row('subgroups', features.subgroups)}
      ${row('timestamp-query', features.timestampQuery)}
      ${row('Max storage binding', formatBytes(limits.maxStorageBufferBindingSize))}
      ${row('Max buffer', formatBytes(limits.maxBufferSize))}
      ${row('Workgroup storage', formatBytes(limits.maxComputeWorkgroupStorageSize))}
      ${row('Invocations per workgroup', String(limits.maxComputeInvocationsPerWorkgroup))}
    </table>`;
    ctx.destroy();
    runButton.disabled = false;
  } catch (error) {
    adapterSection.classList.add('error');
    const message = error instanceof WebGPUUnavailableError ? error.message : `Could not start WebGPU: ${(error as Error).message}`;
    adapterSection.innerHTML = `<h2>WebGPU is not available</h2><p id="webgpu-error"></p>`;
    document.getElementById('webgpu-error')!.textContent = message;
  }
}

const worker = Comlink.wrap<MatmulWorkerApi>(new Worker(new URL('./matmul-worker.ts', import.meta.url), { type: 'module' }));

runButton.addEventListener('click', async () => {
  const size = Number(sizeSelect.value);
  runButton.disabled = true;
  result.textContent = `Running a ${size}×${size} matmul in the worker…`;
  try {
    const r = await worker.run(size);
    result.textContent = `${size}×${size}×${size}: ${r.ms.toFixed(1)} ms, ${r.gflops.toFixed(2)} GFLOP/s, ` +
      `max |error| vs CPU ${r.maxError.toExponential(1)}, peak GPU memory ${formatBytes(r.peakBytes)}.`;
  } catch (error) {
    result.textContent = `Failed: ${(error as Error).message}`;
  } finally {
    runButton.disabled = false;
  }
});

void showAdapter();
