import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ModelFormatError } from '@webtune/errors';
import {
  parseSafetensors, parseSafetensorsHeader, parseShardIndex, serializeSafetensors, tensorToFloat32, SAFETENSORS_DTYPE_BYTES,
} from '../src/index.js';

// Written by scripts/make_safetensors_fixtures.py (by hand from the format, tensors and the
// expected f32 values from PyTorch).
const dir = join(import.meta.dirname, 'fixtures/safetensors');
const file = (name: string) => new Uint8Array(readFileSync(join(dir, name)));
interface Expected {
  dtype: string;
  shape: number[];
  values?: { b64: string };
  ints?: number[];
}
const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as {
  mixed: { metadata: Record<string, string>; tensors: Record<string, Expected> };
  sharded: Record<string, Expected>;
};
const decodeF32 = (b64: string) => {
  const bytes = Buffer.from(b64, 'base64');
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
};

function expectMatches(name: string, got: ReturnType<typeof parseSafetensors>['tensors'], want: Expected) {
  const t = got.get(name);
  expect(t, name).toBeDefined();
  expect(t!.dtype).toBe(want.dtype);
  expect(t!.shape).toEqual(want.shape);
  if (want.values) {
    // Bit-exact, -0 and infinities included.
    expect(Array.from(tensorToFloat32(t!))).toEqual(Array.from(decodeF32(want.values.b64)));
  } else {
    const ints = t!.dtype === 'I64' ? Array.from(new BigInt64Array(t!.bytes.slice().buffer), Number) : Array.from(t!.bytes);
    expect(ints).toEqual(want.ints);
  }
}

/** A file with a hand-made header, for the malformed cases. */
function withHeader(header: unknown, dataBytes: number): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.byteLength + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  out.set(json, 8);
  return out;
}

