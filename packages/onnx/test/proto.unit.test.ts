import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { ModelFileMissingError, ModelFormatError, UnsupportedModelError } from '@webtune/errors';
import { OnnxDataType, parseOnnx, tensorBytes, tensorToFloat32, type OnnxTensor } from '../src/index.js';
import { bytesField, DEMO_DIR, sameBytes, finish, I32, I64, LEN, node, ONNX_FIXTURES, packedInt64, readBytes, str, sub, tag, VARINT, varint } from './helpers.js';

const LLAMA = join(ONNX_FIXTURES, 'tiny-llama/onnx/model.onnx');

/** Every way the parser can fail must be a ModelFormatError, never a RangeError. */
function formatError(fn: () => unknown): ModelFormatError {
  try {
    fn();
  } catch (e) {
    expect(e, String(e)).toBeInstanceOf(ModelFormatError);
    return e as ModelFormatError;
  }
  throw new Error('expected a ModelFormatError');
}

/** A hand-built model exercising the typed value fields, attributes and value infos. */
function handModel(): Uint8Array {
  const f16 = [0x3c00, 0xc000, 0x3555]; // 1, -2, 0.333251953125
  const bf16 = [0x3f80, 0xc040]; // 1, -3
  return finish((w) => {
    varint(w, 1, 8); // ir_version
    str(w, 2, 'hand');
    sub(w, 8, (x) => { str(x, 1, ''); varint(x, 2, 17); });
    sub(w, 8, (x) => { str(x, 1, 'com.microsoft'); varint(x, 2, 1); });
    sub(w, 7, (g) => {
      node(g, {
        name: 'c', op: 'Constant', inputs: [], outputs: ['c_out'],
        attrs: (x) => sub(x, 5, (a) => {
          str(a, 1, 'value');
          varint(a, 20, 4); // TENSOR
          sub(a, 5, (t) => {
            packedInt64(t, 1, [3]);
            varint(t, 2, OnnxDataType.FLOAT);
            t.uint32(tag(4, LEN)).fork().float(1.5).float(-2).float(4).ldelim();
          });
        }),
      });
      node(g, {
        name: 'attrs', op: 'Foo', domain: 'com.example', inputs: ['c_out', ''], outputs: ['y'],
        attrs: (x) => {
          sub(x, 5, (a) => { str(a, 1, 'i'); x.uint32(tag(3, VARINT)).int64(-5); varint(a, 20, 2); });
          sub(x, 5, (a) => { str(a, 1, 'f'); a.uint32(tag(2, I32)).float(0.5); varint(a, 20, 1); });
          sub(x, 5, (a) => { str(a, 1, 's'); bytesField(a, 4, new TextEncoder().encode('héllo')); varint(a, 20, 3); });
          sub(x, 5, (a) => { str(a, 1, 'ints'); packedInt64(a, 8, [1, -1, 2 ** 40]); varint(a, 20, 7); });
          // unpacked floats, no type field (IR < 3 style)
          sub(x, 5, (a) => { str(a, 1, 'floats'); a.uint32(tag(7, I32)).float(1).uint32(tag(7, I32)).float(2); });
        },
      });
      const init = (name: string, dataType: number, dims: number[], body: (t: typeof g) => void) =>
        sub(g, 5, (t) => { packedInt64(t, 1, dims); varint(t, 2, dataType); str(t, 8, name); body(t); });
      init('a', OnnxDataType.FLOAT, [2, 2], (t) => t.uint32(tag(4, LEN)).fork().float(1).float(2).float(3).float(4).ldelim());
      init('b', OnnxDataType.INT64, [3], (t) => packedInt64(t, 7, [-1, 2n ** 40n, 5]));
      init('h', OnnxDataType.FLOAT16, [3], (t) => { t.uint32(tag(5, LEN)).fork(); for (const v of f16) t.int32(v); t.ldelim(); });
      init('bf', OnnxDataType.BFLOAT16, [2], (t) => { for (const v of bf16) t.uint32(tag(5, VARINT)).int32(v); });
      init('d', OnnxDataType.DOUBLE, [2], (t) => t.uint32(tag(10, LEN)).fork().double(0.25).double(-8).ldelim());
      init('u', OnnxDataType.UINT64, [1], (t) => packedInt64(t, 11, [2n ** 63n + 1n]));
      init('raw', OnnxDataType.FLOAT, [2], (t) => bytesField(t, 9, new Uint8Array(new Float32Array([7, -7]).buffer)));
      init('ext', OnnxDataType.FLOAT, [2], (t) => {
        sub(t, 13, (e) => { str(e, 1, 'location'); str(e, 2, './weights.bin'); });
        sub(t, 13, (e) => { str(e, 1, 'offset'); str(e, 2, '4'); });
        sub(t, 13, (e) => { str(e, 1, 'length'); str(e, 2, '8'); });
        varint(t, 14, 1);
      });
      sub(g, 11, (v) => {
        str(v, 1, 'input_ids');
        sub(v, 2, (tp) => sub(tp, 1, (tt) => {
          varint(tt, 1, OnnxDataType.INT64);
          sub(tt, 2, (sh) => { sub(sh, 1, (d) => str(d, 2, 'batch')); sub(sh, 1, (d) => varint(d, 1, 16)); sub(sh, 1, () => {}); });
        }));
      });
      sub(g, 12, (v) => str(v, 1, 'y'));
      // an unknown field of each wire type is skipped
      g.uint32(tag(99, VARINT)).uint32(1).uint32(tag(98, I64)).double(1).uint32(tag(97, I32)).float(1);
    });
  });
}

