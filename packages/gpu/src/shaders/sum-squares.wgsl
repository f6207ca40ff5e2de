// sum-squares: partials[slot] = sum of x[i]^2 over one tensor (one parameter's gradient), the
// per-tensor term of the global gradient norm. One workgroup strides over the tensor and
// reduces pairwise; LoRA gradients are small enough that one workgroup is not the bottleneck,
// and one slot per tensor keeps the result independent of the dispatch order.
//
// Bindings (group 0):
//   0 x: array<f32>         read        [size]
//   1 partials: array<f32>  read_write  [> slot]
//   2 params: Params        uniform
// Needs shaders/lib/workgroup-sum.wgsl.
// Dispatch: 1 workgroup of WG.
// Reference: PyTorch (torch.nn.utils.clip_grad_norm_), scripts/make_transformer_op_fixtures.py.

override WG: u32 = 256;

struct Params {
  size: u32,
  slot: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> partials: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
  var squares = 0.0;
  for (var i = lid; i < params.size; i += WG) {
    let g = x[i];
    squares += g * g;
  }
  let total = workgroup_sum2(lid, vec2<f32>(squares, 0.0)).x;
  if (lid == 0u) {
    partials[params.slot] = total;
  }
}
