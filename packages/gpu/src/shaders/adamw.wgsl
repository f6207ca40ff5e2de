// adamw: one torch.optim.AdamW step (single-tensor path) on one parameter tensor, then
// grad = 0 so the next step's micro-batches can accumulate into it:
//   g = grad * grad_scale * clip[0]
//   p *= 1 - lr * weight_decay                 (decoupled weight decay, before the Adam update)
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//   p -= step_size * m / (sqrt(v) / sqrt(1 - beta2^t) + eps),  step_size = lr / (1 - beta1^t)
// The bias corrections are computed on the CPU in double precision, as PyTorch does.
//
// Bindings (group 0):
//   0 param: array<f32>  read_write  [size]
//   1 grad: array<f32>   read_write  [size] (zeroed)
//   2 m: array<f32>      read_write  [size] (first moment, exp_avg)
//   3 v: array<f32>      read_write  [size] (second moment, exp_avg_sq)
//   4 clip: array<f32>   read        [2]: element 0 multiplies the gradient (clip-coefficient.wgsl)
//   5 params: Params     uniform
// Dispatch: ceil(size / WG) workgroups of WG over x and y (i = gid.x + gid.y * row_stride).
// Reference: PyTorch's AdamW, scripts/make_transformer_op_fixtures.py.

override WG: u32 = 256;

struct Params {
  size: u32,
  row_stride: u32,
  decay: f32,
  beta1: f32,
  beta2: f32,
  one_minus_beta1: f32,
  one_minus_beta2: f32,
  step_size: f32,
  bias_correction2_sqrt: f32,
  eps: f32,
  grad_scale: f32,
}

@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read_write> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read> clip: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row_stride;
  if (i >= params.size) {
    return;
  }
  let g = grad[i] * params.grad_scale * clip[0];
  let m1 = m[i] * params.beta1 + params.one_minus_beta1 * g;
  let v1 = v[i] * params.beta2 + params.one_minus_beta2 * g * g;
  let denom = sqrt(v1) / params.bias_correction2_sqrt + params.eps;
  param[i] = param[i] * params.decay - params.step_size * (m1 / denom);
  m[i] = m1;
  v[i] = v1;
  grad[i] = 0.0;
}
