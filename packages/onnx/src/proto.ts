/**
 * ONNX model files (onnx/onnx.proto, IR version 3 and later) read straight off the protobuf wire
 * format with protobufjs' `Reader`, without generated classes and without copying tensor data:
 * an initializer's `raw_data` is kept as a byte range of the file, external data as a range of a
 * named file, and only the typed value fields (`float_data`, `int64_data`, ...) are decoded.
 *
 * Field numbers used here (onnx.proto):
 *   ModelProto: ir_version 1, producer_name 2, producer_version 3, domain 4, model_version 5,
 *     doc_string 6, graph 7, opset_import 8, metadata_props 14, training_info 20, functions 25
 *   OperatorSetIdProto: domain 1, version 2
 *   GraphProto: node 1, name 2, initializer 5, doc_string 10, input 11, output 12, value_info 13,
 *     quantization_annotation 14, sparse_initializer 15, metadata_props 16
 *   NodeProto: input 1, output 2, name 3, op_type 4, attribute 5, doc_string 6, domain 7, overload 8
 *   AttributeProto: name 1, f 2, i 3, s 4, t 5, g 6, floats 7, ints 8, strings 9, tensors 10,
 *     graphs 11, doc_string 13, tp 14, type_protos 15, type 20, ref_attr_name 21, sparse_tensor 22,
 *     sparse_tensors 23
 *   TensorProto: dims 1, data_type 2, segment 3, float_data 4, int32_data 5, string_data 6,
 *     int64_data 7, name 8, raw_data 9, double_data 10, uint64_data 11, doc_string 12,
 *     external_data 13, data_location 14, metadata_props 16
 *   StringStringEntryProto: key 1, value 2
 *   ValueInfoProto: name 1, type 2, doc_string 3
 *   TypeProto: tensor_type 1 (TypeProto.Tensor: elem_type 1, shape 2)
 *   TensorShapeProto: dim 1 (Dimension: dim_value 1, dim_param 2, denotation 3)
 *
 * Anything malformed (a truncated varint, a length running past its message or the file, a wire
 * type that does not fit a known field, no graph) is a ModelFormatError naming the byte offset and
 * the chain of messages being read, never a bare RangeError.
 */
import protobuf from 'protobufjs/minimal.js';
import type { Reader } from 'protobufjs/minimal.js';
import { f16BitsToF32 } from '@webtune/gpu';
import { ModelFileMissingError, ModelFormatError, UnsupportedModelError } from '@webtune/errors';

/** TensorProto.DataType. */
export const OnnxDataType = {
  UNDEFINED: 0,
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  COMPLEX64: 14,
  COMPLEX128: 15,
  BFLOAT16: 16,
  FLOAT8E4M3FN: 17,
  FLOAT8E4M3FNUZ: 18,
  FLOAT8E5M2: 19,
  FLOAT8E5M2FNUZ: 20,
  UINT4: 21,
  INT4: 22,
  FLOAT4E2M1: 23,
} as const;

const DATA_TYPE_NAMES = new Map<number, string>(Object.entries(OnnxDataType).map(([k, v]) => [v, k]));

/** 'FLOAT16' for 10; 'data type 99' for codes this reader does not know. */
export function dataTypeName(dataType: number): string {
  return DATA_TYPE_NAMES.get(dataType) ?? `data type ${dataType}`;
}

/** Bits per element; undefined for STRING, UNDEFINED and unknown codes. */
export function dataTypeBits(dataType: number): number | undefined {
  switch (dataType) {
    case OnnxDataType.UINT4:
    case OnnxDataType.INT4:
    case OnnxDataType.FLOAT4E2M1:
      return 4;
    case OnnxDataType.UINT8:
    case OnnxDataType.INT8:
    case OnnxDataType.BOOL:
    case OnnxDataType.FLOAT8E4M3FN:
    case OnnxDataType.FLOAT8E4M3FNUZ:
    case OnnxDataType.FLOAT8E5M2:
    case OnnxDataType.FLOAT8E5M2FNUZ:
      return 8;
    case OnnxDataType.UINT16:
    case OnnxDataType.INT16:
    case OnnxDataType.FLOAT16:
    case OnnxDataType.BFLOAT16:
      return 16;
    case OnnxDataType.FLOAT:
    case OnnxDataType.INT32:
    case OnnxDataType.UINT32:
      return 32;
    case OnnxDataType.INT64:
    case OnnxDataType.UINT64:
    case OnnxDataType.DOUBLE:
    case OnnxDataType.COMPLEX64:
      return 64;
    case OnnxDataType.COMPLEX128:
      return 128;
    default:
      return undefined;
  }
}

export type OnnxTensorValues = Float32Array | Float64Array | Int32Array | BigInt64Array | BigUint64Array | Uint8Array[];

