/**
 * The browser lane's kernel suite: the small rows of the same test tables the gpu lane runs,
 * executed on whatever adapter the page or worker gets (SwiftShader in CI). The matmul rows run
 * twice: with the adapter's default tuning and with 'tiled' (the hardware-GPU default, which the
 * CI adapter would not pick).
 */
import { createGpuContext, type GpuContext } from '@webtune/gpu';
import { MATMUL_CASES, MATMUL_TOLERANCE, runMatmulCase } from '../../packages/gpu/test/cases/matmul-cases.js';
import { checkDequantizeCases, checkQuantizeCases, NF4_MATMUL_CASES, runNF4MatmulCase, type Check } from '../../packages/gpu/test/cases/nf4-cases.js';
import { LORA_CASES, runLoraCase } from '../../packages/gpu/test/cases/lora-cases.js';

export interface SuiteReport {
  where: 'page' | 'worker';
  adapter: string;
  features: GpuContext['features'];
  maxStorageBufferBindingSize: number;
  checks: Check[];
  uncapturedErrors: string[];
  error?: string;
}

export async function runKernelSuite(where: 'page' | 'worker'): Promise<SuiteReport> {
  let ctx: GpuContext | undefined;
  try {
    ctx = await createGpuContext();
    const checks: Check[] = [];
    const matmulChecks = async (on: GpuContext, prefix: string) => {
      for (const c of MATMUL_CASES.small) {
        const r = await runMatmulCase(on, c);
        checks.push({ name: `${prefix}: ${c.name}`, ok: r.worst.ratio <= 1 && !r.validationError, detail: JSON.stringify({ ...r.worst, tol: MATMUL_TOLERANCE[c.dtype] }) });
      }
    };
    await matmulChecks(ctx, 'matmul');
    const tiled = await createGpuContext({ tuning: { matmul: 'tiled' } });
    try {
      await matmulChecks(tiled, 'matmul tiled');
      checks.push({ name: 'matmul tiled: no uncaptured errors', ok: tiled.uncapturedErrors.length === 0, detail: tiled.uncapturedErrors.map((e) => e.message).join('\n') });
    } finally {
      tiled.destroy();
    }
    // Skip the 300-block fixture in the browser: SwiftShader's 256-way argmin loop is slow; Dawn runs it.
    checks.push(...(await checkQuantizeCases(ctx, (name) => !name.includes('300 blocks'))));
    checks.push(...(await checkDequantizeCases(ctx)));
    for (const c of NF4_MATMUL_CASES.small) checks.push(await runNF4MatmulCase(ctx, c));
    for (const c of LORA_CASES) checks.push(await runLoraCase(ctx, c));
    return {
      where,
      adapter: ctx.adapter.name,
      features: ctx.features,
      maxStorageBufferBindingSize: ctx.limits.maxStorageBufferBindingSize,
      checks,
      uncapturedErrors: ctx.uncapturedErrors.map((e) => e.message),
    };
  } catch (error) {
    return {
      where, adapter: ctx?.adapter.description ?? 'none', features: ctx?.features ?? { shaderF16: false, subgroups: false, timestampQuery: false },
      maxStorageBufferBindingSize: 0, checks: [], uncapturedErrors: [], error: `${(error as Error).name}: ${(error as Error).message}`,
    };
  } finally {
    ctx?.destroy();
  }
}
