// scale-columns: dst[r, c] = (ACCUMULATE ? dst[r, c] : 0) + src[r, c] * vector[c]. IA3's learned
// per-column scaling: the forward (y * l), and the backward (gy * l, or gradInput += g * l).
// src and dst are elem (f32 or f16 storage), the vector f32; the arithmetic is f32 and dst is
// rounded to elem once, on the store.
//
// Bindings (group 0):
//   0 src: array<elem>     read        [rows, cols]
//   1 vector: array<f32>   read        [cols]
//   2 dst: array<elem>     read_write  [rows, cols]
//   3 params: Params       uniform
// Dispatch: ceil(rows * cols / WG) workgroups of WG over x and y (i = gid.x + gid.y * row_stride).
// Reference: scaleColumnsRef (packages/gpu/src/kernels/vector-scale.ref.ts); goldens from
// PyTorch, scripts/make_vector_scale_fixtures.py.

override WG: u32 = 256;
override ACCUMULATE: bool = false;

struct Params {
  size: u32,
  cols: u32,
  row_stride: u32,
}

@group(0) @binding(0) var<storage, read> src: array<elem>;
@group(0) @binding(1) var<storage, read> vector: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<elem>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row_stride;
  if (i >= params.size) {
    return;
  }
  var v = f32(src[i]) * vector[i % params.cols];
  if (ACCUMULATE) {
    v += f32(dst[i]);
  }
  dst[i] = elem(v);
}
