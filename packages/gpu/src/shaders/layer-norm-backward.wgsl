// layer-norm-backward: dL/dx of torch.nn.LayerNorm with weight and bias frozen:
//   xhat = (x - mean) * r,  g = dy * w,  dx = r * (g - mean(g) - xhat * mean(g * xhat))
// One row per workgroup; mean and r come from layer-norm-forward. ACCUMULATE adds into
// grad_input (the residual stream already holds the other branch's gradient). x, grad_output and
// grad_input are elem (f32 or f16 storage); the sums and all arithmetic are f32.
// Each invocation takes LANES columns at a time (one velem: vec4 where cols is a multiple of 4, else
// one element; kernels/lanes.ts declares LANES, velem, vf32 and lane_sum).
//
// Bindings (group 0):
//   0 x: array<velem>           read        [rows, cols / LANES]
//   1 weight: array<vf32>       read        [cols / LANES]
//   2 mean: array<f32>          read        [rows]
//   3 rstd: array<f32>          read        [rows]
//   4 grad_output: array<velem> read        [rows, cols / LANES]
//   5 grad_input: array<velem>  read_write  [rows, cols / LANES]
//   6 params: Params            uniform
// Needs shaders/lib/workgroup-sum.wgsl.
// Dispatch: one workgroup of WG per row (row = workgroup_id.x + workgroup_id.y * row_stride).
// Reference: PyTorch autograd, scripts/make_transformer_op_fixtures.py.

override WG: u32 = 128;
override ACCUMULATE: bool = false;

struct Params {
  rows: u32,
  cols: u32,
  row_stride: u32,
}

@group(0) @binding(0) var<storage, read> x: array<velem>;
@group(0) @binding(1) var<storage, read> weight: array<vf32>;
@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> rstd: array<f32>;
@group(0) @binding(4) var<storage, read> grad_output: array<velem>;
@group(0) @binding(5) var<storage, read_write> grad_input: array<velem>;
@group(0) @binding(6) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * params.row_stride;
  if (row >= params.rows) {
    return;
  }
  let n = params.cols / LANES;
  let base = row * n;
  let mu = mean[row];
  let r = rstd[row];
  var sums = vec2<f32>(0.0);
  for (var c = lid; c < n; c += WG) {
    let g = vf32(grad_output[base + c]) * weight[c];
    sums += vec2<f32>(lane_sum(g), lane_sum(g * ((vf32(x[base + c]) - mu) * r)));
  }
  let means = workgroup_sum2(lid, sums) / f32(params.cols);
  for (var c = lid; c < n; c += WG) {
    let i = base + c;
    let xhat = (vf32(x[i]) - mu) * r;
    var dx = r * (vf32(grad_output[i]) * weight[c] - means.x - xhat * means.y);
    if (ACCUMULATE) {
      dx += vf32(grad_input[i]);
    }
    grad_input[i] = velem(dx);
  }
}