describe('safetensors reader', () => {
  it('reads every dtype, shape and the metadata as PyTorch wrote them', () => {
    const parsed = parseSafetensors(file('mixed.safetensors'), 'mixed.safetensors');
    expect(parsed.metadata).toEqual(expected.mixed.metadata);
    expect([...parsed.tensors.keys()].sort()).toEqual(Object.keys(expected.mixed.tensors).sort());
    for (const [name, want] of Object.entries(expected.mixed.tensors)) expectMatches(name, parsed.tensors, want);
  });

  it('keeps -0, infinities and subnormals of f16 and bf16 exactly', () => {
    const half = tensorToFloat32(parseSafetensors(file('mixed.safetensors')).tensors.get('half')!);
    expect(Object.is(half[9], -0)).toBe(true);
    expect(half[7]).toBe(Infinity);
    expect(half[8]).toBe(-Infinity);
  });

  it('loads a sharded checkpoint through its index', () => {
    const index = parseShardIndex(readFileSync(join(dir, 'sharded/model.safetensors.index.json'), 'utf8'));
    expect(index.files).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    const shards = new Map(index.files.map((f) => [f, parseSafetensors(file(`sharded/${f}`), f).tensors]));
    for (const [name, want] of Object.entries(expected.sharded)) {
      expectMatches(name, shards.get(index.weightMap.get(name)!)!, want);
    }
  });

  it('reads the header from a prefix, asking for more when the prefix is short', () => {
    const bytes = file('mixed.safetensors');
    expect(parseSafetensorsHeader(bytes.subarray(0, 4))).toBeUndefined();
    expect(parseSafetensorsHeader(bytes.subarray(0, 20))).toBeUndefined();
    const header = parseSafetensorsHeader(bytes.subarray(0, 600))!;
    expect(header.dataStart + header.dataBytes).toBe(bytes.byteLength);
    expect(header.entries.get('brain')).toMatchObject({ dtype: 'BF16', shape: [3, 4] });
  });

  it('writes files it and the format read back identically, aligned', () => {
    const parsed = parseSafetensors(file('mixed.safetensors'));
    const written = serializeSafetensors([...parsed.tensors.values()].map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: t.bytes })), parsed.metadata);
    const headerLength = Number(new DataView(written.buffer).getBigUint64(0, true));
    expect(headerLength % 8).toBe(0);
    const again = parseSafetensorsHeader(written)!;
    for (const entry of again.entries.values()) expect(entry.dataOffsets[0] % SAFETENSORS_DTYPE_BYTES[entry.dtype]).toBe(0);
    const reread = parseSafetensors(written);
    expect(reread.metadata).toEqual(parsed.metadata);
    for (const [name, t] of parsed.tensors) {
      expect(reread.tensors.get(name)).toMatchObject({ dtype: t.dtype, shape: t.shape });
      expect(Array.from(reread.tensors.get(name)!.bytes)).toEqual(Array.from(t.bytes));
    }
    // f32 values can be passed directly.
    const f = serializeSafetensors([{ name: 'w', dtype: 'F32', shape: [2], data: new Float32Array([1.5, -2]) }]);
    expect(Array.from(tensorToFloat32(parseSafetensors(f).tensors.get('w')!))).toEqual([1.5, -2]);
  });

  const bad: [string, () => Uint8Array, RegExp][] = [
    ['fewer than 8 bytes', () => new Uint8Array(5), /too short for its header/],
    ['a truncated download', () => file('mixed.safetensors').slice(0, -3), /truncated/],
    ['a header cut short', () => file('mixed.safetensors').slice(0, 40), /truncated/],
    ['bytes after the last tensor', () => new Uint8Array([...file('mixed.safetensors'), 0, 0]), /after the last tensor/],
    ['an absurd header length', () => { const b = file('mixed.safetensors'); new DataView(b.buffer).setBigUint64(0, 1n << 40n, true); return b; }, /exceeds the format's limit/],
    ['a header that is not JSON', () => { const b = file('mixed.safetensors'); b[8] = 0x78; return b; }, /not valid UTF-8 JSON/],
    ['an unknown dtype', () => withHeader({ w: { dtype: 'F12', shape: [1], data_offsets: [0, 4] } }, 4), /"w" has dtype "F12"/],
    ['a negative dimension', () => withHeader({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4), /shape \[-1\]/],
    ['offsets that disagree with the shape', () => withHeader({ w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 12] } }, 12), /needs 16 bytes/],
    ['overlapping tensors', () => withHeader({ a: { dtype: 'U8', shape: [4], data_offsets: [0, 4] }, b: { dtype: 'U8', shape: [4], data_offsets: [2, 6] } }, 6), /"b" overlaps/],
    ['a hole in the data', () => withHeader({ a: { dtype: 'U8', shape: [2], data_offsets: [0, 2] }, b: { dtype: 'U8', shape: [2], data_offsets: [4, 6] } }, 6), /hole/],
    ['non-string metadata', () => withHeader({ __metadata__: { n: 1 } }, 0), /__metadata__/],
  ];
  for (const [what, make, message] of bad) {
    it(`refuses ${what} with ModelFormatError naming the file`, () => {
      const error = (() => {
        try {
          parseSafetensors(make(), 'model.safetensors');
        } catch (e) {
          return e;
        }
      })() as ModelFormatError;
      expect(error).toBeInstanceOf(ModelFormatError);
      expect(error.code).toBe('MODEL_FORMAT');
      expect(error.message).toMatch(/^model\.safetensors: /);
      expect(error.message).toMatch(message);
    });
  }

  it('refuses to read integers as float weights, and bad shard indexes', () => {
    const ids = parseSafetensors(file('mixed.safetensors')).tensors.get('position_ids')!;
    expect(() => tensorToFloat32(ids, 'mixed.safetensors')).toThrow(/"position_ids" is I64; webtune reads floating-point weights/);
    expect(() => parseShardIndex('{"weight_map": ')).toThrow(ModelFormatError);
    expect(() => parseShardIndex('{"weight_map": {"w": "../../etc/passwd"}}')).toThrow(/shard file names in the same folder/);
  });

  it('refuses to write duplicate names or bytes that disagree with the shape', () => {
    const t = { name: 'w', dtype: 'F32' as const, shape: [1], data: new Float32Array([1]) };
    expect(() => serializeSafetensors([t, t])).toThrow(/duplicated/);
    expect(() => serializeSafetensors([{ ...t, shape: [2] }])).toThrow(/needs 8 bytes, got 4/);
  });
});
