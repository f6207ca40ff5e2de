// attention-forward: causal multi-head attention, FlashAttention-style (online softmax over tiles
// of keys), so memory grows with the sequence length, not its square. Per query row i of head h:
//   s_j = scale * q_i . k_j   for visible keys j (j < seq_kv and j <= position_offset + i)
//   out_i = sum_j softmax(s)_j v_j,   lse_i = log sum_j exp(s_j)   (kept for the backward pass)
// Grouped-query attention: head h reads kv head h / (heads / kv_heads).
// Layouts (row-major, vec4 = 4 elements of a row): q, out [batch * seq_q, heads * head_dim];
// k, v [batch * kv_capacity, kv_heads * head_dim]; lse [batch, heads, seq_q].
// q, k, v and out are stored as `elem` (f32, or f16 with the shader-f16 prelude); everything is
// computed in f32 (K/V tiles are converted to f32 as they are staged, scores, the online softmax and
// the accumulators are f32) and out is rounded to elem once on the store. lse is always f32.
//
// Bindings (group 0):
//   0 q: array<vec4<elem>>    read
//   1 k: array<vec4<elem>>    read
//   2 v: array<vec4<elem>>    read
//   3 out: array<vec4<elem>>  read_write
//   4 lse: array<f32>         read_write  (written when params.write_lse != 0)
//   5 params: Params         uniform
// Dispatch: (ceil(seq_q / rows), heads, batch) workgroups of 64. Each query row has
// lanes = head_dim / 16 invocations (rows = floor(64 / lanes) rows per workgroup): a lane scores
// every lanes-th key of a tile and owns 16 output columns (four named vec4 accumulators, not an
// indexed private array, which CPU adapters run slowly). Tiles of `tile` keys of K and V are staged
// in workgroup memory; tiles past the workgroup's causal reach are skipped. The layout is a uniform,
// so one pipeline serves every head_dim (a multiple of 16 up to 256).
// Reference: HF eager attention in PyTorch (scripts/make_attention_fixtures.py).

struct Params {
  // Layout (attention.ts): d4 = head_dim / 4, lanes = head_dim / 16 per row, rows per workgroup, tile.
  d4: u32,
  lanes: u32,
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

// Tile storage is sized for the largest layout the wrapper picks (tile * d4 <= 256, rows * tile <= 1024).
const MAX_TILE_VEC4: u32 = 256u;
const MAX_SCORES: u32 = 1024u;

// Scores of masked keys: far below any real score, yet finite so that differences stay finite.
const MASKED: f32 = -3.0e38;

var<workgroup> k_tile: array<vec4<f32>, MAX_TILE_VEC4>;
var<workgroup> v_tile: array<vec4<f32>, MAX_TILE_VEC4>;
var<workgroup> s_tile: array<f32, MAX_SCORES>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let d4 = params.d4;
  let lanes = params.lanes;
  let rows = params.rows;
  let tile = params.tile;
  // Invocations past rows * lanes (when 64 is not a multiple of lanes) idle at the barriers.
  let row = min(lid / lanes, rows - 1u);
  let lane = lid % lanes;
  let in_layout = lid < rows * lanes;
  let head = wid.y;
  let batch = wid.z;
  let kv_head = head / (params.heads / params.kv_heads);
  let first_row = wid.x * rows;
  let i = first_row + row;
  let qi = min(i, params.seq_q - 1u);
  let q_base = (batch * params.seq_q + qi) * params.heads * d4 + head * d4;
  let kv_stride = params.kv_heads * d4;
  let kv_base = batch * params.kv_capacity * kv_stride + kv_head * d4;
  // Keys [0, reach) are visible to some row of this workgroup; row i sees j <= limit.
  let reach = min(params.seq_kv, params.position_offset + first_row + rows);
  let limit = params.position_offset + qi;
  let c0 = lane * 4u;

  var m = MASKED;
  var l = 0.0;
  var acc0 = vec4<f32>();
  var acc1 = vec4<f32>();
  var acc2 = vec4<f32>();
  var acc3 = vec4<f32>();
  for (var j0 = 0u; j0 < reach; j0 += tile) {
    for (var e = lid; e < tile * d4; e += 64u) {
      let j = min(j0 + e / d4, params.seq_kv - 1u);
      let src = kv_base + j * kv_stride + e % d4;
      k_tile[e] = vec4<f32>(k[src]);
      v_tile[e] = vec4<f32>(v[src]);
    }
    workgroupBarrier();

    for (var jj = lane; in_layout && jj < tile; jj += lanes) {
      let j = j0 + jj;
      var d = vec4<f32>();
      for (var c = 0u; c < d4; c++) {
        d += vec4<f32>(q[q_base + c]) * k_tile[jj * d4 + c];
      }
      let s = (d.x + d.y + d.z + d.w) * params.scale;
      s_tile[row * tile + jj] = select(MASKED, s, j <= limit && j < params.seq_kv);
    }
    workgroupBarrier();

    // Every lane of the row runs the same online-softmax update on the same scores.
    var tile_max = MASKED;
    for (var jj = 0u; jj < tile; jj++) {
      tile_max = max(tile_max, s_tile[row * tile + jj]);
    }
    let m_new = max(m, tile_max);
    let correction = exp(m - m_new);
    l *= correction;
    acc0 *= correction;
    acc1 *= correction;
    acc2 *= correction;
    acc3 *= correction;
    for (var jj = 0u; jj < tile; jj++) {
      let s = s_tile[row * tile + jj];
      let p = select(0.0, exp(s - m_new), s > MASKED);
      l += p;
      let vb = jj * d4 + c0;
      acc0 += p * v_tile[vb];
      acc1 += p * v_tile[vb + 1u];
      acc2 += p * v_tile[vb + 2u];
      acc3 += p * v_tile[vb + 3u];
    }
    m = m_new;
    workgroupBarrier();
  }

  if (in_layout && i < params.seq_q) {
    let inv_l = 1.0 / l;
    out[q_base + c0] = vec4<elem>(acc0 * inv_l);
    out[q_base + c0 + 1u] = vec4<elem>(acc1 * inv_l);
    out[q_base + c0 + 2u] = vec4<elem>(acc2 * inv_l);
    out[q_base + c0 + 3u] = vec4<elem>(acc3 * inv_l);
    if (lane == 0u && params.write_lse != 0u) {
      lse[(batch * params.heads + head) * params.seq_q + i] = m + log(l);
    }
  }
}
