/**
 * The exporter's 4-bit re-quantizer is onnxruntime's symmetric RTN: run on the f32 weights it
 * reproduces, byte for byte, the MatMulNBits B and scales that scripts/make_onnx_fixtures.py wrote
 * (its own numpy port of MLAS' quantizer). And an export of a model not loaded from ONNX is refused.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@webtune/errors';
import { loadModelFiles, resolveLoraConfig, transpose } from '@webtune/model';
import { nodeDirectorySource } from '../../model/src/node.js';
import { exportMergedOnnx, parseOnnx, quantizeQ4, tensorBytes, tensorToFloat32 } from '../src/index.js';
import { ONNX_FIXTURES, readBytes, ROOT, safetensorsWeights } from './helpers.js';

describe('quantizeQ4', () => {
  for (const [model, weight, prefix, conv1d] of [
    ['tiny-llama', 'model.layers.1.mlp.down_proj.weight', 'model.layers.1.mlp.down_proj.MatMul.weight', false],
    ['tiny-gpt2', 'transformer.h.0.attn.c_attn.weight', 'transformer.h.0.attn.c_attn.weight', true],
  ] as const) {
    it(`${model}: ${weight} re-quantized equals the fixture's MatMulNBits bytes`, () => {
      const w = safetensorsWeights(join(ROOT, `packages/model/test/fixtures/models/${model}/model.safetensors`)).get(weight)!;
      const onnx = parseOnnx(readBytes(join(ONNX_FIXTURES, model, 'onnx/model_q4.onnx')));
      const b = onnx.graph.initializers.get(`${prefix}_Q4`)!;
      const scales = onnx.graph.initializers.get(`${prefix}_scales`)!;
      const [n, k] = conv1d ? [w.shape[1]!, w.shape[0]!] : [w.shape[0]!, w.shape[1]!];
      const q = quantizeQ4(conv1d ? transpose(w.data, k, n) : w.data, n, k, 32);
      expect(b.dims).toEqual([n, k / 32, 16]);
      expect(q.packed).toEqual(new Uint8Array(tensorBytes(onnx, b)));
      expect(q.scales).toEqual(tensorToFloat32(onnx, scales));
    });
  }
});

describe('exportMergedOnnx', () => {
  it('refuses a model loaded from safetensors, saying how to load it', async () => {
    const files = await loadModelFiles(nodeDirectorySource(join(ROOT, 'packages/model/test/fixtures/models/tiny-llama')));
    const lora = resolveLoraConfig(files.config, { rank: 4 });
    expect(() => exportMergedOnnx(files, lora, new Map())).toThrowError(InvalidArgumentError);
    expect(() => exportMergedOnnx(files, lora, new Map())).toThrowError(/onnxWeightFormat/);
  });
});