export type OnnxTensorLocation =
  /** `raw_data`: bytes [offset, offset + length) of the model file. */
  | { kind: 'raw'; offset: number; length: number }
  /** `data_location: EXTERNAL`: bytes [offset, offset + length) of `file` (relative to the model file's folder). */
  | { kind: 'external'; file: string; offset: number; length: number }
  /**
   * A typed field: float_data (Float32Array), int32_data (Int32Array; also INT8/16, UINT8/16, BOOL,
   * FLOAT16 and BFLOAT16 as bit patterns), int64_data (BigInt64Array), uint64_data (BigUint64Array;
   * UINT32 and UINT64), double_data (Float64Array) or string_data (Uint8Array[]). Empty when the
   * tensor has no data at all.
   */
  | { kind: 'values'; values: OnnxTensorValues };

export interface OnnxTensor {
  name: string;
  /** OnnxDataType code. */
  dataType: number;
  dims: number[];
  /** Where the element bytes are. */
  location: OnnxTensorLocation;
}

export type OnnxAttribute =
  | { type: 'float'; value: number }
  /** int64 attributes as numbers (values beyond 2^53, such as INT64_MAX, are rounded). */
  | { type: 'int'; value: number }
  | { type: 'string'; value: string }
  | { type: 'tensor'; value: OnnxTensor }
  | { type: 'graph'; value: OnnxGraph }
  | { type: 'floats'; value: number[] }
  | { type: 'ints'; value: number[] }
  | { type: 'strings'; value: string[] }
  | { type: 'tensors'; value: OnnxTensor[] }
  | { type: 'graphs'; value: OnnxGraph[] }
  /** Sparse tensors, type protos and function-body references (`ref_attr_name`): kept by type code only. */
  | { type: 'other'; attributeType: number };

export interface OnnxNode {
  name: string;
  opType: string;
  /** '' is the default ONNX domain (ai.onnx). */
  domain: string;
  /** '' marks an omitted optional input. */
  inputs: string[];
  outputs: string[];
  attributes: Map<string, OnnxAttribute>;
}

export interface OnnxValueInfo {
  name: string;
  /** OnnxDataType of a tensor type; 0 for non-tensor or unspecified types. */
  elemType: number;
  /** Tensor dimensions: a number (dim_value) or a name (dim_param; '' when the dimension is unknown). Undefined when no shape is given. */
  shape: Array<number | string> | undefined;
}

export interface OnnxGraph {
  name: string;
  nodes: OnnxNode[];
  initializers: Map<string, OnnxTensor>;
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
  valueInfo: OnnxValueInfo[];
}

export interface OnnxModel {
  irVersion: number;
  opsetImports: { domain: string; version: number }[];
  producerName: string;
  producerVersion: string;
  graph: OnnxGraph;
  /** The file the model was parsed from; every 'raw' location is a range of it. */
  bytes: Uint8Array;
  /** Names the file in errors. */
  source: string;
}

// Wire types.
const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;
const WIRE_NAMES = ['varint', 'fixed64', 'length-delimited', 'start-group', 'end-group', 'fixed32', 'wire type 6', 'wire type 7'];

const utf8 = new TextDecoder('utf-8');
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A packed or unpacked repeated scalar field, gathered in chunks. */
class Chunks<T extends { length: number }> {
  readonly parts: T[] = [];
  length = 0;
  push(part: T): void {
    this.parts.push(part);
    this.length += part.length;
  }
}

