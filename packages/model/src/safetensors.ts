/**
 * safetensors, the one tensor container webtune reads and writes (models, adapters, checkpoints,
 * federated payloads). Format (huggingface/safetensors README, see REFERENCE.md): an 8-byte
 * little-endian header length N, N bytes of JSON mapping names to
 * `{dtype, shape, data_offsets: [begin, end)}` relative to the data that follows, with an optional
 * `__metadata__` string map. Every check the upstream reader makes is made here, so a truncated
 * download or a corrupt header fails with a `ModelFormatError` naming the file, never later as
 * garbage weights.
 */
import { f16BitsToF32 } from '@webtune/gpu';
import { ModelFormatError } from '@webtune/errors';

export const SAFETENSORS_DTYPE_BYTES = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
} as const;
export type SafetensorsDType = keyof typeof SAFETENSORS_DTYPE_BYTES;

/** Upstream refuses headers above 100 MB; so does this reader. */
export const MAX_HEADER_BYTES = 100_000_000;

/**
 * Tensors one file may declare. Far above any checkpoint webtune trains (a few thousand per file),
 * and checked on the header text before JSON.parse builds an object per entry, so a header of
 * millions of tiny entries is refused before it costs memory.
 */
export const MAX_SAFETENSORS_TENSORS = 200_000;

/** How many times `"data_offsets"` occurs in the header text: an upper bound on its entries. */
function countEntries(text: string, stopAfter: number): number {
  let n = 0;
  for (let at = text.indexOf('"data_offsets"'); at >= 0 && n <= stopAfter; at = text.indexOf('"data_offsets"', at + 14)) n++;
  return n;
}

export interface SafetensorsEntry {
  dtype: SafetensorsDType;
  shape: number[];
  /** Byte range [begin, end) relative to the start of the data section. */
  dataOffsets: [number, number];
}

export interface SafetensorsHeader {
  entries: Map<string, SafetensorsEntry>;
  metadata: Record<string, string>;
  /** Absolute offset of the data section (8 + header length). */
  dataStart: number;
  /** Bytes of tensor data the header describes. */
  dataBytes: number;
}

export interface SafetensorsTensor {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** The tensor's bytes: a view into the file, not a copy. */
  bytes: Uint8Array;
}

export interface SafetensorsFile {
  tensors: Map<string, SafetensorsTensor>;
  metadata: Record<string, string>;
}

const isDType = (d: unknown): d is SafetensorsDType => typeof d === 'string' && Object.hasOwn(SAFETENSORS_DTYPE_BYTES, d);
const elementCount = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/**
 * Reads the length prefix and the JSON header from the first bytes of a file, which is all a
 * streaming loader needs to plan its reads. `prefix` may be the whole file or just its start;
 * returns `undefined` when it is too short to hold the header (read more and call again).
 */
