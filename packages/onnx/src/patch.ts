/**
 * Writing weights back into an ONNX file without re-serializing it: the named initializers' element
 * bytes are overwritten in a copy of the model file (raw_data) or of its external data file, so the
 * result is byte-identical to the original outside those ranges and keeps every node, name, opset
 * and metadata as the exporter wrote them. The replacement must have the same byte length (a merged
 * weight keeps its data type and shape).
 */
import { InvalidArgumentError, ModelFormatError, f32ToF16Bits } from '@webtune/gpu';
import { dataTypeName, externalBytes, OnnxDataType, type OnnxModel, type OnnxTensor } from './proto.js';

export interface ReplacedOnnx {
  /** The new model file. */
  bytes: Uint8Array;
  /**
   * The external data files, when the model has any: the files holding a replaced initializer are
   * new copies, the others are the given arrays themselves (not copied).
   */
  externalData?: Map<string, Uint8Array>;
}

/**
 * A copy of the model file (and of the external files that change) in which the element bytes of
 * each named initializer are `replacements.get(name)` (little-endian, same length as before: see
 * `encodeFloat32`). Only raw_data and external initializers can be replaced; one stored in typed
 * fields (float_data, int32_data, ...) is an InvalidArgumentError, as is an unknown name or a
 * length mismatch.
 */
export function replaceInitializers(
  model: OnnxModel,
  replacements: ReadonlyMap<string, Uint8Array>,
  externalData?: ReadonlyMap<string, Uint8Array>,
): ReplacedOnnx {
  const bytes = model.bytes.slice();
  const copies = new Map<Uint8Array, Uint8Array>();
  const outExternal = externalData ? new Map(externalData) : undefined;
  for (const [name, data] of replacements) {
    const t = model.graph.initializers.get(name);
    if (!t) throw new InvalidArgumentError(`${model.source} has no initializer "${name}" to replace.`);
    if (!(data instanceof Uint8Array)) throw new InvalidArgumentError(`The replacement for "${name}" must be a Uint8Array of little-endian element bytes.`);
    const loc = t.location;
    if (loc.kind === 'values') {
      throw new InvalidArgumentError(
        `Initializer "${name}" of ${model.source} stores its values in typed fields (float_data, int32_data, ...), not raw_data; ` +
          'only raw_data and external-data initializers can be replaced in place (their byte ranges are fixed). Re-export the model, or write it with raw_data.',
      );
    }
    if (data.length !== loc.length) {
      throw new InvalidArgumentError(
        `The replacement for "${name}" is ${data.length} bytes, but the initializer (${dataTypeName(t.dataType)} [${t.dims.join(', ')}]) has ${loc.length}; a replacement keeps the data type and shape.`,
      );
    }
    if (loc.kind === 'raw') {
      if (loc.offset + loc.length > bytes.length) throw new ModelFormatError(model.source, `initializer "${name}" lies past the end of the file`);
      bytes.set(data, loc.offset);
      continue;
    }
    const original = externalBytes(model, t as OnnxTensor & { location: { kind: 'external' } }, externalData);
    let copy = copies.get(original);
    if (!copy) {
      copy = original.slice();
      copies.set(original, copy);
      for (const [key, value] of outExternal!) if (value === original) outExternal!.set(key, copy);
    }
    copy.set(data, loc.offset);
  }
  if (!outExternal) return { bytes };
  return { bytes, externalData: outExternal };
}

/**
 * float32 values as the little-endian bytes of an initializer of `dataType` (FLOAT, FLOAT16 with
 * round-to-nearest-even, BFLOAT16 rounded to nearest even), for `replaceInitializers`.
 */
export function encodeFloat32(values: Float32Array, dataType: number): Uint8Array {
  switch (dataType) {
    case OnnxDataType.FLOAT: {
      const out = new Uint8Array(values.length * 4);
      const view = new DataView(out.buffer);
      for (let i = 0; i < values.length; i++) view.setFloat32(4 * i, values[i]!, true);
      return out;
    }
    case OnnxDataType.FLOAT16: {
      const out = new Uint8Array(values.length * 2);
      const view = new DataView(out.buffer);
      for (let i = 0; i < values.length; i++) view.setUint16(2 * i, f32ToF16Bits(values[i]!), true);
      return out;
    }
    case OnnxDataType.BFLOAT16: {
      const out = new Uint8Array(values.length * 2);
      const view = new DataView(out.buffer);
      const f = new Float32Array(1);
      const u = new Uint32Array(f.buffer);
      for (let i = 0; i < values.length; i++) {
        f[0] = values[i]!;
        const x = u[0]!;
        const bits = Number.isNaN(values[i]!) ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
        view.setUint16(2 * i, bits & 0xffff, true);
      }
      return out;
    }
    default:
      throw new InvalidArgumentError(`encodeFloat32 writes FLOAT, FLOAT16 or BFLOAT16 initializers, not ${dataTypeName(dataType)}.`);
  }
}