function concat<T extends Float32Array | Float64Array | Int32Array | BigInt64Array | BigUint64Array>(
  chunks: Chunks<T>,
  make: (n: number) => T,
): T {
  if (chunks.parts.length === 1) return chunks.parts[0]!;
  const out = make(chunks.length);
  let at = 0;
  for (const p of chunks.parts) {
    (out as unknown as { set(a: T, o: number): void }).set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * How many protobuf messages (nodes, attributes, tensors, value infos, dimensions, ...) a file may
 * hold: one per MESSAGE_BYTES bytes of the file, plus a small base, and never more than
 * MAX_ONNX_MESSAGES. Each message becomes a JS object of a few hundred bytes, while the smallest
 * message is 2 bytes on the wire, so without a limit a few MB of empty nodes cost GBs of heap. Real
 * exports spend far more than MESSAGE_BYTES per message (a Llama node with its names is ~100 bytes).
 */
export const MAX_ONNX_MESSAGES = 5_000_000;
const MESSAGE_BYTES = 32;
const BASE_MESSAGES = 4096;

/** The message budget of an ONNX file of `byteLength` bytes (see MAX_ONNX_MESSAGES). */
export function onnxMessageBudget(byteLength: number): number {
  return Math.min(MAX_ONNX_MESSAGES, BASE_MESSAGES + Math.floor(byteLength / MESSAGE_BYTES));
}

class Parser {
  private readonly r: Reader;
  /** Messages being read, outermost first, for error messages. */
  private readonly stack: string[] = [];
  private field = 0;
  private messages = 0;
  private readonly budget: number;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly source: string,
  ) {
    this.r = new protobuf.Reader(bytes);
    this.budget = onnxMessageBudget(bytes.length);
  }

  fail(detail: string, at = this.r.pos): never {
    throw new ModelFormatError(this.source, `${detail} (byte ${at}${this.where()}); the file is truncated or not an ONNX model`);
  }

  private where(): string {
    if (this.stack.length === 0) return '';
    return `, reading ${this.stack.join(' > ')}${this.field ? ` field ${this.field}` : ''}`;
  }

  /** Converts what protobufjs throws (RangeError "index out of range", "invalid wire type") into a ModelFormatError. */
  wrap(error: unknown): never {
    if (error instanceof ModelFormatError || error instanceof UnsupportedModelError) throw error;
    const message = error instanceof Error ? error.message : String(error);
    throw new ModelFormatError(
      this.source,
      `protobuf data ends early or is corrupt: ${message} (byte ${this.r.pos}${this.where()}); the file is truncated or not an ONNX model`,
      { cause: error },
    );
  }

  /** Reads the fields of a message ending at `end`; `on` returns false for fields it does not read (skipped). */
  message(what: string, end: number, on: (field: number, wire: number) => boolean): void {
    if (++this.messages > this.budget) {
      this.fail(
        `more than ${this.budget} protobuf messages in a ${this.bytes.length}-byte file (at most one per ${MESSAGE_BYTES} bytes, and ${MAX_ONNX_MESSAGES} in all); ` +
          'a real model is far sparser, so this one is malformed or built to exhaust memory',
      );
    }
    const r = this.r;
    const outer = r.len;
    r.len = end; // protobufjs bounds-checks every read against len: nothing can run past the message
    this.stack.push(what);
    while (r.pos < end) {
      const at = r.pos;
      this.field = 0;
      const tag = r.uint32();
      const field = tag >>> 3;
      const wire = tag & 7;
      if (field === 0) this.fail(`invalid protobuf tag ${tag} (field number 0)`, at);
      this.field = field;
      if (!on(field, wire)) this.skip(wire);
    }
    this.stack.pop();
    this.field = 0;
    r.len = outer;
  }

  private skip(wire: number): void {
    if (wire === 3 || wire === 4 || wire > 5) this.fail(`unsupported protobuf ${WIRE_NAMES[wire]} in an unknown field`);
    this.r.skipType(wire);
  }

  expect(wire: number, expected: number, name: string): void {
    if (wire !== expected) this.fail(`field ${name} has wire type ${WIRE_NAMES[wire]}, but onnx.proto declares it ${WIRE_NAMES[expected]}`);
  }

  /** A length-delimited field's [start, end), checked against the enclosing message. */
  span(name: string): { start: number; end: number } {
    const r = this.r;
    const at = r.pos;
    const n = r.uint32();
    const start = r.pos;
    if (n > r.len - start) {
      this.fail(
        `${name} declares ${n} bytes at byte ${at}, but only ${r.len - start} remain in ${r.len === this.bytes.length ? 'the file' : 'its enclosing message'}`,
        at,
      );
    }
    r.pos = start + n;
    return { start, end: start + n };
  }

  sub(name: string, wire: number, what: string, on: (field: number, wire: number) => boolean): void {
    this.expect(wire, LEN, name);
    const { start, end } = this.span(name);
    this.r.pos = start;
    this.message(what, end, on);
  }

  string(name: string, wire: number): string {
    this.expect(wire, LEN, name);
    const { start, end } = this.span(name);
    return utf8.decode(this.bytes.subarray(start, end));
  }

  /** A varint as two 32-bit halves. */
  private varint(): [number, number] {
    const r = this.r;
    const buf = r.buf;
    let lo = 0;
    let hi = 0;
    const at = r.pos;
    for (let i = 0; i < 10; i++) {
      if (r.pos >= r.len) this.fail('truncated varint', at);
      const b = buf[r.pos++]!;
      const bits = b & 0x7f;
      if (i < 4) lo |= bits << (7 * i);
      else if (i === 4) {
        lo |= (bits & 0x0f) << 28;
        hi |= bits >>> 4;
      } else hi |= bits << (7 * i - 32);
      if (b < 0x80) return [lo >>> 0, hi >>> 0];
    }
    return this.fail('varint longer than 10 bytes', at);
  }

  int64Big(): bigint {
    const [lo, hi] = this.varint();
    return BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo));
  }

  uint64Big(): bigint {
    const [lo, hi] = this.varint();
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** An int64 field as a number (exact up to 2^53). */
  int64(name: string, wire: number): number {
    this.expect(wire, VARINT, name);
    const [lo, hi] = this.varint();
    if (hi === 0) return lo;
    if (hi === 0xffffffff && lo >= 0x80000000) return lo - 0x100000000; // small negative
    return Number(BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo)));
  }

  int32(name: string, wire: number): number {
    this.expect(wire, VARINT, name);
    return this.r.int32();
  }

  /** repeated int64, packed or not. */
  int64s(name: string, wire: number, out: number[]): void {
    if (wire === VARINT) {
      out.push(this.int64(name, wire));
      return;
    }
    this.expect(wire, LEN, name);
    const { start, end } = this.span(name);
    const r = this.r;
    const outer = r.len;
    r.pos = start;
    r.len = end;
    while (r.pos < end) out.push(this.int64(name, VARINT));
    r.len = outer;
  }

  floats(name: string, wire: number, out: Chunks<Float32Array>): void {
    this.fixed(name, wire, I32, 4, out, (n) => new Float32Array(n), () => this.r.float(), (v, o) => v.getFloat32(o, true));
  }

  doubles(name: string, wire: number, out: Chunks<Float64Array>): void {
    this.fixed(name, wire, I64, 8, out, (n) => new Float64Array(n), () => this.r.double(), (v, o) => v.getFloat64(o, true));
  }

  /** One fixed-width value (wire type `single`) or a packed run of them, little-endian. */
  private fixed<T extends Float32Array | Float64Array>(
    name: string, wire: number, single: number, width: 4 | 8, out: Chunks<T>,
    make: (n: number) => T, readOne: () => number, get: (view: DataView, offset: number) => number,
  ): void {
    if (wire === single) {
      const one = make(1);
      one[0] = readOne();
      out.push(one);
      return;
    }
    this.expect(wire, LEN, name);
    const { start, end } = this.span(name);
    if ((end - start) % width !== 0) this.fail(`packed ${name} is ${end - start} bytes, not a multiple of ${width}`, start);
    const n = (end - start) / width;
    const view = new DataView(this.bytes.buffer, this.bytes.byteOffset + start, end - start);
    const values = make(n);
    for (let k = 0; k < n; k++) values[k] = get(view, width * k);
    out.push(values);
  }

  /** Packed or unpacked varints, each read by `read`. */
  varints<T>(name: string, wire: number, read: () => T, out: T[]): void {
    if (wire === VARINT) {
      out.push(read());
      return;
    }
    this.expect(wire, LEN, name);
    const { start, end } = this.span(name);
    const r = this.r;
    const outer = r.len;
    r.pos = start;
    r.len = end;
    while (r.pos < end) out.push(read());
    r.len = outer;
  }

  // --------------------------------------------------------------------------- messages

  model(): OnnxModel {
    let irVersion = 0;
    let producerName = '';
    let producerVersion = '';
    let graph: OnnxGraph | undefined;
    const opsetImports: { domain: string; version: number }[] = [];
    this.message('ModelProto', this.bytes.length, (f, w) => {
      switch (f) {
        case 1:
          irVersion = this.int64('ModelProto.ir_version', w);
          return true;
        case 2:
          producerName = this.string('ModelProto.producer_name', w);
          return true;
        case 3:
          producerVersion = this.string('ModelProto.producer_version', w);
          return true;
        case 4:
        case 6:
          this.expect(w, LEN, f === 4 ? 'ModelProto.domain' : 'ModelProto.doc_string');
          return false;
        case 5:
          this.expect(w, VARINT, 'ModelProto.model_version');
          return false;
        case 7:
          this.expect(w, LEN, 'ModelProto.graph');
          graph = this.graph('ModelProto.graph');
          return true;
        case 8: {
          let domain = '';
          let version = 0;
          this.sub('ModelProto.opset_import', w, `ModelProto.opset_import[${opsetImports.length}]`, (g, gw) => {
            if (g === 1) domain = this.string('OperatorSetIdProto.domain', gw);
            else if (g === 2) version = this.int64('OperatorSetIdProto.version', gw);
            else return false;
            return true;
          });
          opsetImports.push({ domain, version });
          return true;
        }
        default:
          return false;
      }
    });
    if (!graph) {
      throw new ModelFormatError(
        this.source,
        `the file has no graph (ModelProto.graph, field 7)${this.bytes.length === 0 ? '; it is empty' : ''}; it is not an ONNX model, or it was cut off before the graph`,
      );
    }
    return { irVersion, opsetImports, producerName, producerVersion, graph, bytes: this.bytes, source: this.source };
  }

  graph(what: string): OnnxGraph {
    const { start, end } = this.span(what);
    this.r.pos = start;
    const g: OnnxGraph = { name: '', nodes: [], initializers: new Map(), inputs: [], outputs: [], valueInfo: [] };
    this.message(`${what} (GraphProto)`, end, (f, w) => {
      switch (f) {
        case 1:
          this.expect(w, LEN, 'GraphProto.node');
          g.nodes.push(this.node(g.nodes.length));
          return true;
        case 2:
          g.name = this.string('GraphProto.name', w);
          return true;
        case 5: {
          this.expect(w, LEN, 'GraphProto.initializer');
          const t = this.tensor(`GraphProto.initializer[${g.initializers.size}]`);
          if (g.initializers.has(t.name)) this.fail(`two initializers are named "${t.name}"`);
          g.initializers.set(t.name, t);
          return true;
        }
        case 11:
        case 12:
        case 13: {
          const list = f === 11 ? g.inputs : f === 12 ? g.outputs : g.valueInfo;
          const field = f === 11 ? 'input' : f === 12 ? 'output' : 'value_info';
          this.expect(w, LEN, `GraphProto.${field}`);
          list.push(this.valueInfo(`GraphProto.${field}[${list.length}]`));
          return true;
        }
        case 10:
        case 14:
        case 15:
        case 16:
          this.expect(w, LEN, `GraphProto field ${f}`);
          return false;
        default:
          return false;
      }
    });
    return g;
  }

  node(index: number): OnnxNode {
    const { start, end } = this.span('GraphProto.node');
    this.r.pos = start;
    const n: OnnxNode = { name: '', opType: '', domain: '', inputs: [], outputs: [], attributes: new Map() };
    this.message(`GraphProto.node[${index}]`, end, (f, w) => {
      switch (f) {
        case 1:
          n.inputs.push(this.string('NodeProto.input', w));
          return true;
        case 2:
          n.outputs.push(this.string('NodeProto.output', w));
          return true;
        case 3:
          n.name = this.string('NodeProto.name', w);
          return true;
        case 4:
          n.opType = this.string('NodeProto.op_type', w);
          return true;
        case 5: {
          this.expect(w, LEN, 'NodeProto.attribute');
          const [name, value] = this.attribute(`NodeProto.attribute[${n.attributes.size}]`);
          n.attributes.set(name, value);
          return true;
        }
        case 7:
          n.domain = this.string('NodeProto.domain', w);
          return true;
        case 6:
        case 8:
          this.expect(w, LEN, `NodeProto field ${f}`);
          return false;
        default:
          return false;
      }
    });
    return n;
  }

  attribute(what: string): [string, OnnxAttribute] {
    const { start, end } = this.span('NodeProto.attribute');
    this.r.pos = start;
    let name = '';
    let type = 0;
    let f: number | undefined;
    let i: number | undefined;
    let s: string | undefined;
    let t: OnnxTensor | undefined;
    let g: OnnxGraph | undefined;
    const floats = new Chunks<Float32Array>();
    const ints: number[] = [];
    const strings: string[] = [];
    const tensors: OnnxTensor[] = [];
    const graphs: OnnxGraph[] = [];
    let ref = false;
    let other = 0;
    this.message(what, end, (field, w) => {
      switch (field) {
        case 1:
          name = this.string('AttributeProto.name', w);
          return true;
        case 2:
          this.expect(w, I32, 'AttributeProto.f');
          f = this.r.float();
          return true;
        case 3:
          i = this.int64('AttributeProto.i', w);
          return true;
        case 4:
          s = this.string('AttributeProto.s', w);
          return true;
        case 5:
          this.expect(w, LEN, 'AttributeProto.t');
          t = this.tensor(`AttributeProto.t`);
          return true;
        case 6:
          this.expect(w, LEN, 'AttributeProto.g');
          g = this.graph('AttributeProto.g');
          return true;
        case 7:
          this.floats('AttributeProto.floats', w, floats);
          return true;
        case 8:
          this.int64s('AttributeProto.ints', w, ints);
          return true;
        case 9:
          strings.push(this.string('AttributeProto.strings', w));
          return true;
        case 10:
          this.expect(w, LEN, 'AttributeProto.tensors');
          tensors.push(this.tensor(`AttributeProto.tensors[${tensors.length}]`));
          return true;
        case 11:
          this.expect(w, LEN, 'AttributeProto.graphs');
          graphs.push(this.graph(`AttributeProto.graphs[${graphs.length}]`));
          return true;
        case 20:
          type = this.int32('AttributeProto.type', w);
          return true;
        case 21:
          this.string('AttributeProto.ref_attr_name', w);
          ref = true;
          return true;
        case 13:
          this.expect(w, LEN, 'AttributeProto.doc_string');
          return false;
        case 14:
        case 15:
        case 22:
        case 23:
          this.expect(w, LEN, `AttributeProto field ${field}`);
          other = field;
          return false;
        default:
          return false;
      }
    });
    const floatList = () => Array.from(concat(floats, (n) => new Float32Array(n)));
    if (ref) return [name, { type: 'other', attributeType: type }];
    // AttributeProto.AttributeType; IR < 3 files may omit `type`, so fall back to the field that is set.
    if (type === 0) {
      type = f !== undefined ? 1 : i !== undefined ? 2 : s !== undefined ? 3 : t ? 4 : g ? 5 : floats.length ? 6 : ints.length ? 7 : strings.length ? 8 : tensors.length ? 9 : graphs.length ? 10 : other ? -1 : 0;
    }
    switch (type) {
      case 1:
        return [name, { type: 'float', value: f ?? 0 }];
      case 2:
        return [name, { type: 'int', value: i ?? 0 }];
      case 3:
        return [name, { type: 'string', value: s ?? '' }];
      case 4:
        if (!t) this.fail(`attribute "${name}" is of type TENSOR but has no tensor`);
        return [name, { type: 'tensor', value: t }];
      case 5:
        if (!g) this.fail(`attribute "${name}" is of type GRAPH but has no graph`);
        return [name, { type: 'graph', value: g }];
      case 6:
        return [name, { type: 'floats', value: floatList() }];
      case 7:
        return [name, { type: 'ints', value: ints }];
      case 8:
        return [name, { type: 'strings', value: strings }];
      case 9:
        return [name, { type: 'tensors', value: tensors }];
      case 10:
        return [name, { type: 'graphs', value: graphs }];
      default:
        return [name, { type: 'other', attributeType: type }];
    }
  }

  valueInfo(what: string): OnnxValueInfo {
    const { start, end } = this.span(what);
    this.r.pos = start;
    const v: OnnxValueInfo = { name: '', elemType: 0, shape: undefined };
    this.message(what, end, (f, w) => {
      if (f === 1) {
        v.name = this.string('ValueInfoProto.name', w);
        return true;
      }
      if (f !== 2) return false;
      this.sub('ValueInfoProto.type', w, 'TypeProto', (tf, tw) => {
        if (tf !== 1) return false; // sequence, map, optional, sparse tensor types: no tensor shape
        this.sub('TypeProto.tensor_type', tw, 'TypeProto.Tensor', (ef, ew) => {
          if (ef === 1) v.elemType = this.int32('TypeProto.Tensor.elem_type', ew);
          else if (ef === 2) {
            const shape: Array<number | string> = [];
            this.sub('TypeProto.Tensor.shape', ew, 'TensorShapeProto', (sf, sw) => {
              if (sf !== 1) return false;
              let dim: number | string = '';
              this.sub('TensorShapeProto.dim', sw, `TensorShapeProto.dim[${shape.length}]`, (df, dw) => {
                if (df === 1) dim = this.int64('Dimension.dim_value', dw);
                else if (df === 2) dim = this.string('Dimension.dim_param', dw);
                else return false;
                return true;
              });
              shape.push(dim);
              return true;
            });
            v.shape = shape;
          } else return false;
          return true;
        });
        return true;
      });
      return true;
    });
    return v;
  }

  tensor(what: string): OnnxTensor {
    const { start, end } = this.span(what);
    this.r.pos = start;
    let name = '';
    let dataType = 0;
    const dims: number[] = [];
    let raw: { offset: number; length: number } | undefined;
    let dataLocation = 0;
    const external: Record<string, string> = {};
    const floats = new Chunks<Float32Array>();
    const doubles = new Chunks<Float64Array>();
    const int32s: number[] = [];
    const int64s: bigint[] = [];
    const uint64s: bigint[] = [];
    const strings: Uint8Array[] = [];
    let segmented = false;
    this.message(what, end, (f, w) => {
      switch (f) {
        case 1:
          this.varints('TensorProto.dims', w, () => this.int64('TensorProto.dims', VARINT), dims);
          return true;
        case 2:
          dataType = this.int32('TensorProto.data_type', w);
          return true;
        case 3:
          this.expect(w, LEN, 'TensorProto.segment');
          segmented = true;
          return false;
        case 4:
          this.floats('TensorProto.float_data', w, floats);
          return true;
        case 5:
          this.varints('TensorProto.int32_data', w, () => this.r.int32(), int32s);
          return true;
        case 6: {
          this.expect(w, LEN, 'TensorProto.string_data');
          const s = this.span('TensorProto.string_data');
          strings.push(this.bytes.subarray(s.start, s.end));
          return true;
        }
        case 7:
          this.varints('TensorProto.int64_data', w, () => this.int64Big(), int64s);
          return true;
        case 8:
          name = this.string('TensorProto.name', w);
          this.stack[this.stack.length - 1] = `${what} "${name}"`;
          return true;
        case 9: {
          this.expect(w, LEN, 'TensorProto.raw_data');
          const s = this.span('TensorProto.raw_data');
          raw = { offset: s.start, length: s.end - s.start };
          return true;
        }
        case 10:
          this.doubles('TensorProto.double_data', w, doubles);
          return true;
        case 11:
          this.varints('TensorProto.uint64_data', w, () => this.uint64Big(), uint64s);
          return true;
        case 12:
        case 16:
          this.expect(w, LEN, `TensorProto field ${f}`);
          return false;
        case 13: {
          let key = '';
          let value = '';
          this.sub('TensorProto.external_data', w, 'StringStringEntryProto', (ef, ew) => {
            if (ef === 1) key = this.string('StringStringEntryProto.key', ew);
            else if (ef === 2) value = this.string('StringStringEntryProto.value', ew);
            else return false;
            return true;
          });
          external[key] = value;
          return true;
        }
        case 14:
          dataLocation = this.int32('TensorProto.data_location', w);
          return true;
        default:
          return false;
      }
    });
    for (const d of dims) if (d < 0) this.fail(`tensor "${name}" has a negative dimension ${d}`, start);
    if (segmented) {
      throw new UnsupportedModelError(this.source, `tensor "${name}" is a segment of a larger tensor (TensorProto.segment), which webtune does not read`);
    }
    let location: OnnxTensorLocation;
    if (dataLocation === 1) {
      const file = external['location'];
      if (!file) this.fail(`tensor "${name}" has data_location EXTERNAL but no external_data "location"`, start);
      const offset = external['offset'] !== undefined ? this.decimal(external['offset'], name, 'offset', start) : 0;
      let length: number;
      if (external['length'] !== undefined) length = this.decimal(external['length'], name, 'length', start);
      else {
        const bytes = expectedByteLength({ name, dataType, dims });
        if (bytes === undefined) this.fail(`external tensor "${name}" has no "length" and its ${dataTypeName(dataType)} size cannot be computed`, start);
        length = bytes;
      }
      location = { kind: 'external', file: file.replace(/^(\.\/)+/, ''), offset, length };
    } else if (dataLocation !== 0) {
      this.fail(`tensor "${name}" has unknown data_location ${dataLocation}`, start);
    } else if (raw) {
      location = { kind: 'raw', ...raw };
    } else {
      let values: OnnxTensorValues;
      if (floats.length) values = concat(floats, (n) => new Float32Array(n));
      else if (int32s.length) values = Int32Array.from(int32s);
      else if (int64s.length) values = BigInt64Array.from(int64s);
      else if (uint64s.length) values = BigUint64Array.from(uint64s);
      else if (doubles.length) values = concat(doubles, (n) => new Float64Array(n));
      else if (strings.length) values = strings;
      else values = emptyValues(dataType);
      location = { kind: 'values', values };
    }
    return { name, dataType, dims, location };
  }

  private decimal(text: string, tensor: string, key: string, at: number): number {
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
      this.fail(`external tensor "${tensor}" has external_data ${key} "${text}", not a non-negative integer`, at);
    }
    return Number(text);
  }
}

