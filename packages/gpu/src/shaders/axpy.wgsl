// axpy: dst += alpha * src, elementwise (gradient accumulation, residual adds).
// Storage is elem (f32 or f16); arithmetic is f32.
//
// Bindings (group 0):
//   0 src: array<elem>  read        [size]
//   1 dst: array<elem>  read_write  [size]
//   2 params: Params    uniform
// Dispatch: ceil(size / WG) workgroups of WG over x and y (i = gid.x + gid.y * row_stride).
// Reference: PyTorch (dst + alpha * src), scripts/make_transformer_op_fixtures.py.

override WG: u32 = 256;

struct Params {
  size: u32,
  row_stride: u32,
  alpha: f32,
}

@group(0) @binding(0) var<storage, read> src: array<elem>;
@group(0) @binding(1) var<storage, read_write> dst: array<elem>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row_stride;
  if (i >= params.size) {
    return;
  }
  dst[i] = elem(f32(dst[i]) + params.alpha * f32(src[i]));
}
