// rms-norm-forward: HF LlamaRMSNorm, y = weight * (x * rsqrt(mean(x^2) + eps)), one row per
// workgroup. rstd keeps 1 / sqrt(mean(x^2) + eps) per row for the backward pass.
// x and y are elem (f32 or f16 storage); the sum, rstd and all arithmetic are f32.
// Each invocation takes LANES columns at a time (one velem: vec4 where cols is a multiple of 4, else
// one element; kernels/lanes.ts declares LANES, velem, vf32 and lane_sum).
//
// Bindings (group 0):
//   0 x: array<velem>      read        [rows, cols / LANES]
//   1 weight: array<vf32>  read        [cols / LANES]
//   2 y: array<velem>      read_write  [rows, cols / LANES]
//   3 rstd: array<f32>    read_write  [rows]
//   4 params: Params      uniform
// Needs shaders/lib/workgroup-sum.wgsl.
// Dispatch: one workgroup of WG per row; rows past the x limit continue along y
// (row = workgroup_id.x + workgroup_id.y * row_stride).
// Reference: PyTorch, scripts/make_transformer_op_fixtures.py (LlamaRMSNorm's formula).

override WG: u32 = 128;

struct Params {
  rows: u32,
  cols: u32,
  eps: f32,
  row_stride: u32,
}

@group(0) @binding(0) var<storage, read> x: array<velem>;
@group(0) @binding(1) var<storage, read> weight: array<vf32>;
@group(0) @binding(2) var<storage, read_write> y: array<velem>;
@group(0) @binding(3) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * params.row_stride;
  if (row >= params.rows) {
    return;
  }
  let n = params.cols / LANES;
  let base = row * n;
  var squares = 0.0;
  for (var c = lid; c < n; c += WG) {
    let v = vf32(x[base + c]);
    squares += lane_sum(v * v);
  }
  let total = workgroup_sum2(lid, vec2<f32>(squares, 0.0)).x;
  let r = inverseSqrt(total / f32(params.cols) + params.eps);
  for (var c = lid; c < n; c += WG) {
    y[base + c] = velem(weight[c] * (vf32(x[base + c]) * r));
  }
  if (lid == 0u) {
    rstd[row] = r;
  }
}
