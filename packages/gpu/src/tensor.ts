/**
 * GPU tensors: a pooled storage buffer with a shape and an element type. Small integer data
 * (u8, as NF4 codes are) is packed four to a 32-bit word, as WGSL reads it.
 */
import { InvalidArgumentError, OutOfMemoryError } from '@webtune/errors';
import type { GpuContext } from './device.js';
import { fromF16Bits, toF16Bits } from './f16.js';

export type DType = 'f32' | 'f16' | 'u32' | 'u8';

export const BYTES_PER_ELEMENT: Record<DType, number> = { f32: 4, f16: 2, u32: 4, u8: 1 };

export type TensorData = Float32Array | Uint32Array | Uint8Array | Uint16Array;

export interface GpuTensor {
  readonly buffer: GPUBuffer;
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly label: string;
  /** Number of elements. */
  readonly size: number;
  /** Bytes the elements occupy (the buffer may be up to 3 bytes longer). */
  readonly byteLength: number;
  /** Returns the buffer to the pool; the tensor must not be used afterwards. */
  release(): void;
}

export interface CreateTensorOptions {
  shape: readonly number[];
  dtype?: DType;
  label: string;
  /** Initial contents: f32 tensors take Float32Array, f16 take Float32Array (converted) or raw Uint16Array bits. */
  data?: TensorData;
}

export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw new InvalidArgumentError(`Invalid tensor shape [${shape.join(', ')}]: dimensions must be non-negative integers.`);
    }
    n *= d;
  }
  return n;
}

export function createTensor(ctx: GpuContext, options: CreateTensorOptions): GpuTensor {
  ctx.assertAlive();
  const dtype = options.dtype ?? 'f32';
  const size = shapeSize(options.shape);
  const byteLength = size * BYTES_PER_ELEMENT[dtype];
  // GPUBufferUsage is read here, not at import: in Node it exists only after createNodeGpu().
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const buffer = ctx.pool.acquire(byteLength, usage, options.label);
  let released = false;
  const tensor: GpuTensor = {
    buffer,
    shape: Object.freeze([...options.shape]),
    dtype,
    label: options.label,
    size,
    byteLength,
    release() {
      if (released) return;
      released = true;
      ctx.pool.release(buffer);
    },
  };
  if (options.data) writeTensor(ctx, tensor, options.data);
  return tensor;
}

/** Uploads `data` into `tensor` (whole tensor). */
export function writeTensor(ctx: GpuContext, tensor: GpuTensor, data: TensorData): void {
  let bytes: Uint8Array;
  if (tensor.dtype === 'f16' && data instanceof Float32Array) {
    const bits = toF16Bits(data);
    bytes = new Uint8Array(bits.buffer);
  } else {
    const expected =
      tensor.dtype === 'f32' ? Float32Array : tensor.dtype === 'f16' ? Uint16Array : tensor.dtype === 'u32' ? Uint32Array : Uint8Array;
    if (!(data instanceof expected)) {
      throw new InvalidArgumentError(
        `Tensor "${tensor.label}" has dtype ${tensor.dtype} and takes ${expected.name}, got ${data.constructor.name}.`,
      );
    }
    bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  if (bytes.byteLength !== tensor.byteLength) {
    throw new InvalidArgumentError(
      `Tensor "${tensor.label}" [${tensor.shape.join(', ')}] ${tensor.dtype} holds ${tensor.byteLength} bytes; data has ${bytes.byteLength}.`,
    );
  }
  // writeBuffer wants a multiple of 4 bytes.
  if (bytes.byteLength % 4 !== 0) {
    const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
    padded.set(bytes);
    bytes = padded;
  }
  ctx.device.queue.writeBuffer(tensor.buffer, 0, bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Reads a buffer range back to the CPU. Throws OutOfMemoryError if an earlier allocation failed. */
export async function readBuffer(ctx: GpuContext, source: GPUBuffer, byteLength: number, label = 'readback'): Promise<ArrayBuffer> {
  ctx.assertAlive();
  const size = Math.ceil(byteLength / 4) * 4;
  const staging = ctx.pool.acquire(size, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, `${label} (staging)`);
  try {
    const encoder = ctx.device.createCommandEncoder({ label: `${label} copy` });
    encoder.copyBufferToBuffer(source, 0, staging, 0, size);
    ctx.device.queue.submit([encoder.finish()]);
    const failure = await ctx.pool.checkAllocations();
    if (failure) throw new OutOfMemoryError(failure.label, failure.size, ctx.memory.liveBytes, failure.error.message);
    await staging.mapAsync(GPUMapMode.READ, 0, size);
    const copy = staging.getMappedRange(0, size).slice(0, byteLength);
    staging.unmap();
    return copy;
  } catch (error) {
    ctx.assertAlive();
    throw error;
  } finally {
    ctx.pool.release(staging);
  }
}

/** Reads a tensor: f32 and f16 come back as Float32Array, u32 as Uint32Array, u8 as Uint8Array. */
export async function readTensor(ctx: GpuContext, tensor: GpuTensor): Promise<Float32Array | Uint32Array | Uint8Array> {
  const bytes = await readBuffer(ctx, tensor.buffer, tensor.byteLength, tensor.label);
  switch (tensor.dtype) {
    case 'f32':
      return new Float32Array(bytes);
    case 'f16':
      return fromF16Bits(new Uint16Array(bytes));
    case 'u32':
      return new Uint32Array(bytes);
    case 'u8':
      return new Uint8Array(bytes);
  }
}

export async function readF32(ctx: GpuContext, tensor: GpuTensor): Promise<Float32Array> {
  if (tensor.dtype !== 'f32' && tensor.dtype !== 'f16') {
    throw new InvalidArgumentError(`readF32: tensor "${tensor.label}" is ${tensor.dtype}, not f32 or f16.`);
  }
  return (await readTensor(ctx, tensor)) as Float32Array;
}
