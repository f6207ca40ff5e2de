// attention-backward-delta: delta_i = dO_i . O_i (- gradLse_i with HAS_GRAD_LSE) per query row and
// head, the row sums the attention backward subtracts (FlashAttention-2: dS_ij = P_ij (dO_i . V_j -
// delta_i)). A caller that also used the forward's lse (a two-pass attention merged by its lse) adds
// dL/dlse_i P_ij to dS_ij, as dlse_i / ds_ij = P_ij: the same as subtracting gradLse_i from delta_i,
// so the dQ and dK/dV passes need no change.
// Layouts: grad_out, out [batch * seq, heads * head_dim] (row-major, vec4 = 4 elements of a row);
// delta, grad_lse [batch, heads, seq]. grad_out and out are stored as `elem` (f32, or f16 with the
// shader-f16 prelude) and converted to f32 on load; the dot product, grad_lse and delta are f32.
//
// Bindings (group 0):
//   0 grad_out: array<vec4<elem>>  read
//   1 out: array<vec4<elem>>       read
//   2 grad_lse: array<f32>         read  (HAS_GRAD_LSE; otherwise any f32 buffer, unread)
//   3 delta: array<f32>            read_write
//   4 params: Params              uniform
// Dispatch: ceil(batch * seq * heads / 64) workgroups of 64 along x (rows along y past the limit,
// index = x + y * row_stride); one invocation per (token, head).
// Reference: PyTorch autograd of HF eager attention, with sum(lse * upstream_lse) in the loss for
// grad_lse (scripts/make_attention_fixtures.py).

override HAS_GRAD_LSE: bool = false;

struct Params {
  tokens: u32,
  seq: u32,
  heads: u32,
  d4: u32,
  row_stride: u32,
}

@group(0) @binding(0) var<storage, read> grad_out: array<vec4<elem>>;
@group(0) @binding(1) var<storage, read> out: array<vec4<elem>>;
@group(0) @binding(2) var<storage, read> grad_lse: array<f32>;
@group(0) @binding(3) var<storage, read_write> delta: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = gid.x + gid.y * params.row_stride;
  if (n >= params.tokens * params.heads) {
    return;
  }
  let token = n / params.heads;
  let head = n % params.heads;
  let base = n * params.d4;
  var d = vec4<f32>();
  for (var c = 0u; c < params.d4; c++) {
    d += vec4<f32>(grad_out[base + c]) * vec4<f32>(out[base + c]);
  }
  let batch = token / params.seq;
  let i = token % params.seq;
  let stat = (batch * params.heads + head) * params.seq + i;
  var row = d.x + d.y + d.z + d.w;
  if (HAS_GRAD_LSE) {
    row -= grad_lse[stat];
  }
  delta[stat] = row;
}