function emptyValues(dataType: number): OnnxTensorValues {
  switch (dataType) {
    case OnnxDataType.FLOAT:
    case OnnxDataType.COMPLEX64:
      return new Float32Array(0);
    case OnnxDataType.DOUBLE:
    case OnnxDataType.COMPLEX128:
      return new Float64Array(0);
    case OnnxDataType.INT64:
      return new BigInt64Array(0);
    case OnnxDataType.UINT32:
    case OnnxDataType.UINT64:
      return new BigUint64Array(0);
    case OnnxDataType.STRING:
      return [];
    default:
      return new Int32Array(0);
  }
}

/** Parses an ONNX ModelProto. `source` names the file in errors. Tensor data is not copied. */
export function parseOnnx(bytes: Uint8Array, source = 'model.onnx'): OnnxModel {
  if (!(bytes instanceof Uint8Array)) throw new ModelFormatError(source, 'expected the file as a Uint8Array');
  const parser = new Parser(bytes, source);
  try {
    return parser.model();
  } catch (error) {
    return parser.wrap(error);
  }
}

/** Product of the dims (1 for a scalar). */
export function elementCount(t: Pick<OnnxTensor, 'dims'>): number {
  let n = 1;
  for (const d of t.dims) n *= d;
  return n;
}

/** Bytes the tensor's elements take (4-bit types: two per byte, rounded up); undefined for STRING and unknown types. */
export function expectedByteLength(t: Pick<OnnxTensor, 'name' | 'dataType' | 'dims'>): number | undefined {
  const bits = dataTypeBits(t.dataType);
  if (bits === undefined) return undefined;
  return Math.ceil((elementCount(t) * bits) / 8);
}

