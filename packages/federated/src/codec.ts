/**
 * Update payloads: a client's adapter delta as one safetensors file, optionally compressed.
 *
 *   metadata: {"format": "webtune-update", "protocol": "1", "encoding": "f32" | "q8",
 *              "sparse": "none" | "topk", "base_version": "<global version trained from>"}
 *   dense f32:   <key>            F32  [shape]
 *   dense q8:    <key>            U8   [shape]    value = offset + scale * code
 *                <key>.q8         F32  [2]        [offset, scale]
 *   top-k:       <key>.indices    I32  [k]        flat indices into the tensor, ascending
 *                <key>            F32 or U8 [k]   the kept values (q8 as above)
 *
 * q8 is stochastic rounding to 256 levels between the tensor's min and max, so the decoded value
 * is unbiased (E[decoded] = value); top-k keeps the k largest |values| per tensor. Keys are PEFT
 * names (base_model.model....lora_A.weight). decodeUpdate validates everything against the
 * expected tensors and throws UpdateRejectedError with the protocol's error code.
 */
import { UpdateRejectedError } from '@webtune/errors';
import { parseSafetensors, serializeSafetensors, type HostTensor, type TensorToWrite } from '@webtune/model';
import type { ErrorCode } from './protocol.js';

/** Options of encodeUpdate(): compression (q8 and/or top-k; default dense f32) and the global version trained from. */
export interface EncodeOptions {
  encoding?: 'f32' | 'q8';
  /** Keep this fraction of each tensor's entries (largest magnitude); 1 (default) keeps all. */
  topK?: number;
  baseVersion: number;
  /** Uniform [0, 1) source for stochastic rounding; default crypto.getRandomValues. */
  random?: () => number;
}

/** A uniform [0, 1) generator over crypto.getRandomValues, drawn in blocks. */
export function cryptoUniform(): () => number {
  const block = new Uint32Array(1024);
  let at = block.length;
  return () => {
    if (at === block.length) {
      crypto.getRandomValues(block);
      at = 0;
    }
    return block[at++]! / 4294967296;
  };
}

function quantize(values: Float32Array, random: () => number): { codes: Uint8Array; offset: number; scale: number } {
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (values.length === 0) return { codes: new Uint8Array(0), offset: 0, scale: 0 };
  const scale = max > min ? (max - min) / 255 : 0;
  const codes = new Uint8Array(values.length);
  if (scale > 0) {
    for (let i = 0; i < values.length; i++) {
      const x = (values[i]! - min) / scale;
      const low = Math.floor(x);
      codes[i] = Math.min(255, low + (random() < x - low ? 1 : 0));
    }
  }
  return { codes, offset: min, scale };
}

function topKIndices(values: Float32Array, k: number): Int32Array {
  const order = Array.from(values.keys()).sort((a, b) => Math.abs(values[b]!) - Math.abs(values[a]!));
  return Int32Array.from(order.slice(0, k).sort((a, b) => a - b));
}

/**
 * An adapter delta (PEFT keys) as an update payload, the body of POST /v1/rounds/:roundId/updates (see the
 * file comment for the layout). Throws UpdateRejectedError for a `topK` outside (0, 1].
 */
export function encodeUpdate(delta: ReadonlyMap<string, HostTensor>, options: EncodeOptions): Uint8Array {
  const encoding = options.encoding ?? 'f32';
  const topK = options.topK ?? 1;
  if (!(topK > 0 && topK <= 1)) throw new UpdateRejectedError('bad_request', `topK must be in (0, 1], got ${topK}`);
  const random = options.random ?? cryptoUniform();
  const out: TensorToWrite[] = [];
  for (const [key, t] of delta) {
    let values = t.data;
    let shape = t.shape;
    if (topK < 1) {
      const k = Math.max(1, Math.round(values.length * topK));
      const indices = topKIndices(values, k);
      values = Float32Array.from(indices, (i) => t.data[i]!);
      shape = [k];
      out.push({ name: `${key}.indices`, dtype: 'I32', shape: [k], data: new Uint8Array(indices.buffer) });
    }
    if (encoding === 'q8') {
      const q = quantize(values, random);
      out.push({ name: key, dtype: 'U8', shape, data: q.codes });
      out.push({ name: `${key}.q8`, dtype: 'F32', shape: [2], data: Float32Array.of(q.offset, q.scale) });
    } else {
      out.push({ name: key, dtype: 'F32', shape, data: values });
    }
  }
  return serializeSafetensors(out, {
    format: 'webtune-update', protocol: '1', encoding, sparse: topK < 1 ? 'topk' : 'none', base_version: String(options.baseVersion),
  });
}

/** decodeUpdate()'s result: the payload's metadata and every expected tensor as dense float32 (top-k gaps are zero). */
export interface DecodedUpdate {
  baseVersion: number;
  encoding: 'f32' | 'q8';
  sparse: boolean;
  tensors: Map<string, Float32Array>;
}

