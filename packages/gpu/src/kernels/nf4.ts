/**
 * NF4 on the GPU: quantize (with optional double quantization), dequantize, and the two fused
 * matmuls QLoRA needs, Y = X dequant(W)^T and DX = DY dequant(W), which decode W in registers.
 * The same kernels decode the 'int4' codebook of a MatMulNBits weight uploaded as it is stored
 * (uploadNF4 with codebook 'int4'; the quantizer writes NF4 only).
 * Shaders: shaders/nf4-*.wgsl, shaders/reduce-sum.wgsl, shaders/lib/nf4-*.wgsl.
 */
import codeLib from '../shaders/lib/nf4-code.wgsl.js';
import weightsLib from '../shaders/lib/nf4-weights.wgsl.js';
import quantizeSource from '../shaders/nf4-quantize.wgsl.js';
import doubleQuantizeSource from '../shaders/nf4-double-quantize.wgsl.js';
import reduceSumSource from '../shaders/reduce-sum.wgsl.js';
import dequantizeSource from '../shaders/nf4-dequantize.wgsl.js';
import matmulSource from '../shaders/nf4-matmul.wgsl.js';
import matmulCommonLib from '../shaders/lib/nf4-matmul-common.wgsl.js';
import gradInputSource from '../shaders/nf4-matmul-grad-input.wgsl.js';
import type { GpuContext } from '../device.js';
import { InvalidArgumentError } from '@webtune/errors';
import { dynamicMap, NESTED_BLOCK_SIZE, type Codebook4 } from '../nf4/format.js';
import { validateBlockSize, type NF4Quantized } from '../nf4/quantize.js';
import type { ElementType, KernelDefinition } from '../pipeline-cache.js';
import { CommandRecorder, packParams } from '../recorder.js';
import { BYTES_PER_ELEMENT, createTensor, readBuffer, readTensor, type GpuTensor } from '../tensor.js';
import { grid1D } from './grid.js';

const CODE = { path: 'shaders/lib/nf4-code.wgsl', source: codeLib };
const WEIGHTS = { path: 'shaders/lib/nf4-weights.wgsl', source: weightsLib };
const MATMUL_COMMON = { path: 'shaders/lib/nf4-matmul-common.wgsl', source: matmulCommonLib };
const NF4_WEIGHT_BINDINGS = ['read', 'read', 'read', 'read'] as const;

const QUANTIZE: KernelDefinition = {
  name: 'nf4-quantize',
  files: [CODE, { path: 'shaders/nf4-quantize.wgsl', source: quantizeSource }],
  bindings: ['read', 'read-write', 'read-write', 'read-write', 'uniform'],
};
const REDUCE_SUM: KernelDefinition = {
  name: 'reduce-sum',
  files: [{ path: 'shaders/reduce-sum.wgsl', source: reduceSumSource }],
  bindings: ['read', 'read-write', 'uniform'],
};
const DOUBLE_QUANTIZE: KernelDefinition = {
  name: 'nf4-double-quantize',
  files: [{ path: 'shaders/nf4-double-quantize.wgsl', source: doubleQuantizeSource }],
  bindings: ['read', 'read', 'read', 'read-write', 'read-write', 'read-write', 'uniform'],
};
const DEQUANTIZE: KernelDefinition = {
  name: 'nf4-dequantize',
  files: [CODE, WEIGHTS, { path: 'shaders/nf4-dequantize.wgsl', source: dequantizeSource }],
  bindings: [...NF4_WEIGHT_BINDINGS, 'read-write', 'uniform'],
};
/** The same shader's 16-byte-store entry point, for whole words that land 16-byte aligned. */
const DEQUANTIZE_QUADS: KernelDefinition = { ...DEQUANTIZE, name: 'nf4-dequantize-quads', entryPoint: 'main_quads' };
/**
 * Words per main_quads invocation (the shader's override QUAD_WORDS): 32 values, the smallest NF4
 * block, so the words of one invocation share a scale.
 */
