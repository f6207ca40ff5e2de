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
 * CPU reference: packages/gpu/src/kernels/lora.ref.ts
 */
import type { GpuContext } from '../device.js';
import { InvalidArgumentError } from '../errors.js';
import type { ElementType } from '../pipeline-cache.js';
import type { CommandRecorder } from '../recorder.js';
import type { GpuTensor } from '../tensor.js';
import { createMatmulKernel, type MatmulKernel } from './matmul.js';
import { createNF4MatmulKernel, type NF4MatmulKernel, type NF4Weight } from './nf4.js';

export type LoraBaseWeight = { format: 'dense'; weight: GpuTensor } | { format: 'nf4'; weight: NF4Weight };

export interface LoraLayer {
  base: LoraBaseWeight;
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
}

export interface LoraKernels {
  forward(recorder: CommandRecorder, args: LoraForwardArgs): void;
  backward(recorder: CommandRecorder, args: LoraBackwardArgs): void;
}

export interface LoraKernelOptions {
  dtype?: ElementType;
  base: { format: 'dense' } | { format: 'nf4'; blockSize: number; doubleQuant: boolean };
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
  const [xAt, hBtAcc, gtH, gB, gBtX, gBaAcc] = await Promise.all([
    createMatmulKernel(ctx, { dtype, transB: true }),
    createMatmulKernel(ctx, { dtype, transB: true, accumulate: true }),
    createMatmulKernel(ctx, { dtype, transA: true }),
    createMatmulKernel(ctx, { dtype }),
    createMatmulKernel(ctx, { dtype, transA: true }),
    createMatmulKernel(ctx, { dtype, accumulate: true }),
  ]);
  let baseForward: MatmulKernel | NF4MatmulKernel;
  let baseBackward: MatmulKernel | NF4MatmulKernel;
  if (options.base.format === 'nf4') {
    const nf4 = { dtype, blockSize: options.base.blockSize, doubleQuant: options.base.doubleQuant };
    [baseForward, baseBackward] = await Promise.all([
      createNF4MatmulKernel(ctx, { ...nf4, mode: 'forward' }),
      createNF4MatmulKernel(ctx, { ...nf4, mode: 'grad-input' }),
    ]);
  } else {
    baseForward = xAt;
    baseBackward = gB;
  }
  const format = options.base.format;

  return {
    forward(recorder, { layer, m, x, h, y }) {
      const { n, k, r } = dims(layer);
      if (layer.base.format !== format) throw new InvalidArgumentError(`LoRA kernels were made for a ${format} base weight, got ${layer.base.format}.`);
      xAt.encode(recorder, { a: x, b: layer.a, c: h, m, n: r, k });
      if (layer.base.format === 'nf4') {
        (baseForward as NF4MatmulKernel).encode(recorder, { weight: layer.base.weight, input: x, output: y, m });
      } else {
        (baseForward as MatmulKernel).encode(recorder, { a: x, b: layer.base.weight, c: y, m, n, k });
      }
      hBtAcc.encode(recorder, { a: h, b: layer.b, c: y, m, n, k: r, alpha: layer.scale });
    },
    backward(recorder, args) {
      const { layer, m } = args;
      const { n, k, r } = dims(layer);
      const s = layer.scale;
      gtH.encode(recorder, { a: args.gradOutput, b: args.h, c: args.gradB, m: n, n: r, k: m, alpha: s });
      gB.encode(recorder, { a: args.gradOutput, b: layer.b, c: args.gB, m, n: r, k: n });
      gBtX.encode(recorder, { a: args.gB, b: args.x, c: args.gradA, m: r, n: k, k: m, alpha: s });
      if (args.gradInput) {
        if (layer.base.format === 'nf4') {
          (baseBackward as NF4MatmulKernel).encode(recorder, { weight: layer.base.weight, input: args.gradOutput, output: args.gradInput, m });
        } else {
          (baseBackward as MatmulKernel).encode(recorder, { a: args.gradOutput, b: layer.base.weight, c: args.gradInput, m, n: k, k: n });
        }
        gBaAcc.encode(recorder, { a: args.gB, b: layer.a, c: args.gradInput, m, n: k, k: r, alpha: s });
      }
    },
  };
}
