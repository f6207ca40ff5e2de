// clip-coefficient: the global gradient norm and torch.nn.utils.clip_grad_norm_'s factor,
//   out[1] = norm = sqrt(sum(partials[0..count))) * grad_scale
//   out[0] = min(1, max_norm / (norm + 1e-6)), or 1 when CLIP is off (max_norm = Infinity)
// grad_scale is the factor adamw.wgsl applies to the raw gradients first (1 / accumulation
// steps), so the norm is that of the gradient the optimizer actually uses. The factor stays on
// the GPU: adamw.wgsl reads out[0], so no step waits on a readback.
//
// Bindings (group 0):
//   0 partials: array<f32>  read        [count] (sum-squares.wgsl)
//   1 out: array<f32>       read_write  [2]
//   2 params: Params        uniform
// Needs shaders/lib/workgroup-sum.wgsl.
// Dispatch: 1 workgroup of WG.
// Reference: PyTorch (torch.nn.utils.clip_grad_norm_), scripts/make_transformer_op_fixtures.py.

override WG: u32 = 64;

struct Params {
  count: u32,
  // A flag rather than an infinite max_norm: WGSL implementations may assume floats are finite.
  clip: u32,
  max_norm: f32,
  grad_scale: f32,
}

@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
  var sum = 0.0;
  for (var i = lid; i < params.count; i += WG) {
    sum += partials[i];
  }
  let total = workgroup_sum2(lid, vec2<f32>(sum, 0.0)).x;
  if (lid == 0u) {
    let norm = sqrt(total) * params.grad_scale;
    out[0] = select(1.0, min(1.0, params.max_norm / (norm + 1e-6)), params.clip != 0u);
    out[1] = norm;
  }
}
