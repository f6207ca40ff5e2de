/**
 * Writing an ONNX file back without re-serializing it.
 *  - replaceInitializers: the named initializers' element bytes are overwritten in a copy of the
 *    model file (raw_data) or of its external data file, so the result is byte-identical to the
 *    original outside those ranges. The replacement must have the same byte length (a merged weight
 *    keeps its data type and shape).
 *  - addToGraph: nodes spliced in after existing ones and initializers appended, with every other
 *    field of the model and graph copied byte for byte (for the LoRA side branches of a 4-bit export).
 */
import protobuf from 'protobufjs/minimal.js';
import { f32ToF16Bits } from '@webtune/gpu';
import { InvalidArgumentError, ModelFormatError } from '@webtune/errors';
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


/** A node to write into the graph (ai.onnx unless `domain` is given; no attributes). */
export interface NewNode {
  name: string;
  opType: string;
  domain?: string;
  inputs: string[];
  outputs: string[];
}

/** An initializer to add, stored as raw_data in the model file. */
export interface NewInitializer {
  name: string;
  dataType: number;
  dims: number[];
  /** Little-endian element bytes (see `encodeFloat32`). */
  bytes: Uint8Array;
}

/**
 * Inserts nodes right after an existing one: node `graph.nodes[index]` writes `renameOutput`
 * instead of its first output, and `nodes` (which consume it) write the original name in its
 * place, so every later consumer reads the new value and the node list stays in topological order.
 */
export interface NodeSplice {
  index: number;
  renameOutput: string;
  nodes: NewNode[];
}

/** Field numbers of onnx.proto3 this writer touches. */
const MODEL_GRAPH = 7;
const GRAPH_NODE = 1;
const GRAPH_INITIALIZER = 5;
const NODE = { input: 1, output: 2, name: 3, opType: 4, domain: 7 } as const;
const TENSOR = { dims: 1, dataType: 2, name: 8, rawData: 9 } as const;
const LEN_WIRE = 2;

interface FieldSpan {
  field: number;
  /** The tag's first byte. */
  start: number;
  /** Content of a length-delimited field. */
  contentStart: number;
  end: number;
}

/** The top-level fields of the message in bytes [start, end), in file order. */
function fieldSpans(bytes: Uint8Array, start: number, end: number, source: string): FieldSpan[] {
  const r = new protobuf.Reader(bytes.subarray(0, end));
  r.pos = start;
  const spans: FieldSpan[] = [];
  try {
    while (r.pos < end) {
      const tagStart = r.pos;
      const tag = r.uint32();
      if ((tag & 7) === LEN_WIRE) {
        const length = r.uint32();
        spans.push({ field: tag >>> 3, start: tagStart, contentStart: r.pos, end: r.pos + length });
        r.skip(length);
      } else {
        const contentStart = r.pos;
        r.skipType(tag & 7);
        spans.push({ field: tag >>> 3, start: tagStart, contentStart, end: r.pos });
      }
    }
  } catch (error) {
    throw new ModelFormatError(source, `the protobuf message at bytes ${start}..${end} is malformed (${(error as Error).message})`);
  }
  return spans;
}

function encodeNode(node: NewNode): Uint8Array {
  const w = protobuf.Writer.create();
  for (const input of node.inputs) w.uint32((NODE.input << 3) | LEN_WIRE).string(input);
  for (const output of node.outputs) w.uint32((NODE.output << 3) | LEN_WIRE).string(output);
  w.uint32((NODE.name << 3) | LEN_WIRE).string(node.name);
  w.uint32((NODE.opType << 3) | LEN_WIRE).string(node.opType);
  if (node.domain) w.uint32((NODE.domain << 3) | LEN_WIRE).string(node.domain);
  return w.finish();
}

function encodeInitializer(t: NewInitializer): Uint8Array {
  const w = protobuf.Writer.create();
  w.uint32((TENSOR.dims << 3) | LEN_WIRE).fork();
  for (const d of t.dims) w.int64(d);
  w.ldelim();
  w.uint32(TENSOR.dataType << 3).int32(t.dataType);
  w.uint32((TENSOR.name << 3) | LEN_WIRE).string(t.name);
  w.uint32((TENSOR.rawData << 3) | LEN_WIRE).bytes(t.bytes);
  return w.finish();
}

