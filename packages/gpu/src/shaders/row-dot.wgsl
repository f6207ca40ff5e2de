// row-dot: out[r * out_stride + out_offset] = (ACCUMULATE ? that : 0) + sum over c of a[r, c] * b[r, c].
// A per-row (per-token) dot product: the gradient of a per-token gate g in y' = g * y is
// sum over columns of gy * y, one value per token (UniPELT). a and b are elem (f32 or f16 storage),
// out f32, one column of an f32 [rows, out_stride] tensor; every product and sum is f32.
//
// One workgroup per row, so each output is written once, without atomics. Invocation l sums
// columns l, l + WG, l + 2 WG, ... in order, then workgroup_sum2 (shaders/lib/workgroup-sum.wgsl)
// combines the WG partial sums in a fixed pairwise tree. The order depends only on WG (fixed when
// the pipeline is created), never on scheduling: the result is deterministic.
//
// Bindings (group 0):
//   0 a: array<elem>    read        [rows, cols]
//   1 b: array<elem>    read        [rows, cols]
//   2 out: array<f32>   read_write  [rows, out_stride]; column out_offset is written
//   3 params: Params    uniform
// Dispatch: rows workgroups of WG over x and y (row = wid.x + wid.y * row_stride); WG is a power
// of two.
// Reference: PyTorch ((a * b).sum(1)), scripts/make_vector_scale_fixtures.py.

override WG: u32 = 64;
override ACCUMULATE: bool = false;

struct Params {
  rows: u32,
  cols: u32,
  row_stride: u32,
  out_stride: u32,
  out_offset: u32,
}

@group(0) @binding(0) var<storage, read> a: array<elem>;
@group(0) @binding(1) var<storage, read> b: array<elem>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  // Uniform per workgroup, so the early return keeps workgroup_sum2's barriers in uniform control flow.
  let r = wid.x + wid.y * params.row_stride;
  if (r >= params.rows) {
    return;
  }
  let cols = params.cols;
  let base = r * cols;
  var sum = 0.0;
  for (var c = lid; c < cols; c += WG) {
    sum += f32(a[base + c]) * f32(b[base + c]);
  }
  let total = workgroup_sum2(lid, vec2<f32>(sum, 0.0)).x;
  if (lid == 0u) {
    let o = r * params.out_stride + params.out_offset;
    var v = total;
    if (ACCUMULATE) {
      v = out[o] + total;
    }
    out[o] = v;
  }
}
