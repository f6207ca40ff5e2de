// nf4-matmul: Y = alpha * X dequant(W)^T  (+ Y when ACCUMULATE), the QLoRA forward base product.
// W is a frozen NF4 weight [N, K] (PyTorch Linear layout: out x in) that is decoded in registers
// and never written out in float32; X is [M, K], Y is [M, N]; `elem` is f32 or f16, math in f32.
//
// Bindings (group 0): 0-3 the NF4 weight (shaders/lib/nf4-weights.wgsl), then
//   4 x: array<elem>   read
//   5 y: array<elem>   read_write
//   6 params: Params   uniform
// Dispatch: (ceil(N / (WG_X * 4)), ceil(M / (WG_Y * 8))); each invocation owns an 8x4 block of Y, so
// each decoded weight quad serves eight rows of X. The accumulators are eight named vectors rather
// than an array: SwiftShader runs an indexed private array at half speed. They and the row offsets
// are module-scope private so that both K paths share one `accumulate`.
// When K % 8 == 0 every row of W starts on a word and an 8-value word never straddles a block
// (BLOCK_SIZE is a multiple of 8), so one word and one scale serve 8 steps of K; otherwise each
// element is located on its own.
// Overrides and Params: shaders/lib/nf4-matmul-common.wgsl.
// CPU reference: packages/gpu/src/kernels/nf4-matmul.ref.ts

@group(0) @binding(4) var<storage, read> x: array<elem>;
@group(0) @binding(5) var<storage, read_write> y: array<elem>;
@group(0) @binding(6) var<uniform> params: Params;

// This invocation's eight rows of Y (zeroed per invocation) and the offsets of its rows of X.
var<private> acc0: vec4<f32>;
var<private> acc1: vec4<f32>;
var<private> acc2: vec4<f32>;
var<private> acc3: vec4<f32>;
var<private> acc4: vec4<f32>;
var<private> acc5: vec4<f32>;
var<private> acc6: vec4<f32>;
var<private> acc7: vec4<f32>;
var<private> rows: vec4<u32>;
var<private> rows_hi: vec4<u32>;

// One step of K: each row's accumulator gains x[row, kk] times the weight quad of that k.
fn accumulate(kk: u32, wv: vec4<f32>) {
  acc0 += f32(x[rows.x + kk]) * wv;
  acc1 += f32(x[rows.y + kk]) * wv;
  acc2 += f32(x[rows.z + kk]) * wv;
  acc3 += f32(x[rows.w + kk]) * wv;
  acc4 += f32(x[rows_hi.x + kk]) * wv;
  acc5 += f32(x[rows_hi.y + kk]) * wv;
  acc6 += f32(x[rows_hi.z + kk]) * wv;
  acc7 += f32(x[rows_hi.w + kk]) * wv;
}

fn decode4(words: vec4<u32>, e: u32, scales: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(code4(nf4_nibble(words.x, e)), code4(nf4_nibble(words.y, e)),
                   code4(nf4_nibble(words.z, e)), code4(nf4_nibble(words.w, e))) * scales;
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let m0 = gid.y * 8u;
  let n0 = gid.x * 4u;
  if (m0 >= params.m || n0 >= params.n) {
    return;
  }
  let k = params.k;
  let last_row = params.m - 1u;
  let last_col = params.n - 1u;
  rows = vec4<u32>(m0, min(m0 + 1u, last_row), min(m0 + 2u, last_row), min(m0 + 3u, last_row)) * k;
  rows_hi = min(vec4<u32>(m0 + 4u) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last_row)) * k;
  let cols = vec4<u32>(n0, min(n0 + 1u, last_col), min(n0 + 2u, last_col), min(n0 + 3u, last_col));
  let off = params.offset;

  if (k % 8u == 0u) {
    let words_per_row = k / 8u;
    let word_rows = cols * words_per_row;
    for (var kw = 0u; kw < words_per_row; kw++) {
      let k0 = kw * 8u;
      let words = vec4<u32>(nf4_packed[word_rows.x + kw], nf4_packed[word_rows.y + kw],
                            nf4_packed[word_rows.z + kw], nf4_packed[word_rows.w + kw]);
      let flat = cols * k + k0;
      let scales = vec4<f32>(nf4_scale(flat.x / BLOCK_SIZE, off), nf4_scale(flat.y / BLOCK_SIZE, off),
                             nf4_scale(flat.z / BLOCK_SIZE, off), nf4_scale(flat.w / BLOCK_SIZE, off));
      for (var e = 0u; e < 8u; e++) {
        accumulate(k0 + e, decode4(words, e, scales));
      }
    }
  } else {
    let flat_rows = cols * k;
    for (var kk = 0u; kk < k; kk++) {
      accumulate(kk, vec4<f32>(nf4_weight(flat_rows.x + kk, off), nf4_weight(flat_rows.y + kk, off),
                               nf4_weight(flat_rows.z + kk, off), nf4_weight(flat_rows.w + kk, off)));
    }
  }
  store_row(m0, n0, acc0);
  store_row(m0 + 1u, n0, acc1);
  store_row(m0 + 2u, n0, acc2);
  store_row(m0 + 3u, n0, acc3);
  store_row(m0 + 4u, n0, acc4);
  store_row(m0 + 5u, n0, acc5);
  store_row(m0 + 6u, n0, acc6);
  store_row(m0 + 7u, n0, acc7);
}

fn store_row(row: u32, n0: u32, v: vec4<f32>) {
  if (row >= params.m) {
    return;
  }
  let start = row * params.n + n0;
  for (var j = 0u; j < 4u; j++) {
    if (n0 + j < params.n) {
      var value = params.alpha * v[j];
      if (ACCUMULATE) {
        value += f32(y[start + j]);
      }
      y[start + j] = elem(value);
    }
  }
}