function externalFile(externalData: ReadonlyMap<string, Uint8Array> | undefined, file: string): Uint8Array | undefined {
  if (!externalData) return undefined;
  const direct = externalData.get(file);
  if (direct) return direct;
  const base = file.slice(file.lastIndexOf('/') + 1);
  return externalData.get(base) ?? externalData.get(`./${file}`);
}

/**
 * The external file a tensor's data is in, checked to exist and to hold the range. Exported for
 * patch.ts; `externalData` maps `location` (as written in the model, or its base name) to bytes.
 */
export function externalBytes(
  model: OnnxModel,
  t: OnnxTensor & { location: { kind: 'external' } },
  externalData: ReadonlyMap<string, Uint8Array> | undefined,
): Uint8Array {
  const { file, offset, length } = t.location;
  const data = externalFile(externalData, file);
  if (!data) {
    throw new ModelFileMissingError(
      file,
      `${model.source} keeps the data of "${t.name}" in the external file "${file}", which was not given; ` +
        `load it next to the .onnx file and pass it as externalData (a Map from "${file}" to its bytes)`,
    );
  }
  if (offset + length > data.length) {
    throw new ModelFormatError(
      file,
      `"${t.name}" of ${model.source} is bytes ${offset}..${offset + length} of "${file}", but the file has only ${data.length} bytes (truncated, or not the data file of this model)`,
    );
  }
  return data;
}

