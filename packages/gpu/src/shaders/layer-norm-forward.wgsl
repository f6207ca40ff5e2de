// layer-norm-forward: torch.nn.LayerNorm over the last dimension (biased variance),
//   y = (x - mean) * rsqrt(var + eps) * weight + bias
// One row per workgroup. The variance is taken around the mean in a second pass rather than as
// E[x^2] - mean^2, which cancels catastrophically when |mean| >> std (residual streams drift).
// mean and rstd are kept per row for the backward pass. x and y are elem (f32 or f16 storage);
// the sums, mean, rstd and all arithmetic are f32.
// Each invocation takes LANES columns at a time (one velem: vec4 where cols is a multiple of 4, else
// one element; kernels/lanes.ts declares LANES, velem, vf32 and lane_sum).
//
// Bindings (group 0):
//   0 x: array<velem>      read        [rows, cols / LANES]
//   1 weight: array<vf32>  read        [cols / LANES]
//   2 bias: array<vf32>    read        [cols / LANES] (HAS_BIAS; otherwise any buffer, unread)
//   3 y: array<velem>      read_write  [rows, cols / LANES]
//   4 mean: array<f32>    read_write  [rows]
//   5 rstd: array<f32>    read_write  [rows]
//   6 params: Params      uniform
// Needs shaders/lib/workgroup-sum.wgsl.
// Dispatch: one workgroup of WG per row (row = workgroup_id.x + workgroup_id.y * row_stride).
// Reference: PyTorch, scripts/make_transformer_op_fixtures.py.

override WG: u32 = 128;
override HAS_BIAS: bool = true;

struct Params {
  rows: u32,
  cols: u32,
  eps: f32,
  row_stride: u32,
}

@group(0) @binding(0) var<storage, read> x: array<velem>;
@group(0) @binding(1) var<storage, read> weight: array<vf32>;
@group(0) @binding(2) var<storage, read> bias: array<vf32>;
@group(0) @binding(3) var<storage, read_write> y: array<velem>;
@group(0) @binding(4) var<storage, read_write> mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(6) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * params.row_stride;
  if (row >= params.rows) {
    return;
  }
  let vectors = params.cols / LANES;
  let base = row * vectors;
  let n = f32(params.cols);
  var sum = 0.0;
  for (var c = lid; c < vectors; c += WG) {
    sum += lane_sum(vf32(x[base + c]));
  }
  let mu = workgroup_sum2(lid, vec2<f32>(sum, 0.0)).x / n;
  var squares = 0.0;
  for (var c = lid; c < vectors; c += WG) {
    let d = vf32(x[base + c]) - mu;
    squares += lane_sum(d * d);
  }
  let r = inverseSqrt(workgroup_sum2(lid, vec2<f32>(squares, 0.0)).x / n + params.eps);
  for (var c = lid; c < vectors; c += WG) {
    var v = (vf32(x[base + c]) - mu) * r * weight[c];
    if (HAS_BIAS) {
      v += bias[c];
    }
    y[base + c] = velem(v);
  }
  if (lid == 0u) {
    mean[row] = mu;
    rstd[row] = r;
  }
}