/** A length-delimited field `field` holding `parts` concatenated. */
function lengthDelimited(field: number, parts: Uint8Array[]): Uint8Array {
  const length = parts.reduce((n, p) => n + p.length, 0);
  const header = protobuf.Writer.create().uint32((field << 3) | LEN_WIRE).uint32(length).finish();
  return concat([header, ...parts]);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The node message with its first output renamed; every other field is copied byte for byte. */
function renameFirstOutput(bytes: Uint8Array, span: FieldSpan, name: string, source: string): Uint8Array {
  const parts: Uint8Array[] = [];
  let renamed = false;
  for (const f of fieldSpans(bytes, span.contentStart, span.end, source)) {
    if (f.field === NODE.output && !renamed) {
      parts.push(protobuf.Writer.create().uint32((NODE.output << 3) | LEN_WIRE).string(name).finish());
      renamed = true;
    } else {
      parts.push(bytes.subarray(f.start, f.end));
    }
  }
  return lengthDelimited(GRAPH_NODE, parts);
}

/**
 * A new model file: `bytes` (the model `model` was parsed from, or a same-length copy of it such as
 * replaceInitializers' output) with nodes spliced in and initializers added to the main graph. The
 * model's other fields, the graph's other nodes, inputs, outputs and value infos are copied byte for
 * byte; only the graph's length prefix and the spliced nodes are re-encoded.
 */
export function addToGraph(
  model: OnnxModel,
  bytes: Uint8Array,
  edits: { splices: readonly NodeSplice[]; initializers: readonly NewInitializer[] },
): Uint8Array {
  const { graph, source } = model;
  if (bytes.length !== model.bytes.length) {
    throw new InvalidArgumentError(`addToGraph: the bytes (${bytes.length}) are not a same-length copy of ${source} (${model.bytes.length} bytes).`);
  }
  const taken = new Set<string>([...graph.initializers.keys(), ...graph.inputs.map((v) => v.name), ...graph.nodes.flatMap((n) => n.outputs)]);
  const claim = (name: string, what: string) => {
    if (!name || taken.has(name)) throw new InvalidArgumentError(`addToGraph: ${what} "${name}" is empty or already used in ${source}'s graph.`);
    taken.add(name);
  };
  const byIndex = new Map<number, NodeSplice>();
  for (const s of edits.splices) {
    const node = graph.nodes[s.index];
    if (!node || node.outputs.length === 0 || !node.outputs[0]) throw new InvalidArgumentError(`addToGraph: ${source} has no node ${s.index} with an output to splice after.`);
    if (byIndex.has(s.index)) throw new InvalidArgumentError(`addToGraph: node ${s.index} ("${node.name}") is spliced twice.`);
    byIndex.set(s.index, s);
    claim(s.renameOutput, 'value');
  }
  for (const s of edits.splices) for (const n of s.nodes) for (const out of n.outputs) if (out !== graph.nodes[s.index]!.outputs[0]) claim(out, 'value');
  for (const t of edits.initializers) claim(t.name, 'initializer');

  const modelFields = fieldSpans(bytes, 0, bytes.length, source);
  const graphSpan = modelFields.filter((f) => f.field === MODEL_GRAPH).at(-1);
  if (!graphSpan) throw new ModelFormatError(source, 'the file has no graph (ModelProto.graph, field 7)');
  const graphFields = fieldSpans(bytes, graphSpan.contentStart, graphSpan.end, source);
  if (graphFields.filter((f) => f.field === GRAPH_NODE).length !== graph.nodes.length) {
    throw new InvalidArgumentError(`addToGraph: the bytes do not hold the graph of ${source} (node count differs).`);
  }
  const parts: Uint8Array[] = [];
  let nodeIndex = 0;
  for (const f of graphFields) {
    const splice = f.field === GRAPH_NODE ? byIndex.get(nodeIndex) : undefined;
    if (f.field === GRAPH_NODE) nodeIndex++;
    if (!splice) {
      parts.push(bytes.subarray(f.start, f.end));
      continue;
    }
    parts.push(renameFirstOutput(bytes, f, splice.renameOutput, source));
    for (const n of splice.nodes) parts.push(lengthDelimited(GRAPH_NODE, [encodeNode(n)]));
  }
  for (const t of edits.initializers) parts.push(lengthDelimited(GRAPH_INITIALIZER, [encodeInitializer(t)]));
  return concat([bytes.subarray(0, graphSpan.start), lengthDelimited(MODEL_GRAPH, parts), bytes.subarray(graphSpan.end)]);
}
