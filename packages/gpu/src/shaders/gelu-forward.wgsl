// gelu-forward: the tanh approximation (HF gelu_new, torch gelu(approximate='tanh')),
//   y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
// Storage is elem (f32 or f16); arithmetic is f32.
//
// Bindings (group 0):
//   0 x: array<elem>  read        [size]
//   1 y: array<elem>  read_write  [size]
//   2 params: Params  uniform
// Dispatch: ceil(size / WG) workgroups of WG, spread over x and y (i = gid.x + gid.y * row_stride).
// Reference: PyTorch, scripts/make_transformer_op_fixtures.py.

override WG: u32 = 256;

struct Params {
  size: u32,
  row_stride: u32,
}

@group(0) @binding(0) var<storage, read> x: array<elem>;
@group(0) @binding(1) var<storage, read_write> y: array<elem>;
@group(0) @binding(2) var<uniform> params: Params;

// 1 + tanh(u) = 2 sigmoid(2u), so y = x sigmoid(2u): no tanh (some implementations return NaN
// for large arguments, others lose the digits of 1 + t near t = -1) and no cancellation.
// x is clamped to +-10 inside u (|u| >= 43 there, where sigmoid(2u) is 0 or 1 to f32
// precision) so x^3 stays finite, and u to +-40 so exp() does.
fn gelu_tanh(v: f32) -> f32 {
  let xc = clamp(v, -10.0, 10.0);
  let u = 0.7978845608028654 * (xc + 0.044715 * xc * xc * xc);
  return v / (1.0 + exp(-2.0 * clamp(u, -40.0, 40.0)));
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row_stride;
  if (i >= params.size) {
    return;
  }
  y[i] = elem(gelu_tanh(f32(x[i])));
}
