/**
 * A LoRA linear layer on the GPU (PEFT's formula, REFERENCE.md), built from the matmul and NF4
 * kernels and recorded into the caller's command recorder, so forward + backward is one submit:
 *
 *   forward   h = x A^T                      [M, r]  (kept for backward)
 *             y = x W^T + s h B^T            [M, N]
 *   backward  dB = s G^T h                   [N, r]
 *             gB = G B                       [M, r]
 *             dA = s gB^T x                  [r, K]
 *             dx = G W + s gB A              [M, K]
 *
 * W [N, K] is frozen, float32/float16 or NF4; A [r, K], B [N, r]; s = alpha / r (or alpha / sqrt(r)).
 * With LoRA dropout the branch reads x~ = dropout(x) (`loraInput`) instead of x, dA uses x~, and the
 * branch's input gradient s gB A is written to `loraGradInput` for the caller to pass back through
 * the dropout mask.
 * CPU reference: packages/gpu/src/kernels/lora.ref.ts
 */
import type { GpuContext } from '../device.js';
import { InvalidArgumentError } from '@webtune/errors';
import type { ElementType } from '../pipeline-cache.js';
import type { CommandRecorder } from '../recorder.js';
import type { GpuTensor } from '../tensor.js';
import { createMatmulKernel, type MatmulKernel } from './matmul.js';
import { createNF4DequantizeKernel, createNF4MatmulKernel, type NF4DequantizeKernel, type NF4MatmulKernel, type NF4Weight } from './nf4.js';
import type { Codebook4 } from '../nf4/format.js';

/** A frozen linear weight [out, in]: dense (f32/f16) or 4-bit (NF4, or a stored int4 file weight). */
export type FrozenWeight = { format: 'dense'; weight: GpuTensor } | { format: 'nf4'; weight: NF4Weight };

export interface LoraLayer {
  base: FrozenWeight;
  /** [rank, inFeatures] */
  a: GpuTensor;
  /** [outFeatures, rank] */
  b: GpuTensor;
  /** alpha / rank, or alpha / sqrt(rank) for rsLoRA. */
  scale: number;
}

export interface LoraForwardArgs {
  layer: LoraLayer;
  /** Rows of x (tokens in the batch). */
  m: number;
  x: GpuTensor;
  /** [M, rank]: written, and needed by backward. */
  h: GpuTensor;
  y: GpuTensor;
  /** x after LoRA dropout, read by the LoRA branch only; default x. */
  loraInput?: GpuTensor;
  /**
   * NF4 base only: scratch of at least N x K (the base's dtype). W is then dequantized into it and
   * the dense kernel runs, as bitsandbytes' matmul_4bit does for more than one row: 1.6x the fused
   * kernel's rate on lavapipe at 1 x 256. Training lends it; decoding (one row) does not.
   */
  weightScratch?: GpuTensor;
}

export interface LoraBackwardArgs {
  layer: LoraLayer;
  m: number;
  x: GpuTensor;
  h: GpuTensor;
  /** dL/dy [M, N] */
  gradOutput: GpuTensor;
  /** [M, rank] scratch */
  gB: GpuTensor;
  gradA: GpuTensor;
  gradB: GpuTensor;
  /** dL/dx [M, K]; omit for a first layer whose input needs no gradient. */
  gradInput?: GpuTensor;
  /** Add into gradInput (a second consumer of the same input) instead of overwriting it. */
  accumulateGradInput?: boolean;
  /** The forward's loraInput (x after dropout); default x. */
  loraInput?: GpuTensor;
  /** With dropout: receives s gB A (overwritten) instead of it being added to gradInput. */
  loraGradInput?: GpuTensor;
  /**
   * NF4 base only: float32 scratch of at least N x K. The input gradient then dequantizes W into
   * it and runs the dense kernel, 1.6x faster on lavapipe than decoding NF4 column-wise.
   */
  weightScratch?: GpuTensor;
}

export interface LoraKernels {
  forward(recorder: CommandRecorder, args: LoraForwardArgs): void;
  backward(recorder: CommandRecorder, args: LoraBackwardArgs): void;
}

export interface LoraKernelOptions {
  dtype?: ElementType;
  base: { format: 'dense' } | { format: 'nf4'; blockSize: number; doubleQuant: boolean; codebook?: Codebook4 };
  /** Add dA and dB into gradA/gradB (gradient accumulation over micro-batches) instead of overwriting. */
  accumulateGrads?: boolean;
}

function dims(layer: LoraLayer): { n: number; k: number; r: number } {
  const [r, k] = layer.a.shape as [number, number];
  const [n, rb] = layer.b.shape as [number, number];
  if (layer.a.shape.length !== 2 || layer.b.shape.length !== 2 || rb !== r) {
    throw new InvalidArgumentError(
      `LoRA: A must be [rank, in] and B [out, rank]; got A [${layer.a.shape.join(', ')}], B [${layer.b.shape.join(', ')}].`,
    );
  }
  const baseShape = layer.base.weight.shape;
  if (baseShape[0] !== n || baseShape[1] !== k) {
    throw new InvalidArgumentError(
      `LoRA: base weight [${baseShape.join(', ')}] does not match A [${r}, ${k}] and B [${n}, ${r}]; expected [${n}, ${k}].`,
    );
  }
  return { n, k, r };
}

