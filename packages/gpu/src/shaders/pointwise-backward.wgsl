// pointwise-backward: grad_input (= or += with ACCUMULATE) grad_output * f'(x), elementwise, for
// the f of pointwise-forward.wgsl:
//   relu'(x) = 1 for x > 0, else 0 (relu'(0) = 0, as PyTorch's threshold_backward)
//   silu'(x) = s (1 + x (1 - s)),  s = sigmoid(x)
//   tanh'(x) = 1 - tanh(x)^2 = 4 e / (1 + e)^2,  e = exp(-2 |x|)
//   sigmoid'(x) = s (1 - s) = e / (1 + e)^2,  e = exp(-|x|)
// The tanh and sigmoid forms do not cancel where tanh(x) is within ulps of +-1 or sigmoid(x) of 1
// (PyTorch's 1 - y^2 and y (1 - y) from its float32 y keep only a few bits there); e <= 1, so
// nothing overflows, and far out both forms are 0 to f32 precision. params.activation picks f as
// in the forward (override constants RELU, SILU, TANH, SIGMOID set by
// packages/gpu/src/kernels/pointwise.ts).
// Storage is elem (f32 or f16); arithmetic is f32, including the accumulating add, and the result
// is rounded to elem once.
//
// Bindings (group 0):
//   0 x: array<elem>            read        [size]  (the forward's input)
//   1 grad_output: array<elem>  read        [size]
//   2 grad_input: array<elem>   read_write  [size]
//   3 params: Params            uniform
// Dispatch: ceil(size / WG) workgroups of WG, spread over x and y (i = gid.x + gid.y * row_stride).
// Reference: PyTorch autograd, scripts/make_pointwise_fixtures.py.

override WG: u32 = 256;
override ACCUMULATE: bool = false;
override RELU: u32;
override SILU: u32;
override TANH: u32;
override SIGMOID: u32;

struct Params {
  size: u32,
  row_stride: u32,
  activation: u32,
}

@group(0) @binding(0) var<storage, read> x: array<elem>;
@group(0) @binding(1) var<storage, read> grad_output: array<elem>;
@group(0) @binding(2) var<storage, read_write> grad_input: array<elem>;
@group(0) @binding(3) var<uniform> params: Params;

fn relu_grad(v: f32) -> f32 {
  return select(0.0, 1.0, v > 0.0);
}

// s and 1 - s from e = exp(-|v|) as in pointwise-forward.wgsl's silu; 1 - s is e / (1 + e) or
// 1 / (1 + e), never a subtraction.
fn silu_grad(v: f32) -> f32 {
  let e = exp(-abs(v));
  let positive = v >= 0.0;
  let s = select(e, 1.0, positive) / (1.0 + e);
  let one_minus_s = select(1.0, e, positive) / (1.0 + e);
  return s * (1.0 + v * one_minus_s);
}

fn tanh_grad(v: f32) -> f32 {
  let e = exp(-2.0 * abs(v));
  let d = 1.0 + e;
  return 4.0 * e / (d * d);
}

// s (1 - s) is the same e / (1 + e)^2 on both sides of 0 (sigmoid is 1 / (1 + e) or e / (1 + e)).
fn sigmoid_grad(v: f32) -> f32 {
  let e = exp(-abs(v));
  let d = 1.0 + e;
  return e / (d * d);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row_stride;
  if (i >= params.size) {
    return;
  }
  let v = f32(x[i]);
  // The wrapper passes only these four ids.
  var d = 0.0;
  if (params.activation == RELU) {
    d = relu_grad(v);
  } else if (params.activation == SILU) {
    d = silu_grad(v);
  } else if (params.activation == TANH) {
    d = tanh_grad(v);
  } else if (params.activation == SIGMOID) {
    d = sigmoid_grad(v);
  }
  var g = f32(grad_output[i]) * d;
  if (ACCUMULATE) {
    g += f32(grad_input[i]);
  }
  grad_input[i] = elem(g);
}
