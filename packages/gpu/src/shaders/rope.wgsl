// rope: rotary position embedding applied in place, HF transformers' rotate_half convention.
// For each row (token), head and j < half = head_dim / 2, with p = (row % seq_len) + position_offset:
//   x'[j]        = x[j] cos(p, j) - x[j + half] sin(p, j)
//   x'[j + half] = x[j + half] cos(p, j) + x[j] sin(p, j)
// `sign` = -1 rotates by -angle (R^T), which is RoPE's backward: grad_in = R^T grad_out.
// x is stored as `elem` (f32, or f16 with the shader-f16 prelude); the rotation is computed in f32
// and rounded to elem once on the store. The tables are always f32. Each invocation rotates LANES
// consecutive pairs (j .. j + LANES - 1) as one velem: 4 (vec4) where half is a multiple of 4, else
// 1; kernels/lanes.ts declares LANES, velem and vf32.
//
// Bindings (group 0):
//   0 x: array<velem>     read_write  [rows, heads * head_dim / LANES], rotated in place
//   1 cos_t: array<vf32>  read        [max_positions, half / LANES] (from ropeTables on the CPU)
//   2 sin_t: array<vf32>  read        [max_positions, half / LANES]
//   3 params: Params      uniform
// Dispatch: ceil(rows * heads * half / LANES / 64) workgroups of 64 along x (rows along y past the
// limit, index = x + y * row_stride); one invocation per LANES rotated pairs.
// Reference: PyTorch apply_rotary_pos_emb (scripts/make_attention_fixtures.py).

struct Params {
  rows: u32,
  heads: u32,
  // Vectors of LANES pairs in half a head.
  half_vectors: u32,
  seq_len: u32,
  position_offset: u32,
  row_stride: u32,
  sign: f32,
}

@group(0) @binding(0) var<storage, read_write> x: array<velem>;
@group(0) @binding(1) var<storage, read> cos_t: array<vf32>;
@group(0) @binding(2) var<storage, read> sin_t: array<vf32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = gid.x + gid.y * params.row_stride;
  let half = params.half_vectors;
  if (n >= params.rows * params.heads * half) {
    return;
  }
  // Integer division is slow on the CPU adapters (no vector divide); with LANES = 4 there is a
  // quarter as much of it.
  let j = n % half;
  let row_head = n / half;
  let row = row_head / params.heads;
  let position = row % params.seq_len + params.position_offset;
  let c = cos_t[position * half + j];
  let s = sin_t[position * half + j] * params.sign;
  // Row-major [rows, heads * head_dim]: (row, head) starts at row_head * head_dim.
  let base = row_head * 2u * half + j;
  let x0 = vf32(x[base]);
  let x1 = vf32(x[base + half]);
  x[base] = velem(x0 * c - x1 * s);
  x[base + half] = velem(x1 * c + x0 * s);
}
