// attention-heads: moves attention activations between the row layout of the projections and one
// dense [rows, head_dim] matrix per (batch, head), the layout attention's matmul backward
// (packages/gpu/src/kernels/attention.ts) multiplies block by block.
//
//   TO_HEADS:  dst[b, h, r, :] = src[b * rows + r, (h / group) * head_dim ..]        h < heads
//              (group = heads / narrow_heads: each kv head repeated for its group's query heads,
//              as HF's repeat_kv; group = 1 for queries)
//   otherwise: dst[b * rows + r, o * head_dim ..] = sum over g < group of src[b, o * group + g, r, :]
//              o < narrow_heads (the gradient of that repeat: a kv head's rows summed over its
//              query heads, in a fixed order); rows r >= valid_rows get 0 (keys no query sees,
//              whose rows in src were never written)
//
// Storage is elem (f32 or f16); sums are f32.
//
// Bindings (group 0):
//   0 src: array<vec4<elem>>  read        TO_HEADS: [batch * rows, narrow_heads * head_dim]; else [batch, heads, rows, head_dim]
//   1 dst: array<vec4<elem>>  read_write  the other layout
//   2 params: Params          uniform
// Dispatch: ceil(count / 64) workgroups of 64 over x and y (index = gid.x + gid.y * row_stride),
// one invocation per vec4 of dst: count = batch * rows * (TO_HEADS ? heads : narrow_heads) * d4.

override TO_HEADS: bool = true;

struct Params {
  batch: u32,
  rows: u32,
  heads: u32,
  narrow_heads: u32,
  d4: u32,
  row_stride: u32,
  valid_rows: u32,
}

@group(0) @binding(0) var<storage, read> src: array<vec4<elem>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<elem>>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let index = gid.x + gid.y * params.row_stride;
  let d4 = params.d4;
  let group = params.heads / params.narrow_heads;
  let c = index % d4;
  if (TO_HEADS) {
    if (index >= params.batch * params.heads * params.rows * d4) {
      return;
    }
    // index = ((b * heads + h) * rows + r) * d4 + c
    let r = (index / d4) % params.rows;
    let bh = index / (d4 * params.rows);
    let h = bh % params.heads;
    let b = bh / params.heads;
    dst[index] = src[((b * params.rows + r) * params.narrow_heads + h / group) * d4 + c];
  } else {
    if (index >= params.batch * params.rows * params.narrow_heads * d4) {
      return;
    }
    // index = ((b * rows + r) * narrow_heads + o) * d4 + c
    let o = (index / d4) % params.narrow_heads;
    let token = index / (d4 * params.narrow_heads);
    let r = token % params.rows;
    let b = token / params.rows;
    var sum = vec4<f32>();
    for (var g = 0u; r < params.valid_rows && g < group; g++) {
      sum += vec4<f32>(src[((b * params.heads + o * group + g) * params.rows + r) * d4 + c]);
    }
    dst[index] = vec4<elem>(sum);
  }
}