/**
 * The tensor's elements as little-endian bytes: a view into the model (or external) file for
 * 'raw' and 'external' locations, fresh bytes for typed value fields. Checked against dims and
 * data type.
 */
export function tensorBytes(model: OnnxModel, t: OnnxTensor, externalData?: ReadonlyMap<string, Uint8Array>): Uint8Array {
  const expected = expectedByteLength(t);
  const check = (length: number) => {
    if (expected !== undefined && length !== expected) {
      throw new ModelFormatError(
        model.source,
        `tensor "${t.name}" (${dataTypeName(t.dataType)} [${t.dims.join(', ')}]) should have ${expected} bytes of data but has ${length}`,
      );
    }
  };
  const loc = t.location;
  if (loc.kind === 'raw') {
    check(loc.length);
    if (loc.offset + loc.length > model.bytes.length) {
      throw new ModelFormatError(model.source, `tensor "${t.name}" lies past the end of the file`);
    }
    return model.bytes.subarray(loc.offset, loc.offset + loc.length);
  }
  if (loc.kind === 'external') {
    check(loc.length);
    return externalBytes(model, t as OnnxTensor & { location: { kind: 'external' } }, externalData).subarray(loc.offset, loc.offset + loc.length);
  }
  return encodeValues(model, t, loc.values);
}

