// Shared by the attention-merge*.wgsl shaders: their Params (one layout for all four, packed in
// packages/gpu/src/kernels/attention.ts) and the merge weights.
// Two attentions of the same queries over disjoint key sets A and B (UniPELT: a gated prefix, and
// the sequence's own causal keys) combine exactly by their log-sum-exps: with
// w = sigmoid(lse_a - lse_b) = sum_A e^s / (sum_A e^s + sum_B e^s),
//   out = w * g * out_a + (1 - w) * out_b
// per (token, head), g a per-token gate on A's values (g = 1 is plain attention over A and B).
// Layouts: out_a, out_b, grad_out [tokens, heads * head_dim], token t = b * seq + s (vec4 = 4
// elements of a row); lse_a, lse_b [batch, heads, seq]; the gate (and its gradient) one column of an
// f32 [tokens, stride] tensor.

struct Params {
  tokens: u32,
  seq: u32,
  heads: u32,
  // head_dim / 4
  d4: u32,
  // invocations per y row of the dispatch (index = gid.x + gid.y * row_stride)
  row_stride: u32,
  gate_stride: u32,
  gate_offset: u32,
  grad_gate_stride: u32,
  grad_gate_offset: u32,
}

// Index of (token, head) in a [batch, heads, seq] statistic.
fn stat_index(token: u32, head: u32) -> u32 {
  let b = token / params.seq;
  return (b * params.heads + head) * params.seq + token % params.seq;
}

// (w, 1 - w) for w = sigmoid(x), x = lse_a - lse_b, from e = exp(-|x|) <= 1: nothing overflows,
// and neither side is a subtraction from 1, so a weight far below 1 keeps its digits.
fn merge_weights(x: f32) -> vec2<f32> {
  let e = exp(-abs(x));
  let positive = x >= 0.0;
  return vec2<f32>(select(e, 1.0, positive), select(1.0, e, positive)) / (1.0 + e);
}
