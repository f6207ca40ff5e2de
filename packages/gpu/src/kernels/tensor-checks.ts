/**
 * Argument checks shared by the transformer-op wrappers (norm, activation, embedding,
 * elementwise, dropout, optimizer, rope, attention, cross-entropy): every failure is an InvalidArgumentError that names the op,
 * the tensor and the shapes involved.
 */
import type { GpuContext } from '../device.js';
import { InvalidArgumentError } from '@webtune/errors';
import type { ElementType } from '../pipeline-cache.js';
import type { DType, GpuTensor } from '../tensor.js';

/** The activation element type a kernel family was asked for (default 'f32'); f16 needs shader-f16. */
export function requireElementType(ctx: GpuContext, op: string, dtype: unknown = 'f32'): ElementType {
  if (dtype !== 'f32' && dtype !== 'f16') throw new InvalidArgumentError(`${op}: dtype must be 'f32' or 'f16', got ${String(dtype)}.`);
  if (dtype === 'f16' && !ctx.features.shaderF16) {
    throw new InvalidArgumentError(`${op}: dtype 'f16' needs the 'shader-f16' feature, which this device does not have; use dtype 'f32'.`);
  }
  return dtype;
}

/** `value` must be an integer >= min (1 unless given). */
export function requireCount(op: string, name: string, value: number, min = 1): void {
  if (!Number.isInteger(value) || value < min) {
    throw new InvalidArgumentError(`${op}: ${name} must be an integer >= ${min}, got ${value}.`);
  }
}

/** `t` must have dtype `dtype` and at least `needed` elements; `what` describes the expected shape. */
export function requireTensor(op: string, name: string, t: GpuTensor, needed: number, what: string, dtype: DType = 'f32'): void {
  if (t.dtype !== dtype || t.size < needed) {
    throw new InvalidArgumentError(
      `${op}: ${name} "${t.label}" must be ${dtype} with at least ${needed} elements (${what}); ` +
        `got ${t.dtype} [${t.shape.join(', ')}].`,
    );
  }
}

/**
 * WebGPU refuses a buffer bound both read-only and writable in one dispatch (and two writable
 * bindings of one buffer race), so each written tensor must be distinct from every other one.
 */
export function requireDistinct(op: string, written: Record<string, GpuTensor>, others: Record<string, GpuTensor | undefined>): void {
  const all = Object.entries({ ...others, ...written });
  for (const [name, t] of Object.entries(written)) {
    for (const [other, u] of all) {
      if (other !== name && u && u.buffer === t.buffer) {
        throw new InvalidArgumentError(
          `${op}: ${name} "${t.label}" and ${other} "${u.label}" are the same buffer; ${name} is written, so it needs its own tensor.`,
        );
      }
    }
  }
}

/** A finite number (not NaN or ±Infinity). */
export function requireFinite(op: string, name: string, value: number): void {
  if (!Number.isFinite(value)) throw new InvalidArgumentError(`${op}: ${name} must be a finite number, got ${value}.`);
}
