// swiglu-forward: out = silu(gate) * up, silu(g) = g * sigmoid(g) (LlamaMLP's act_fn(gate) * up).
// Storage is elem (f32 or f16); arithmetic is f32.
//
// Bindings (group 0):
//   0 gate: array<elem>  read        [size]
//   1 up: array<elem>    read        [size]
//   2 out: array<elem>   read_write  [size]
//   3 params: Params     uniform
// Dispatch: ceil(size / WG) workgroups of WG, spread over x and y (i = gid.x + gid.y * row_stride).
// Reference: PyTorch (F.silu(gate) * up), scripts/make_transformer_op_fixtures.py.

override WG: u32 = 256;

struct Params {
  size: u32,
  row_stride: u32,
}

@group(0) @binding(0) var<storage, read> gate: array<elem>;
@group(0) @binding(1) var<storage, read> up: array<elem>;
@group(0) @binding(2) var<storage, read_write> out: array<elem>;
@group(0) @binding(3) var<uniform> params: Params;

// exp(88) is the last finite f32; clamping keeps exp() finite on implementations that return
// NaN rather than inf past it, and sigmoid is already 0 or 1 to f32 precision there.
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
  out[i] = elem(g * sigmoid(g) * f32(up[i]));
}
