/**
 * The inputs of a decoder exported in Optimum's "text-generation-with-past" layout (what
 * transformers.js runs): input_ids, attention_mask and position_ids as int64 [batch, seq], and
 * past_key_values.{layer}.{key,value} as float32 [batch, kv_heads, past, head_dim]. For running
 * an original or exported ONNX in onnxruntime-web without depending on it here: `tensor` is
 * `(type, data, dims) => new ort.Tensor(type, data, dims)`.
 *
 * @example
 * const tensor = (type, data, dims) => new ort.Tensor(type, data, dims);
 * let out = await session.run(decoderFeeds(tensor, config, [promptIds]));
 * out = await session.run(decoderFeeds(tensor, config, [[next]], { length: promptIds.length, tensors: out }));
 */
export interface DecoderShape {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
}

export type TensorFactory<T> = (type: 'int64' | 'float32', data: BigInt64Array | Float32Array, dims: number[]) => T;

/**
 * Feeds for one call: `ids` [batch][seq] continue `past.length` cached positions whose keys and
 * values are the previous call's `present.{layer}.{key,value}` outputs (no past: an empty cache).
 * Every row attends to all positions (no padding).
 */
export function decoderFeeds<T>(
  tensor: TensorFactory<T>,
  shape: DecoderShape,
  ids: readonly (readonly number[])[],
  past?: { length: number; tensors: Readonly<Record<string, T>> },
): Record<string, T> {
  const batch = ids.length;
  const seq = ids[0]?.length ?? 0;
  const start = past?.length ?? 0;
  const i64 = (rows: number[][]) => tensor('int64', BigInt64Array.from(rows.flat().map(BigInt)), [batch, rows[0]!.length]);
  const feeds: Record<string, T> = {
    input_ids: i64(ids.map((r) => [...r])),
    attention_mask: i64(ids.map(() => Array<number>(start + seq).fill(1))),
    position_ids: i64(ids.map(() => Array.from({ length: seq }, (_, j) => start + j))),
  };
  for (let l = 0; l < shape.numLayers; l++) {
    for (const t of ['key', 'value']) {
      const cached = past?.tensors[`present.${l}.${t}`];
      feeds[`past_key_values.${l}.${t}`] = cached ?? tensor('float32', new Float32Array(0), [batch, shape.numKvHeads, 0, shape.headDim]);
    }
  }
  return feeds;
}
