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
// Overrides and Params: lib/matmul-common.wgsl; bindings, loads, store: lib/matmul-scalar-io.wgsl.
// CPU reference: packages/gpu/src/kernels/matmul.ref.ts

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let m0 = gid.y * ROWS;
  let n0 = gid.x * 4u;
  if (m0 >= params.m || n0 >= params.n) {
    return;
  }
  let batch = gid.z;
  let base_a = params.offset_a + batch * params.stride_a;
  let base_b = params.offset_b + batch * params.stride_b;
  let base_c = params.offset_c + batch * params.stride_c;

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
