import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { dequantizeNF4, f16BitsToF32, f32ToF16Bits } from '@webtune/gpu';
import { ModelFileMissingError, ModelFormatError, UnsupportedModelError } from '@webtune/errors';
import { parseModelConfig, storedFourBit, type ModelConfig } from '@webtune/model';
import { OnnxDataType, onnxWeights, parseOnnx, type OnnxModel, type OnnxNode, type OnnxTensor, type OnnxWeightMap } from '../src/index.js';
import { DEMO_DIR, firstDiff, fixtureConfig, golden, ONNX_FIXTURES, readBytes, ROOT, safetensorsWeights, type Golden } from './helpers.js';

const MODELS = join(ROOT, 'packages/model/test/fixtures/models');
const dirOf = (name: string) => join(ONNX_FIXTURES, name);
const load = (name: string, file: string) => parseOnnx(readBytes(join(dirOf(name), 'onnx', file)), `${name}/onnx/${file}`);
const externalData = () => new Map([['model.onnx_data', readBytes(join(dirOf('tiny-llama-external'), 'onnx/model.onnx_data'))]]);
const roundF16 = (data: Float32Array) => data.map((x) => f16BitsToF32(f32ToF16Bits(x)));

function expectEqualArrays(name: string, actual: Float32Array, expected: Float32Array): void {
  const i = firstDiff(actual, expected);
  expect(i, `${name}: element ${i} is ${actual[i]}, expected ${expected[i]}`).toBe(-1);
}

/** Every HF parameter of the safetensors file, read through the map, equals `expected(name, data)`. */
function compareAll(map: OnnxWeightMap, weights: Map<string, { data: Float32Array; shape: number[] }>, expected: (name: string, data: Float32Array) => Float32Array): void {
  expect(new Set(map.reader.names())).toEqual(new Set(weights.keys()));
  for (const [name, w] of weights) {
    expect(map.reader.has(name)).toBe(true);
    const r = map.reader.read(name);
    expect(r.shape, name).toEqual(w.shape);
    expectEqualArrays(name, r.data, expected(name, w.data));
  }
}

/** Sources agree with the generator's initializerMap (names and transposition). */
function compareSources(map: OnnxWeightMap, g: Golden, dataType: number): void {
  for (const row of g.initializerMap) {
    if (row.tiedTo) {
      expect(map.tiedLmHeadCopy).toBe(row.initializer);
      continue;
    }
    const src = map.sources.get(row.hf)!;
    expect(src, row.hf).toBeDefined();
    expect(src.initializer, row.hf).toBe(row.initializer);
    expect(src.layout, row.hf).toBe(row.transposed ? 'transposed' : 'as-hf');
    expect(src.dataType, row.hf).toBe(dataType);
  }
  expect(map.sources.size).toBe(g.initializerMap.filter((r) => !r.tiedTo).length);
}

/**
 * The q4 reference, computed here from the file's raw bytes (not through the package): B uint8
 * [N, k_blocks, block/2] with the first element of a pair in the LOW nibble, scales [N * k_blocks],
 * zero point 8 unless given (uint8, two per byte, low nibble first), W[k, n] = (q - zp) * scale.
 * Returns the HF layout: Linear [N, K] (= W^T), Conv1D [K, N] (= W), and the scale of each element.
 */
function referenceDequant(model: OnnxModel, B: string, scalesName: string, K: number, N: number, block: number, conv1d: boolean, zp?: Uint8Array) {
  const rawOf = (name: string) => {
    const t = model.graph.initializers.get(name)!;
    if (t.location.kind !== 'raw') throw new Error(`${name} is not raw`);
    return model.bytes.subarray(t.location.offset, t.location.offset + t.location.length);
  };
  const b = rawOf(B);
  const s = rawOf(scalesName);
  const sv = new DataView(s.buffer, s.byteOffset, s.byteLength);
  const kb = Math.ceil(K / block);
  const values = new Float32Array(K * N);
  const scales = new Float32Array(K * N);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const blk = Math.floor(k / block);
      const j = k % block;
      const byte = b[n * kb * (block / 2) + blk * (block / 2) + Math.floor(j / 2)]!;
      const q = j % 2 === 0 ? byte % 16 : Math.floor(byte / 16);
      let zero = 8;
      if (zp) {
        const zb = zp[n * Math.ceil(kb / 2) + Math.floor(blk / 2)]!;
        zero = blk % 2 === 0 ? zb % 16 : Math.floor(zb / 16);
      }
      const scale = sv.getFloat32(4 * (n * kb + blk), true);
      const at = conv1d ? k * N + n : n * K + k;
      values[at] = Math.fround((q - zero) * scale);
      scales[at] = scale;
    }
  }
  return { values, scales };
}

