// gelu-backward: dL/dx of the tanh GELU, u = k (x + c x^3), t = tanh(u), k = sqrt(2/pi), c = 0.044715:
//   grad_input = dy * (0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2))
//              = dy * (s + 2 x s (1 - s) k (1 + 3 c x^2)),  s = sigmoid(2u)
// The sigmoid form keeps 1 - t^2 = 4 s (1 - s) accurate where t is within ulps of +-1 (|x| ~ 3..9);
// 1 - s is computed as e / (1 + e), not by subtraction. Storage is elem (f32 or f16); arithmetic
// is f32. Each invocation takes one velem: LANES = 4
// elements (vec4) where the size allows, else 1; kernels/lanes.ts declares LANES, velem, vf32.
//
// Bindings (group 0):
//   0 x: array<velem>            read        [size / LANES]
//   1 grad_output: array<velem>  read        [size / LANES]
//   2 grad_input: array<velem>   read_write  [size / LANES]
//   3 params: Params            uniform
// Dispatch: ceil(size / LANES / WG) workgroups of WG, spread over x and y (i = gid.x + gid.y * row_stride).
// Reference: PyTorch autograd, scripts/make_transformer_op_fixtures.py.

override WG: u32 = 256;

struct Params {
  // Vectors of LANES elements.
  count: u32,
  row_stride: u32,
}

@group(0) @binding(0) var<storage, read> x: array<velem>;
@group(0) @binding(1) var<storage, read> grad_output: array<velem>;
@group(0) @binding(2) var<storage, read_write> grad_input: array<velem>;
@group(0) @binding(3) var<uniform> params: Params;

// x clamped to +-10 and u to +-40 as in gelu-forward.wgsl: past them s (1 - s) < 1e-34, and
// x^3 and exp() stay finite.
fn gelu_tanh_grad(v: vf32) -> vf32 {
  let xc = clamp(v, vf32(-10.0), vf32(10.0));
  let x2 = xc * xc;
  let u = 0.7978845608028654 * (xc + 0.044715 * x2 * xc);
  let e = exp(-2.0 * clamp(u, vf32(-40.0), vf32(40.0)));
  let s = 1.0 / (1.0 + e);
  let one_minus_s = e / (1.0 + e);
  return s + 2.0 * xc * s * one_minus_s * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x2);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row_stride;
  if (i >= params.count) {
    return;
  }
  grad_input[i] = velem(vf32(grad_output[i]) * gelu_tanh_grad(vf32(x[i])));
}