const QUAD_WORDS = 4;
export const NF4_MATMUL_KERNEL: KernelDefinition = {
  name: 'nf4-matmul',
  files: [CODE, WEIGHTS, MATMUL_COMMON, { path: 'shaders/nf4-matmul.wgsl', source: matmulSource }],
  bindings: [...NF4_WEIGHT_BINDINGS, 'read', 'read-write', 'uniform'],
};
export const NF4_GRAD_INPUT_KERNEL: KernelDefinition = {
  name: 'nf4-matmul-grad-input',
  files: [CODE, WEIGHTS, MATMUL_COMMON, { path: 'shaders/nf4-matmul-grad-input.wgsl', source: gradInputSource }],
  bindings: [...NF4_WEIGHT_BINDINGS, 'read', 'read-write', 'uniform'],
};

/** A frozen NF4 weight resident on the GPU, in the layout the fused kernels read. */
export interface NF4Weight {
  /** [N, K]: out x in, as PyTorch stores a Linear weight. */
  readonly shape: readonly [number, number];
  readonly blockSize: number;
  readonly doubleQuant: boolean;
  /** What the codes mean (NF4, or a MatMulNBits weight's (q - 8) / 8). */
  readonly codebook: Codebook4;
  /** Codes, 8 per u32 word (first element in the high nibble of each byte). */
  readonly packed: GpuTensor;
  /** Per-block absmax, or per-256-block nested absmax when double-quantized. */
  readonly absmax: GpuTensor;
  /** Double quantization: uint8 codes of absmax - offset (otherwise a 4-byte buffer only to fill the binding). */
  readonly quantizedAbsmax: GpuTensor;
  /** Double quantization: the dynamic map (otherwise a 4-byte buffer only to fill the binding). */
  readonly absmaxCode: GpuTensor;
  readonly offset: number;
  /** Bytes of GPU memory the weight occupies. */
  readonly byteLength: number;
  release(): void;
}

function weightBuffers(w: NF4Weight): GPUBuffer[] {
  return [w.packed.buffer, w.absmax.buffer, w.quantizedAbsmax.buffer, w.absmaxCode.buffer];
}

function assembleWeight(
  shape: readonly [number, number],
  blockSize: number,
  parts: { packed: GpuTensor; absmax: GpuTensor; quantizedAbsmax: GpuTensor; absmaxCode: GpuTensor; offset: number; doubleQuant: boolean; codebook: Codebook4 },
): NF4Weight {
  const tensors = [parts.packed, parts.absmax, parts.quantizedAbsmax, parts.absmaxCode];
  return {
    shape,
    blockSize,
    ...parts,
    byteLength: tensors.reduce((sum, t) => sum + t.buffer.size, 0),
    release() {
      for (const t of tensors) t.release();
    },
  };
}

function as2D(shape: readonly number[]): [number, number] {
  if (shape.length === 1) return [1, shape[0]!];
  if (shape.length !== 2) {
    throw new InvalidArgumentError(`NF4 weights on the GPU are 2-D [out, in]; got shape [${shape.join(', ')}].`);
  }
  return [shape[0]!, shape[1]!];
}

/**
 * A weight without double quantization: every binding of the layout must still be bound, so the
 * two double-quantization tables get 4-byte buffers the shader never reads (DOUBLE_QUANT is off).
 */
function singleQuantWeight(ctx: GpuContext, shape: readonly [number, number], blockSize: number, label: string, packed: GpuTensor, absmax: GpuTensor, codebook: Codebook4): NF4Weight {
  const unused = (what: string) => createTensor(ctx, { shape: [1], dtype: 'u32', label: `${label} ${what} (unused)` });
  return assembleWeight(shape, blockSize, {
    packed, absmax, quantizedAbsmax: unused('quantized absmax'), absmaxCode: unused('absmax code'), offset: 0, doubleQuant: false, codebook,
  });
}

