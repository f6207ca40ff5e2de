/**
 * The benchmark suite, run the same way in Node (Dawn) and in a browser page: webtune side by
 * side with TensorFlow.js' WebGPU backend (and onnxruntime-web's WebGPU provider where given),
 * on the same adapter, in the same process. Every row is the median of `runs` timed runs after
 * one untimed warm-up; every timed run ends when the result is back on the CPU, for every library.
 */
import type * as TF from '@tensorflow/tfjs-core';
import type * as ORT from 'onnxruntime-web';
import {
  CommandRecorder, createLoraKernels, createMatmulKernel, createNF4MatmulKernel, createTensor, dequantizeNF4Gpu,
  quantizeNF4, readF32, uploadNF4, type GpuContext,
} from '@webtune/gpu';

export interface BenchRow {
  benchmark: string;
  shape: string;
  library: string;
  medianMs: number;
  gflops?: number;
  /** Bytes of weight the kernel reads (NF4 rows); for 'ONNX forward', webtune's uploaded weights or the ONNX file's size. */
  weightBytes?: number;
  /** Prompt tokens per second (the 'ONNX forward' rows, bench/onnx-forward.ts). */
  tokensPerSecond?: number;
  runs: number;
}

export interface BenchOptions {
  matmulSizes: number[];
  runs: number;
  nf4Shapes: [number, number, number][];
  /** Groups to run (default all): 'matmul', 'nf4', 'lora' (both lanes add 'attention': bench/attention.ts; the browser page adds 'onnx': bench/onnx-forward.ts, and 'generate': bench/generate.ts). */
  only?: string[];
  log?: (line: string) => void;
}

/** Wall times (ms) of `runs` calls after one warm-up call. */
export async function timedRuns(runs: number, fn: () => Promise<void>): Promise<number[]> {
  await fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await fn();
    times.push(performance.now() - start);
  }
  return times;
}

/** Median wall time of `runs` calls after one warm-up call. */
export async function median(runs: number, fn: () => Promise<void>): Promise<number> {
  return medianOf(await timedRuns(runs, fn));
}

/** The median of `values` (the mean of the middle two for an even count). */
export function medianOf(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Deterministic operands for the benchmarks (the kernels' time does not depend on the values). */
export const fill = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + seed) * 0.5);

