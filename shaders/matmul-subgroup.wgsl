// matmul-subgroup: C[b] = alpha * op(A[b]) * op(B[b])  (+ C[b] when ACCUMULATE), the same contract
// and bindings as matmul.wgsl, for devices with the `subgroups` feature and subgroups of at least
// 8 lanes. Why: in matmul.wgsl the 8 invocations of a workgroup row all load the same 8 values of
// A every step; here each loads one and the others take it with subgroupShuffle. On lavapipe
// (8-lane subgroups on AVX2) that is about 1.5x faster. Assumes, as every implementation does,
// that subgroups are made of consecutive local invocation indices, so with WG_X = 8 (checked by
// the wrapper) each aligned group of 8 lanes is one workgroup row sharing its rows of A.
// Every invocation runs the loop, even past the edge of C (loads are clamped, stores skipped),
// because subgroup operations need all lanes active.
//
// Bindings (group 0): as matmul.wgsl.
// Dispatch: (ceil(N / 32), ceil(M / (WG_Y * ROWS)), batch); workgroup (8, WG_Y).
// CPU reference: packages/gpu/src/kernels/matmul.ref.ts

override WG_X: u32 = 8u;
override WG_Y: u32 = 8u;
override TRANS_A: bool = false;
override TRANS_B: bool = false;
override ACCUMULATE: bool = false;

// Rows of C per invocation (registers); four columns each. Equal to the lanes that share a row of
// the workgroup, so one shuffle round hands every lane all of its rows.
const ROWS = 8u;

struct Params {
  m: u32,
  n: u32,
  k: u32,
  stride_a: u32,
  stride_b: u32,
  stride_c: u32,
  alpha: f32,
}

@group(0) @binding(0) var<storage, read> a: array<elem>;
@group(0) @binding(1) var<storage, read> b: array<elem>;
@group(0) @binding(2) var<storage, read_write> c: array<elem>;
@group(0) @binding(3) var<uniform> params: Params;

// Element (row, k) of op(A) for this batch.
fn load_a(base: u32, row: u32, k: u32) -> f32 {
  if (TRANS_A) {
    return f32(a[base + k * params.m + row]);
  }
  return f32(a[base + row * params.k + k]);
}

// Four consecutive columns col.x..col.w of op(B) at row k.
fn load_b4(base: u32, k: u32, col: vec4<u32>) -> vec4<f32> {
  if (TRANS_B) {
    return vec4<f32>(f32(b[base + col.x * params.k + k]), f32(b[base + col.y * params.k + k]),
                     f32(b[base + col.z * params.k + k]), f32(b[base + col.w * params.k + k]));
  }
  let row = base + k * params.n;
  return vec4<f32>(f32(b[row + col.x]), f32(b[row + col.y]), f32(b[row + col.z]), f32(b[row + col.w]));
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let m0 = gid.y * ROWS;
  let n0 = gid.x * 4u;
  let batch = gid.z;
  let base_a = batch * params.stride_a;
  let base_b = batch * params.stride_b;
  let base_c = batch * params.stride_c;

  let last_row = params.m - 1u;
  let last_col = params.n - 1u;
  let cols = min(vec4<u32>(n0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last_col));
  // This lane loads row m0 + (lane % 8) of A; lane `group + i` holds row m0 + i.
  let my_row = min(m0 + (lane & 7u), last_row);
  let group = lane & ~7u;

  var acc: array<vec4<f32>, ROWS>;
  for (var k = 0u; k < params.k; k++) {
    let bv = load_b4(base_b, k, cols);
    let av = load_a(base_a, my_row, k);
    for (var i = 0u; i < ROWS; i++) {
      acc[i] += subgroupShuffle(av, group + i) * bv;
    }
  }
  if (n0 >= params.n) {
    return;
  }
  for (var i = 0u; i < ROWS; i++) {
    store_row(base_c, m0 + i, n0, acc[i]);
  }
}

fn store_row(base: u32, row: u32, n0: u32, v: vec4<f32>) {
  if (row >= params.m) {
    return;
  }
  let start = base + row * params.n + n0;
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
