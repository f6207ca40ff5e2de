/**
 * CPU NF4 quantizer and dequantizer, bit-compatible with bitsandbytes' quantize_4bit /
 * dequantize_4bit (default backend). Public API, and the reference the GPU kernels are tested against.
 */
import { InvalidArgumentError } from '@webtune/errors';
import { codebookValues, dynamicMap, NESTED_BLOCK_SIZE, NF4_BLOCK_SIZES, NF4_CODEBOOK, NF4_ZERO_CODE, nearestCode, type Codebook4 } from './format.js';

const f = Math.fround;

/** Per-block scales: plain float32 absmax, or bitsandbytes' double-quantized form. */
export type NF4Scales =
  | { doubleQuant: false; absmax: Float32Array }
  | {
      doubleQuant: true;
      /** absmax - offset, one uint8 code of the dynamic map per block. */
      quantizedAbsmax: Uint8Array;
      /** One float32 scale per 256 blocks (bitsandbytes' `nested_absmax`). */
      nestedAbsmax: Float32Array;
      /** mean(absmax), added back on dequantization (`nested_offset`). */
      offset: number;
      nestedBlockSize: number;
    };

export interface NF4Quantized {
  shape: number[];
  blockSize: number;
  /** ceil(n / 2) bytes, two codes per byte, first element in the high nibble. */
  packed: Uint8Array;
  scales: NF4Scales;
  /** What the codes mean: 'nf4' (default; quantizeNF4's output) or 'int4' (a MatMulNBits weight). */
  codebook?: Codebook4;
}

export interface QuantizeNF4Options {
  /** Values per absmax block; bitsandbytes' default 64. */
  blockSize?: number;
  /** Quantize the absmax values too (QLoRA's double quantization); default false as in bitsandbytes. */
  doubleQuant?: boolean;
  /** Logical shape, e.g. [out, in] for a linear weight; default [data.length]. */
  shape?: number[];
}

export function validateBlockSize(blockSize: number): void {
  if (!(NF4_BLOCK_SIZES as readonly number[]).includes(blockSize)) {
    throw new InvalidArgumentError(
      `NF4 block size ${blockSize} is not supported; use one of ${NF4_BLOCK_SIZES.join(', ')} (bitsandbytes' default is 64).`,
    );
  }
}

function checkInput(data: Float32Array, shape: number[]): void {
  if (!(data instanceof Float32Array)) {
    throw new InvalidArgumentError(`quantizeNF4 takes a Float32Array, got ${Object.prototype.toString.call(data)}.`);
  }
  if (data.length === 0) throw new InvalidArgumentError('quantizeNF4: the input is empty; there is nothing to quantize.');
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) {
    throw new InvalidArgumentError(`quantizeNF4: shape [${shape.join(', ')}] holds ${count} values but data has ${data.length}.`);
  }
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]!)) {
      throw new InvalidArgumentError(
        `quantizeNF4: value ${data[i]} at index ${i} is not finite; NF4 cannot represent NaN or Infinity. ` +
          'Check the weights (a corrupt file or a diverged model) before quantizing.',
      );
    }
  }
}

/** absmax of each block of `blockSize` (a short last block has its own). */
function blockAbsmax(data: ArrayLike<number>, blockSize: number): Float32Array {
  const blocks = Math.ceil(data.length / blockSize);
  const absmax = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    let m = 0;
    const end = Math.min(data.length, (b + 1) * blockSize);
    for (let i = b * blockSize; i < end; i++) m = Math.max(m, Math.abs(data[i]!));
    absmax[b] = m;
  }
  return absmax;
}

/** x * (1 / absmax) in float32, clamped to [-1, 1], as bitsandbytes scales (NaN for an all-zero block). */
function scaleValue(x: number, reciprocal: number): number {
  return Math.min(1, Math.max(-1, f(x * reciprocal)));
}

/**
 * Double quantization of the absmax values (bitsandbytes quantize_4bit(compress_statistics=True)):
 * offset = mean(absmax) (float64 sum, rounded once); absmax - offset quantized blockwise (256) to the
 * signed dynamic map. `offset` may be given (the GPU path computes its own).
 */
