import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { InvalidArgumentError, ModelFileMissingError } from '@webtune/errors';
import {
  addToGraph, encodeFloat32, OnnxDataType, onnxWeights, parseOnnx, replaceInitializers, tensorBytes, tensorToFloat32, type OnnxModel,
} from '../src/index.js';
import { finish, firstDiff, fixtureConfig, LEN, ONNX_FIXTURES, packedInt64, readBytes, sameBytes, str, sub, tag, varint } from './helpers.js';

const load = (rel: string) => parseOnnx(readBytes(join(ONNX_FIXTURES, rel)), rel);
const EXT_DIR = join(ONNX_FIXTURES, 'tiny-llama-external/onnx');
const ext = () => new Map([['model.onnx_data', readBytes(join(EXT_DIR, 'model.onnx_data'))]]);

/** Every byte outside [start, end) is unchanged. */
function onlyRangeChanged(before: Uint8Array, after: Uint8Array, start: number, end: number): void {
  expect(after.length).toBe(before.length);
  expect(sameBytes(before.subarray(0, start), after.subarray(0, start))).toBe(true);
  expect(sameBytes(before.subarray(end), after.subarray(end))).toBe(true);
}

function allUnchanged(model: OnnxModel, externalData?: Map<string, Uint8Array>) {
  const same = new Map([...model.graph.initializers.values()].map((t) => [t.name, tensorBytes(model, t, externalData).slice()]));
  return replaceInitializers(model, same, externalData);
}

