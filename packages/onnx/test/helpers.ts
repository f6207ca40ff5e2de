/** Fixture loading and hand-built protobuf for the @webtune/onnx tests. */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs/minimal.js';
import { parseModelConfig, parseSafetensors, tensorToFloat32 as safetensorsToFloat32, type ModelConfig } from '@webtune/model';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../../..');
export const ONNX_FIXTURES = join(ROOT, 'packages/model/test/fixtures/onnx');
export const DEMO_DIR = join(ROOT, 'demo-app/public/models/webtune-demo');

const cache = new Map<string, Uint8Array>();
/** A file's bytes (cached; do not mutate, copy first). */
export function readBytes(path: string): Uint8Array {
  let b = cache.get(path);
  if (!b) {
    const buf = readFileSync(path);
    b = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    cache.set(path, b);
  }
  return b;
}

export function fixtureConfig(dir: string): ModelConfig {
  return parseModelConfig(readFileSync(join(dir, 'config.json'), 'utf8'), join(dir, 'config.json'));
}

/** HF parameter -> float32 values (F16 upcast) and shape, from a model.safetensors. */
export function safetensorsWeights(path: string): Map<string, { data: Float32Array; shape: number[] }> {
  const file = parseSafetensors(readBytes(path), path);
  const out = new Map<string, { data: Float32Array; shape: number[] }>();
  for (const [name, t] of file.tensors) out.set(name, { data: safetensorsToFloat32(t, path), shape: t.shape });
  return out;
}

/** A float32 tensor in the goldens: base64 of its little-endian bytes. */
export interface EncodedF32 { shape: number[]; b64: string; dtype: 'f32' }

/** goldens/<model>.json's PyTorch logits (scripts/make_onnx_fixtures.py); the browser pages read the same files. */
export interface OnnxLogitsGolden {
  modelDir: string;
  externalDataDir?: string;
  numLayers: number;
  kvHeads: number;
  headDim: number;
  inputIds: number[][];
  /** Tokens fed in the first call of the two-call (with past) logits. */
  pastSplit: number;
  variants: Record<'f32' | 'fp16' | 'q4', { file: string; logits: EncodedF32; logitsWithPast: EncodedF32 }>;
}

export const logitsGolden = (name: string) => JSON.parse(readFileSync(join(ONNX_FIXTURES, 'goldens', `${name}.json`), 'utf8')) as OnnxLogitsGolden;

export interface Golden {
  modelType: string;
  tiedLmHead: boolean;
  initializerMap: Array<{ hf: string; initializer: string; node: string; op: string; transposed: boolean; shape: number[]; tiedTo?: string; bias?: string }>;
  variants: Record<string, { file: string; q4Nodes?: Array<{ hf: string; node: string; B: string; scales: string; K: number; N: number; bits: number; blockSize: number }> }>;
}

export function golden(name: string): Golden {
  return JSON.parse(readFileSync(join(ONNX_FIXTURES, 'goldens', `${name}.json`), 'utf8')) as Golden;
}

// ----------------------------------------------------------------------------- hand-built protobuf

export const VARINT = 0;
export const I64 = 1;
export const LEN = 2;
export const I32 = 5;
export type Writer = protobuf.Writer;

export const tag = (field: number, wire: number) => (field << 3) | wire;

/** A length-delimited sub-message. */
export function sub(w: Writer, field: number, body: (w: Writer) => void): Writer {
  w.uint32(tag(field, LEN)).fork();
  body(w);
  return w.ldelim();
}

export function str(w: Writer, field: number, value: string): Writer {
  return w.uint32(tag(field, LEN)).string(value);
}

export function bytesField(w: Writer, field: number, value: Uint8Array): Writer {
  return w.uint32(tag(field, LEN)).bytes(value);
}

export function varint(w: Writer, field: number, value: number): Writer {
  return w.uint32(tag(field, VARINT)).int64(value);
}

export function packedInt64(w: Writer, field: number, values: Array<number | bigint>): Writer {
  w.uint32(tag(field, LEN)).fork();
  for (const v of values) {
    const big = BigInt.asUintN(64, BigInt(v));
    // protobufjs takes a Long-like { low, high } for values beyond 2^53.
    w.uint64({ low: Number(big & 0xffffffffn) | 0, high: Number(big >> 32n) | 0, unsigned: true } as unknown as number);
  }
  return w.ldelim();
}

export function finish(build: (w: Writer) => void): Uint8Array {
  const w = protobuf.Writer.create();
  build(w);
  return w.finish();
}

/** A NodeProto body. */
export function node(w: Writer, n: { name: string; op: string; inputs: string[]; outputs: string[]; domain?: string; attrs?: (w: Writer) => void }): Writer {
  return sub(w, 1, (x) => {
    for (const i of n.inputs) str(x, 1, i);
    for (const o of n.outputs) str(x, 2, o);
    str(x, 3, n.name);
    str(x, 4, n.op);
    if (n.domain) str(x, 7, n.domain);
    n.attrs?.(x);
  });
}

/** Byte equality without a slow deep comparison. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** Index of the first differing element, -1 if none (lengths must match). */
export function firstDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return i;
  return -1;
}