export async function runBenchSuite(ctx: GpuContext, tf: typeof TF, ort: typeof ORT | undefined, o: BenchOptions): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const log = o.log ?? (() => {});
  const push = (row: BenchRow) => {
    rows.push(row);
    log(`${row.benchmark} ${row.shape} ${row.library}: ${row.medianMs.toFixed(2)} ms${row.gflops ? `, ${row.gflops.toFixed(2)} GFLOP/s` : ''}`);
  };

  const selected = (group: string) => !o.only?.length || o.only.includes(group);

  // Square f32 matmul.
  for (const n of selected('matmul') ? o.matmulSizes : []) {
    const flops = 2 * n ** 3;
    const a = fill(n * n, 1);
    const b = fill(n * n, 2);
    const ta = createTensor(ctx, { shape: [n, n], data: a, label: 'bench A' });
    const tb = createTensor(ctx, { shape: [n, n], data: b, label: 'bench B' });
    const tc = createTensor(ctx, { shape: [n, n], label: 'bench C' });
    // The adapter's own kernel, then the workgroup-tiled one (the hardware-GPU default) on the same
    // buffers, so a CPU adapter's figure for it stands next to its default's. Same device and
    // pipeline cache; only the tuning differs.
    const kernels = [
      ['webtune', await createMatmulKernel(ctx)],
      ['webtune tiled', await createMatmulKernel({ ...ctx, tuning: { ...ctx.tuning, matmul: 'tiled' } })],
    ] as const;
    for (const [library, kernel] of kernels) {
      const ms = await median(o.runs, async () => {
        const r = new CommandRecorder(ctx, `bench ${library}`);
        kernel.encode(r, { a: ta, b: tb, c: tc, m: n, n, k: n });
        r.submit();
        await readF32(ctx, tc);
      });
      push({ benchmark: 'matmul f32', shape: `${n}x${n}x${n}`, library, medianMs: ms, gflops: flops / ms / 1e6, runs: o.runs });
    }
    for (const t of [ta, tb, tc]) t.release();

    const xa = tf.tensor2d(a, [n, n]);
    const xb = tf.tensor2d(b, [n, n]);
    const tfMs = await median(o.runs, async () => {
      const c = tf.matMul(xa, xb);
      await c.data();
      c.dispose();
    });
    push({ benchmark: 'matmul f32', shape: `${n}x${n}x${n}`, library: 'tfjs-webgpu', medianMs: tfMs, gflops: flops / tfMs / 1e6, runs: o.runs });
    xa.dispose();
    xb.dispose();

    if (ort) {
      const session = await ort.InferenceSession.create(ORT_MATMUL_MODEL(), { executionProviders: ['webgpu'] });
      const feeds = { A: new ort.Tensor('float32', a, [n, n]), B: new ort.Tensor('float32', b, [n, n]) };
      const ortMs = await median(o.runs, async () => {
        const out = await session.run(feeds);
        await out.C!.getData();
      });
      push({ benchmark: 'matmul f32', shape: `${n}x${n}x${n}`, library: 'onnxruntime-web-webgpu', medianMs: ortMs, gflops: flops / ortMs / 1e6, runs: o.runs });
      await session.release();
    }
  }

  // NF4 fused X dequant(W)^T against dequantize-then-matmul and the f32 matmul on the same shape.
  for (const [m, n, k] of selected('nf4') ? o.nf4Shapes : []) {
    const flops = 2 * m * n * k;
    const shape = `${m}x${n}x${k}`;
    const q = quantizeNF4(fill(n * k, 3), { shape: [n, k], doubleQuant: true });
    const w = uploadNF4(ctx, q);
    const x = createTensor(ctx, { shape: [m, k], data: fill(m * k, 4), label: 'bench X' });
    const y = createTensor(ctx, { shape: [m, n], label: 'bench Y' });
    const fused = await createNF4MatmulKernel(ctx, { mode: 'forward', blockSize: 64, doubleQuant: true });
    const fusedMs = await median(o.runs, async () => {
      const r = new CommandRecorder(ctx, 'bench nf4');
      fused.encode(r, { weight: w, input: x, output: y, m });
      r.submit();
      await readF32(ctx, y);
    });
    push({ benchmark: 'nf4 X·W^T', shape, library: 'webtune fused NF4', medianMs: fusedMs, gflops: flops / fusedMs / 1e6, weightBytes: w.byteLength, runs: o.runs });

    const dense = await createMatmulKernel(ctx, { transB: true });
    const twoStepMs = await median(o.runs, async () => {
      const wf = await dequantizeNF4Gpu(ctx, w);
      const r = new CommandRecorder(ctx, 'bench dequant+matmul');
      dense.encode(r, { a: x, b: wf, c: y, m, n, k });
      r.submit();
      await readF32(ctx, y);
      wf.release();
    });
    push({ benchmark: 'nf4 X·W^T', shape, library: 'webtune dequant then matmul', medianMs: twoStepMs, gflops: flops / twoStepMs / 1e6, weightBytes: w.byteLength + n * k * 4, runs: o.runs });

    const wf32 = createTensor(ctx, { shape: [n, k], data: fill(n * k, 3), label: 'bench W f32' });
    const f32Ms = await median(o.runs, async () => {
      const r = new CommandRecorder(ctx, 'bench f32 X·W^T');
      dense.encode(r, { a: x, b: wf32, c: y, m, n, k });
      r.submit();
      await readF32(ctx, y);
    });
    push({ benchmark: 'nf4 X·W^T', shape, library: 'webtune f32 weight', medianMs: f32Ms, gflops: flops / f32Ms / 1e6, weightBytes: n * k * 4, runs: o.runs });
    for (const t of [x, y, wf32]) t.release();
    w.release();
  }

  // LoRA layer forward + backward: x [64, 512], W [512, 512] frozen, rank 8.
  if (selected('lora')) {
    const [m, k, n, r] = [64, 512, 512, 8];
    const shape = `x[${m},${k}] W[${n},${k}] r${r}`;
    const xs = fill(m * k, 5);
    const ws = fill(n * k, 6).map((v) => v / Math.sqrt(k));
    const as = fill(r * k, 7).map((v) => v / Math.sqrt(k));
    const bs = fill(n * r, 8).map((v) => v * 0.1);
    const gs = fill(m * n, 9);
    const t = (label: string, s: number[], data?: Float32Array) => createTensor(ctx, { shape: s, label, data });
    const layer = { base: { format: 'dense' as const, weight: t('W', [n, k], ws) }, a: t('A', [r, k], as), b: t('B', [n, r], bs), scale: 2 };
    const x = t('x', [m, k], xs);
    const h = t('h', [m, r]);
    const y = t('y', [m, n]);
    const g = t('g', [m, n], gs);
    const gB = t('gB', [m, r]);
    const dA = t('dA', [r, k]);
    const dB = t('dB', [n, r]);
    const dx = t('dx', [m, k]);
    const kernels = await createLoraKernels(ctx, { base: { format: 'dense' } });
    const ms = await median(o.runs, async () => {
      const rec = new CommandRecorder(ctx, 'bench lora');
      kernels.forward(rec, { layer, m, x, h, y });
      kernels.backward(rec, { layer, m, x, h, gradOutput: g, gB, gradA: dA, gradB: dB, gradInput: dx });
      rec.submit();
      // The same three gradients TF.js hands back below.
      await Promise.all([readF32(ctx, dA), readF32(ctx, dB), readF32(ctx, dx)]);
    });
    push({ benchmark: 'lora fwd+bwd', shape, library: 'webtune', medianMs: ms, runs: o.runs });
    for (const tensor of [x, h, y, g, gB, dA, dB, dx, layer.a, layer.b, layer.base.weight]) tensor.release();

    // TF.js autograd on the same layer: loss = sum(y * g) so dL/dy = g, as above; x needs its gradient too.
    const tx = tf.variable(tf.tensor2d(xs, [m, k]), true, 'x');
    const tw = tf.tensor2d(ws, [n, k]);
    const ta = tf.variable(tf.tensor2d(as, [r, k]), true, 'A');
    const tb = tf.variable(tf.tensor2d(bs, [n, r]), true, 'B');
    const tg = tf.tensor2d(gs, [m, n]);
    const tfMs = await median(o.runs, async () => {
      const { value, grads } = tf.variableGrads(() => {
        const base = tf.matMul(tx, tw, false, true);
        const lora = tf.mul(tf.matMul(tf.matMul(tx, ta, false, true), tb, false, true), 2);
        return tf.sum(tf.mul(tf.add(base, lora), tg)) as TF.Scalar;
      });
      await Promise.all([grads.A!.data(), grads.B!.data(), grads.x!.data()]);
      value.dispose();
      tf.dispose(grads);
    });
    push({ benchmark: 'lora fwd+bwd', shape, library: 'tfjs-webgpu autograd', medianMs: tfMs, runs: o.runs });
    tf.dispose([tx, tw, ta, tb, tg]);
  }
  return rows;
}

let ortModel: Uint8Array | undefined;
/** The MatMul graph from scripts/make_bench_models.py, provided by the caller (fetch or fs). */
export function setOrtMatmulModel(bytes: Uint8Array): void {
  ortModel = bytes;
}
function ORT_MATMUL_MODEL(): Uint8Array {
  if (!ortModel) throw new Error('bench: call setOrtMatmulModel() with bench/models/matmul.onnx first');
  return ortModel;
}
