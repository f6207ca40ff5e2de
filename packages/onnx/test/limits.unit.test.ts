/**
 * What a hostile file may cost. An ONNX file of 2.5 million empty nodes (5 MB) once cost 565 MB of
 * heap; the reader now refuses any file with more protobuf messages than onnxMessageBudget allows
 * (one per 32 bytes, 5 million at most), so the same file fails with ModelFormatError after at most
 * 4096 + 5,000,005 / 32 = 160,346 messages (measured: the heap grows by about 54 MiB, against 565 MB
 * before). The same for a safetensors header declaring too many tensors.
 */
import { describe, expect, it } from 'vitest';
import { ModelFormatError } from '@webtune/errors';
import { MAX_SAFETENSORS_TENSORS, parseSafetensors } from '@webtune/model';
import { MAX_ONNX_MESSAGES, onnxMessageBudget, parseOnnx } from '../src/index.js';

/** ModelProto { graph { node {} x count } }: two bytes a node. */
function emptyNodes(count: number): Uint8Array {
  const body = 2 * count;
  const prefix: number[] = [0x3a]; // field 7 (graph), wire type 2
  for (let v = body; ; v = Math.floor(v / 128)) {
    if (v < 128) {
      prefix.push(v);
      break;
    }
    prefix.push((v % 128) | 0x80);
  }
  const bytes = new Uint8Array(prefix.length + body);
  bytes.set(prefix);
  for (let i = prefix.length; i < bytes.length; i += 2) bytes[i] = 0x0a; // field 1 (node), length 0
  return bytes;
}

describe('parser limits', () => {
  it('an ONNX file of 2.5 million empty nodes is refused, with bounded heap', () => {
    const bytes = emptyNodes(2_500_000);
    expect(bytes.length).toBeGreaterThan(5_000_000);
    const before = process.memoryUsage().heapUsed;
    const error = (() => {
      try {
        parseOnnx(bytes, 'nodes.onnx');
        return undefined;
      } catch (e) {
        return e;
      }
    })();
    const grew = process.memoryUsage().heapUsed - before;
    expect(error).toBeInstanceOf(ModelFormatError);
    expect((error as Error).message).toMatch(new RegExp(`more than ${onnxMessageBudget(bytes.length)} protobuf messages`));
    // 160,346 node objects at most (a few hundred bytes each); before the limit this was 565 MB.
    expect(grew).toBeLessThan(150 * 1024 * 1024);
  });

  it('the budget: one message per 32 bytes plus 4096, capped; a file just within it parses', () => {
    expect(onnxMessageBudget(0)).toBe(4096);
    expect(onnxMessageBudget(32_000)).toBe(5096);
    expect(onnxMessageBudget(1e12)).toBe(MAX_ONNX_MESSAGES);
    // ModelProto + GraphProto + 4000 nodes fit the 4096 + 8000/32 budget of this 8 kB file.
    const model = parseOnnx(emptyNodes(4000));
    expect(model.graph.nodes).toHaveLength(4000);
  });

  it('a safetensors header declaring more than MAX_SAFETENSORS_TENSORS tensors is refused before JSON.parse', () => {
    const entry = (i: number) => `"t${i}":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}`;
    const parts: string[] = [];
    for (let i = 0; i <= MAX_SAFETENSORS_TENSORS; i++) parts.push(entry(i));
    const header = new TextEncoder().encode(`{${parts.join(',')}}`);
    const bytes = new Uint8Array(8 + header.length);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(header.length), true);
    bytes.set(header, 8);
    expect(() => parseSafetensors(bytes, 'many.safetensors')).toThrowError(ModelFormatError);
    expect(() => parseSafetensors(bytes, 'many.safetensors')).toThrowError(/more than 200000 tensors/);
  });
});
