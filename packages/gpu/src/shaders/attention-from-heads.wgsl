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
// Dispatch: ceil(batch * rows * narrow_heads * d4 / 64) workgroups of 64 over x and y
// (index = gid.x + gid.y * row_stride), one invocation per vec4 of dst.

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
  let index = gid.x + gid.y * params.row_stride;
  let d4 = params.d4;
  if (index >= params.batch * params.rows * params.narrow_heads * d4) {
    return;
  }
  // index = ((b * rows + r) * narrow_heads + o) * d4 + c
  let c = index % d4;
  let o = (index / d4) % params.narrow_heads;
  let token = index / (d4 * params.narrow_heads);
  let r = token % params.rows;
  let b = token / params.rows;
  let group = params.heads / params.narrow_heads;
  var sum = vec4<f32>();
  for (var g = 0u; r < params.valid_rows && g < group; g++) {
    sum += src[((b * params.heads + o * group + g) * params.rows + r) * d4 + c];
  }
  dst[index] = vec4<elem>(sum);
}
