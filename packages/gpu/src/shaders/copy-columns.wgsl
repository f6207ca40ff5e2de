// copy-columns: dst[dst_row_offset + r, dst_offset + c] (= or +=) src[src_row_offset + r, src_offset + c] for
// r < rows, c < cols: a column block of one row-major matrix into another (splitting GPT-2's
// fused qkv, merging head outputs, appending to a KV cache; ACCUMULATE for their gradients).
// Storage is elem (f32 or f16); the accumulating add is f32.
//
// Bindings (group 0):
//   0 src: array<elem>  read        [src_row_offset + rows, src_cols]
//   1 dst: array<elem>  read_write  [dst_row_offset + rows, dst_cols]
//   2 params: Params    uniform
// Dispatch: ceil(rows * cols / WG) workgroups of WG over x and y (i = gid.x + gid.y * row_stride).
// Reference: PyTorch slicing, scripts/make_transformer_op_fixtures.py.

override WG: u32 = 256;
override ACCUMULATE: bool = false;

struct Params {
  rows: u32,
  cols: u32,
  src_cols: u32,
  src_offset: u32,
  dst_cols: u32,
  dst_offset: u32,
  dst_row_offset: u32,
  src_row_offset: u32,
  row_stride: u32,
}

@group(0) @binding(0) var<storage, read> src: array<elem>;
@group(0) @binding(1) var<storage, read_write> dst: array<elem>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row_stride;
  if (i >= params.rows * params.cols) {
    return;
  }
  let r = i / params.cols;
  let c = i - r * params.cols;
  let d = (params.dst_row_offset + r) * params.dst_cols + params.dst_offset + c;
  var v = f32(src[(params.src_row_offset + r) * params.src_cols + params.src_offset + c]);
  if (ACCUMULATE) {
    v += f32(dst[d]);
  }
  dst[d] = elem(v);
}