/** q4: dequantized Linear weights equal the reference; within the RTN error bound of the f32 weights; the rest exact. */
function checkQ4(model: OnnxModel, map: OnnxWeightMap, q4Nodes: NonNullable<Golden['variants'][string]['q4Nodes']>, weights: Map<string, { data: Float32Array; shape: number[] }>, conv1d: boolean) {
  expect(new Set(map.reader.names())).toEqual(new Set(weights.keys()));
  const quantized = new Set<string>();
  let clamped = 0;
  let worst = 0;
  for (const row of q4Nodes) {
    quantized.add(row.hf);
    expect(row.bits).toBe(4);
    const src = map.sources.get(row.hf)!;
    expect(src).toMatchObject({ initializer: row.B, dataType: OnnxDataType.UINT8, node: row.node, layout: conv1d ? 'transposed' : 'as-hf' });
    expect(src.q4).toEqual({ scales: row.scales, blockSize: row.blockSize, K: row.K, N: row.N });
    const ref = referenceDequant(model, row.B, row.scales, row.K, row.N, row.blockSize, conv1d);
    const got = map.reader.read(row.hf);
    expect(got.shape).toEqual(conv1d ? [row.K, row.N] : [row.N, row.K]);
    expectEqualArrays(row.hf, got.data, ref.values);
    // Round-to-nearest error <= |scale| / 2; an element of the sign opposite to the block's extreme
    // m (scale = m / -8) beyond 7.5 |scale| is clamped to code 15 and may be off by up to |scale|.
    const w = weights.get(row.hf)!.data;
    for (let i = 0; i < w.length; i++) {
      const scale = Math.abs(ref.scales[i]!);
      const err = Math.abs(w[i]! - ref.values[i]!);
      const isClamped = w[i]! / ref.scales[i]! + 8 > 15.5;
      if (isClamped) clamped++;
      const bound = (isClamped ? scale : scale / 2) * (1 + 1e-5) + 1e-7;
      if (!(err <= bound)) expect.fail(`${row.hf}[${i}]: |w - dequant| = ${err} > ${bound} (scale ${ref.scales[i]}, w ${w[i]})`);
      worst = Math.max(worst, err / scale);
    }
  }
  for (const [name, wt] of weights) if (!quantized.has(name)) expectEqualArrays(name, map.reader.read(name).data, wt.data);
  return { clamped, worst };
}

