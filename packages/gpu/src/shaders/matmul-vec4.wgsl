// matmul-vec4: C[b] = alpha * op(A[b]) * op(B[b])  (+ C[b] when ACCUMULATE), the same contract
// as matmul.wgsl for shapes whose K and N are multiples of 4 (and M too when TRANS_A), read and
// written four elements per access. Why a second kernel: a software rasterizer such as SwiftShader
// bounds-checks every storage access, so one vec4 load instead of four scalar ones makes this
// kernel about 3x faster there; on lavapipe the scalar kernel is faster (see matmul.ts) except
// for op(B) = B^T, where this kernel's dot-product form wins on both.
//
// Bindings (group 0):
//   0 a: array<vec4<elem>>  read        A, logical [M, K]; stored [M, K], or [K, M] when TRANS_A
//   1 b: array<vec4<elem>>  read        B, logical [K, N]; stored [K, N], or [N, K] when TRANS_B
//   2 c: array<vec4<elem>>  read_write  C, [M, N]
//   3 params: Params        uniform     lib/matmul-common.wgsl; strides, offsets and row strides here are multiples of 4
// Dispatch: (ceil(N / (WG_X * 4)), ceil(M / (WG_Y * ROWS)), batch); workgroup (WG_X, WG_Y).
// Each invocation owns a ROWS x 4 block of C and walks K four at a time: a ROWS x 4 block of A and
// a 4 x 4 block of B per step. Rows past M are clamped on load and never stored.
// CPU reference: packages/gpu/src/kernels/matmul.ref.ts

@group(0) @binding(0) var<storage, read> a: array<vec4<elem>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<elem>>;
@group(0) @binding(2) var<storage, read_write> c: array<vec4<elem>>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let m0 = gid.y * ROWS;
  let n0 = gid.x * 4u;
  if (m0 >= params.m || n0 >= params.n) {
    return;
  }
  let batch = gid.z;
  // Everything below counts vec4s.
  let base_a = (params.offset_a + batch * params.stride_a) / 4u;
  let base_b = (params.offset_b + batch * params.stride_b) / 4u;
  let base_c = (params.offset_c + batch * params.stride_c) / 4u;
  let m4 = params.m / 4u;
  let k4 = params.k / 4u;
  // Distances between stored rows.
  let lda4 = params.ld_a / 4u;
  let ldb4 = params.ld_b / 4u;
  let ldc4 = params.ld_c / 4u;
  let quad = gid.x;

  let last_row = params.m - 1u;
  var acc: array<vec4<f32>, ROWS>;
  // Loads go straight into the multiply-adds: staging them in private arrays (or keeping the
  // clamped row indices in one) halves SwiftShader's speed.
  for (var kq = 0u; kq < k4; kq++) {
    if (TRANS_B && !TRANS_A) {
      // x W^T, PyTorch's Linear: rows of A and of the stored B both run along K, so each output
      // is a sum of dot products of quads (1.5x faster than transposing on lavapipe).
      let c0 = vec4<f32>(b[base_b + n0 * ldb4 + kq]);
      let c1 = vec4<f32>(b[base_b + (n0 + 1u) * ldb4 + kq]);
      let c2 = vec4<f32>(b[base_b + (n0 + 2u) * ldb4 + kq]);
      let c3 = vec4<f32>(b[base_b + (n0 + 3u) * ldb4 + kq]);
      for (var i = 0u; i < ROWS; i++) {
        let x = vec4<f32>(a[base_a + min(m0 + i, last_row) * lda4 + kq]);
        acc[i] += vec4<f32>(dot(x, c0), dot(x, c1), dot(x, c2), dot(x, c3));
      }
      continue;
    }
    // b0..b3 = B[4 kq + kk, n0..n0+3]
    var b0: vec4<f32>;
    var b1: vec4<f32>;
    var b2: vec4<f32>;
    var b3: vec4<f32>;
    let k = kq * 4u;
    if (TRANS_B) {
      // B stored [N, K]: a quad holds four k of one column; transpose the 4x4 block.
      let t = transpose(mat4x4<f32>(
        vec4<f32>(b[base_b + n0 * ldb4 + kq]),
        vec4<f32>(b[base_b + (n0 + 1u) * ldb4 + kq]),
        vec4<f32>(b[base_b + (n0 + 2u) * ldb4 + kq]),
        vec4<f32>(b[base_b + (n0 + 3u) * ldb4 + kq])));
      b0 = t[0];
      b1 = t[1];
      b2 = t[2];
      b3 = t[3];
    } else {
      b0 = vec4<f32>(b[base_b + k * ldb4 + quad]);
      b1 = vec4<f32>(b[base_b + (k + 1u) * ldb4 + quad]);
      b2 = vec4<f32>(b[base_b + (k + 2u) * ldb4 + quad]);
      b3 = vec4<f32>(b[base_b + (k + 3u) * ldb4 + quad]);
    }
    if (TRANS_A) {
      // A stored [K, M]: quad q of row k holds A[4q..4q+3, k]; four k give a 4x4 block of A.
      for (var h = 0u; h < ROWS / 4u; h++) {
        let q = base_a + min(m0 / 4u + h, m4 - 1u);
        let t = transpose(mat4x4<f32>(
          vec4<f32>(a[q + k * lda4]),
          vec4<f32>(a[q + (k + 1u) * lda4]),
          vec4<f32>(a[q + (k + 2u) * lda4]),
          vec4<f32>(a[q + (k + 3u) * lda4])));
        acc[h * 4u] += t[0].x * b0 + t[0].y * b1 + t[0].z * b2 + t[0].w * b3;
        acc[h * 4u + 1u] += t[1].x * b0 + t[1].y * b1 + t[1].z * b2 + t[1].w * b3;
        acc[h * 4u + 2u] += t[2].x * b0 + t[2].y * b1 + t[2].z * b2 + t[2].w * b3;
        acc[h * 4u + 3u] += t[3].x * b0 + t[3].y * b1 + t[3].z * b2 + t[3].w * b3;
      }
    } else {
      for (var i = 0u; i < ROWS; i++) {
        let x = vec4<f32>(a[base_a + min(m0 + i, last_row) * lda4 + kq]);
        acc[i] += x.x * b0 + x.y * b1 + x.z * b2 + x.w * b3;
      }
    }
  }
  for (var i = 0u; i < ROWS; i++) {
    let row = m0 + i;
    if (row < params.m) {
      let index = base_c + row * ldc4 + quad;
      var value = params.alpha * acc[i];
      if (ACCUMULATE) {
        value += vec4<f32>(c[index]);
      }
      c[index] = vec4<elem>(value);
    }
  }
}

