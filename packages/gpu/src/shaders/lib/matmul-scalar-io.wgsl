// Shared by matmul.wgsl and matmul-subgroup.wgsl: scalar bindings, operand loads and the guarded
// store. Loads take clamped indices; stores skip anything past the edge of C.
// Needs lib/matmul-common.wgsl before it.

@group(0) @binding(0) var<storage, read> a: array<elem>;
@group(0) @binding(1) var<storage, read> b: array<elem>;
@group(0) @binding(2) var<storage, read_write> c: array<elem>;
@group(0) @binding(3) var<uniform> params: Params;

// Element (row, k) of op(A) for this batch.
fn load_a(base: u32, row: u32, k: u32) -> f32 {
  if (TRANS_A) {
    return f32(a[base + k * params.ld_a + row]);
  }
  return f32(a[base + row * params.ld_a + k]);
}

// Four consecutive columns col.x..col.w of op(B) at row k.
fn load_b4(base: u32, k: u32, col: vec4<u32>) -> vec4<f32> {
  if (TRANS_B) {
    return vec4<f32>(f32(b[base + col.x * params.ld_b + k]), f32(b[base + col.y * params.ld_b + k]),
                     f32(b[base + col.z * params.ld_b + k]), f32(b[base + col.w * params.ld_b + k]));
  }
  let row = base + k * params.ld_b;
  return vec4<f32>(f32(b[row + col.x]), f32(b[row + col.y]), f32(b[row + col.z]), f32(b[row + col.w]));
}

fn store_row(base: u32, row: u32, n0: u32, v: vec4<f32>) {
  if (row >= params.m) {
    return;
  }
  let start = base + row * params.ld_c + n0;
  for (var j = 0u; j < 4u; j++) {
    if (n0 + j < params.n) {
      var value = params.alpha * v[j];
      if (ACCUMULATE) {
        value += f32(c[start + j]);
      }
      c[start + j] = elem(value);
    }
  }
}
