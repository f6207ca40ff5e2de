/**
 * LoRA layer forward + backward against PyTorch autograd (scripts/make_lora_fixtures.py), shared
 * by the gpu lane and the browser lane. The NF4 cases quantize W with webtune's quantizer, which
 * the unit lane proves bit-identical to the bitsandbytes implementation the fixture used.
 */
import { CommandRecorder, createLoraKernels, createTensor, quantizeNF4, readF32, uploadNF4, type GpuContext, type LoraLayer } from '../../src/index.js';
import { f32, loraFixture, type LoraCase } from '../fixtures.js';
import { worstError } from '../random.js';
import type { Check } from './nf4-cases.js';

export const LORA_CASES = loraFixture.cases;
/** float32 against PyTorch's float32: different summation order only. */
export const LORA_TOLERANCE = { atol: 2e-5, rtol: 1e-4 };

/** `dequantized`: the NF4 forward and input gradient go through a dequantized scratch (what training uses). */
export async function runLoraCase(ctx: GpuContext, c: LoraCase, options: { dequantized?: boolean } = {}): Promise<Check> {
  const { m, k, n, rank: r } = c;
  ctx.device.pushErrorScope('validation');
  const t = (label: string, shape: number[], data?: Float32Array) => createTensor(ctx, { shape, label, data });
  const x = t('x', [m, k], f32(c.x));
  const a = t('lora A', [r, k], f32(c.loraA));
  const b = t('lora B', [n, r], f32(c.loraB));
  let layer: LoraLayer;
  if (c.weightFormat === 'nf4') {
    const q = quantizeNF4(f32(c.weight), { shape: [n, k], blockSize: 64, doubleQuant: true });
    layer = { base: { format: 'nf4', weight: uploadNF4(ctx, q) }, a, b, scale: c.scale };
  } else {
    layer = { base: { format: 'dense', weight: t('W', [n, k], f32(c.weight)) }, a, b, scale: c.scale };
  }
  const kernels = await createLoraKernels(ctx, {
    base: c.weightFormat === 'nf4' ? { format: 'nf4', blockSize: 64, doubleQuant: true } : { format: 'dense' },
  });
  const h = t('h', [m, r]);
  const y = t('y', [m, n]);
  const g = t('dL/dy', [m, n], f32(c.upstream));
  const gB = t('gB', [m, r]);
  const dA = t('dA', [r, k]);
  const dB = t('dB', [n, r]);
  const dx = t('dx', [m, k]);
  let recorder = new CommandRecorder(ctx, `lora ${c.name}`);
  // NaN-filled: the forward must dequantize before it reads, and (checked below) must have written it.
  const weightScratch = options.dequantized ? t('W scratch', [n, k], new Float32Array(n * k).fill(Number.NaN)) : undefined;
  kernels.forward(recorder, { layer, m, x, h, y, weightScratch });
  let forwardDequantized = true;
  if (weightScratch) {
    recorder.submit();
    forwardDequantized = !Number.isNaN((await readF32(ctx, weightScratch))[0]!);
    recorder = new CommandRecorder(ctx, `lora ${c.name} backward`);
  }
  kernels.backward(recorder, { layer, m, x, h, gradOutput: g, gB, gradA: dA, gradB: dB, gradInput: dx, weightScratch });
  recorder.submit();
  const got = { y: await readF32(ctx, y), dx: await readF32(ctx, dx), dA: await readF32(ctx, dA), dB: await readF32(ctx, dB) };
  const validation = await ctx.device.popErrorScope();
  for (const tensor of [x, a, b, h, y, g, gB, dA, dB, dx, weightScratch]) tensor?.release();
  layer.base.weight.release();

  const problems: string[] = [];
  if (validation) problems.push(`validation: ${validation.message}`);
  if (!forwardDequantized) problems.push('the forward left weightScratch unwritten: it did not run on the dequantized weight');
  const scaleAtol = (inner: number) => LORA_TOLERANCE.atol * Math.sqrt(inner);
  for (const [name, inner] of [['y', k], ['dx', n], ['dA', m], ['dB', m]] as const) {
    const r2 = worstError(got[name], f32(c[name]), scaleAtol(inner), LORA_TOLERANCE.rtol);
    if (r2.ratio > 1) problems.push(`${name}: ${JSON.stringify(r2)}`);
  }
  return { name: `lora: ${c.name}`, ok: problems.length === 0, detail: problems.join('; ') };
}
