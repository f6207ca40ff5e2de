// swiglu-backward: gradients of out = silu(gate) * up,
//   grad_gate = dy * up * s * (1 + g * (1 - s)),  s = sigmoid(g)
//   grad_up   = dy * g * s
//
// Bindings (group 0):
//   0 gate: array<f32>         read        [size]
//   1 up: array<f32>           read        [size]
//   2 grad_output: array<f32>  read        [size]
//   3 grad_gate: array<f32>    read_write  [size]
//   4 grad_up: array<f32>      read_write  [size]
//   5 params: Params           uniform
// Dispatch: ceil(size / WG) workgroups of WG, spread over x and y (i = gid.x + gid.y * row_stride).
// Reference: PyTorch autograd, scripts/make_transformer_op_fixtures.py.

override WG: u32 = 256;

struct Params {
  size: u32,
  row_stride: u32,
}

@group(0) @binding(0) var<storage, read> gate: array<f32>;
@group(0) @binding(1) var<storage, read> up: array<f32>;
@group(0) @binding(2) var<storage, read> grad_output: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad_gate: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad_up: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

// Clamped as in swiglu-forward: exp() stays finite everywhere.
fn sigmoid(v: f32) -> f32 {
  return 1.0 / (1.0 + exp(-clamp(v, -80.0, 80.0)));
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row_stride;
  if (i >= params.size) {
    return;
  }
  let g = gate[i];
  let dy = grad_output[i];
  let s = sigmoid(g);
  grad_gate[i] = dy * up[i] * s * (1.0 + g * (1.0 - s));
  grad_up[i] = dy * g * s;
}
