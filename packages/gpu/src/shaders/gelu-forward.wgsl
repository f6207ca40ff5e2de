// gelu-forward: the tanh approximation (HF gelu_new, torch gelu(approximate='tanh')),
//   y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
// Storage is elem (f32 or f16); arithmetic is f32. Each invocation takes one velem: LANES = 4
// elements (vec4) where the size allows, else 1; kernels/lanes.ts declares LANES, velem, vf32.
//
// Bindings (group 0):
//   0 x: array<velem>  read        [size / LANES]
//   1 y: array<velem>  read_write  [size / LANES]
//   2 params: Params  uniform
// Dispatch: ceil(size / LANES / WG) workgroups of WG, spread over x and y (i = gid.x + gid.y * row_stride).
// Reference: PyTorch, scripts/make_transformer_op_fixtures.py.

override WG: u32 = 256;

struct Params {
  // Vectors of LANES elements.
  count: u32,
  row_stride: u32,
}

@group(0) @binding(0) var<storage, read> x: array<velem>;
@group(0) @binding(1) var<storage, read_write> y: array<velem>;
@group(0) @binding(2) var<uniform> params: Params;

// 1 + tanh(u) = 2 sigmoid(2u), so y = x sigmoid(2u): no tanh (some implementations return NaN
// for large arguments, others lose the digits of 1 + t near t = -1) and no cancellation.
// x is clamped to +-10 inside u (|u| >= 43 there, where sigmoid(2u) is 0 or 1 to f32
// precision) so x^3 stays finite, and u to +-40 so exp() does.
fn gelu_tanh(v: vf32) -> vf32 {
  let xc = clamp(v, vf32(-10.0), vf32(10.0));
  let u = 0.7978845608028654 * (xc + 0.044715 * xc * xc * xc);
  return v / (1.0 + exp(-2.0 * clamp(u, vf32(-40.0), vf32(40.0))));
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row_stride;
  if (i >= params.count) {
    return;
  }
  y[i] = velem(gelu_tanh(vf32(x[i])));
}