/** Uploads a CPU-quantized weight (from `quantizeNF4`, a bitsandbytes checkpoint, or an ONNX MatMulNBits weight with codebook 'int4'). */
export function uploadNF4(ctx: GpuContext, q: NF4Quantized, label = 'nf4 weight'): NF4Weight {
  const shape = as2D(q.shape);
  validateBlockSize(q.blockSize);
  const codebook = q.codebook ?? 'nf4';
  if (codebook !== 'nf4' && codebook !== 'int4') throw new InvalidArgumentError(`uploadNF4: codebook must be 'nf4' or 'int4', got ${JSON.stringify(codebook)}.`);
  const n = shape[0] * shape[1];
  const words = new Uint8Array(Math.ceil(n / 8) * 4);
  words.set(q.packed);
  const packed = createTensor(ctx, { shape: [words.length], dtype: 'u8', label: `${label} codes`, data: words });
  if (!q.scales.doubleQuant) {
    const absmax = createTensor(ctx, { shape: [q.scales.absmax.length], label: `${label} absmax`, data: q.scales.absmax });
    return singleQuantWeight(ctx, shape, q.blockSize, label, packed, absmax, codebook);
  }
  const s = q.scales;
  if (s.nestedBlockSize !== NESTED_BLOCK_SIZE) {
    throw new InvalidArgumentError(`NF4 double quantization uses nested blocks of ${NESTED_BLOCK_SIZE}; got ${s.nestedBlockSize}.`);
  }
  const qBytes = new Uint8Array(Math.ceil(s.quantizedAbsmax.length / 4) * 4);
  qBytes.set(s.quantizedAbsmax);
  return assembleWeight(shape, q.blockSize, {
    packed,
    absmax: createTensor(ctx, { shape: [s.nestedAbsmax.length], label: `${label} nested absmax`, data: s.nestedAbsmax }),
    quantizedAbsmax: createTensor(ctx, { shape: [qBytes.length], dtype: 'u8', label: `${label} quantized absmax`, data: qBytes }),
    absmaxCode: createTensor(ctx, { shape: [256], label: `${label} absmax code`, data: dynamicMap() }),
    offset: s.offset,
    doubleQuant: true,
    codebook,
  });
}

/** Reads an NF4 weight back into the CPU form (e.g. to save it). */
export async function downloadNF4(ctx: GpuContext, w: NF4Weight): Promise<NF4Quantized> {
  const n = w.shape[0] * w.shape[1];
  const blocks = Math.ceil(n / w.blockSize);
  const packed = (await readTensor(ctx, w.packed)) as Uint8Array;
  const absmax = (await readTensor(ctx, w.absmax)) as Float32Array;
  const base = { shape: [...w.shape], blockSize: w.blockSize, packed: packed.slice(0, Math.ceil(n / 2)), codebook: w.codebook };
  if (!w.doubleQuant) return { ...base, scales: { doubleQuant: false, absmax } };
  const q = (await readTensor(ctx, w.quantizedAbsmax)) as Uint8Array;
  return {
    ...base,
    scales: {
      doubleQuant: true,
      quantizedAbsmax: q.slice(0, blocks),
      nestedAbsmax: absmax,
      offset: w.offset,
      nestedBlockSize: NESTED_BLOCK_SIZE,
    },
  };
}

export interface QuantizeNF4GpuOptions {
  shape: [number, number];
  blockSize?: number;
  doubleQuant?: boolean;
  label?: string;
}

const WG = 64;

/**
 * Quantizes a float32 GPU tensor to NF4 on the GPU, bit-compatible with bitsandbytes (the
 * double-quantization offset is a float32 pairwise mean, within a few ulps of bitsandbytes').
 * Rejects NaN or infinite input with InvalidArgumentError, leaving nothing allocated.
 */
