// nf4-matmul-grad-input: DX = alpha * DY dequant(W)  (+ DX when ACCUMULATE), the QLoRA backward
// pass through a frozen NF4 weight W [N, K]; DY is [M, N], DX is [M, K]. W gets no gradient.
//
// Bindings (group 0): 0-3 the NF4 weight (shaders/lib/nf4-weights.wgsl), then
//   4 dy: array<elem>  read
//   5 dx: array<elem>  read_write
//   6 params: Params   uniform
// Dispatch: (ceil(K / (WG_X * 8)), ceil(M / (WG_Y * 4))); each invocation owns 4 rows x 8
// columns of DX, i.e. exactly one packed word of each W row when K % 8 == 0.
// Overrides and Params: shaders/lib/nf4-matmul-common.wgsl.
// CPU reference: packages/gpu/src/kernels/nf4-matmul.ref.ts

@group(0) @binding(4) var<storage, read> dy: array<elem>;
@group(0) @binding(5) var<storage, read_write> dx: array<elem>;
@group(0) @binding(6) var<uniform> params: Params;

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let m0 = gid.y * 4u;
  let k0 = gid.x * 8u;
  if (m0 >= params.m || k0 >= params.k) {
    return;
  }
  let n = params.n;
  let k = params.k;
  let last_row = params.m - 1u;
  let rows = vec4<u32>(m0, min(m0 + 1u, last_row), min(m0 + 2u, last_row), min(m0 + 3u, last_row)) * n;
  let off = params.offset;

  var lo0 = vec4<f32>(0.0); var hi0 = vec4<f32>(0.0);
  var lo1 = vec4<f32>(0.0); var hi1 = vec4<f32>(0.0);
  var lo2 = vec4<f32>(0.0); var hi2 = vec4<f32>(0.0);
  var lo3 = vec4<f32>(0.0); var hi3 = vec4<f32>(0.0);
  let aligned = k % 8u == 0u;
  let last_k = k - 1u;
  for (var j = 0u; j < n; j++) {
    var lo: vec4<f32>;
    var hi: vec4<f32>;
    if (aligned) {
      let word = nf4_packed[(j * k + k0) >> 3u];
      let s = nf4_scale((j * k + k0) / BLOCK_SIZE, off);
      lo = vec4<f32>(code4(nf4_nibble(word, 0u)), code4(nf4_nibble(word, 1u)),
                     code4(nf4_nibble(word, 2u)), code4(nf4_nibble(word, 3u))) * s;
      hi = vec4<f32>(code4(nf4_nibble(word, 4u)), code4(nf4_nibble(word, 5u)),
                     code4(nf4_nibble(word, 6u)), code4(nf4_nibble(word, 7u))) * s;
    } else {
      let base = j * k;
      lo = vec4<f32>(nf4_weight(base + k0, off), nf4_weight(base + min(k0 + 1u, last_k), off),
                     nf4_weight(base + min(k0 + 2u, last_k), off), nf4_weight(base + min(k0 + 3u, last_k), off));
      hi = vec4<f32>(nf4_weight(base + min(k0 + 4u, last_k), off), nf4_weight(base + min(k0 + 5u, last_k), off),
                     nf4_weight(base + min(k0 + 6u, last_k), off), nf4_weight(base + min(k0 + 7u, last_k), off));
    }
    let d = vec4<f32>(f32(dy[rows.x + j]), f32(dy[rows.y + j]), f32(dy[rows.z + j]), f32(dy[rows.w + j]));
    lo0 += d.x * lo; hi0 += d.x * hi;
    lo1 += d.y * lo; hi1 += d.y * hi;
    lo2 += d.z * lo; hi2 += d.z * hi;
    lo3 += d.w * lo; hi3 += d.w * hi;
  }
  store_row(m0, k0, lo0, hi0);
  store_row(m0 + 1u, k0, lo1, hi1);
  store_row(m0 + 2u, k0, lo2, hi2);
  store_row(m0 + 3u, k0, lo3, hi3);
}

fn store_row(row: u32, k0: u32, lo: vec4<f32>, hi: vec4<f32>) {
  if (row >= params.m) {
    return;
  }
  let start = row * params.k + k0;
  for (var j = 0u; j < 8u; j++) {
    if (k0 + j < params.k) {
      var value = params.alpha * select(hi[(j - 4u) & 3u], lo[j & 3u], j < 4u);
      if (ACCUMULATE) {
        value += f32(dx[start + j]);
      }
      dx[start + j] = elem(value);
    }
  }
}
