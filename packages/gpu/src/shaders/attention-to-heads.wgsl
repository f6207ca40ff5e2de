// attention-to-heads: attention activations from the row layout of the projections to one dense
// [rows, head_dim] f32 matrix per (batch, head), the layout attention's matmul path
// (packages/gpu/src/kernels/attention-matmul.ts) multiplies block by block:
//
//   dst[b, h, r, :] = src[b * rows + r, (h / group) * head_dim ..]     h < heads
//
// group = heads / narrow_heads: each kv head repeated for its group's query heads (HF's
// repeat_kv); group = 1 for queries. src is stored as elem (f32, or f16 with the shader-f16
// prelude) and widened to f32.
//
// Bindings (group 0):
//   0 src: array<vec4<elem>>  read        [batch * rows, narrow_heads * head_dim]
//   1 dst: array<vec4<f32>>   read_write  [batch, heads, rows, head_dim]
//   2 params: Params          uniform
// Dispatch: ceil(batch * heads * rows / 64) workgroups of 64 over x and y
// (row = gid.x + gid.y * row_stride), one invocation per row of dst (head_dim / 4 vec4s): the
// index arithmetic (integer divisions, scalarized on the CPU adapters) once per row, not per vec4.

struct Params {
  batch: u32,
  rows: u32,
  heads: u32,
  narrow_heads: u32,
  d4: u32,
  row_stride: u32,
}

@group(0) @binding(0) var<storage, read> src: array<vec4<elem>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  // row = (b * heads + h) * rows + r
  let row = gid.x + gid.y * params.row_stride;
  if (row >= params.batch * params.heads * params.rows) {
    return;
  }
  let d4 = params.d4;
  let r = row % params.rows;
  let bh = row / params.rows;
  let h = bh % params.heads;
  let b = bh / params.heads;
  let group = params.heads / params.narrow_heads;
  let src_at = ((b * params.rows + r) * params.narrow_heads + h / group) * d4;
  let dst_at = row * d4;
  for (var c = 0u; c < d4; c++) {
    dst[dst_at + c] = vec4<f32>(src[src_at + c]);
  }
}