export async function quantizeNF4Gpu(ctx: GpuContext, input: GpuTensor, options: QuantizeNF4GpuOptions): Promise<NF4Weight> {
  const blockSize = options.blockSize ?? 64;
  validateBlockSize(blockSize);
  const label = options.label ?? 'nf4 weight';
  const shape = options.shape;
  const n = shape[0] * shape[1];
  if (input.dtype !== 'f32' || input.size !== n) {
    throw new InvalidArgumentError(
      `quantizeNF4Gpu: input "${input.label}" must be f32 with ${n} elements for shape [${shape.join(', ')}]; got ${input.dtype} with ${input.size}.`,
    );
  }
  if (n === 0) throw new InvalidArgumentError('quantizeNF4Gpu: the input is empty; there is nothing to quantize.');
  const blocks = Math.ceil(n / blockSize);
  const maxGroups = ctx.limits.maxComputeWorkgroupsPerDimension;

  const quantize = await ctx.pipelines.get(QUANTIZE, 'f32', { WG });
  const packed = createTensor(ctx, { shape: [Math.ceil(n / 8) * 4], dtype: 'u8', label: `${label} codes` });
  const absmax = createTensor(ctx, { shape: [blocks], label: `${label} absmax` });
  const status = createTensor(ctx, { shape: [1], dtype: 'u32', label: `${label} status`, data: new Uint32Array(1) });
  const recorder = new CommandRecorder(ctx, 'nf4 quantize');
  const g = grid1D(blocks, WG, maxGroups);
  recorder.dispatch(quantize, [input.buffer, packed.buffer, absmax.buffer, status.buffer],
    packParams([['u32', n], ['u32', blockSize], ['u32', blocks], ['u32', g.rowStride]]), g.workgroups);
  recorder.submit();
  const flags = new Uint32Array(await readBuffer(ctx, status.buffer, 4, 'nf4 status'));
  status.release();
  if (flags[0] !== 0) {
    packed.release();
    absmax.release();
    throw new InvalidArgumentError(
      `quantizeNF4Gpu: "${input.label}" contains NaN or infinite values; NF4 cannot represent them. ` +
        'Check the weights (a corrupt file or a diverged model) before quantizing.',
    );
  }
  if (!options.doubleQuant) {
    return singleQuantWeight(ctx, shape, blockSize, label, packed, absmax, 'nf4');
  }

  // Sum the absmax values pairwise down to one, then quantize them around their mean.
  const reduce = await ctx.pipelines.get(REDUCE_SUM, 'f32');
  const doubleQuantize = await ctx.pipelines.get(DOUBLE_QUANTIZE, 'f32', { WG });
  const dq = new CommandRecorder(ctx, 'nf4 double quantize');
  const temporaries: GpuTensor[] = [];
  let current = absmax;
  let count = blocks;
  do {
    const next = createTensor(ctx, { shape: [Math.ceil(count / 256)], label: `${label} absmax partial sums` });
    temporaries.push(next);
    const rg = grid1D(count, 256, maxGroups);
    dq.dispatch(reduce, [current.buffer, next.buffer], packParams([['u32', count], ['u32', rg.workgroups[0]]]), rg.workgroups);
    current = next;
    count = Math.ceil(count / 256);
  } while (count > 1);
  const nestedBlocks = Math.ceil(blocks / NESTED_BLOCK_SIZE);
  const code = createTensor(ctx, { shape: [256], label: `${label} absmax code`, data: dynamicMap() });
  const quantizedAbsmax = createTensor(ctx, { shape: [Math.ceil(blocks / 4) * 4], dtype: 'u8', label: `${label} quantized absmax` });
  const nested = createTensor(ctx, { shape: [nestedBlocks], label: `${label} nested absmax` });
  const offsetOut = createTensor(ctx, { shape: [1], label: `${label} offset` });
  dq.dispatch(doubleQuantize, [absmax.buffer, current.buffer, code.buffer, quantizedAbsmax.buffer, nested.buffer, offsetOut.buffer],
    packParams([['u32', blocks], ['u32', nestedBlocks]]), [Math.ceil(nestedBlocks / WG)]);
  dq.submit();
  const offset = new Float32Array(await readBuffer(ctx, offsetOut.buffer, 4, 'nf4 offset'))[0]!;
  for (const t of [...temporaries, offsetOut, absmax]) t.release();
  return assembleWeight(shape, blockSize, {
    packed, absmax: nested, quantizedAbsmax, absmaxCode: code, offset, doubleQuant: true, codebook: 'nf4',
  });
}

export interface NF4DequantizeKernel {
  /**
   * output = dequant(W) [N, K], rows `outputRowStride` apart (default K: dense; more: padded rows
   * for the matmul's ldb, see paddedRowStride, which needs K % 8 == 0 and, for f16, an even
   * stride; the padding is left as it is), recorded into the caller's recorder.
   */
  encode(recorder: CommandRecorder, args: { weight: NF4Weight; output: GpuTensor; outputRowStride?: number }): void;
}

/**
 * Dequantization into a float32 buffer as a recorded step: a backward pass dequantizes a frozen
 * weight into one shared scratch buffer and runs the dense kernel, which beats decoding NF4 in
 * the column order the input gradient reads it (see Transformer).
 */
