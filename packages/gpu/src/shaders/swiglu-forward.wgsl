// swiglu-forward: out = silu(gate) * up, silu(g) = g * sigmoid(g) (LlamaMLP's act_fn(gate) * up).
// Storage is elem (f32 or f16); arithmetic is f32. Each invocation takes one velem: LANES = 4
// elements (vec4) where the size allows, else 1; kernels/lanes.ts declares LANES, velem, vf32.
//
// Bindings (group 0):
//   0 gate: array<velem>  read        [size / LANES]
//   1 up: array<velem>    read        [size / LANES]
//   2 out: array<velem>   read_write  [size / LANES]
//   3 params: Params     uniform
// Dispatch: ceil(size / LANES / WG) workgroups of WG, spread over x and y (i = gid.x + gid.y * row_stride).
// Reference: PyTorch (F.silu(gate) * up), scripts/make_transformer_op_fixtures.py.

override WG: u32 = 256;

struct Params {
  // Vectors of LANES elements.
  count: u32,
  row_stride: u32,
}

@group(0) @binding(0) var<storage, read> gate: array<velem>;
@group(0) @binding(1) var<storage, read> up: array<velem>;
@group(0) @binding(2) var<storage, read_write> out: array<velem>;
@group(0) @binding(3) var<uniform> params: Params;

// exp(88) is the last finite f32; clamping keeps exp() finite on implementations that return
// NaN rather than inf past it, and sigmoid is already 0 or 1 to f32 precision there.
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
  out[i] = velem(g * sigmoid(g) * vf32(up[i]));
}
