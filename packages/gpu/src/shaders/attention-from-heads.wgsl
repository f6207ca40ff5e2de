// attention-from-heads: the inverse of attention-to-heads.wgsl, for the results of attention's
// matmul path (packages/gpu/src/kernels/attention-matmul.ts): from one [rows, head_dim] f32
// matrix per (batch, head) back to the row layout,
//
//   dst[b * rows + r, o * head_dim ..] = sum over g < group of src[b, o * group + g, r, :]   o < narrow_heads
//
// group = heads / narrow_heads: a kv head's gradient sums its group's query heads (the gradient
// of the repeat), in a fixed order; group = 1 copies. Rows r >= valid_rows get 0 (keys no query
// sees, whose rows in src were never written). Sums are f32; dst is stored as elem (f32, or f16
// with the shader-f16 prelude), rounded once.
//
// Bindings (group 0):
//   0 src: array<vec4<f32>>   read        [batch, heads, rows, head_dim]
//   1 dst: array<vec4<elem>>  read_write  [batch * rows, narrow_heads * head_dim]
//   2 params: Params          uniform
// Dispatch: ceil(batch * rows * narrow_heads / 64) workgroups of 64 over x and y
// (slot = gid.x + gid.y * row_stride), one invocation per head_dim-wide slot of dst: the index
// arithmetic once per slot, not per vec4 (as in attention-to-heads.wgsl).

struct Params {
  batch: u32,
  rows: u32,
  heads: u32,
  narrow_heads: u32,
  d4: u32,
  row_stride: u32,
  valid_rows: u32,
}

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<elem>>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  // slot = (b * rows + r) * narrow_heads + o
  let slot = gid.x + gid.y * params.row_stride;
  if (slot >= params.batch * params.rows * params.narrow_heads) {
    return;
  }
  let d4 = params.d4;
  let o = slot % params.narrow_heads;
  let token = slot / params.narrow_heads;
  let r = token % params.rows;
  let b = token / params.rows;
  let group = params.heads / params.narrow_heads;
  let dst_at = slot * d4;
  // Row r of head (b, o * group + g) starts at src_at + g * rows * d4.
  let src_at = ((b * params.heads + o * group) * params.rows + r) * d4;
  let head_stride = params.rows * d4;
  for (var c = 0u; c < d4; c++) {
    var sum = vec4<f32>();
    for (var g = 0u; r < params.valid_rows && g < group; g++) {
      sum += src[src_at + g * head_stride + c];
    }
    dst[dst_at + c] = vec4<elem>(sum);
  }
}
