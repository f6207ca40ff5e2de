// attention-forward: causal multi-head attention, FlashAttention-style (online softmax over tiles
// of keys), so memory grows with the sequence length, not its square. Per query row i of head h:
//   s_j = scale * q_i . k_j   for visible keys j (j < seq_kv and j <= position_offset + i)
//   out_i = sum_j softmax(s)_j v_j,   lse_i = log sum_j exp(s_j)   (kept for the backward pass)
// Grouped-query attention: head h reads kv head h / (heads / kv_heads).
// Layouts (row-major, vec4 = 4 elements of a row): q, out [batch * seq_q, heads * head_dim];
// k, v [batch * kv_capacity, kv_heads * head_dim]; lse [batch, heads, seq_q].
// q, k, v and out are stored as `elem` (f32, or f16 with the shader-f16 prelude); everything is
// computed in f32 (scores, the online softmax and the accumulators) and out is rounded to elem once
// on the store. lse is always f32.
//
// Bindings (group 0):
//   0 q: array<vec4<elem>>    read
//   1 k: array<vec4<elem>>    read
//   2 v: array<vec4<elem>>    read
//   3 out: array<vec4<elem>>  read_write
//   4 lse: array<f32>         read_write  (written when params.write_lse != 0)
//   5 params: Params         uniform
// Dispatch: (ceil(seq_q / rows), heads, batch) workgroups of 64. A workgroup owns `rows` query rows
// and walks the keys its rows can see in tiles of `tile` keys (rows * tile = 2048, both powers of two,
// chosen by attention.ts from head_dim), three phases a tile, each a register-blocked product:
//   scores   invocation (row block, key block) computes an 8 x 4 block of S = scale Q K^T, reading
//            q and k straight from storage (each q vec4 feeds four dot products, each k vec4
//            eight), masks it and writes it to s_tile;
//   softmax  invocation r < rows owns row r's running max and sum: one exp per key, p overwrites
//            the score, and the rescale factor of the row's accumulators goes to corr;
//   P V      invocation (4 rows, 16 columns) rescales its 4 x 16 accumulators and adds p v_j for
//            the tile's keys (16 named vec4 accumulators, not an indexed private array, which CPU
//            adapters run slowly).
// CPU adapters (lavapipe, SwiftShader) run a workgroup's invocations as SIMD lanes, where every
// load is a gather: the blocks are sized for few loads per multiply-add, as the matmul's are.
// Tiles past the workgroup's causal reach are skipped. Only scores and row statistics live in
// workgroup memory: K and V are read from storage (CPU adapters gain nothing from staging them,
// and each value read feeds 4 or 8 products from registers). The layout is a uniform, so one
// pipeline serves every head_dim (a multiple of 16 up to 256).
// Reference: HF eager attention in PyTorch (scripts/make_attention_fixtures.py).

struct Params {
  // Layout (attention.ts): d4 = head_dim / 4, col_groups = head_dim / 16, rows per workgroup, tile
  // keys (rows * tile = 2048; rows * head_dim <= 4096).
  d4: u32,
  col_groups: u32,
  rows: u32,
  tile: u32,
  seq_q: u32,
  seq_kv: u32,
  kv_capacity: u32,
  heads: u32,
  kv_heads: u32,
  position_offset: u32,
  scale: f32,
  write_lse: u32,
}

@group(0) @binding(0) var<storage, read> q: array<vec4<elem>>;
@group(0) @binding(1) var<storage, read> k: array<vec4<elem>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<elem>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<elem>>;
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

// rows * tile scores, 4 to a vec4; at most 64 rows.
const MAX_SCORE_VEC4: u32 = 512u;
const MAX_ROWS: u32 = 64u;

// Scores of masked keys: far below any real score, yet finite so that differences stay finite.
const MASKED: f32 = -3.0e38;

