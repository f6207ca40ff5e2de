// swiglu-backward: gradients of out = silu(gate) * up,
//   grad_gate = dy * up * s * (1 + g * (1 - s)),  s = sigmoid(g)
//   grad_up   = dy * g * s
// Storage is elem (f32 or f16); arithmetic is f32. Each invocation takes one velem: LANES = 4
// elements (vec4) where the size allows, else 1; kernels/lanes.ts declares LANES, velem, vf32.
//
// Bindings (group 0):
//   0 gate: array<velem>         read        [size / LANES]
//   1 up: array<velem>           read        [size / LANES]
//   2 grad_output: array<velem>  read        [size / LANES]
//   3 grad_gate: array<velem>    read_write  [size / LANES]
//   4 grad_up: array<velem>      read_write  [size / LANES]
//   5 params: Params            uniform
// Dispatch: ceil(size / LANES / WG) workgroups of WG, spread over x and y (i = gid.x + gid.y * row_stride).
// Reference: PyTorch autograd, scripts/make_transformer_op_fixtures.py.

override WG: u32 = 256;

struct Params {
  // Vectors of LANES elements.
  count: u32,
  row_stride: u32,
}

@group(0) @binding(0) var<storage, read> gate: array<velem>;
@group(0) @binding(1) var<storage, read> up: array<velem>;
@group(0) @binding(2) var<storage, read> grad_output: array<velem>;
@group(0) @binding(3) var<storage, read_write> grad_gate: array<velem>;
@group(0) @binding(4) var<storage, read_write> grad_up: array<velem>;
@group(0) @binding(5) var<uniform> params: Params;

// Clamped as in swiglu-forward: exp() stays finite everywhere.
fn sigmoid(v: vf32) -> vf32 {
  return 1.0 / (1.0 + exp(-clamp(v, vf32(-80.0), vf32(80.0))));
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row_stride;
  if (i >= params.count) {
    return;
  }
  let g = vf32(gate[i]);
  let dy = vf32(grad_output[i]);
  let s = sigmoid(g);
  grad_gate[i] = velem(dy * vf32(up[i]) * s * (1.0 + g * (1.0 - s)));
  grad_up[i] = velem(dy * g * s);
}