describe('replaceInitializers', () => {
  it('every initializer replaced by its own bytes gives a byte-identical file (raw_data, fp16, q4)', () => {
    for (const rel of ['tiny-llama/onnx/model.onnx', 'tiny-llama/onnx/model_fp16.onnx', 'tiny-gpt2/onnx/model_q4.onnx']) {
      const model = load(rel);
      const out = allUnchanged(model);
      expect(out.bytes === model.bytes).toBe(false); // (not.toBe would deep-compare the arrays)
      expect(sameBytes(out.bytes, model.bytes), rel).toBe(true);
      expect(out.externalData).toBeUndefined();
    }
  });

  it('with external data: identical model file and data file when nothing changes', () => {
    const model = parseOnnx(readBytes(join(EXT_DIR, 'model.onnx')));
    const data = ext();
    const out = allUnchanged(model, data);
    expect(sameBytes(out.bytes, model.bytes)).toBe(true);
    expect(sameBytes(out.externalData!.get('model.onnx_data')!, data.get('model.onnx_data')!)).toBe(true);
  });

  it('a changed f32 weight round-trips through parseOnnx + tensorBytes and the weight map; nothing else changes', () => {
    const model = load('tiny-llama/onnx/model.onnx');
    const config = fixtureConfig(join(ONNX_FIXTURES, 'tiny-llama'));
    const map = onnxWeights(model, config);
    const src = map.sources.get('model.layers.1.self_attn.v_proj.weight')!;
    const t = model.graph.initializers.get(src.initializer)!;
    const merged = tensorToFloat32(model, t).map((x, i) => x + (i % 7) * 0.01); // [in, out] as stored
    const bytes = encodeFloat32(merged, t.dataType);
    const out = replaceInitializers(model, new Map([[t.name, bytes]]));
    if (t.location.kind !== 'raw') throw new Error('raw expected');
    onlyRangeChanged(model.bytes, out.bytes, t.location.offset, t.location.offset + t.location.length);
    const again = parseOnnx(out.bytes);
    expect(sameBytes(tensorBytes(again, again.graph.initializers.get(t.name)!), bytes)).toBe(true);
    const hf = onnxWeights(again, config).reader.read('model.layers.1.self_attn.v_proj.weight');
    // HF [out, in] = [32, 64] is the transpose of the stored [64, 32].
    expect(hf.shape).toEqual([32, 64]);
    expect(hf.data[5 * 64 + 9]).toBe(merged[9 * 32 + 5]);
  });

  it('a changed fp16 weight keeps its dtype (round to nearest even) and round-trips', () => {
    const model = load('tiny-gpt2/onnx/model_fp16.onnx');
    const t = model.graph.initializers.get('transformer.h.0.attn.c_attn.weight')!;
    expect(t.dataType).toBe(OnnxDataType.FLOAT16);
    const values = tensorToFloat32(model, t).map((x) => x * 2);
    const out = replaceInitializers(model, new Map([[t.name, encodeFloat32(values, t.dataType)]]));
    const again = parseOnnx(out.bytes);
    expect(firstDiff(tensorToFloat32(again, again.graph.initializers.get(t.name)!), values)).toBe(-1); // doubling is exact in f16 (no overflow here)
  });

  it('a changed external weight: the model file is unchanged, the data file changes only in its range', () => {
    const model = parseOnnx(readBytes(join(EXT_DIR, 'model.onnx')));
    const data = ext();
    const t = model.graph.initializers.get('model.norm.weight')!;
    if (t.location.kind !== 'external') throw new Error('external expected');
    const values = new Float32Array(64).fill(0.75);
    const out = replaceInitializers(model, new Map([[t.name, encodeFloat32(values, OnnxDataType.FLOAT)]]), data);
    expect(sameBytes(out.bytes, model.bytes)).toBe(true);
    const file = out.externalData!.get('model.onnx_data')!;
    expect(file === data.get('model.onnx_data')).toBe(false);
    onlyRangeChanged(data.get('model.onnx_data')!, file, t.location.offset, t.location.offset + t.location.length);
    expect(Array.from(tensorToFloat32(parseOnnx(out.bytes), t, out.externalData))).toEqual(Array.from(values));
    expect(() => replaceInitializers(model, new Map([[t.name, new Uint8Array(256)]]))).toThrow(ModelFileMissingError);
  });

  it('refuses unknown names, length changes, and initializers stored in typed fields', () => {
    const model = load('tiny-llama/onnx/model.onnx');
    expect(() => replaceInitializers(model, new Map([['nope', new Uint8Array(4)]]))).toThrow(InvalidArgumentError);
    expect(() => replaceInitializers(model, new Map([['model.norm.weight', new Uint8Array(128)]]))).toThrow(/128 bytes.*has 256/);
    const typed = parseOnnx(finish((w) => sub(w, 7, (g) => sub(g, 5, (t) => {
      packedInt64(t, 1, [2]);
      varint(t, 2, OnnxDataType.FLOAT);
      str(t, 8, 'fd');
      t.uint32(tag(4, LEN)).fork().float(1).float(2).ldelim();
    }))));
    expect(() => replaceInitializers(typed, new Map([['fd', new Uint8Array(8)]]))).toThrow(InvalidArgumentError);
    expect(() => replaceInitializers(typed, new Map([['fd', new Uint8Array(8)]]))).toThrow(/only raw_data and external-data initializers/);
  });

  it('encodeFloat32 writes FLOAT, FLOAT16 and BFLOAT16 little-endian', () => {
    expect(Array.from(encodeFloat32(Float32Array.of(1, -2), OnnxDataType.FLOAT16))).toEqual([0x00, 0x3c, 0x00, 0xc0]);
    expect(Array.from(encodeFloat32(Float32Array.of(1, -3), OnnxDataType.BFLOAT16))).toEqual([0x80, 0x3f, 0x40, 0xc0]);
    expect(Array.from(encodeFloat32(Float32Array.of(1.00390625), OnnxDataType.BFLOAT16))).toEqual([0x80, 0x3f]); // tie -> even
    expect(Array.from(encodeFloat32(Float32Array.of(1), OnnxDataType.FLOAT))).toEqual([0, 0, 0x80, 0x3f]);
    expect(() => encodeFloat32(Float32Array.of(1), OnnxDataType.INT8)).toThrow(InvalidArgumentError);
  });
});

