// attention-merge: out = w * g * out_a + (1 - w) * out_b per (token, head), w = sigmoid(lse_a - lse_b)
// and g = gate[token * gate_stride + gate_offset] (shaders/lib/attention-merge-common.wgsl says
// why this is exact). out_a, out_b and out are elem (f32, or f16 storage); lse and the gate are
// f32, the arithmetic is f32 and out is rounded to elem once, on the store.
//
// Bindings (group 0):
//   0 out_a: array<vec4<elem>>  read        [tokens, heads * head_dim]
//   1 lse_a: array<f32>         read        [batch, heads, seq]
//   2 out_b: array<vec4<elem>>  read        [tokens, heads * head_dim]
//   3 lse_b: array<f32>         read        [batch, heads, seq]
//   4 gate: array<f32>          read        [tokens, gate_stride]
//   5 out: array<vec4<elem>>    read_write  [tokens, heads * head_dim]
//   6 params: Params            uniform     (shaders/lib/attention-merge-common.wgsl)
// Dispatch: ceil(tokens * heads * head_dim / 4 / 64) workgroups of 64 over x and y; one
// invocation per vec4 of out.
// Reference: PyTorch (the formula above), scripts/make_attention_fixtures.py.

@group(0) @binding(0) var<storage, read> out_a: array<vec4<elem>>;
@group(0) @binding(1) var<storage, read> lse_a: array<f32>;
@group(0) @binding(2) var<storage, read> out_b: array<vec4<elem>>;
@group(0) @binding(3) var<storage, read> lse_b: array<f32>;
@group(0) @binding(4) var<storage, read> gate: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<elem>>;
@group(0) @binding(6) var<uniform> params: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = gid.x + gid.y * params.row_stride;
  let row_vec4s = params.heads * params.d4;
  if (n >= params.tokens * row_vec4s) {
    return;
  }
  let token = n / row_vec4s;
  let head = (n % row_vec4s) / params.d4;
  let stat = stat_index(token, head);
  let w = merge_weights(lse_a[stat] - lse_b[stat]);
  let g = gate[token * params.gate_stride + params.gate_offset];
  out[n] = vec4<elem>((w.x * g) * vec4<f32>(out_a[n]) + w.y * vec4<f32>(out_b[n]));
}
