// attention-backward-scores: one row block of attention's matmul backward
// (packages/gpu/src/kernels/attention.ts), between the products that make the scores and those
// that use them. For the block's queries i = row0 .. row0 + block_rows - 1 of every (batch, head)
// and its keys j < keys (all the block's queries can see; keys <= seq_kv):
//
//   scores[s_at + e]  holds scale * q_i . k_j   and becomes  P_ij  = exp(scale q_i . k_j - lse_i)
//   scores[dp_at + e] holds dO_i . v_j          and becomes  dS_ij = P_ij (dO_i . v_j - delta_i)
//
// with P_ij = dS_ij = 0 where key j is not visible to query i (j > position_offset + i), so the
// products that follow may run over the whole block. e = (bh * block_rows + (i - row0)) * keys + j.
// lse and delta are [batch * heads, seq] f32, as the forward and attention-backward-delta wrote
// them. Everything here is f32.
//
// Bindings (group 0):
//   0 scores: array<f32>  read_write  the block's scores at s_at and dP at dp_at
//   1 lse: array<f32>     read
//   2 delta: array<f32>   read
//   3 params: Params      uniform
// Dispatch: ceil(batch * heads * block_rows / 64) workgroups of 64 over x and y
// (row = gid.x + gid.y * row_stride), one invocation per row of scores: the index arithmetic
// (integer divisions, scalarized on the CPU adapters) once per row, not per score.
// Reference: PyTorch autograd of HF eager attention (scripts/make_attention_fixtures.py).

struct Params {
  rows: u32,
  block_rows: u32,
  keys: u32,
  row0: u32,
  seq: u32,
  position_offset: u32,
  s_at: u32,
  dp_at: u32,
  row_stride: u32,
}

@group(0) @binding(0) var<storage, read_write> scores: array<f32>;
@group(0) @binding(1) var<storage, read> lse: array<f32>;
@group(0) @binding(2) var<storage, read> delta: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  // row = bh * block_rows + (i - row0)
  let row = gid.x + gid.y * params.row_stride;
  if (row >= params.rows) {
    return;
  }
  let i = params.row0 + row % params.block_rows;
  let stat = (row / params.block_rows) * params.seq + i;
  let row_lse = lse[stat];
  let row_delta = delta[stat];
  let visible = min(params.keys, params.position_offset + i + 1u);
  let s_row = params.s_at + row * params.keys;
  let dp_row = params.dp_at + row * params.keys;
  for (var j = 0u; j < visible; j++) {
    let p = exp(scores[s_row + j] - row_lse);
    scores[s_row + j] = p;
    scores[dp_row + j] = p * (scores[dp_row + j] - row_delta);
  }
  for (var j = visible; j < params.keys; j++) {
    scores[s_row + j] = 0.0;
    scores[dp_row + j] = 0.0;
  }
}
