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
// Dispatch: ceil(batch * heads * rows * d4 / 64) workgroups of 64 over x and y
// (index = gid.x + gid.y * row_stride), one invocation per vec4 of dst.

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
  let index = gid.x + gid.y * params.row_stride;
  let d4 = params.d4;
  if (index >= params.batch * params.heads * params.rows * d4) {
    return;
  }
  // index = ((b * heads + h) * rows + r) * d4 + c
  let c = index % d4;
  let r = (index / d4) % params.rows;
  let bh = index / (d4 * params.rows);
  let h = bh % params.heads;
  let b = bh / params.heads;
  let group = params.heads / params.narrow_heads;
  dst[index] = vec4<f32>(src[((b * params.rows + r) * params.narrow_heads + h / group) * d4 + c]);
}
