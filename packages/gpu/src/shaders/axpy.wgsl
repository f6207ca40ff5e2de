// axpy: dst += alpha * src, elementwise (gradient accumulation, residual adds).
// Storage is elem (f32 or f16); arithmetic is f32. Each invocation takes one velem: LANES = 4
// elements (vec4) where the size allows, else 1; kernels/lanes.ts declares LANES, velem, vf32.
//
// Bindings (group 0):
//   0 src: array<velem>  read        [size / LANES]
//   1 dst: array<velem>  read_write  [size / LANES]
//   2 params: Params     uniform
// Dispatch: ceil(size / LANES / WG) workgroups of WG over x and y (i = gid.x + gid.y * row_stride).
// Reference: PyTorch (dst + alpha * src), scripts/make_transformer_op_fixtures.py.

override WG: u32 = 256;

struct Params {
  // Vectors of LANES elements.
  count: u32,
  row_stride: u32,
  alpha: f32,
}

@group(0) @binding(0) var<storage, read> src: array<velem>;
@group(0) @binding(1) var<storage, read_write> dst: array<velem>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row_stride;
  if (i >= params.count) {
    return;
  }
  dst[i] = velem(vf32(dst[i]) + params.alpha * vf32(src[i]));
}