/**
 * Decodes and validates an update against the expected tensors (key -> shape): exactly those
 * keys, the right shapes and dtypes, finite values. Throws UpdateRejectedError.
 */
export function decodeUpdate(bytes: Uint8Array, expected: ReadonlyMap<string, readonly number[]>): DecodedUpdate {
  let file;
  try {
    file = parseSafetensors(bytes, 'update');
  } catch (error) {
    throw new UpdateRejectedError('malformed', (error as Error).message);
  }
  const meta = file.metadata;
  if (meta['format'] !== 'webtune-update') throw new UpdateRejectedError('malformed', 'metadata "format" is not "webtune-update"');
  if (meta['protocol'] !== '1') throw new UpdateRejectedError('unsupported_protocol', `protocol ${meta['protocol']} (this side speaks 1)`);
  const encoding = meta['encoding'];
  if (encoding !== 'f32' && encoding !== 'q8') throw new UpdateRejectedError('malformed', `unknown encoding ${encoding}`);
  const sparse = meta['sparse'] === 'topk';
  const baseText = meta['base_version'];
  // Digits only: Number('') is 0, and ' 1', '1e0' or '0x1' must not pass as versions either.
  const baseVersion = typeof baseText === 'string' && /^\d{1,15}$/.test(baseText) ? Number(baseText) : NaN;
  if (!Number.isSafeInteger(baseVersion)) throw new UpdateRejectedError('malformed', `metadata "base_version" must be a version number, got ${JSON.stringify(baseText)}`);
  const allowed = new Set<string>();
  for (const key of expected.keys()) {
    allowed.add(key);
    if (encoding === 'q8') allowed.add(`${key}.q8`);
    if (sparse) allowed.add(`${key}.indices`);
  }
  for (const name of file.tensors.keys()) {
    if (!allowed.has(name)) throw new UpdateRejectedError('wrong_tensors', `unexpected tensor "${name}"`);
  }
  const tensors = new Map<string, Float32Array>();
  for (const [key, shape] of expected) {
    const size = shape.reduce((a, b) => a * b, 1);
    const t = file.tensors.get(key);
    if (!t) throw new UpdateRejectedError('wrong_tensors', `missing tensor "${key}"`);
    let indices: Int32Array | undefined;
    if (sparse) {
      const it = file.tensors.get(`${key}.indices`);
      if (!it || it.dtype !== 'I32' || it.shape.length !== 1) throw new UpdateRejectedError('wrong_tensors', `"${key}.indices" must be I32 [k]`);
      indices = new Int32Array(it.bytes.slice().buffer);
      let last = -1;
      for (const i of indices) {
        if (i <= last || i >= size) throw new UpdateRejectedError('malformed', `"${key}.indices" must be ascending and below ${size}`);
        last = i;
      }
    }
    const count = indices ? indices.length : size;
    const wantShape = indices ? [count] : [...shape];
    if (t.shape.length !== wantShape.length || t.shape.some((d, i) => d !== wantShape[i])) {
      throw new UpdateRejectedError('wrong_tensors', `"${key}" is [${t.shape.join(', ')}], expected [${wantShape.join(', ')}]`);
    }
    let values: Float32Array;
    if (encoding === 'q8') {
      const qt = file.tensors.get(`${key}.q8`);
      if (t.dtype !== 'U8' || !qt || qt.dtype !== 'F32' || qt.shape.length !== 1 || qt.shape[0] !== 2) {
        throw new UpdateRejectedError('wrong_tensors', `q8 "${key}" needs U8 codes and an F32 [2] "${key}.q8"`);
      }
      const [offset, scale] = new Float32Array(qt.bytes.slice().buffer);
      if (!Number.isFinite(offset) || !Number.isFinite(scale) || scale! < 0) throw new UpdateRejectedError('not_finite', `"${key}.q8" is not finite`);
      values = Float32Array.from(t.bytes, (c) => offset! + scale! * c);
    } else {
      if (t.dtype !== 'F32') throw new UpdateRejectedError('wrong_tensors', `"${key}" is ${t.dtype}, expected F32`);
      values = new Float32Array(t.bytes.slice().buffer);
    }
    for (let i = 0; i < values.length; i++) {
      if (!Number.isFinite(values[i]!)) throw new UpdateRejectedError('not_finite', `"${key}" has a non-finite value at ${i}`);
    }
    if (indices) {
      const dense = new Float32Array(size);
      indices.forEach((idx, j) => (dense[idx] = values[j]!));
      values = dense;
    }
    tensors.set(key, values);
  }
  return { baseVersion, encoding, sparse, tensors };
}

/** Global L2 norm over all tensors. */
export function globalNorm(tensors: Iterable<Float32Array>): number {
  let sum = 0;
  for (const t of tensors) for (const v of t) sum += v * v;
  return Math.sqrt(sum);
}