describe('onnxWeights: tiny-llama', () => {
  const weights = safetensorsWeights(join(MODELS, 'tiny-llama/model.safetensors'));
  const config = fixtureConfig(dirOf('tiny-llama'));
  const g = golden('tiny-llama');

  it('model.onnx: every HF parameter equals the safetensors weights exactly', () => {
    const map = onnxWeights(load('tiny-llama', 'model.onnx'), config);
    compareAll(map, weights, (_, d) => d);
    compareSources(map, g, OnnxDataType.FLOAT);
    expect(map.reader.read('model.layers.0.self_attn.q_proj.weight').shape).toEqual([64, 64]);
    expect(map.reader.read('model.layers.0.self_attn.k_proj.weight').shape).toEqual([32, 64]);
    expect(map.reader.has('lm_head.weight')).toBe(false);
    expect(() => map.reader.read('lm_head.weight')).toThrow(ModelFileMissingError);
  });

  it('model_fp16.onnx: every parameter equals the safetensors weight rounded to f16 (exactly), through the Cast nodes', () => {
    const map = onnxWeights(load('tiny-llama', 'model_fp16.onnx'), config);
    compareAll(map, weights, (_, d) => roundF16(d));
    compareSources(map, g, OnnxDataType.FLOAT16);
    expect(map.sources.get('model.layers.1.mlp.down_proj.weight')!.node).toBe('/model/layers.1/mlp/down_proj/MatMul');
  });

  it('external data: equal to the safetensors weights; the data file is required at mapping time', () => {
    const model = parseOnnx(readBytes(join(dirOf('tiny-llama-external'), 'onnx/model.onnx')));
    const map = onnxWeights(model, config, externalData());
    compareAll(map, weights, (_, d) => d);
    compareSources(map, g, OnnxDataType.FLOAT);
    expect(() => onnxWeights(model, config)).toThrow(ModelFileMissingError);
    expect(() => onnxWeights(model, config)).toThrow(/model\.onnx_data.*externalData/);
    const cut = new Map([['model.onnx_data', externalData().get('model.onnx_data')!.subarray(0, 400_000)]]);
    expect(() => onnxWeights(model, config, cut)).toThrow(ModelFormatError);
  });

  it('model_q4.onnx: MatMulNBits weights dequantize as the reference rule says, within the quantization error', () => {
    const model = load('tiny-llama', 'model_q4.onnx');
    const map = onnxWeights(model, config);
    const { worst, clamped } = checkQ4(model, map, g.variants['q4']!.q4Nodes!, weights, false);
    // Clamped elements exist (so |w - dequant| <= |scale| / 2 alone would not hold); the worst is |scale|.
    expect(clamped).toBeGreaterThan(0);
    expect(worst).toBeLessThanOrEqual(1 + 1e-5);
    expect(map.tiedLmHeadCopy).toBe(g.initializerMap.find((r) => r.tiedTo)!.initializer);
  });

  it('untied config: lm_head.weight comes from /lm_head/MatMul, transposed', () => {
    const untied = parseModelConfig({ ...config.raw, tie_word_embeddings: false });
    const map = onnxWeights(load('tiny-llama', 'model.onnx'), untied);
    expect(map.sources.get('lm_head.weight')).toMatchObject({ layout: 'transposed', node: '/lm_head/MatMul' });
    expectEqualArrays('lm_head.weight', map.reader.read('lm_head.weight').data, weights.get('model.embed_tokens.weight')!.data);
    expect(map.tiedLmHeadCopy).toBeUndefined();
  });
});

describe('onnxWeights: tiny-gpt2', () => {
  const weights = safetensorsWeights(join(MODELS, 'tiny-gpt2/model.safetensors'));
  const config = fixtureConfig(dirOf('tiny-gpt2'));
  const g = golden('tiny-gpt2');

  it('model.onnx: Conv1D weights from Gemm input 1 as HF [in, out], biases from input 2; all exact', () => {
    const map = onnxWeights(load('tiny-gpt2', 'model.onnx'), config);
    compareAll(map, weights, (_, d) => d);
    compareSources(map, g, OnnxDataType.FLOAT);
    expect(map.reader.read('transformer.h.0.attn.c_attn.weight').shape).toEqual([64, 192]);
    expect(map.sources.get('transformer.h.0.attn.c_attn.bias')).toMatchObject({ initializer: 'transformer.h.0.attn.c_attn.bias', node: '/transformer/h.0/attn/c_attn/Gemm' });
  });

  it('model_fp16.onnx: equal to the safetensors weights rounded to f16 (exactly)', () => {
    const map = onnxWeights(load('tiny-gpt2', 'model_fp16.onnx'), config);
    compareAll(map, weights, (_, d) => roundF16(d));
    compareSources(map, g, OnnxDataType.FLOAT16);
  });

  it('model_q4.onnx: MatMulNBits (Gemm_Q4) + Add bias dequantizes to the reference', () => {
    const model = load('tiny-gpt2', 'model_q4.onnx');
    const map = onnxWeights(model, config);
    checkQ4(model, map, g.variants['q4']!.q4Nodes!, weights, true);
    expect(map.sources.get('transformer.h.1.mlp.c_proj.bias')).toMatchObject({ node: '/transformer/h.1/mlp/c_proj/Gemm_Q4_Add' });
  });

  it('accepts the MatMul + Add form and finds Conv1D weights by their initializer names', () => {
    const model = load('tiny-gpt2', 'model.onnx');
    const nodes: OnnxNode[] = [];
    for (const n of model.graph.nodes) {
      if (n.opType !== 'Gemm') {
        nodes.push(n);
        continue;
      }
      const layer = /h\.(\d+)/.exec(n.name)![1];
      const anonymous = layer === '1'; // layer 1: node names that say nothing
      const mm = anonymous ? `/op_${nodes.length}` : n.name.replace(/Gemm$/, 'MatMul');
      nodes.push({ ...n, name: mm, opType: 'MatMul', inputs: n.inputs.slice(0, 2), outputs: [`${mm}_output_0`], attributes: new Map() });
      nodes.push({ ...n, name: anonymous ? `/op_${nodes.length}` : n.name.replace(/Gemm$/, 'Add'), opType: 'Add', inputs: [`${mm}_output_0`, n.inputs[2]!], attributes: new Map() });
    }
    model.graph.nodes = nodes;
    const map = onnxWeights(model, config);
    compareAll(map, weights, (_, d) => d);
    expect(map.sources.get('transformer.h.0.attn.c_attn.weight')).toMatchObject({ node: '/transformer/h.0/attn/c_attn/MatMul', layout: 'as-hf' });
    expect(map.sources.get('transformer.h.0.attn.c_attn.bias')).toMatchObject({ node: '/transformer/h.0/attn/c_attn/Add' });
    expect(map.sources.get('transformer.h.1.attn.c_attn.weight')!.node).toMatch(/^\/op_/);
  });
});

