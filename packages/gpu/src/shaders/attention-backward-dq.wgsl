// attention-backward-dq: dQ of causal attention, recomputing P from q, k and the forward's lse
// (no [seq, seq_kv] matrix is stored). Per query row i of head h, over visible keys
// j <= position_offset + i (j < seq_kv):
//   P_ij = exp(scale * q_i . k_j - lse_i),  dS_ij = P_ij (dO_i . v_j - delta_i)
//   dQ_i = scale * sum_j dS_ij k_j
// position_offset > 0 puts seq_kv - seq keys before the queries (prefix tuning's learned prefix
// rows, a KV cache); every query sees all of them. seq_kv <= position_offset is a prefix on its
// own (UniPELT's gated prefix pass): every query sees every key.
// Each workgroup owns its query rows, so dQ is written once, without atomics (deterministic).
// Layouts (row-major, vec4 = 4 elements of a row): q, grad_out, grad_q [batch * seq, heads * head_dim];
// k, v [batch * seq_kv, kv_heads * head_dim]; lse, delta [batch, heads, seq].
// q, k, v, grad_out and grad_q are stored as `elem` (f32, or f16 with the shader-f16 prelude);
// K/V tiles are converted to f32 as they are staged, all arithmetic is f32, and grad_q is rounded to
// elem once on the store. lse and delta are always f32.
//
// Bindings (group 0):
//   0 q: array<vec4<elem>>         read
//   1 k: array<vec4<elem>>         read
//   2 v: array<vec4<elem>>         read
//   3 grad_out: array<vec4<elem>>  read
//   4 lse: array<f32>              read
//   5 delta: array<f32>            read   (shaders/attention-backward-delta.wgsl)
//   6 grad_q: array<vec4<elem>>    read_write (overwritten)
//   7 params: Params              uniform
// Dispatch: (ceil(seq / rows), heads, batch) workgroups of 64, laid out as
// shaders/attention-forward.wgsl: lanes = head_dim / 16 invocations per query row, each scoring
// every lanes-th key of a K/V tile in workgroup memory and owning 16 columns of dQ.
// Reference: PyTorch autograd of HF eager attention (scripts/make_attention_fixtures.py).
// Params and bindings 0-5 come from shaders/lib/attention-backward-common.wgsl.

@group(0) @binding(6) var<storage, read_write> grad_q: array<vec4<elem>>;
@group(0) @binding(7) var<uniform> params: Params;

// Tile storage is sized for the largest layout the wrapper picks (tile * d4 <= 256, rows * tile <= 1024).
const MAX_TILE_VEC4: u32 = 256u;
const MAX_SCORES: u32 = 1024u;

var<workgroup> k_tile: array<vec4<f32>, MAX_TILE_VEC4>;
var<workgroup> v_tile: array<vec4<f32>, MAX_TILE_VEC4>;
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
  let head = wid.y;
  let batch = wid.z;
  let seq = params.seq;
  let seq_kv = params.seq_kv;
  let kv_head = head / (params.heads / params.kv_heads);
  let first_row = wid.x * rows;
  let i = first_row + row;
  let qi = min(i, seq - 1u);
  let q_base = (batch * seq + qi) * params.heads * d4 + head * d4;
  let kv_stride = params.kv_heads * d4;
  let kv_base = batch * seq_kv * kv_stride + kv_head * d4;
  let stat = (batch * params.heads + head) * seq + qi;
  let row_lse = lse[stat];
  let row_delta = delta[stat];
  // Keys [0, reach) are visible to some row of this workgroup; row i sees j <= limit.
  let reach = min(seq_kv, params.position_offset + first_row + rows);
  let limit = params.position_offset + qi;
  let c0 = lane * 4u;

  var acc0 = vec4<f32>();
  var acc1 = vec4<f32>();
  var acc2 = vec4<f32>();
  var acc3 = vec4<f32>();
  for (var j0 = 0u; j0 < reach; j0 += tile) {
    for (var e = lid; e < tile * d4; e += 64u) {
      let j = min(j0 + e / d4, seq_kv - 1u);
      let src = kv_base + j * kv_stride + e % d4;
      k_tile[e] = vec4<f32>(k[src]);
      v_tile[e] = vec4<f32>(v[src]);
    }
    workgroupBarrier();

    for (var jj = lane; in_layout && jj < tile; jj += lanes) {
      var s = vec4<f32>();
      var dp = vec4<f32>();
      for (var c = 0u; c < d4; c++) {
        s += vec4<f32>(q[q_base + c]) * k_tile[jj * d4 + c];
        dp += vec4<f32>(grad_out[q_base + c]) * v_tile[jj * d4 + c];
      }
      let p = exp((s.x + s.y + s.z + s.w) * params.scale - row_lse);
      let ds = p * (dp.x + dp.y + dp.z + dp.w - row_delta);
      // select, not a multiply by 0: a masked key's p = exp(s - lse) may overflow to inf, as lse
      // does not include its score.
      ds_tile[row * tile + jj] = select(0.0, ds, j0 + jj <= limit && j0 + jj < seq_kv);
    }
    workgroupBarrier();

    for (var jj = 0u; jj < tile; jj++) {
      let ds = ds_tile[row * tile + jj];
      let kb = jj * d4 + c0;
      acc0 += ds * k_tile[kb];
      acc1 += ds * k_tile[kb + 1u];
      acc2 += ds * k_tile[kb + 2u];
      acc3 += ds * k_tile[kb + 3u];
    }
    workgroupBarrier();
  }

  if (in_layout && i < seq) {
    grad_q[q_base + c0] = vec4<elem>(acc0 * params.scale);
    grad_q[q_base + c0 + 1u] = vec4<elem>(acc1 * params.scale);
    grad_q[q_base + c0 + 2u] = vec4<elem>(acc2 * params.scale);
    grad_q[q_base + c0 + 3u] = vec4<elem>(acc3 * params.scale);
  }
}