describe('parseOnnx', () => {
  it('reads the tiny-llama export: header, opsets, nodes, raw initializers, graph inputs', () => {
    const model = parseOnnx(readBytes(LLAMA));
    expect(model.irVersion).toBe(7);
    expect(model.producerName).toBe('pytorch');
    expect(model.opsetImports).toEqual([{ domain: '', version: 14 }]);
    const q = model.graph.nodes.find((n) => n.name === '/model/layers.0/self_attn/q_proj/MatMul')!;
    expect(q.opType).toBe('MatMul');
    expect(q.inputs).toEqual(['/model/layers.0/input_layernorm/Mul_1_output_0', 'onnx::MatMul_620']);
    const w = model.graph.initializers.get('onnx::MatMul_620')!;
    expect(w.dataType).toBe(OnnxDataType.FLOAT);
    expect(w.dims).toEqual([64, 64]);
    expect(w.location).toMatchObject({ kind: 'raw', length: 64 * 64 * 4 });
    expect(model.graph.inputs.map((i) => i.name).slice(0, 3)).toEqual(['input_ids', 'attention_mask', 'position_ids']);
    expect(model.graph.inputs[0]).toEqual({ name: 'input_ids', elemType: OnnxDataType.INT64, shape: ['batch_size', 'sequence_length'] });
    expect(model.graph.outputs[0]!.name).toBe('logits');
    // Constant nodes' value tensors are readable (the RMSNorm exponent 2 and epsilon).
    const pow = model.graph.nodes.find((n) => n.name === '/model/layers.0/input_layernorm/Constant')!;
    const value = pow.attributes.get('value')!;
    expect(value.type).toBe('tensor');
    if (value.type !== 'tensor') return;
    expect(value.value.dims).toEqual([]);
    expect(Array.from(tensorToFloat32(model, value.value))).toEqual([2]);
    const eps = model.graph.nodes.find((n) => n.name === '/model/layers.0/input_layernorm/Constant_1')!.attributes.get('value')!;
    if (eps.type === 'tensor') expect(tensorToFloat32(model, eps.value)[0]).toBeCloseTo(1e-5, 10);
  });

  it('reads external-data locations and needs the data file to read them', () => {
    const model = parseOnnx(readBytes(join(ONNX_FIXTURES, 'tiny-llama-external/onnx/model.onnx')));
    const embed = model.graph.initializers.get('model.embed_tokens.weight')!;
    expect(embed.location).toEqual({ kind: 'external', file: 'model.onnx_data', offset: 0, length: 512 * 64 * 4 });
    expect(() => tensorBytes(model, embed)).toThrow(ModelFileMissingError);
    expect(() => tensorBytes(model, embed)).toThrow(/model\.onnx_data/);
    const data = readBytes(join(ONNX_FIXTURES, 'tiny-llama-external/onnx/model.onnx_data'));
    expect(sameBytes(tensorBytes(model, embed, new Map([['model.onnx_data', data]])), data.subarray(0, 512 * 64 * 4))).toBe(true);
    const short = new Map([['model.onnx_data', data.subarray(0, 1000)]]);
    expect(() => tensorBytes(model, embed, short)).toThrow(ModelFormatError);
    expect(() => tensorBytes(model, embed, short)).toThrow(/only 1000 bytes/);
  });

  it('decodes typed value fields, external entries, attributes and value infos of a hand-built model', () => {
    const model = parseOnnx(handModel(), 'hand.onnx');
    expect(model.irVersion).toBe(8);
    expect(model.opsetImports).toEqual([{ domain: '', version: 17 }, { domain: 'com.microsoft', version: 1 }]);
    const [c, foo] = model.graph.nodes;
    const value = c!.attributes.get('value')!;
    expect(value.type).toBe('tensor');
    if (value.type === 'tensor') expect(Array.from(tensorToFloat32(model, value.value))).toEqual([1.5, -2, 4]);
    expect(foo!.domain).toBe('com.example');
    expect(foo!.inputs).toEqual(['c_out', '']);
    expect(Object.fromEntries(foo!.attributes)).toEqual({
      i: { type: 'int', value: -5 },
      f: { type: 'float', value: 0.5 },
      s: { type: 'string', value: 'héllo' },
      ints: { type: 'ints', value: [1, -1, 2 ** 40] },
      floats: { type: 'floats', value: [1, 2] },
    });
    const init = (name: string) => model.graph.initializers.get(name)!;
    expect(Array.from(tensorToFloat32(model, init('a')))).toEqual([1, 2, 3, 4]);
    expect(init('b').location).toEqual({ kind: 'values', values: BigInt64Array.from([-1n, 2n ** 40n, 5n]) });
    expect(new BigInt64Array(tensorBytes(model, init('b')).slice().buffer)).toEqual(BigInt64Array.from([-1n, 2n ** 40n, 5n]));
    expect(Array.from(tensorToFloat32(model, init('h')))).toEqual([1, -2, 0.333251953125]);
    expect(Array.from(tensorBytes(model, init('h')))).toEqual([0x00, 0x3c, 0x00, 0xc0, 0x55, 0x35]);
    expect(Array.from(tensorToFloat32(model, init('bf')))).toEqual([1, -3]);
    expect(Array.from(tensorToFloat32(model, init('d')))).toEqual([0.25, -8]);
    expect(init('u').location).toEqual({ kind: 'values', values: BigUint64Array.from([2n ** 63n + 1n]) });
    expect(Array.from(tensorToFloat32(model, init('raw')))).toEqual([7, -7]);
    expect(init('ext').location).toEqual({ kind: 'external', file: 'weights.bin', offset: 4, length: 8 });
    const bin = new Uint8Array(new Float32Array([99, 0.5, -0.5]).buffer);
    expect(Array.from(tensorToFloat32(model, init('ext'), new Map([['weights.bin', bin]])))).toEqual([0.5, -0.5]);
    expect(() => tensorToFloat32(model, init('b'))).toThrow(UnsupportedModelError);
    expect(model.graph.inputs).toEqual([{ name: 'input_ids', elemType: OnnxDataType.INT64, shape: ['batch', 16, ''] }]);
    expect(model.graph.outputs).toEqual([{ name: 'y', elemType: 0, shape: undefined }]);
  });

  it('checks element counts against dims', () => {
    const bytes = finish((w) => sub(w, 7, (g) => sub(g, 5, (t) => {
      packedInt64(t, 1, [3]);
      varint(t, 2, OnnxDataType.FLOAT);
      str(t, 8, 'short');
      t.uint32(tag(4, LEN)).fork().float(1).ldelim();
    })));
    const model = parseOnnx(bytes);
    const t = model.graph.initializers.get('short')!;
    expect(() => tensorToFloat32(model, t)).toThrow(/should have 3 values but has 1/);
    const raw: OnnxTensor = { ...t, location: { kind: 'raw', offset: 0, length: 8 } };
    expect(() => tensorBytes(model, raw)).toThrow(/should have 12 bytes of data but has 8/);
  });

  it('refuses truncated files with ModelFormatError at every cut', () => {
    const bytes = readBytes(LLAMA);
    for (const cut of [1, 2, 7, 100, 1000, 5000, 82600, 100_000, 300_000, bytes.length >> 1, bytes.length - 300, bytes.length - 1]) {
      const e = formatError(() => parseOnnx(bytes.subarray(0, cut), 'cut.onnx'));
      expect(e.message).toMatch(/^cut\.onnx: /);
      expect(e.message).toMatch(/truncated|no graph|ends early|remain/);
    }
  });

  it('names a length that runs past its message', () => {
    const bytes = readBytes(LLAMA).slice();
    const model = parseOnnx(bytes);
    const norm = model.graph.initializers.get('model.norm.weight')!;
    if (norm.location.kind !== 'raw') throw new Error('raw expected');
    const at = norm.location.offset - 2; // the raw_data length, 256 = varint 0x80 0x02
    expect([bytes[at], bytes[at + 1]]).toEqual([0x80, 0x02]);
    bytes[at] = 0xff;
    bytes[at + 1] = 0x7f; // 16383
    const e = formatError(() => parseOnnx(bytes, 'bad.onnx'));
    expect(e.message).toMatch(/TensorProto\.raw_data declares 16383 bytes/);
    expect(e.message).toMatch(/GraphProto\.initializer\[\d+\] "model\.norm\.weight"/);
  });

  it('refuses a wrong wire type for a known field, a model without a graph, and non-ONNX bytes', () => {
    const wrongWire = finish((w) => { varint(w, 1, 7); w.uint32(tag(7, VARINT)).uint32(5); });
    expect(formatError(() => parseOnnx(wrongWire)).message).toMatch(/ModelProto\.graph has wire type varint.*length-delimited/);
    const wrongDims = finish((w) => sub(w, 7, (g) => sub(g, 5, (t) => t.uint32(tag(1, I32)).float(1))));
    expect(formatError(() => parseOnnx(wrongDims)).message).toMatch(/TensorProto\.dims has wire type fixed32/);
    const noGraph = finish((w) => { varint(w, 1, 7); str(w, 2, 'pytorch'); });
    expect(formatError(() => parseOnnx(noGraph)).message).toMatch(/no graph/);
    expect(formatError(() => parseOnnx(new Uint8Array(0))).message).toMatch(/no graph.*empty/);
    formatError(() => parseOnnx(readBytes(join(DEMO_DIR, 'model.safetensors')).subarray(0, 4096)));
    formatError(() => parseOnnx(new TextEncoder().encode('<!doctype html><html><body>404</body></html>')));
    formatError(() => parseOnnx(new Uint8Array([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])));
    formatError(() => parseOnnx(new Uint8Array([0x00, 0x01])));
  });
});
