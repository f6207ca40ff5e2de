// pointwise-forward: y = f(x) elementwise, f one of relu, silu (swish), tanh and sigmoid: the
// activations of bottleneck adapters' down/up MLPs, of prefix tuning's projection, and UniPELT's
// per-token gates.
//   relu(x) = max(x, 0)     silu(x) = x sigmoid(x)     tanh(x)     sigmoid(x) = 1 / (1 + e^-x)
// params.activation picks f; it equals one of the override constants RELU, SILU, TANH, SIGMOID,
// whose values only packages/gpu/src/kernels/pointwise.ts writes (they have no defaults here). A
// uniform rather than one pipeline per function: every invocation takes the same branch and the
// kernel is bound by memory traffic, so specialising would save little, while one pipeline serves
// all four.
// Storage is elem (f32 or f16); arithmetic is f32. NaN inputs give unspecified results (WGSL lets
// implementations assume floats are finite).
//
// Bindings (group 0):
//   0 x: array<elem>  read        [size]
//   1 y: array<elem>  read_write  [size]
//   2 params: Params  uniform
// Dispatch: ceil(size / WG) workgroups of WG, spread over x and y (i = gid.x + gid.y * row_stride).
// Reference: PyTorch (F.relu, F.silu, torch.tanh, torch.sigmoid), scripts/make_pointwise_fixtures.py.

override WG: u32 = 256;
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
@group(0) @binding(1) var<storage, read_write> y: array<elem>;
@group(0) @binding(2) var<uniform> params: Params;

// relu(-0) = +0 and relu(0) = 0, as max(x, 0) in PyTorch.
fn relu(v: f32) -> f32 {
  return select(0.0, v, v > 0.0);
}

// sigmoid from e = exp(-|v|) <= 1, which never overflows: 1 / (1 + e) for v >= 0, e / (1 + e)
// below, so a very negative v keeps its tiny sigmoid's digits instead of 1 / (1 + inf).
// Its twin is in pointwise-backward.wgsl.
fn sigmoid(v: f32) -> f32 {
  let e = exp(-abs(v));
  return select(e, 1.0, v >= 0.0) / (1.0 + e);
}

fn silu(v: f32) -> f32 {
  return v * sigmoid(v);
}

// Not the tanh builtin: some implementations return NaN for large arguments, and
// (e^2x - 1) / (e^2x + 1) loses the relative precision of small results. Cephes' tanhf: below
// |v| = 0.625 an odd polynomial (relative error ~1e-7), above 1 - 2 / (e^2|v| + 1) with |v|
// clamped to 10, past which tanh is 1 in f32 and e^2|v| would overflow.
fn tanh_f32(v: f32) -> f32 {
  let a = abs(v);
  if (a < 0.625) {
    let z = v * v;
    let p = (((-5.70498872745e-3 * z + 2.06390887954e-2) * z - 5.37397155531e-2) * z + 1.33314422036e-1) * z - 3.33332819422e-1;
    return p * z * v + v;
  }
  let t = 1.0 - 2.0 / (exp(2.0 * min(a, 10.0)) + 1.0);
  return select(-t, t, v >= 0.0);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row_stride;
  if (i >= params.size) {
    return;
  }
  let v = f32(x[i]);
  // The wrapper passes only these four ids.
  var r = 0.0;
  if (params.activation == RELU) {
    r = relu(v);
  } else if (params.activation == SILU) {
    r = silu(v);
  } else if (params.activation == TANH) {
    r = tanh_f32(v);
  } else if (params.activation == SIGMOID) {
    r = sigmoid(v);
  }
  y[i] = elem(r);
}
