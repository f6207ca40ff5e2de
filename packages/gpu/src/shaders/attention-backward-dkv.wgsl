// attention-backward-dkv: dK and dV of causal attention, recomputing P from q, k and the forward's
// lse. Per key row j of kv head g, over the query heads h of g's group and the queries that see j
// (i < seq and position_offset + i >= j):
//   P_ij = exp(scale * q_i . k_j - lse_i),  dS_ij = P_ij (dO_i . v_j - delta_i)
//   dV_j = sum_h sum_i P_ij dO_i,   dK_j = scale * sum_h sum_i dS_ij q_i
// Keys before position_offset (prefix rows) are seen by every query; keys at or past
// position_offset + seq by none, and get dK = dV = 0.
// Each workgroup owns its key rows (and sums the group's query heads itself, in a fixed order),
// so dK and dV are written once, without atomics (deterministic).
// Layouts as shaders/attention-backward-dq.wgsl; grad_k, grad_v [batch * seq_kv, kv_heads * head_dim].
// q, k, v, grad_out, grad_k and grad_v are stored as `elem` (f32, or f16 with the shader-f16
// prelude); q/dO tiles are converted to f32 as they are staged, all arithmetic is f32, and grad_k
// and grad_v are rounded to elem once on the store. lse and delta are always f32.
//
// Bindings (group 0):
//   0 q: array<vec4<elem>>         read
//   1 k: array<vec4<elem>>         read
//   2 v: array<vec4<elem>>         read
//   3 grad_out: array<vec4<elem>>  read
//   4 lse: array<f32>              read
//   5 delta: array<f32>            read
//   6 grad_k: array<vec4<elem>>    read_write (overwritten)
//   7 grad_v: array<vec4<elem>>    read_write (overwritten)
//   8 params: Params              uniform
// Dispatch: (ceil(seq_kv / rows), kv_heads, batch) workgroups of 64: lanes = head_dim / 16
// invocations per key row, each scoring every lanes-th query of a tile of q and dO staged in
// workgroup memory and owning 16 columns of dK and dV. Query tiles wholly before the first query
// that sees the workgroup's first key are skipped.
// Reference: PyTorch autograd of HF eager attention (scripts/make_attention_fixtures.py).
// Params and bindings 0-5 come from shaders/lib/attention-backward-common.wgsl.

@group(0) @binding(6) var<storage, read_write> grad_k: array<vec4<elem>>;
@group(0) @binding(7) var<storage, read_write> grad_v: array<vec4<elem>>;
@group(0) @binding(8) var<uniform> params: Params;

// Tile storage is sized for the largest layout the wrapper picks (tile * d4 <= 256, rows * tile <= 512, tile <= 32).
const MAX_TILE_VEC4: u32 = 256u;
const MAX_SCORES: u32 = 512u;
const MAX_TILE: u32 = 32u;

var<workgroup> q_tile: array<vec4<f32>, MAX_TILE_VEC4>;
var<workgroup> do_tile: array<vec4<f32>, MAX_TILE_VEC4>;
var<workgroup> lse_tile: array<f32, MAX_TILE>;
var<workgroup> delta_tile: array<f32, MAX_TILE>;
var<workgroup> p_tile: array<f32, MAX_SCORES>;
var<workgroup> ds_tile: array<f32, MAX_SCORES>;

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
  let kv_head = wid.y;
  let batch = wid.z;
  let seq = params.seq;
  let seq_kv = params.seq_kv;
  let offset = params.position_offset;
  let group = params.heads / params.kv_heads;
  let q_stride = params.heads * d4;
  let first_key = wid.x * rows;
  let j = first_key + row;
  let kj = min(j, seq_kv - 1u);
  let kv_base = (batch * seq_kv + kj) * params.kv_heads * d4 + kv_head * d4;
  // Query first_key - offset is the first to see the workgroup's first key (query 0 for prefix
  // keys); query tiles before it contribute nothing to any row here.
  let first_query = select(0u, first_key - offset, first_key > offset);
  let c0 = lane * 4u;

  var dk0 = vec4<f32>();
  var dk1 = vec4<f32>();
  var dk2 = vec4<f32>();
  var dk3 = vec4<f32>();
  var dv0 = vec4<f32>();
  var dv1 = vec4<f32>();
  var dv2 = vec4<f32>();
  var dv3 = vec4<f32>();
  for (var g = 0u; g < group; g++) {
    let head = kv_head * group + g;
    let stat_base = (batch * params.heads + head) * seq;
    for (var i0 = (first_query / tile) * tile; i0 < seq; i0 += tile) {
      for (var e = lid; e < tile * d4; e += 64u) {
        let i = min(i0 + e / d4, seq - 1u);
        let src = (batch * seq + i) * q_stride + head * d4 + e % d4;
        q_tile[e] = vec4<f32>(q[src]);
        do_tile[e] = vec4<f32>(grad_out[src]);
      }
      for (var e = lid; e < tile; e += 64u) {
        let i = min(i0 + e, seq - 1u);
        lse_tile[e] = lse[stat_base + i];
        delta_tile[e] = delta[stat_base + i];
      }
      workgroupBarrier();

      for (var ii = lane; in_layout && ii < tile; ii += lanes) {
        let i = i0 + ii;
        var s = vec4<f32>();
        var dp = vec4<f32>();
        for (var c = 0u; c < d4; c++) {
          s += q_tile[ii * d4 + c] * vec4<f32>(k[kv_base + c]);
          dp += do_tile[ii * d4 + c] * vec4<f32>(v[kv_base + c]);
        }
        let visible = i + offset >= kj && i < seq;
        let p = select(0.0, exp((s.x + s.y + s.z + s.w) * params.scale - lse_tile[ii]), visible);
        p_tile[row * tile + ii] = p;
        ds_tile[row * tile + ii] = p * (dp.x + dp.y + dp.z + dp.w - delta_tile[ii]);
      }
      workgroupBarrier();

      for (var ii = 0u; ii < tile; ii++) {
        let p = p_tile[row * tile + ii];
        let ds = ds_tile[row * tile + ii];
        let b = ii * d4 + c0;
        dv0 += p * do_tile[b];
        dv1 += p * do_tile[b + 1u];
        dv2 += p * do_tile[b + 2u];
        dv3 += p * do_tile[b + 3u];
        dk0 += ds * q_tile[b];
        dk1 += ds * q_tile[b + 1u];
        dk2 += ds * q_tile[b + 2u];
        dk3 += ds * q_tile[b + 3u];
      }
      workgroupBarrier();
    }
  }

  if (in_layout && j < seq_kv) {
    let base = kv_base + c0;
    grad_k[base] = vec4<elem>(dk0 * params.scale);
    grad_k[base + 1u] = vec4<elem>(dk1 * params.scale);
    grad_k[base + 2u] = vec4<elem>(dk2 * params.scale);
    grad_k[base + 3u] = vec4<elem>(dk3 * params.scale);
    grad_v[base] = vec4<elem>(dv0);
    grad_v[base + 1u] = vec4<elem>(dv1);
    grad_v[base + 2u] = vec4<elem>(dv2);
    grad_v[base + 3u] = vec4<elem>(dv3);
  }
}