describe('onnxWeights: the bundled demo model', () => {
  it('demo model_q4.onnx maps completely: embeddings and norms exact, Linear weights dequantized', () => {
    const model = parseOnnx(readBytes(join(DEMO_DIR, 'onnx/model_q4.onnx')), 'webtune-demo/onnx/model_q4.onnx');
    const config = fixtureConfig(DEMO_DIR);
    const map = onnxWeights(model, config);
    const weights = safetensorsWeights(join(DEMO_DIR, 'model.safetensors'));
    const g = golden('webtune-demo');
    const { worst } = checkQ4(model, map, g.variants['q4']!.q4Nodes!, weights, false);
    expect(worst).toBeLessThanOrEqual(1 + 1e-5);
    expect(map.reader.names()).toHaveLength(weights.size);
    expect(map.tiedLmHeadCopy).toBe(g.initializerMap.find((r) => r.tiedTo)!.initializer);
  });
});

describe('onnxWeights: q4 variations', () => {
  const config = fixtureConfig(dirOf('tiny-llama'));
  const q4 = () => load('tiny-llama', 'model_q4.onnx');
  const qNode = (model: OnnxModel) => model.graph.nodes.find((n) => n.name === '/model/layers.0/self_attn/q_proj/MatMul_Q4')!;

  it('dequantizes with packed uint8 zero points (low nibble first)', () => {
    const model = q4();
    const node = qNode(model);
    const N = 64;
    const kb = 2;
    const zp = new Uint8Array(N * Math.ceil(kb / 2));
    for (let i = 0; i < zp.length; i++) zp[i] = (i * 7 + 3) & 0xff; // blocks 0, 1 get different zero points
    const t: OnnxTensor = { name: 'q_zp', dataType: OnnxDataType.UINT8, dims: [zp.length], location: { kind: 'values', values: Int32Array.from(zp) } };
    model.graph.initializers.set('q_zp', t);
    node.inputs = [...node.inputs, 'q_zp'];
    const map = onnxWeights(model, config);
    const ref = referenceDequant(model, node.inputs[1]!, node.inputs[2]!, 64, N, 32, false, zp);
    expectEqualArrays('q_proj', map.reader.read('model.layers.0.self_attn.q_proj.weight').data, ref.values);
    expect(map.sources.get('model.layers.0.self_attn.q_proj.weight')!.q4!.zeroPoints).toBe('q_zp');
  });

  it('offers each weight to the GPU as stored 4-bit (int4 codebook, nibbles swapped, scale 8s) only when zero points are absent or all 8', () => {
    const param = 'model.layers.0.self_attn.q_proj.weight';
    const withZeroPoints = (fill: (i: number) => number) => {
      const model = q4();
      const node = qNode(model);
      const zp = Int32Array.from({ length: 64 }, (_, i) => fill(i)); // N = 64 rows, 2 blocks: one byte each
      model.graph.initializers.set('q_zp', { name: 'q_zp', dataType: OnnxDataType.UINT8, dims: [64], location: { kind: 'values', values: zp } });
      node.inputs = [...node.inputs, 'q_zp'];
      return { model, map: onnxWeights(model, config) };
    };
    // No zero points: decoded with the int4 codebook, it is the reference dequantization.
    const plain = onnxWeights(q4(), config);
    const stored = plain.reader.fourBit!(param)!;
    expect(stored.blockSize).toBe(32);
    const q = stored.read();
    expect(q.codebook).toBe('int4');
    expect(q.shape).toEqual([64, 64]);
    const model = q4();
    const node = qNode(model);
    expectEqualArrays('q_proj as int4', dequantizeNF4(q), referenceDequant(model, node.inputs[1]!, node.inputs[2]!, 64, 64, 32, false).values);
    expect(storedFourBit(config, plain.reader)).toEqual({ blockSize: 32 });
    // Zero points that are all 8 change nothing; any other value keeps that weight off the 4-bit path.
    expect(withZeroPoints(() => 0x88).map.reader.fourBit!(param)).toBeDefined();
    const other = withZeroPoints((i) => (i === 5 ? 0x78 : 0x88)).map;
    expect(other.reader.fourBit!(param)).toBeUndefined();
    expect(other.reader.fourBit!('model.layers.0.self_attn.k_proj.weight')).toBeDefined();
    expect(storedFourBit(config, other.reader)).toEqual({ reason: expect.stringContaining(param) });
    // An f32 file has no stored 4-bit weights.
    expect(onnxWeights(load('tiny-llama', 'model.onnx'), config).reader.fourBit!(param)).toBeUndefined();
  });

  it('refuses bits other than 4, a K/N that disagrees with the config, and g_idx', () => {
    let model = q4();
    qNode(model).attributes.set('bits', { type: 'int', value: 8 });
    expect(() => onnxWeights(model, config)).toThrow(UnsupportedModelError);
    expect(() => onnxWeights(model, config)).toThrow(/q_proj\/MatMul_Q4.*bits=8/);
    model = q4();
    qNode(model).attributes.set('N', { type: 'int', value: 32 });
    expect(() => onnxWeights(model, config)).toThrow(/K=64, N=32 .*config implies K=64, N=64/);
    model = q4();
    qNode(model).inputs.push('', 'g_idx');
    expect(() => onnxWeights(model, config)).toThrow(/g_idx/);
  });
});