function encodeValues(model: OnnxModel, t: OnnxTensor, values: OnnxTensorValues): Uint8Array {
  const n = elementCount(t);
  const complex = t.dataType === OnnxDataType.COMPLEX64 || t.dataType === OnnxDataType.COMPLEX128 ? 2 : 1;
  const bits = dataTypeBits(t.dataType);
  const mismatch = (field: string): never => {
    throw new ModelFormatError(model.source, `tensor "${t.name}" is ${dataTypeName(t.dataType)} but stores its values in ${field}`);
  };
  if (Array.isArray(values)) {
    throw new UnsupportedModelError(model.source, `tensor "${t.name}" holds strings (string_data), which have no byte layout`);
  }
  if (bits === undefined) throw new UnsupportedModelError(model.source, `tensor "${t.name}" has ${dataTypeName(t.dataType)}, whose bytes webtune cannot lay out`);
  if (bits === 4) throw new UnsupportedModelError(model.source, `tensor "${t.name}" is ${dataTypeName(t.dataType)} stored in typed fields; webtune reads 4-bit tensors from raw_data only`);
  if (values.length !== n * complex) {
    throw new ModelFormatError(model.source, `tensor "${t.name}" ([${t.dims.join(', ')}]) should have ${n * complex} values but has ${values.length}`);
  }
  const size = bits / 8;
  const out = new Uint8Array(n * size);
  const view = new DataView(out.buffer);
  if (values instanceof Float32Array) {
    if (t.dataType !== OnnxDataType.FLOAT && t.dataType !== OnnxDataType.COMPLEX64) mismatch('float_data');
    for (let i = 0; i < values.length; i++) view.setFloat32(4 * i, values[i]!, true);
  } else if (values instanceof Float64Array) {
    if (t.dataType !== OnnxDataType.DOUBLE && t.dataType !== OnnxDataType.COMPLEX128) mismatch('double_data');
    for (let i = 0; i < values.length; i++) view.setFloat64(8 * i, values[i]!, true);
  } else if (values instanceof BigInt64Array) {
    if (t.dataType !== OnnxDataType.INT64) mismatch('int64_data');
    for (let i = 0; i < values.length; i++) view.setBigInt64(8 * i, values[i]!, true);
  } else if (values instanceof BigUint64Array) {
    if (t.dataType === OnnxDataType.UINT64) for (let i = 0; i < values.length; i++) view.setBigUint64(8 * i, values[i]!, true);
    else if (t.dataType === OnnxDataType.UINT32) for (let i = 0; i < values.length; i++) view.setUint32(4 * i, Number(values[i]! & 0xffffffffn), true);
    else mismatch('uint64_data');
  } else {
    // int32_data: INT32 as is; narrower types (and FLOAT16 / BFLOAT16 bit patterns) in the low bits.
    if (size === 4 && t.dataType === OnnxDataType.INT32) for (let i = 0; i < values.length; i++) view.setInt32(4 * i, values[i]!, true);
    else if (size === 2) for (let i = 0; i < values.length; i++) view.setUint16(2 * i, values[i]! & 0xffff, true);
    else if (size === 1) for (let i = 0; i < values.length; i++) out[i] = values[i]! & 0xff;
    else mismatch('int32_data');
  }
  return out;
}