export async function createLoraKernels(ctx: GpuContext, options: LoraKernelOptions): Promise<LoraKernels> {
  const dtype = options.dtype ?? 'f32';
  const accumulateGrads = options.accumulateGrads ?? false;
  const [xAt, hBtAcc, gtH, gB, gBtX, gBaAcc, gBa] = await Promise.all([
    createMatmulKernel(ctx, { dtype, transB: true }),
    createMatmulKernel(ctx, { dtype, transB: true, accumulate: true }),
    createMatmulKernel(ctx, { dtype, transA: true, accumulate: accumulateGrads }),
    createMatmulKernel(ctx, { dtype }),
    createMatmulKernel(ctx, { dtype, transA: true, accumulate: accumulateGrads }),
    createMatmulKernel(ctx, { dtype, accumulate: true }),
    createMatmulKernel(ctx, { dtype }),
  ]);
  // Base weight: forward, input gradient, and input gradient added to what is there.
  let base: { forward: MatmulKernel | NF4MatmulKernel; backward: MatmulKernel | NF4MatmulKernel; backwardAcc: MatmulKernel | NF4MatmulKernel };
  let dequantize: NF4DequantizeKernel | undefined;
  if (options.base.format === 'nf4') {
    const nf4 = { dtype, blockSize: options.base.blockSize, doubleQuant: options.base.doubleQuant, codebook: options.base.codebook ?? 'nf4' };
    const [forward, backward, backwardAcc] = await Promise.all([
      createNF4MatmulKernel(ctx, { ...nf4, mode: 'forward' }),
      createNF4MatmulKernel(ctx, { ...nf4, mode: 'grad-input' }),
      createNF4MatmulKernel(ctx, { ...nf4, mode: 'grad-input', accumulate: true }),
    ]);
    base = { forward, backward, backwardAcc };
    dequantize = await createNF4DequantizeKernel(ctx, nf4);
  } else {
    base = { forward: xAt, backward: gB, backwardAcc: gBaAcc };
  }
  const format = options.base.format;

  return {
    forward(recorder, { layer, m, x, h, y, loraInput, weightScratch }) {
      const { n, k, r } = dims(layer);
      if (layer.base.format !== format) throw new InvalidArgumentError(`LoRA kernels were made for a ${format} base weight, got ${layer.base.format}.`);
      xAt.encode(recorder, { a: loraInput ?? x, b: layer.a, c: h, m, n: r, k });
      if (layer.base.format === 'nf4' && weightScratch && dequantize) {
        dequantize.encode(recorder, { weight: layer.base.weight, output: weightScratch });
        xAt.encode(recorder, { a: x, b: weightScratch, c: y, m, n, k });
      } else if (layer.base.format === 'nf4') {
        (base.forward as NF4MatmulKernel).encode(recorder, { weight: layer.base.weight, input: x, output: y, m });
      } else {
        (base.forward as MatmulKernel).encode(recorder, { a: x, b: layer.base.weight, c: y, m, n, k });
      }
      hBtAcc.encode(recorder, { a: h, b: layer.b, c: y, m, n, k: r, alpha: layer.scale });
    },
    backward(recorder, args) {
      const { layer, m } = args;
      const { n, k, r } = dims(layer);
      const s = layer.scale;
      gtH.encode(recorder, { a: args.gradOutput, b: args.h, c: args.gradB, m: n, n: r, k: m, alpha: s });
      gB.encode(recorder, { a: args.gradOutput, b: layer.b, c: args.gB, m, n: r, k: n });
      gBtX.encode(recorder, { a: args.gB, b: args.loraInput ?? args.x, c: args.gradA, m: r, n: k, k: m, alpha: s });
      if (args.gradInput) {
        const kernel = args.accumulateGradInput ? base.backwardAcc : base.backward;
        if (layer.base.format === 'nf4' && args.weightScratch && dequantize) {
          dequantize.encode(recorder, { weight: layer.base.weight, output: args.weightScratch });
          (args.accumulateGradInput ? gBaAcc : gB).encode(recorder, { a: args.gradOutput, b: args.weightScratch, c: args.gradInput, m, n: k, k: n });
        } else if (layer.base.format === 'nf4') {
          (kernel as NF4MatmulKernel).encode(recorder, { weight: layer.base.weight, input: args.gradOutput, output: args.gradInput, m });
        } else {
          (kernel as MatmulKernel).encode(recorder, { a: args.gradOutput, b: layer.base.weight, c: args.gradInput, m, n: k, k: n });
        }
        if (args.loraGradInput) gBa.encode(recorder, { a: args.gB, b: layer.a, c: args.loraGradInput, m, n: k, k: r, alpha: s });
        else gBaAcc.encode(recorder, { a: args.gB, b: layer.a, c: args.gradInput, m, n: k, k: r, alpha: s });
      }
    },
  };
}
