// swiglu-backward: gradients of out = silu(gate) * up,
//   grad_gate = dy * up * s * (1 + g * (1 - s)),  s = sigmoid(g)
//   grad_up   = dy * g * s
// Storage is elem (f32 or f16); arithmetic is f32.
//
// Bindings (group 0):
//   0 gate: array<elem>         read        [size]
//   1 up: array<elem>           read        [size]
//   2 grad_output: array<elem>  read        [size]
//   3 grad_gate: array<elem>    read_write  [size]
//   4 grad_up: array<elem>      read_write  [size]
//   5 params: Params            uniform
// Dispatch: ceil(size / WG) workgroups of WG, spread over x and y (i = gid.x + gid.y * row_stride).
// Reference: PyTorch autograd, scripts/make_transformer_op_fixtures.py.

override WG: u32 = 256;

struct Params {
  size: u32,
  row_stride: u32,
}

@group(0) @binding(0) var<storage, read> gate: array<elem>;
@group(0) @binding(1) var<storage, read> up: array<elem>;
@group(0) @binding(2) var<storage, read> grad_output: array<elem>;
@group(0) @binding(3) var<storage, read_write> grad_gate: array<elem>;
@group(0) @binding(4) var<storage, read_write> grad_up: array<elem>;
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
  let g = f32(gate[i]);
  let dy = f32(grad_output[i]);
  let s = sigmoid(g);
  grad_gate[i] = elem(dy * f32(up[i]) * s * (1.0 + g * (1.0 - s)));
  grad_up[i] = elem(dy * g * s);
}