export function parseSafetensorsHeader(prefix: Uint8Array, source = 'safetensors file'): SafetensorsHeader | undefined {
  if (prefix.byteLength < 8) return undefined;
  const view = new DataView(prefix.buffer, prefix.byteOffset, prefix.byteLength);
  const length = view.getBigUint64(0, true);
  if (length > BigInt(MAX_HEADER_BYTES)) {
    throw new ModelFormatError(source, `header length ${length} exceeds the format's limit of ${MAX_HEADER_BYTES} bytes; this is not a safetensors file or it is corrupt`);
  }
  const headerLength = Number(length);
  if (prefix.byteLength < 8 + headerLength) return undefined;
  let json: unknown;
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(prefix.subarray(8, 8 + headerLength));
    if (!text.startsWith('{')) throw new Error('the header does not start with "{"');
    if (countEntries(text, MAX_SAFETENSORS_TENSORS) > MAX_SAFETENSORS_TENSORS) {
      throw new ModelFormatError(source, `the header declares more than ${MAX_SAFETENSORS_TENSORS} tensors; no model webtune can load has that many in one file, so it is corrupt or built to exhaust memory`);
    }
    json = JSON.parse(text);
  } catch (cause) {
    if (cause instanceof ModelFormatError) throw cause;
    throw new ModelFormatError(source, `the header is not valid UTF-8 JSON (${(cause as Error).message}); the file is corrupt or not safetensors`, { cause });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ModelFormatError(source, 'the header is not a JSON object');
  }

  const entries = new Map<string, SafetensorsEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Object.values(value).some((v) => typeof v !== 'string')) {
        throw new ModelFormatError(source, '__metadata__ must map strings to strings');
      }
      metadata = value as Record<string, string>;
      continue;
    }
    const e = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!isDType(e?.dtype)) {
      throw new ModelFormatError(source, `tensor "${name}" has dtype ${JSON.stringify(e?.dtype)}, which is not a safetensors dtype`);
    }
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new ModelFormatError(source, `tensor "${name}" has shape ${JSON.stringify(e.shape)}; expected a list of non-negative integers`);
    }
    const offsets = e.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]) {
      throw new ModelFormatError(source, `tensor "${name}" has data_offsets ${JSON.stringify(offsets)}; expected [begin, end] with begin <= end`);
    }
    const expected = elementCount(e.shape) * SAFETENSORS_DTYPE_BYTES[e.dtype];
    if (offsets[1] - offsets[0] !== expected) {
      throw new ModelFormatError(
        source,
        `tensor "${name}" (${e.dtype} [${e.shape.join(', ')}]) needs ${expected} bytes but data_offsets ${JSON.stringify(offsets)} span ${offsets[1] - offsets[0]}`,
      );
    }
    entries.set(name, { dtype: e.dtype, shape: [...e.shape], dataOffsets: [offsets[0], offsets[1]] });
  }

  // The data section must be covered exactly: sorted ranges that touch, starting at 0.
  const sorted = [...entries].sort((a, b) => a[1].dataOffsets[0] - b[1].dataOffsets[0] || a[1].dataOffsets[1] - b[1].dataOffsets[1]);
  let end = 0;
  for (const [name, entry] of sorted) {
    if (entry.dataOffsets[0] !== end) {
      throw new ModelFormatError(
        source,
        entry.dataOffsets[0] < end
          ? `tensor "${name}" overlaps the tensor before it (starts at ${entry.dataOffsets[0]}, previous ends at ${end})`
          : `there is a hole in the data before tensor "${name}" (bytes ${end} to ${entry.dataOffsets[0]} belong to no tensor)`,
      );
    }
    end = entry.dataOffsets[1];
  }
  return { entries, metadata, dataStart: 8 + headerLength, dataBytes: end };
}

/** Parses a whole safetensors file. Tensors are views into `bytes`, not copies. */
export function parseSafetensors(bytes: Uint8Array, source = 'safetensors file'): SafetensorsFile {
  const header = parseSafetensorsHeader(bytes, source);
  if (!header) {
    const need = bytes.byteLength < 8 ? 8 : 8 + Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
    throw new ModelFormatError(source, `the file is ${bytes.byteLength} bytes, too short for its header (${need} bytes); it is truncated (an interrupted download?)`);
  }
  const available = bytes.byteLength - header.dataStart;
  if (available !== header.dataBytes) {
    throw new ModelFormatError(
      source,
      available < header.dataBytes
        ? `the header describes ${header.dataBytes} bytes of tensor data but the file holds ${available}; it is truncated (an interrupted download?)`
        : `the file has ${available - header.dataBytes} bytes after the last tensor; it is corrupt`,
    );
  }
  const tensors = new Map<string, SafetensorsTensor>();
  for (const [name, e] of header.entries) {
    tensors.set(name, {
      name,
      dtype: e.dtype,
      shape: e.shape,
      bytes: bytes.subarray(header.dataStart + e.dataOffsets[0], header.dataStart + e.dataOffsets[1]),
    });
  }
  return { tensors, metadata: header.metadata };
}

