/**
 * The workspace plan lends attention's matmul path its scratch in training only, sized by
 * attentionMatmulScratchSizes (the gpu lane checks the path's results against PyTorch), and leaves
 * it out past ATTENTION_SCRATCH_MAX_BYTES, where the flash kernels run.
 */
import { describe, expect, it } from 'vitest';
import { attentionMatmulScratchSizes } from '@webtune/gpu';
import { ATTENTION_SCRATCH_MAX_BYTES, parseModelConfig, planBytes, planWorkspace, type WorkspaceShape } from '../src/index.js';

const smol = parseModelConfig({
  model_type: 'llama', hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30, num_attention_heads: 9,
  num_key_value_heads: 3, vocab_size: 49152, max_position_embeddings: 8192, rms_norm_eps: 1e-5, rope_theta: 100000,
  tie_word_embeddings: true,
});

function shape(over: Partial<WorkspaceShape>): WorkspaceShape {
  return {
    batch: 1, seq: 256, prefixTokens: 0, training: true, recompute: false, adapter: { layer: [], shared: [] },
    lowestTrainable: 0, headChunk: 64, mlpRowStride: 1536, nf4: false, dtype: 'f32', ...over,
  };
}

const scratchOf = (s: WorkspaceShape) => planWorkspace(smol, s).filter((p) => p.name.startsWith('attentionScratch.'));

describe('workspace plan: attention matmul scratch', () => {
  it('training plans the seven f32 tensors, one copy, sized for SmolLM2-135M at 1 x 256 (5 MiB)', () => {
    const plan = scratchOf(shape({}));
    const sizes = attentionMatmulScratchSizes({ batch: 1, seq: 256, heads: 9, headDim: 64 });
    expect(Object.fromEntries(plan.map((p) => [p.name.slice('attentionScratch.'.length), p.shape[0]]))).toEqual(sizes);
    // Queries and keys per (batch, head): 9 x 256 x 64; scores: two blocks of 64 rows x 256 keys per head.
    expect(sizes).toEqual({ q: 147456, gradOutput: 147456, k: 147456, v: 147456, gradK: 147456, gradV: 147456, scores: 294912 });
    expect(plan.every((p) => p.dtype === 'f32' && p.copies === 1)).toBe(true);
    expect(planBytes(plan)).toBe((6 * 147456 + 294912) * 4);
  });

  it('f16 activations get the same f32 scratch; a prefix widens the keys', () => {
    expect(scratchOf(shape({ dtype: 'f16' }))).toEqual(scratchOf(shape({})));
    const prefixed = Object.fromEntries(scratchOf(shape({ prefixTokens: 20 })).map((p) => [p.name, p.shape[0]]));
    expect(prefixed['attentionScratch.k']).toBe(9 * 276 * 64);
    expect(prefixed['attentionScratch.scores']).toBe(2 * 9 * 64 * 276);
  });

  it('inference plans none; neither does a shape past the cap', () => {
    expect(scratchOf(shape({ training: false }))).toEqual([]);
    // batch 16 x seq 1024: 6 x 16 x 9 x 1024 x 64 + 2 x 16 x 9 x 64 x 1024 floats, about 290 MiB.
    const big = shape({ batch: 16, seq: 1024 });
    const wanted = Object.values(attentionMatmulScratchSizes({ batch: 16, seq: 1024, heads: 9, headDim: 64 })).reduce((a, b) => a + b, 0) * 4;
    expect(wanted).toBeGreaterThan(ATTENTION_SCRATCH_MAX_BYTES);
    expect(scratchOf(big)).toEqual([]);
  });
});
