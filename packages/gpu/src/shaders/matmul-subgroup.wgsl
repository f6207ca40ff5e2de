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
// Bindings (group 0): as matmul.wgsl (lib/matmul-scalar-io.wgsl), overrides and Params from
// lib/matmul-common.wgsl.
// Dispatch: (ceil(N / 32), ceil(M / (WG_Y * ROWS)), batch); workgroup (8, WG_Y).
// CPU reference: packages/gpu/src/kernels/matmul.ref.ts

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let m0 = gid.y * ROWS;
  let n0 = gid.x * 4u;
  let batch = gid.z;
  let base_a = params.offset_a + batch * params.stride_a;
  let base_b = params.offset_b + batch * params.stride_b;
  let base_c = params.offset_c + batch * params.stride_c;

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