/** A floating-point tensor's values as f32 (F32, F16, BF16 and F64; little-endian). */
export function tensorToFloat32(tensor: SafetensorsTensor, source = 'safetensors file'): Float32Array {
  const { bytes, dtype } = tensor;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = elementCount(tensor.shape);
  const out = new Float32Array(n);
  switch (dtype) {
    case 'F32':
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
      return out;
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = f16BitsToF32(view.getUint16(2 * i, true));
      return out;
    case 'BF16': {
      // bfloat16 is the top half of an f32.
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = view.getUint16(2 * i, true) << 16;
      return out;
    }
    case 'F64':
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(8 * i, true);
      return out;
    default:
      throw new ModelFormatError(source, `tensor "${tensor.name}" is ${dtype}; webtune reads floating-point weights as F32, F16, BF16 or F64`);
  }
}

export interface TensorToWrite {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Little-endian bytes, or f32 values for dtype F32. */
  data: Uint8Array | Float32Array;
}

/**
 * Writes a safetensors file: tensors ordered by descending element size, then name, so each starts
 * aligned to its element size; the header padded with spaces to a multiple of 8 bytes (as
 * upstream pads it), so the data section starts 8-aligned too.
 */
export function serializeSafetensors(tensors: readonly TensorToWrite[], metadata?: Record<string, string>): Uint8Array {
  const seen = new Set<string>();
  const ordered = [...tensors].sort(
    (a, b) => SAFETENSORS_DTYPE_BYTES[b.dtype] - SAFETENSORS_DTYPE_BYTES[a.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  const chunks: Uint8Array[] = [];
  for (const t of ordered) {
    if (seen.has(t.name) || t.name === '__metadata__') {
      throw new ModelFormatError('serializeSafetensors', `tensor name "${t.name}" is duplicated or reserved`);
    }
    seen.add(t.name);
    const bytes = t.data instanceof Float32Array ? new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) : t.data;
    if (t.data instanceof Float32Array && t.dtype !== 'F32') {
      throw new ModelFormatError('serializeSafetensors', `tensor "${t.name}" is declared ${t.dtype} but given f32 values; pass its bytes`);
    }
    const expected = elementCount(t.shape) * SAFETENSORS_DTYPE_BYTES[t.dtype];
    if (bytes.byteLength !== expected) {
      throw new ModelFormatError('serializeSafetensors', `tensor "${t.name}" (${t.dtype} [${t.shape.join(', ')}]) needs ${expected} bytes, got ${bytes.byteLength}`);
    }
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + expected] };
    chunks.push(bytes);
    offset += expected;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded !== json.byteLength) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  out.set(json, 8);
  let at = 8 + json.byteLength;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

export interface ShardIndex {
  /** Tensor name to shard file name. */
  weightMap: Map<string, string>;
  /** Shard file names, in first-use order. */
  files: string[];
  metadata: Record<string, unknown>;
}

/** Parses `model.safetensors.index.json` (transformers' sharded checkpoint index). */
export function parseShardIndex(text: string, source = 'model.safetensors.index.json'): ShardIndex {
  let json: { weight_map?: unknown; metadata?: unknown };
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new ModelFormatError(source, `not valid JSON (${(cause as Error).message})`, { cause });
  }
  const map = json?.weight_map;
  if (typeof map !== 'object' || map === null || Object.values(map).some((f) => typeof f !== 'string' || f.includes('/') || f.includes('\\'))) {
    throw new ModelFormatError(source, 'expected "weight_map" mapping tensor names to shard file names in the same folder');
  }
  const weightMap = new Map(Object.entries(map as Record<string, string>));
  return { weightMap, files: [...new Set(weightMap.values())], metadata: (json.metadata ?? {}) as Record<string, unknown> };
}
