// attention-forward-softmax: one row block of attention's matmul forward
// (packages/gpu/src/kernels/attention-matmul.ts), between S = scale Q K^T and out = P V. For the
// block's queries i = row0 .. row0 + block_rows - 1 of every (batch, head), over its keys j < keys:
//
//   scores[r * keys + j]  holds s_ij = scale q_i . k_j  and becomes  P_ij = exp(s_ij - lse_i)
//   lse_i = log sum over visible j of exp(s_ij)   (written when write_lse != 0; the backward's)
//
// Key j is visible to query i when j <= position_offset + i; P_ij = 0 for the others, so the
// product that follows may run over the whole block. r = bh * block_rows + (i - row0); lse is
// [batch * heads, seq] f32. Everything is f32.
//
// Bindings (group 0):
//   0 scores: array<f32>  read_write
//   1 lse: array<f32>     read_write  (any f32 buffer when write_lse = 0)
//   2 params: Params      uniform
// Dispatch: ceil(rows / 64) workgroups of 64 over x and y (r = gid.x + gid.y * row_stride), one
// invocation per row: rows = batch * heads * block_rows.
// Reference: HF eager attention in PyTorch (scripts/make_attention_fixtures.py).

struct Params {
  rows: u32,
  block_rows: u32,
  keys: u32,
  row0: u32,
  seq: u32,
  position_offset: u32,
  write_lse: u32,
  row_stride: u32,
}

@group(0) @binding(0) var<storage, read_write> scores: array<f32>;
@group(0) @binding(1) var<storage, read_write> lse: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let r = gid.x + gid.y * params.row_stride;
  if (r >= params.rows) {
    return;
  }
  let i = params.row0 + r % params.block_rows;
  // At least key 0: position_offset + i + 1 >= 1.
  let visible = min(params.keys, params.position_offset + i + 1u);
  let base = r * params.keys;
  var m = scores[base];
  for (var j = 1u; j < visible; j++) {
    m = max(m, scores[base + j]);
  }
  var sum = 0.0;
  for (var j = 0u; j < visible; j++) {
    let e = exp(scores[base + j] - m);
    scores[base + j] = e;
    sum += e;
  }
  let inv = 1.0 / sum;
  for (var j = 0u; j < visible; j++) {
    scores[base + j] *= inv;
  }
  for (var j = visible; j < params.keys; j++) {
    scores[base + j] = 0.0;
  }
  if (params.write_lse != 0u) {
    lse[(r / params.block_rows) * params.seq + i] = m + log(sum);
  }
}