/**
 * A floating-point tensor (FLOAT, FLOAT16, BFLOAT16, DOUBLE; raw, external or typed fields) as a
 * fresh Float32Array.
 */
export function tensorToFloat32(model: OnnxModel, t: OnnxTensor, externalData?: ReadonlyMap<string, Uint8Array>): Float32Array {
  const n = elementCount(t);
  if (t.location.kind === 'values' && t.location.values instanceof Float32Array && t.dataType === OnnxDataType.FLOAT) {
    if (t.location.values.length !== n) tensorBytes(model, t); // throws the count mismatch
    return t.location.values.slice();
  }
  if (t.dataType !== OnnxDataType.FLOAT && t.dataType !== OnnxDataType.FLOAT16 && t.dataType !== OnnxDataType.BFLOAT16 && t.dataType !== OnnxDataType.DOUBLE) {
    throw new UnsupportedModelError(
      model.source,
      `tensor "${t.name}" is ${dataTypeName(t.dataType)}; only FLOAT, FLOAT16, BFLOAT16 and DOUBLE tensors convert to float32`,
    );
  }
  const bytes = tensorBytes(model, t, externalData);
  const out = new Float32Array(n);
  switch (t.dataType) {
    case OnnxDataType.FLOAT:
      if (LITTLE_ENDIAN) new Uint8Array(out.buffer).set(bytes);
      else {
        const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
      }
      return out;
    case OnnxDataType.FLOAT16: {
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let i = 0; i < n; i++) out[i] = f16BitsToF32(view.getUint16(2 * i, true));
      return out;
    }
    case OnnxDataType.BFLOAT16: {
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u[i] = view.getUint16(2 * i, true) << 16;
      return out;
    }
    default: {
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(8 * i, true);
      return out;
    }
  }
}
