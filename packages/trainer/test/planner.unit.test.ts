/**
 * The memory planner on real model shapes: SmolLM2-135M's config and the tiny fixtures. The
 * training test (training.gpu.test.ts) checks the estimate against what a run really allocates.
 */
import { describe, expect, it } from 'vitest';
import { MemoryPlanError } from '@webtune/errors';
import { parseModelConfig, resolveAdapterSpec, resolveLoraConfig } from '@webtune/model';
import { checkMemoryPlan, estimateTrainingMemory } from '../src/index.js';

const smol = parseModelConfig({
  model_type: 'llama', hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30, num_attention_heads: 9,
  num_key_value_heads: 3, vocab_size: 49152, max_position_embeddings: 8192, rms_norm_eps: 1e-5, rope_theta: 100000,
  tie_word_embeddings: true,
});
const lora = resolveLoraConfig(smol, { rank: 8 });
const limits = { limits: { maxStorageBufferBindingSize: 2 ** 30, maxBufferSize: 2 ** 30 } } as never;

describe('memory planner', () => {
  it('DP-SGD: per-example clipping adds one f32 copy of the adapter (SmolLM2-135M, LoRA r8 on q and v: 30 x 8 x (576 + 576 + 576 + 192) parameters)', () => {
    const plain = estimateTrainingMemory({ config: smol, format: 'f32', lora, batch: 1, seq: 256, recompute: false });
    const dp = estimateTrainingMemory({ config: smol, format: 'f32', lora, batch: 1, seq: 256, recompute: false, perExampleClipping: true });
    // PEFT's default Llama targets are q_proj (576 -> 576) and v_proj (576 -> 192): A is [8, in], B is [out, 8].
    const params = 30 * 8 * (576 + 576 + 576 + 192);
    expect(dp.adapter - plain.adapter).toBe(params * 4);
    expect(dp.total - plain.total).toBe(params * 4);
  });

  it('counts SmolLM2-135M weights as float32 (134.5M parameters), as NF4 and as stored 4-bit (q4)', () => {
    const f32 = estimateTrainingMemory({ config: smol, format: 'f32', lora, batch: 1, seq: 256, recompute: false });
    const nf4 = estimateTrainingMemory({ config: smol, format: 'nf4', lora, batch: 1, seq: 256, recompute: false });
    const q4 = estimateTrainingMemory({ config: smol, format: 'q4', blockSize: 32, lora, batch: 1, seq: 256, recompute: false });
    // 134,515,008 parameters (the published count) in float32, plus RoPE tables.
    expect(f32.weights).toBeGreaterThan(134_515_008 * 4);
    expect(f32.weights).toBeLessThan(134_515_008 * 4 + 3 * 2 ** 20);
    // Linear weights (106.2M) at ~4.13 bits; embedding and norms stay f32.
    expect(nf4.weights).toBeLessThan(0.4 * f32.weights);
    // q4 (MatMulNBits, block 32): 4 bits + one f32 scale per 32 weights = 5 bits per linear weight.
    const embedding = 49_152 * 576 * 4;
    expect(q4.weights - embedding).toBeGreaterThan((106_168_320 * 5) / 8);
    expect(q4.weights - embedding).toBeLessThan((106_168_320 * 5) / 8 + 3 * 2 ** 20);
    expect(q4.activations).toBe(nf4.activations);
    // Same adapter either way: q_proj + v_proj, rank 8, 30 layers.
    expect(f32.adapter).toBe(30 * 8 * (576 + 576 + 576 + 192) * 4 * 2);
  });

  it('per method: IA3 and BitFit vectors are tiny; training the top 4 layers keeps the state of 4 layers (plus one scratch), not 30', () => {
    const spec = (method: string, config: Record<string, unknown> = {}) => resolveAdapterSpec(smol, method, config);
    const est = (adapter: ReturnType<typeof spec>) => estimateTrainingMemory({ config: smol, format: 'f32', adapter, batch: 1, seq: 256, recompute: false });
    const full = est(spec('lora', { rank: 8 }));
    // IA3: k (192) + v (192) outputs and down_proj's 1536 inputs per layer; f32 value + gradient, and AdamW's two moments.
    const ia3 = est(spec('ia3'));
    expect(ia3.adapter).toBe(30 * (192 + 192 + 1536) * 4 * 2);
    expect(ia3.optimizer).toBe(ia3.adapter);
    // BitFit on every linear: q 576, k 192, v 192, o 576, gate 1536, up 1536, down 576 biases per layer.
    expect(est(spec('bitfit')).adapter).toBe(30 * (576 + 192 + 192 + 576 + 1536 + 1536 + 576) * 4 * 2);
    // The top 4 layers: the adapter is 4/30 of the full one, and the saved state 4 layers + 1 shared copy instead of 30.
    const top = est(spec('lora', { rank: 8, layers: [26, 27, 28, 29] }));
    expect(top.adapter * 30).toBe(full.adapter * 4);
    expect(top.activations).toBeLessThan(full.activations * 0.4);
    expect(full.activations - top.activations).toBeGreaterThan(0);
    // LoRA's suggestion to lower the rank, and none for IA3 (it has no size to lower).
    expect(() => checkMemoryPlan(limits, { config: smol, format: 'f32', adapter: spec('ia3'), batch: 8, seq: 1024, recompute: false }, { budgetBytes: 2 ** 30 })).toThrow(/IA3 on k_proj, v_proj, down_proj/);
  });

  it('recomputation keeps only layer inputs', () => {
    const full = estimateTrainingMemory({ config: smol, format: 'f32', lora, batch: 1, seq: 256, recompute: false });
    const re = estimateTrainingMemory({ config: smol, format: 'f32', lora, batch: 1, seq: 256, recompute: true });
    expect(re.activations).toBeLessThan(full.activations / 4);
  });

  it('refuses a run over budget, naming what to lower, biggest saving first', () => {
    let error: MemoryPlanError | undefined;
    try {
      checkMemoryPlan(limits, { config: smol, format: 'f32', lora, batch: 8, seq: 1024, recompute: false }, { budgetBytes: 2 ** 30 });
    } catch (e) {
      error = e as MemoryPlanError;
    }
    expect(error).toBeInstanceOf(MemoryPlanError);
    expect(error!.code).toBe('MEMORY_PLAN');
    expect(error!.message).toMatch(/needs about .* but the limit is 1\.00 GiB/);
    expect(error!.suggestions[0]).toMatch(/recompute/);
    expect(error!.suggestions.join(' ')).toMatch(/nf4/);
    expect(error!.suggestions.join(' ')).toMatch(/sequence length \(1024 -> 512\)/);
    expect(error!.suggestions.join(' ')).toMatch(/batch size \(8 -> 4/);
  });

  it('accepts the same run within budget and returns the estimate', () => {
    const e = checkMemoryPlan(limits, { config: smol, format: 'nf4', lora, batch: 1, seq: 256, recompute: true }, { budgetBytes: 2 ** 30 });
    expect(e.total).toBe(e.weights + e.adapter + e.optimizer + e.activations);
  });

  it('refuses a buffer larger than the device can bind', () => {
    const small = { limits: { maxStorageBufferBindingSize: 64 * 2 ** 20, maxBufferSize: 2 ** 30 } } as never;
    expect(() => checkMemoryPlan(small, { config: smol, format: 'nf4', lora, batch: 1, seq: 128, recompute: true })).toThrowError(/embedding.*maxStorageBufferBindingSize/);
  });
});