export async function createNF4DequantizeKernel(
  ctx: GpuContext,
  variant: { blockSize: number; doubleQuant: boolean; codebook?: Codebook4; dtype?: ElementType },
): Promise<NF4DequantizeKernel> {
  validateBlockSize(variant.blockSize);
  const dtype = variant.dtype ?? 'f32';
  const codebook = variant.codebook ?? 'nf4';
  const constants = {
    BLOCK_SIZE: variant.blockSize, DOUBLE_QUANT: variant.doubleQuant, INT4_CODE: codebook === 'int4', WG, HALF_OUTPUT: dtype === 'f16', QUAD_WORDS,
  };
  const [words, quads] = await Promise.all([ctx.pipelines.get(DEQUANTIZE, dtype, constants), ctx.pipelines.get(DEQUANTIZE_QUADS, dtype, constants)]);
  // Values per 16-byte store: a row start on a multiple of it keeps every word's store aligned.
  const perQuad = 16 / BYTES_PER_ELEMENT[dtype];
  return {
    encode(recorder, { weight: w, output, outputRowStride }) {
      const [rows, cols] = w.shape;
      const n = rows * cols;
      const ld = outputRowStride ?? cols;
      if (w.blockSize !== variant.blockSize || w.doubleQuant !== variant.doubleQuant || w.codebook !== codebook) {
        throw new InvalidArgumentError(
          `nf4 dequantize: kernel made for block size ${variant.blockSize}, double quantization ${variant.doubleQuant}, codebook ${codebook}; ` +
            `weight has ${w.blockSize}, ${w.doubleQuant}, ${w.codebook}.`,
        );
      }
      if (!Number.isInteger(ld) || ld < cols) {
        throw new InvalidArgumentError(`nf4 dequantize: outputRowStride ${ld} must be an integer of at least the weight's ${cols} columns.`);
      }
      if (ld !== cols && (cols % 8 !== 0 || (dtype === 'f16' && ld % 2 !== 0))) {
        throw new InvalidArgumentError(`nf4 dequantize: padded rows need a multiple of 8 columns (the weight has ${cols})${dtype === 'f16' ? ' and an even outputRowStride' : ''}; got outputRowStride ${ld}.`);
      }
      const needed = (rows - 1) * ld + cols;
      if (output.dtype !== dtype || output.size < needed) {
        throw new InvalidArgumentError(`nf4 dequantize: output "${output.label}" must be ${dtype} with at least ${needed} elements for weight [${w.shape.join(', ')}] with rows ${ld} apart; got ${output.dtype} [${output.shape.join(', ')}].`);
      }
      // Dense rows put word j at value 8j; padded ones (cols % 8 == 0) at row * ld + a multiple of 8.
      const whole = n % 8 === 0 && (ld === cols || ld % perQuad === 0);
      const g = grid1D(Math.ceil(n / 8 / (whole ? QUAD_WORDS : 1)), WG, ctx.limits.maxComputeWorkgroupsPerDimension);
      recorder.dispatch(whole ? quads : words, [...weightBuffers(w), output.buffer], packParams([['u32', n], ['u32', g.rowStride], ['f32', w.offset], ['u32', cols], ['u32', ld]]), g.workgroups);
    },
  };
}

/** Dequantizes an NF4 weight to a new float32 tensor (for export or for comparison). */
export async function dequantizeNF4Gpu(ctx: GpuContext, w: NF4Weight, label = 'nf4 dequantized'): Promise<GpuTensor> {
  const kernel = await createNF4DequantizeKernel(ctx, { blockSize: w.blockSize, doubleQuant: w.doubleQuant, codebook: w.codebook });
  const out = createTensor(ctx, { shape: [...w.shape], label });
  const recorder = new CommandRecorder(ctx, 'nf4 dequantize');
  kernel.encode(recorder, { weight: w, output: out });
  recorder.submit();
  return out;
}

export interface NF4MatmulVariant {
  /** 'forward': Y = X dequant(W)^T; 'grad-input': DX = DY dequant(W). */
  mode: 'forward' | 'grad-input';
  dtype?: ElementType;
  accumulate?: boolean;
  blockSize?: number;
  doubleQuant?: boolean;
  /** Default 'nf4'; 'int4' for MatMulNBits weights. */
  codebook?: Codebook4;
  workgroup?: readonly [number, number];
}

export interface NF4MatmulArgs {
  weight: NF4Weight;
  /** forward: X [M, K]; grad-input: DY [M, N]. */
  input: GpuTensor;
  /** forward: Y [M, N]; grad-input: DX [M, K]. */
  output: GpuTensor;
  m: number;
  alpha?: number;
}

export interface NF4MatmulKernel {
  readonly variant: Required<NF4MatmulVariant>;
  encode(recorder: CommandRecorder, args: NF4MatmulArgs): void;
}