describe('addToGraph', () => {
  const rel = 'tiny-llama/onnx/model_q4.onnx';
  const q4Index = (model: OnnxModel) => model.graph.nodes.findIndex((n) => n.opType === 'MatMulNBits');
  const branch = (model: OnnxModel, index: number) => {
    const node = model.graph.nodes[index]!;
    const y = node.outputs[0]!;
    return {
      index,
      renameOutput: `${y}/base`,
      nodes: [
        { name: `${node.name}/extra_MatMul`, opType: 'MatMul', inputs: [node.inputs[0]!, 'extra.A'], outputs: [`${y}/extra`] },
        { name: `${node.name}/extra_Add`, opType: 'Add', inputs: [`${y}/base`, `${y}/extra`], outputs: [y] },
      ],
    };
  };

  it('splices nodes after the named one, renames its first output, appends initializers; everything else parses back the same', () => {
    const model = load(rel);
    const index = q4Index(model);
    const node = model.graph.nodes[index]!;
    const k = 64;
    const values = Float32Array.from({ length: k * 2 }, (_, i) => i / 7);
    const out = addToGraph(model, model.bytes, {
      splices: [branch(model, index)],
      initializers: [{ name: 'extra.A', dataType: OnnxDataType.FLOAT, dims: [k, 2], bytes: encodeFloat32(values, OnnxDataType.FLOAT) }],
    });
    const back = parseOnnx(out, 'spliced');
    const names = back.graph.nodes.map((n) => n.name);
    expect(names).toEqual([
      ...model.graph.nodes.slice(0, index + 1).map((n) => n.name),
      `${node.name}/extra_MatMul`, `${node.name}/extra_Add`,
      ...model.graph.nodes.slice(index + 1).map((n) => n.name),
    ]);
    const spliced = back.graph.nodes[index]!;
    expect(spliced.outputs).toEqual([`${node.outputs[0]}/base`, ...node.outputs.slice(1)]);
    expect(spliced.inputs).toEqual(node.inputs);
    expect(spliced.domain).toBe('com.microsoft');
    expect([...spliced.attributes]).toEqual([...node.attributes]);
    expect(back.graph.nodes[index + 2]!.outputs).toEqual([node.outputs[0]]);
    const added = back.graph.initializers.get('extra.A')!;
    expect(added.dims).toEqual([k, 2]);
    expect(tensorToFloat32(back, added)).toEqual(values);
    // Existing initializers keep their bytes; inputs, outputs, opsets and producer are as before.
    for (const t of model.graph.initializers.values()) expect(sameBytes(tensorBytes(back, back.graph.initializers.get(t.name)!), tensorBytes(model, t))).toBe(true);
    expect(back.graph.inputs).toEqual(model.graph.inputs);
    expect(back.graph.outputs).toEqual(model.graph.outputs);
    expect(back.opsetImports).toEqual(model.opsetImports);
    expect(back.producerName).toBe(model.producerName);
  });

  it('with nothing to add, the file is byte-identical', () => {
    const model = load(rel);
    expect(firstDiff(addToGraph(model, model.bytes, { splices: [], initializers: [] }), model.bytes)).toBe(-1);
  });

  it('refuses a name already in the graph, an unknown node, a node spliced twice, and bytes of another model', () => {
    const model = load(rel);
    const index = q4Index(model);
    const existing = [...model.graph.initializers.keys()][0]!;
    const init = (name: string) => ({ name, dataType: OnnxDataType.FLOAT, dims: [1], bytes: new Uint8Array(4) });
    expect(() => addToGraph(model, model.bytes, { splices: [], initializers: [init(existing)] })).toThrowError(/already used/);
    expect(() => addToGraph(model, model.bytes, { splices: [{ ...branch(model, index), renameOutput: model.graph.nodes[0]!.outputs[0]! }], initializers: [] })).toThrowError(/already used/);
    expect(() => addToGraph(model, model.bytes, { splices: [{ ...branch(model, index), index: 1e6 }], initializers: [] })).toThrowError(InvalidArgumentError);
    expect(() => addToGraph(model, model.bytes, { splices: [branch(model, index), branch(model, index)], initializers: [] })).toThrowError(/already used|twice/);
    expect(() => addToGraph(model, load('tiny-gpt2/onnx/model_q4.onnx').bytes, { splices: [], initializers: [] })).toThrowError(InvalidArgumentError);
  });
});
