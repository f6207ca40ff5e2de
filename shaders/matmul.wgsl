// matmul: C[b] = alpha * op(A[b]) * op(B[b])  (+ C[b] when ACCUMULATE)
//
// Bindings (group 0):
//   0 a: array<elem>  read        A, logical [M, K]; stored [M, K], or [K, M] when TRANS_A
//   1 b: array<elem>  read        B, logical [K, N]; stored [K, N], or [N, K] when TRANS_B
//   2 c: array<elem>  read_write  C, [M, N]
//   3 params: Params  uniform     sizes, per-batch strides (0 broadcasts an operand), alpha
// `elem` is f32 or f16 (prelude); products accumulate in f32 either way.
// Dispatch: (ceil(N / (WG_X * 4)), ceil(M / (WG_Y * ROWS)), batch); workgroup (WG_X, WG_Y).
// Each invocation owns a ROWS x 4 block of C held in registers (vec4 rows); loads past the
// edge are clamped to the last row/column and their results never stored, so any M, N, K works.
// CPU reference: packages/gpu/src/kernels/matmul.ref.ts

override WG_X: u32 = 8u;
override WG_Y: u32 = 8u;
override TRANS_A: bool = false;
override TRANS_B: bool = false;
override ACCUMULATE: bool = false;

// Rows of C per invocation (registers); four columns each.
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
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let m0 = gid.y * ROWS;
  let n0 = gid.x * 4u;
  if (m0 >= params.m || n0 >= params.n) {
    return;
  }
  let batch = gid.z;
  let base_a = batch * params.stride_a;
  let base_b = batch * params.stride_b;
  let base_c = batch * params.stride_c;

  let last_row = params.m - 1u;
  let last_col = params.n - 1u;
  let cols = vec4<u32>(n0, min(n0 + 1u, last_col), min(n0 + 2u, last_col), min(n0 + 3u, last_col));
  var rows: array<u32, ROWS>;
  for (var i = 0u; i < ROWS; i++) {
    rows[i] = min(m0 + i, last_row);
  }

  var acc: array<vec4<f32>, ROWS>;
  for (var k = 0u; k < params.k; k++) {
    let bv = load_b4(base_b, k, cols);
    for (var i = 0u; i < ROWS; i++) {
      acc[i] += load_a(base_a, rows[i], k) * bv;
    }
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
