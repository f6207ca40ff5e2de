// cast: dst[i] (= or +=) src[i], converted between f32 and f16 in either direction, or between
// equal types (a copy). Used to keep f32 master weights and their f16 copies in sync (f32 -> f16
// after each optimizer step) and to add f16 gradients into f32 ones (ACCUMULATE).
// The two element types are not elem: a one-line snippet before this file names them,
// `alias src_elem = f32; alias dst_elem = f16;` (castKernel in packages/gpu/src/kernels/elementwise.ts),
// and the kernel is compiled with elem f16 whenever either side is f16, for its `enable f16;`.
// The value and the add are f32. WGSL lets an f32 -> f16 conversion round to either neighbour;
// |x| >= 65536 becomes +-inf, and 65504 < |x| < 65536 either inf or +-65504.
//
// Bindings (group 0):
//   0 src: array<src_elem>  read        [size]
//   1 dst: array<dst_elem>  read_write  [size]
//   2 params: Params        uniform
// Dispatch: ceil(size / WG) workgroups of WG over x and y (i = gid.x + gid.y * row_stride).
// Reference: PyTorch (.half(), .float(), and the f32 add), scripts/make_transformer_op_fixtures.py.

override WG: u32 = 256;
override ACCUMULATE: bool = false;

struct Params {
  size: u32,
  row_stride: u32,
}

@group(0) @binding(0) var<storage, read> src: array<src_elem>;
@group(0) @binding(1) var<storage, read_write> dst: array<dst_elem>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row_stride;
  if (i >= params.size) {
    return;
  }
  var v = f32(src[i]);
  if (ACCUMULATE) {
    v += f32(dst[i]);
  }
  dst[i] = dst_elem(v);
}