export function doubleQuantizeAbsmax(absmax: Float32Array, offset?: number) {
  let sum = 0;
  for (let i = 0; i < absmax.length; i++) sum += absmax[i]!;
  const off = offset ?? f(sum / absmax.length);
  const centered = absmax.map((v) => f(v - off));
  const nested = blockAbsmax(centered, NESTED_BLOCK_SIZE);
  const map = dynamicMap();
  const q = new Uint8Array(absmax.length);
  for (let i = 0; i < absmax.length; i++) {
    q[i] = nearestCode(scaleValue(centered[i]!, f(1 / nested[Math.floor(i / NESTED_BLOCK_SIZE)]!)), map);
  }
  return { quantizedAbsmax: q, nestedAbsmax: nested, offset: off };
}

/**
 * Quantizes float32 values to NF4 exactly as bitsandbytes does.
 *
 * @example
 * ```ts
 * const q = quantizeNF4(weight, { shape: [out, inFeatures], doubleQuant: true });
 * const approx = dequantizeNF4(q); // Float32Array, same length as weight
 * ```
 */
export function quantizeNF4(data: Float32Array, options: QuantizeNF4Options = {}): NF4Quantized {
  const blockSize = options.blockSize ?? 64;
  validateBlockSize(blockSize);
  const shape = options.shape ?? [data.length];
  checkInput(data, shape);

  const absmax = blockAbsmax(data, blockSize);
  const packed = new Uint8Array(Math.ceil(data.length / 2));
  let reciprocal = 0;
  for (let i = 0; i < data.length; i++) {
    if (i % blockSize === 0) reciprocal = f(1 / absmax[i / blockSize]!);
    const q = nearestCode(scaleValue(data[i]!, reciprocal), NF4_CODEBOOK);
    packed[i >> 1] = packed[i >> 1]! | (i % 2 === 0 ? q << 4 : q);
  }
  if (data.length % 2 === 1) packed[packed.length - 1] = packed[packed.length - 1]! | NF4_ZERO_CODE;

  const scales: NF4Scales = options.doubleQuant
    ? { doubleQuant: true, ...doubleQuantizeAbsmax(absmax), nestedBlockSize: NESTED_BLOCK_SIZE }
    : { doubleQuant: false, absmax };
  return { shape: [...shape], blockSize, packed, scales };
}

/** The float32 absmax of every block, undoing double quantization: code2[q] * absmax2[i / 256] + offset. */
export function nf4BlockScales(scales: NF4Scales): Float32Array {
  if (!scales.doubleQuant) return scales.absmax;
  const map = dynamicMap();
  const out = new Float32Array(scales.quantizedAbsmax.length);
  for (let i = 0; i < out.length; i++) {
    out[i] = f(f(map[scales.quantizedAbsmax[i]!]! * scales.nestedAbsmax[Math.floor(i / scales.nestedBlockSize)]!) + scales.offset);
  }
  return out;
}

/** Dequantizes to float32: code[q] * absmax[block], with the weight's codebook. */
export function dequantizeNF4(quantized: NF4Quantized): Float32Array {
  const n = quantized.shape.reduce((a, b) => a * b, 1);
  validateBlockSize(quantized.blockSize);
  if (quantized.packed.length !== Math.ceil(n / 2)) {
    throw new InvalidArgumentError(
      `dequantizeNF4: shape [${quantized.shape.join(', ')}] needs ${Math.ceil(n / 2)} packed bytes, got ${quantized.packed.length}.`,
    );
  }
  const scales = nf4BlockScales(quantized.scales);
  if (scales.length !== Math.ceil(n / quantized.blockSize)) {
    throw new InvalidArgumentError(
      `dequantizeNF4: ${n} values in blocks of ${quantized.blockSize} need ${Math.ceil(n / quantized.blockSize)} scales, got ${scales.length}.`,
    );
  }
  const code = codebookValues(quantized.codebook ?? 'nf4');
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const byte = quantized.packed[i >> 1]!;
    const q = i % 2 === 0 ? byte >> 4 : byte & 15;
    out[i] = f(code[q]! * scales[Math.floor(i / quantized.blockSize)]!);
  }
  return out;
}