describe('onnxWeights: errors', () => {
  const config = fixtureConfig(dirOf('tiny-llama'));
  const f32 = () => load('tiny-llama', 'model.onnx');
  const byName = (model: OnnxModel, name: string) => model.graph.nodes.find((n) => n.name === name)!;

  it('a renamed q_proj node: ModelFormatError naming the missing node and the first unmapped linear node', () => {
    const model = f32();
    byName(model, '/model/layers.0/self_attn/q_proj/MatMul').name = '/model/layers.0/self_attn/query/MatMul';
    const run = () => onnxWeights(model, config);
    expect(run).toThrow(ModelFormatError);
    expect(run).toThrow(/model\.layers\.0\.self_attn\.q_proj\.weight \[64, 64\]: no MatMul node \/model\/layers\.0\/self_attn\/q_proj\/MatMul/);
    expect(run).toThrow(/first linear-looking node not mapped to a parameter is "\/model\/layers\.0\/self_attn\/query\/MatMul" \(MatMul\)/);
  });

  it('an unsupported op in place of a weight MatMul, or feeding it: UnsupportedModelError naming node and op', () => {
    let model = f32();
    byName(model, '/model/layers.1/mlp/up_proj/MatMul').opType = 'MatMulInteger';
    expect(() => onnxWeights(model, config)).toThrow(UnsupportedModelError);
    expect(() => onnxWeights(model, config)).toThrow(/"\/model\/layers\.1\/mlp\/up_proj\/MatMul" \(MatMulInteger\)/);
    model = f32();
    const mm = byName(model, '/model/layers.0/self_attn/v_proj/MatMul');
    model.graph.nodes.unshift({
      name: '/model/layers.0/self_attn/v_proj/DequantizeLinear', opType: 'DequantizeLinear', domain: '',
      inputs: [mm.inputs[1]!, 'v_scale', 'v_zero'], outputs: ['v_deq'], attributes: new Map(),
    });
    mm.inputs[1] = 'v_deq';
    expect(() => onnxWeights(model, config)).toThrow(/"\/model\/layers\.0\/self_attn\/v_proj\/DequantizeLinear" \(DequantizeLinear\)/);
  });

  it('a weight whose shape disagrees with the config: ModelFormatError with both shapes', () => {
    const wrong = parseModelConfig({ ...config.raw, intermediate_size: 96 });
    expect(() => onnxWeights(f32(), wrong)).toThrow(ModelFormatError);
    expect(() => onnxWeights(f32(), wrong)).toThrow(/mlp\/gate_proj\/MatMul.*has shape \[64, 128\], but the config implies \[64, 96\]/);
    const fewer = parseModelConfig({ ...config.raw, num_hidden_layers: 1 });
    expect(() => onnxWeights(f32(), fewer)).toThrow(/1 layer, but the graph has node "\/model\/layers\.1\//);
    const more = parseModelConfig({ ...config.raw, num_hidden_layers: 3 });
    expect(() => onnxWeights(f32(), more)).toThrow(/model\.layers\.2\.input_layernorm\.weight/);
  });

  it('model types other than llama-family and gpt2: UnsupportedModelError', () => {
    const phi: ModelConfig = { ...config, modelType: 'phi3' };
    expect(() => onnxWeights(f32(), phi)).toThrow(UnsupportedModelError);
    expect(() => onnxWeights(f32(), phi)).toThrow(/phi3/);
  });

  it('a non-float weight initializer: UnsupportedModelError', () => {
    const model = f32();
    const t = model.graph.initializers.get('model.norm.weight')!;
    t.dataType = OnnxDataType.INT32;
    expect(() => onnxWeights(model, config)).toThrow(/"model\.norm\.weight".*INT32/);
  });
});

describe('onnxWeights: other layouts', () => {
  const config = fixtureConfig(dirOf('tiny-llama'));
  const weights = safetensorsWeights(join(MODELS, 'tiny-llama/model.safetensors'));

  it('Gemm with transB=1 on an [out, in] initializer is read as-hf', () => {
    const model = load('tiny-llama', 'model.onnx');
    const mm = model.graph.nodes.find((n) => n.name === '/model/layers.0/self_attn/o_proj/MatMul')!;
    const hf = weights.get('model.layers.0.self_attn.o_proj.weight')!;
    model.graph.initializers.set('o_proj_outin', { name: 'o_proj_outin', dataType: OnnxDataType.FLOAT, dims: [64, 64], location: { kind: 'values', values: hf.data.slice() } });
    Object.assign(mm, { name: '/model/layers.0/self_attn/o_proj/Gemm', opType: 'Gemm', inputs: [mm.inputs[0]!, 'o_proj_outin'], attributes: new Map([['transB', { type: 'int', value: 1 }]]) });
    const map = onnxWeights(model, config);
    expect(map.sources.get('model.layers.0.self_attn.o_proj.weight')).toMatchObject({ initializer: 'o_proj_outin', layout: 'as-hf' });
    expectEqualArrays('o_proj', map.reader.read('model.layers.0.self_attn.o_proj.weight').data, hf.data);
  });

  it('qwen2: q/k/v biases from the Add after each MatMul', () => {
    const qwen = parseModelConfig({ ...config.raw, model_type: 'qwen2', architectures: ['Qwen2ForCausalLM'], rope_scaling: null });
    const model = load('tiny-llama', 'model.onnx');
    const biases = new Map<string, Float32Array>();
    for (let l = 0; l < 2; l++) {
      for (const p of ['q_proj', 'k_proj', 'v_proj']) {
        const mm = model.graph.nodes.find((n) => n.name === `/model/layers.${l}/self_attn/${p}/MatMul`)!;
        const out = mm.outputs[0]!;
        const size = p === 'q_proj' ? 64 : 32;
        const name = `model.layers.${l}.self_attn.${p}.bias`;
        const values = Float32Array.from({ length: size }, (_, i) => l + i / 100);
        biases.set(name, values);
        model.graph.initializers.set(name, { name, dataType: OnnxDataType.FLOAT, dims: [size], location: { kind: 'values', values } });
        mm.outputs[0] = `${out}_nobias`;
        model.graph.nodes.splice(model.graph.nodes.indexOf(mm) + 1, 0, {
          name: `/model/layers.${l}/self_attn/${p}/Add`, opType: 'Add', domain: '', inputs: [name, `${out}_nobias`], outputs: [out], attributes: new Map(),
        });
      }
    }
    const map = onnxWeights(model, qwen);
    for (const [name, values] of biases) {
      expect(map.sources.get(name)).toMatchObject({ initializer: name, node: name.replace(/^model\.layers\.(\d)\.self_attn\.(\w+)\.bias$/, '/model/layers.$1/self_attn/$2/Add') });
      expectEqualArrays(name, map.reader.read(name).data, values);
    }
    expect(map.reader.names()).toHaveLength(weights.size + 6);
  });
});