var<workgroup> s_tile: array<vec4<f32>, MAX_SCORE_VEC4>;
var<workgroup> corr: array<f32, MAX_ROWS>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let d4 = params.d4;
  let rows = params.rows;
  let tile = params.tile;
  let t4 = tile / 4u;
  let head = wid.y;
  let batch = wid.z;
  let seq_q = params.seq_q;
  let seq_kv = params.seq_kv;
  let kv_head = head / (params.heads / params.kv_heads);
  let first_row = wid.x * rows;
  let q_stride = params.heads * d4;
  let q_base = batch * seq_q * q_stride + head * d4;
  let kv_stride = params.kv_heads * d4;
  let kv_base = batch * params.kv_capacity * kv_stride + kv_head * d4;
  // Keys [0, reach) are visible to some row of this workgroup.
  let reach = min(seq_kv, params.position_offset + first_row + rows);

  // Scores: an 8 x 4 block, rows sr .. sr + 7, keys j0 + sk .. sk + 3 of the tile.
  let sr = (lid / t4) * 8u;
  let sk = (lid % t4) * 4u;
  // Row addresses are recomputed at each load, not kept in a private array: CPU adapters run
  // indexed private arrays (even ones indexed by constants) far slower than the arithmetic.
  let last_row = seq_q - 1u;
  let limit0 = params.position_offset + first_row + sr;

  // P V: rows pr .. pr + 3, vec4 columns pc .. pc + 3.
  let pv_active = lid < (rows / 4u) * params.col_groups;
  let pr = min(lid / params.col_groups, rows / 4u - 1u) * 4u;
  let pc = (lid % params.col_groups) * 4u;

  // Softmax: invocation lid < rows owns row lid; padding rows past seq_q (never stored) are left out.
  let own_row = lid < rows && first_row + lid < seq_q;
  var m = MASKED;
  var l = 0.0;

  var a0 = vec4<f32>();
  var a1 = vec4<f32>();
  var a2 = vec4<f32>();
  var a3 = vec4<f32>();
  var b0 = vec4<f32>();
  var b1 = vec4<f32>();
  var b2 = vec4<f32>();
  var b3 = vec4<f32>();
  var c0 = vec4<f32>();
  var c1 = vec4<f32>();
  var c2 = vec4<f32>();
  var c3 = vec4<f32>();
  var d0 = vec4<f32>();
  var d1 = vec4<f32>();
  var d2 = vec4<f32>();
  var d3 = vec4<f32>();
  for (var j0 = 0u; j0 < reach; j0 += tile) {
    {
      let keys = min(vec4<u32>(j0 + sk) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(seq_kv - 1u));
      let k0 = kv_base + keys.x * kv_stride;
      let k1 = kv_base + keys.y * kv_stride;
      let k2 = kv_base + keys.z * kv_stride;
      let k3 = kv_base + keys.w * kv_stride;
      var s0 = vec4<f32>();
      var s1 = vec4<f32>();
      var s2 = vec4<f32>();
      var s3 = vec4<f32>();
      var s4 = vec4<f32>();
      var s5 = vec4<f32>();
      var s6 = vec4<f32>();
      var s7 = vec4<f32>();
      // Blocks wholly past their rows' reach (the causal upper triangle), and blocks of padding rows
      // past seq_q (most of the workgroup when decoding one token), skip the product.
      if (first_row + sr < seq_q && j0 + sk <= min(limit0 + 7u, seq_kv - 1u)) {
        for (var c = 0u; c < d4; c++) {
          let kc0 = vec4<f32>(k[k0 + c]);
          let kc1 = vec4<f32>(k[k1 + c]);
          let kc2 = vec4<f32>(k[k2 + c]);
          let kc3 = vec4<f32>(k[k3 + c]);
          let q0 = vec4<f32>(q[q_base + min(first_row + sr, last_row) * q_stride + c]);
          s0 += vec4<f32>(dot(q0, kc0), dot(q0, kc1), dot(q0, kc2), dot(q0, kc3));
          let q1 = vec4<f32>(q[q_base + min(first_row + sr + 1u, last_row) * q_stride + c]);
          s1 += vec4<f32>(dot(q1, kc0), dot(q1, kc1), dot(q1, kc2), dot(q1, kc3));
          let q2 = vec4<f32>(q[q_base + min(first_row + sr + 2u, last_row) * q_stride + c]);
          s2 += vec4<f32>(dot(q2, kc0), dot(q2, kc1), dot(q2, kc2), dot(q2, kc3));
          let q3 = vec4<f32>(q[q_base + min(first_row + sr + 3u, last_row) * q_stride + c]);
          s3 += vec4<f32>(dot(q3, kc0), dot(q3, kc1), dot(q3, kc2), dot(q3, kc3));
          let q4 = vec4<f32>(q[q_base + min(first_row + sr + 4u, last_row) * q_stride + c]);
          s4 += vec4<f32>(dot(q4, kc0), dot(q4, kc1), dot(q4, kc2), dot(q4, kc3));
          let q5 = vec4<f32>(q[q_base + min(first_row + sr + 5u, last_row) * q_stride + c]);
          s5 += vec4<f32>(dot(q5, kc0), dot(q5, kc1), dot(q5, kc2), dot(q5, kc3));
          let q6 = vec4<f32>(q[q_base + min(first_row + sr + 6u, last_row) * q_stride + c]);
          s6 += vec4<f32>(dot(q6, kc0), dot(q6, kc1), dot(q6, kc2), dot(q6, kc3));
          let q7 = vec4<f32>(q[q_base + min(first_row + sr + 7u, last_row) * q_stride + c]);
          s7 += vec4<f32>(dot(q7, kc0), dot(q7, kc1), dot(q7, kc2), dot(q7, kc3));
        }
      }
      let j = vec4<u32>(j0 + sk) + vec4<u32>(0u, 1u, 2u, 3u);
      let in_kv = j < vec4<u32>(seq_kv);
      let masked = vec4<f32>(MASKED);
      let sv = sr * t4 + sk / 4u;
      s_tile[sv] = select(masked, s0 * params.scale, in_kv & (j <= vec4<u32>(limit0)));
      s_tile[sv + t4] = select(masked, s1 * params.scale, in_kv & (j <= vec4<u32>(limit0 + 1u)));
      s_tile[sv + 2u * t4] = select(masked, s2 * params.scale, in_kv & (j <= vec4<u32>(limit0 + 2u)));
      s_tile[sv + 3u * t4] = select(masked, s3 * params.scale, in_kv & (j <= vec4<u32>(limit0 + 3u)));
      s_tile[sv + 4u * t4] = select(masked, s4 * params.scale, in_kv & (j <= vec4<u32>(limit0 + 4u)));
      s_tile[sv + 5u * t4] = select(masked, s5 * params.scale, in_kv & (j <= vec4<u32>(limit0 + 5u)));
      s_tile[sv + 6u * t4] = select(masked, s6 * params.scale, in_kv & (j <= vec4<u32>(limit0 + 6u)));
      s_tile[sv + 7u * t4] = select(masked, s7 * params.scale, in_kv & (j <= vec4<u32>(limit0 + 7u)));
    }
    workgroupBarrier();

    if (own_row) {
      let base = lid * t4;
      var tile_max = vec4<f32>(MASKED);
      for (var x = 0u; x < t4; x++) {
        tile_max = max(tile_max, s_tile[base + x]);
      }
      let m_new = max(m, max(max(tile_max.x, tile_max.y), max(tile_max.z, tile_max.w)));
      let correction = exp(m - m_new);
      var sum = vec4<f32>();
      for (var x = 0u; x < t4; x++) {
        let s = s_tile[base + x];
        let p = select(vec4<f32>(), exp(s - m_new), s > vec4<f32>(MASKED));
        s_tile[base + x] = p;
        sum += p;
      }
      l = l * correction + (sum.x + sum.y) + (sum.z + sum.w);
      m = m_new;
      corr[lid] = correction;
    }
    workgroupBarrier();

    if (pv_active) {
      let f0 = corr[pr];
      a0 *= f0;
      a1 *= f0;
      a2 *= f0;
      a3 *= f0;
      let f1 = corr[pr + 1u];
      b0 *= f1;
      b1 *= f1;
      b2 *= f1;
      b3 *= f1;
      let f2 = corr[pr + 2u];
      c0 *= f2;
      c1 *= f2;
      c2 *= f2;
      c3 *= f2;
      let f3 = corr[pr + 3u];
      d0 *= f3;
      d1 *= f3;
      d2 *= f3;
      d3 *= f3;
      // Keys past these four rows' reach have p = 0: stop at the last group of 4 that has one.
      // Four padding rows (past seq_q) are never stored: they skip it all.
      let live_end = select(0u, min(reach, params.position_offset + first_row + pr + 4u), first_row + pr < seq_q);
      let t4_live = select(0u, min(t4, (live_end - j0 + 3u) / 4u), live_end > j0);
      for (var x = 0u; x < t4_live; x++) {
        let p0 = s_tile[pr * t4 + x];
        let p1 = s_tile[(pr + 1u) * t4 + x];
        let p2 = s_tile[(pr + 2u) * t4 + x];
        let p3 = s_tile[(pr + 3u) * t4 + x];
        for (var y = 0u; y < 4u; y++) {
          let vb = kv_base + min(j0 + x * 4u + y, seq_kv - 1u) * kv_stride + pc;
          let v0 = vec4<f32>(v[vb]);
          let v1 = vec4<f32>(v[vb + 1u]);
          let v2 = vec4<f32>(v[vb + 2u]);
          let v3 = vec4<f32>(v[vb + 3u]);
          a0 += p0[y] * v0;
          a1 += p0[y] * v1;
          a2 += p0[y] * v2;
          a3 += p0[y] * v3;
          b0 += p1[y] * v0;
          b1 += p1[y] * v1;
          b2 += p1[y] * v2;
          b3 += p1[y] * v3;
          c0 += p2[y] * v0;
          c1 += p2[y] * v1;
          c2 += p2[y] * v2;
          c3 += p2[y] * v3;
          d0 += p3[y] * v0;
          d1 += p3[y] * v1;
          d2 += p3[y] * v2;
          d3 += p3[y] * v3;
        }
      }
    }
    workgroupBarrier();
  }

  if (own_row) {
    corr[lid] = 1.0 / l;
    let i = first_row + lid;
    if (i < seq_q && params.write_lse != 0u) {
      lse[(batch * params.heads + head) * seq_q + i] = m + log(l);
    }
  }
  workgroupBarrier();

  if (pv_active) {
    if (first_row + pr < seq_q) {
      let o = q_base + (first_row + pr) * q_stride + pc;
      let inv = corr[pr];
      out[o] = vec4<elem>(a0 * inv);
      out[o + 1u] = vec4<elem>(a1 * inv);
      out[o + 2u] = vec4<elem>(a2 * inv);
      out[o + 3u] = vec4<elem>(a3 * inv);
    }
    if (first_row + pr + 1u < seq_q) {
      let o = q_base + (first_row + pr + 1u) * q_stride + pc;
      let inv = corr[pr + 1u];
      out[o] = vec4<elem>(b0 * inv);
      out[o + 1u] = vec4<elem>(b1 * inv);
      out[o + 2u] = vec4<elem>(b2 * inv);
      out[o + 3u] = vec4<elem>(b3 * inv);
    }
    if (first_row + pr + 2u < seq_q) {
      let o = q_base + (first_row + pr + 2u) * q_stride + pc;
      let inv = corr[pr + 2u];
      out[o] = vec4<elem>(c0 * inv);
      out[o + 1u] = vec4<elem>(c1 * inv);
      out[o + 2u] = vec4<elem>(c2 * inv);
      out[o + 3u] = vec4<elem>(c3 * inv);
    }
    if (first_row + pr + 3u < seq_q) {
      let o = q_base + (first_row + pr + 3u) * q_stride + pc;
      let inv = corr[pr + 3u];
      out[o] = vec4<elem>(d0 * inv);
      out[o + 1u] = vec4<elem>(d1 * inv);
      out[o + 2u] = vec4<elem>(d2 * inv);
      out[o + 3u] = vec4<elem>(d3 * inv);
    }
  }
}