export async function createNF4MatmulKernel(ctx: GpuContext, variant: NF4MatmulVariant): Promise<NF4MatmulKernel> {
  const v: Required<NF4MatmulVariant> = {
    mode: variant.mode,
    dtype: variant.dtype ?? 'f32',
    accumulate: variant.accumulate ?? false,
    blockSize: variant.blockSize ?? 64,
    doubleQuant: variant.doubleQuant ?? false,
    codebook: variant.codebook ?? 'nf4',
    workgroup: variant.workgroup ?? [8, 8],
  };
  validateBlockSize(v.blockSize);
  const definition = v.mode === 'forward' ? NF4_MATMUL_KERNEL : NF4_GRAD_INPUT_KERNEL;
  const compiled = await ctx.pipelines.get(definition, v.dtype, {
    WG_X: v.workgroup[0],
    WG_Y: v.workgroup[1],
    ACCUMULATE: v.accumulate,
    BLOCK_SIZE: v.blockSize,
    DOUBLE_QUANT: v.doubleQuant,
    INT4_CODE: v.codebook === 'int4',
  });
  return {
    variant: v,
    encode(recorder, args) {
      const w = args.weight;
      const [n, k] = w.shape;
      if (w.blockSize !== v.blockSize || w.doubleQuant !== v.doubleQuant || w.codebook !== v.codebook) {
        throw new InvalidArgumentError(
          `nf4 matmul: kernel made for block size ${v.blockSize}${v.doubleQuant ? ' with' : ' without'} double quantization, codebook ${v.codebook}; ` +
            `weight has block size ${w.blockSize}${w.doubleQuant ? ' with' : ' without'}, codebook ${w.codebook}.`,
        );
      }
      const [inCols, outCols] = v.mode === 'forward' ? [k, n] : [n, k];
      if (!Number.isInteger(args.m) || args.m < 1) throw new InvalidArgumentError(`nf4 matmul: m must be a positive integer, got ${args.m}.`);
      for (const [name, t, cols] of [['input', args.input, inCols], ['output', args.output, outCols]] as const) {
        if (t.dtype !== v.dtype || t.size < args.m * cols) {
          throw new InvalidArgumentError(
            `nf4 matmul (${v.mode}): ${name} "${t.label}" must be ${v.dtype} with at least ${args.m} x ${cols} elements for weight [${n}, ${k}]; ` +
              `got ${t.dtype} [${t.shape.join(', ')}].`,
          );
        }
      }
      const [wx, wy] = v.workgroup;
      // Output block per invocation, fixed in the shaders: forward 8 rows x 4 columns, grad-input 4 x 8.
      const [blockRows, blockCols] = v.mode === 'forward' ? [8, 4] : [4, 8];
      recorder.dispatch(compiled, [...weightBuffers(w), args.input.buffer, args.output.buffer],
        packParams([['u32', args.m], ['u32', n], ['u32', k], ['f32', args.alpha ?? 1], ['f32', w.offset]]),
        [Math.ceil(outCols / (wx * blockCols)), Math.ceil(args.m / (wy * blockRows))], { flops: 2 * args.m * n * k });
    },
  };
}

/** Y = X dequant(W)^T for X [M, K] and an NF4 weight [N, K]; returns Y [M, N]. */
export async function matmulNF4(ctx: GpuContext, x: GpuTensor, w: NF4Weight, options: { dtype?: ElementType } = {}): Promise<GpuTensor> {
  const k = w.shape[1];
  if (x.shape[x.shape.length - 1] !== k) {
    throw new InvalidArgumentError(`matmulNF4: X [${x.shape.join(', ')}] must end in K=${k} to multiply weight [${w.shape.join(', ')}]^T.`);
  }
  const m = x.size / k;
  const kernel = await createNF4MatmulKernel(ctx, { mode: 'forward', dtype: options.dtype ?? 'f32', blockSize: w.blockSize, doubleQuant: w.doubleQuant, codebook: w.codebook });
  const y = createTensor(ctx, { shape: [...x.shape.slice(0, -1), w.shape[0]], dtype: kernel.variant.dtype, label: 'nf4 matmul output' });
  const recorder = new CommandRecorder(ctx, 'nf4 matmul');
  kernel.encode(recorder, { weight: w, input: x, output: y, m });
  recorder.submit();
  return y;
}
