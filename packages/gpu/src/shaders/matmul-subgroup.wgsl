// matmul-subgroup: C[b] = alpha * op(A[b]) * op(B[b])  (+ C[b] when ACCUMULATE), the same contract
// and bindings as matmul.wgsl, for devices with the `subgroups` feature and subgroups of at least
// 8 lanes. Each aligned group of 8 lanes (one workgroup row, WG_X = 8, checked by the wrapper)
// computes ROW_BLOCKS x 8 rows of C by 32 columns, 4 columns per lane: every step of K, each lane
// loads ROW_BLOCKS values of A (one row of each 8-row block) and its 4 values of B, and takes the
// other lanes' rows of A through the subgroup.
// Why: on lavapipe (8-lane subgroups on AVX2) every load whose address differs across lanes is a
// gather, and gathers, not multiply-adds, set the speed. Per step of K a lane does
// 32 x ROW_BLOCKS multiply-adds for 4 + ROW_BLOCKS gathers: ROW_BLOCKS = 4 ran the training
// step's shapes (256 rows) about 1.6x faster than ROW_BLOCKS = 1 (the wrapper takes 1 for M < 32,
// where most of a 32-row block would be wasted).
// How a lane takes another's row: with subgroups of exactly 8 lanes (EIGHT_LANES, set by the
// wrapper from the adapter's subgroup sizes) the group is the whole subgroup, and each of the 8
// rows is a subgroupBroadcast from a constant lane; otherwise a subgroupShuffle from lane
// `group + i`, which any subgroup size of 8 or more can serve. On lavapipe a broadcast from a
// constant lane is an extract and a splat, where a shuffle by a computed lane is not: the
// broadcast form ran the step's products 1.16-1.32x and the LM head's 1.10x as fast (issue 22).
// Assumes, as every implementation does, that subgroups are made of consecutive local invocation
// indices. Every invocation runs the loop, even past the edge of C (loads are clamped, stores
// skipped), because subgroup operations need all lanes active.
//
// Bindings (group 0): as matmul.wgsl (lib/matmul-scalar-io.wgsl), overrides and Params from
// lib/matmul-common.wgsl; ROW_BLOCKS is a const the wrapper prepends (kernels/matmul.ts).
// Dispatch: (ceil(N / 32), ceil(M / (WG_Y * 8 * ROW_BLOCKS)), batch); workgroup (8, WG_Y).
// CPU reference: packages/gpu/src/kernels/matmul.ref.ts

override EIGHT_LANES: bool = false;

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let m0 = gid.y * (8u * ROW_BLOCKS);
  let n0 = gid.x * 4u;
  let batch = gid.z;
  let base_a = params.offset_a + batch * params.stride_a;
  let base_b = params.offset_b + batch * params.stride_b;
  let base_c = params.offset_c + batch * params.stride_c;

  let last_row = params.m - 1u;
  let cols = min(vec4<u32>(n0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(params.n - 1u));
  // In block j this lane loads row m0 + 8j + (lane % 8); lane `group + i` holds row m0 + 8j + i.
  var my_rows: array<u32, ROW_BLOCKS>;
  for (var j = 0u; j < ROW_BLOCKS; j++) {
    my_rows[j] = min(m0 + 8u * j + (lane & 7u), last_row);
  }
  let group = lane & ~7u;

  // acc[8j + i] holds row m0 + 8j + i.
  var acc: array<vec4<f32>, 8u * ROW_BLOCKS>;
  for (var k = 0u; k < params.k; k++) {
    let bv = load_b4(base_b, k, cols);
    var av: array<f32, ROW_BLOCKS>;
    for (var j = 0u; j < ROW_BLOCKS; j++) {
      av[j] = load_a(base_a, my_rows[j], k);
    }
    for (var j = 0u; j < ROW_BLOCKS; j++) {
      let v = av[j];
      if (EIGHT_LANES) {
        // The group is the subgroup: lane i holds row 8j + i. Written out, since a broadcast's
        // lane must be a constant expression.
        acc[8u * j] += subgroupBroadcast(v, 0u) * bv;
        acc[8u * j + 1u] += subgroupBroadcast(v, 1u) * bv;
        acc[8u * j + 2u] += subgroupBroadcast(v, 2u) * bv;
        acc[8u * j + 3u] += subgroupBroadcast(v, 3u) * bv;
        acc[8u * j + 4u] += subgroupBroadcast(v, 4u) * bv;
        acc[8u * j + 5u] += subgroupBroadcast(v, 5u) * bv;
        acc[8u * j + 6u] += subgroupBroadcast(v, 6u) * bv;
        acc[8u * j + 7u] += subgroupBroadcast(v, 7u) * bv;
      } else {
        for (var i = 0u; i < 8u; i++) {
          acc[8u * j + i] += subgroupShuffle(v, group + i) * bv;
        }
      }
    }
  }
  if (n0 >= params.n) {
    return;
  }
  for (var r = 0u; r < 8u * ROW_BLOCKS; r++) {
    store_row(base_c, m0 + r, n0, acc[r]);
  }
}
