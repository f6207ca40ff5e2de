// matmul-tiled: C[b] = alpha * op(A[b]) * op(B[b])  (+ C[b] when ACCUMULATE), the same contract,
// bindings and Params as matmul.wgsl, any M, N, K, for hardware GPUs. Why a fourth kernel: the
// others read every operand straight from storage, once per invocation that needs it; a GPU's
// storage reads go through caches it shares with thousands of invocations, while workgroup memory
// sits beside the ALUs. Here the workgroup loads a TILE_M x TILE_K block of op(A) and a
// TILE_K x TILE_N block of op(B) into workgroup memory once, cooperatively and coalesced, and every
// invocation reuses them for its own 4 x 4 block of C. Each element of A is then read from storage
// N / TILE_N times instead of N / 4, and each element of B M / TILE_M times instead of M / 8 (16x
// and 8x fewer reads than matmul.wgsl's 8 x 4 blocks with 64 x 64 tiles). tfjs' and
// onnxruntime-web's WebGPU matmuls work the same way.
// On the CPU adapters (lavapipe, SwiftShader) workgroup memory is ordinary memory and the barriers
// are costly, so they keep their own kernels (KernelTuning.matmul in device.ts).
//
// Bindings (group 0): as matmul.wgsl (lib/matmul-scalar-io.wgsl: scalar, so any N and K and any
// batch stride work). Tile loads are coalesced: neighbouring invocations read neighbouring quads
// along the stored operand's rows, or neighbouring elements where the tile transposes it.
// Overrides (set by the wrapper, packages/gpu/src/kernels/matmul.ts, which also dispatches with
// them): WG_X, WG_Y (lib/matmul-common.wgsl) the workgroup shape, TILE_K the depth of a K step
// (a multiple of 4); the output tile is TILE_M = 4 WG_Y rows by TILE_N = 4 WG_X columns.
// Dispatch: (ceil(N / TILE_N), ceil(M / TILE_M), batch); workgroup (WG_X, WG_Y).
// Invocation (x, y) owns rows 4y..4y+3 and columns 4x..4x+3 of its workgroup's tile, as four vec4
// accumulators (f32 for f16 storage too). Elements past M, N or K are loaded as zeros (indices are
// clamped first, so no read leaves the buffers) and stores past M or N are skipped.
// CPU reference: packages/gpu/src/kernels/matmul.ref.ts

override TILE_K: u32 = 16u;

// Derived from the wrapper's overrides (WGSL consts cannot depend on overrides); never set them.
override TILE_M: u32 = WG_Y * 4u;
override TILE_N: u32 = WG_X * 4u;
// Row pitches of the tiles in vec4s, each padded by one vec4 (20 and 68 words) so that the loads
// whose neighbouring invocations write neighbouring rows (A^T into tile_a, B^T into tile_b) hit 8
// different groups of 4 banks (32 banks of 4 bytes) per 8 invocations instead of 2 (pitch 16
// words) or 1 (pitch 64). The multiply loop reads a row of tile_b contiguously (conflict-free) and
// tile_a at two addresses per 32 invocations (broadcasts).
override A_PITCH: u32 = TILE_K / 4u + 1u;
override B_PITCH: u32 = WG_X + 1u;

// tile_a[r * A_PITCH + q] = op(A)[m0 + r, k0 + 4q .. 4q + 3]: rows of A, quads along K.
// tile_b[k * B_PITCH + q] = op(B)[k0 + k, n0 + 4q .. 4q + 3]: rows of B, quads along N.
// f32 whatever `elem` is: converted once on load instead of at every multiply-add.
var<workgroup> tile_a: array<vec4<f32>, TILE_M * A_PITCH>;
var<workgroup> tile_b: array<vec4<f32>, TILE_K * B_PITCH>;

// op(A)[row, k], or 0 past the edge (loads clamped so they stay inside the binding).
fn a_at(base: u32, row: u32, k: u32) -> f32 {
  let v = load_a(base, min(row, params.m - 1u), min(k, params.k - 1u));
  return select(0.0, v, row < params.m && k < params.k);
}

// op(B)[k, n0 .. n0 + 3], zeros past the edge.
fn b_quad(base: u32, k: u32, n0: u32) -> vec4<f32> {
  let cols = vec4<u32>(n0) + vec4<u32>(0u, 1u, 2u, 3u);
  let v = load_b4(base, min(k, params.k - 1u), min(cols, vec4<u32>(params.n - 1u)));
  return select(vec4<f32>(0.0), v, (cols < vec4<u32>(params.n)) & vec4<bool>(k < params.k));
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) index: u32) {
  let batch = wid.z;
  let base_a = params.offset_a + batch * params.stride_a;
  let base_b = params.offset_b + batch * params.stride_b;
  let base_c = params.offset_c + batch * params.stride_c;
  let m0 = wid.y * TILE_M;
  let n0 = wid.x * TILE_N;
  let threads = WG_X * WG_Y;
  let quads_k = TILE_K / 4u;

  var acc: array<vec4<f32>, 4>;
  // Every invocation runs every step, even past the edge of C: the barriers need them all.
  for (var k0 = 0u; k0 < params.k; k0 += TILE_K) {
    // A tile: TILE_M x TILE_K / 4 quads, one quad per invocation per pass (one pass at 16 x 16).
    for (var e = index; e < TILE_M * quads_k; e += threads) {
      var r: u32;
      var q: u32;
      if (TRANS_A) {
        // A stored [K, M]: neighbours take neighbouring rows so that each of the four reads is
        // coalesced along M.
        r = e % TILE_M;
        q = e / TILE_M;
      } else {
        // A stored [M, K]: neighbours take consecutive quads of one row (coalesced along K).
        r = e / quads_k;
        q = e % quads_k;
      }
      let k = k0 + q * 4u;
      let row = m0 + r;
      tile_a[r * A_PITCH + q] = vec4<f32>(a_at(base_a, row, k), a_at(base_a, row, k + 1u),
                                          a_at(base_a, row, k + 2u), a_at(base_a, row, k + 3u));
    }
    // B tile: TILE_K x TILE_N / 4 quads.
    for (var e = index; e < TILE_K * WG_X; e += threads) {
      var kk: u32;
      var q: u32;
      if (TRANS_B) {
        // B stored [N, K]: neighbours take neighbouring k (coalesced along K); each reads one
        // element of four rows of the stored B.
        kk = e % TILE_K;
        q = e / TILE_K;
      } else {
        // B stored [K, N]: neighbours take consecutive quads of one row (coalesced along N).
        kk = e / WG_X;
        q = e % WG_X;
      }
      tile_b[kk * B_PITCH + q] = b_quad(base_b, k0 + kk, n0 + q * 4u);
    }
    workgroupBarrier();
    // Four k per step: a 4 x 4 block of A (one quad per row) against four quads of B.
    for (var kq = 0u; kq < quads_k; kq++) {
      let b_row = kq * 4u * B_PITCH + lid.x;
      let b0 = tile_b[b_row];
      let b1 = tile_b[b_row + B_PITCH];
      let b2 = tile_b[b_row + 2u * B_PITCH];
      let b3 = tile_b[b_row + 3u * B_PITCH];
      for (var i = 0u; i < 4u; i++) {
        let x = tile_a[(lid.y * 4u + i) * A_PITCH + kq];
        acc[i] += x.x * b0 + x.y * b1 + x.z * b2 + x.w * b3;
      }
    }
    // The next step overwrites the tiles.
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    store_row(base_c, m0 + lid.y * 4u + i, n0 + lid.x * 4u, acc[i]);
  }
}
