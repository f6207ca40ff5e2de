// attention-merge-backward-out: the outputs' gradients of attention-merge.wgsl,
//   grad_out_a = w * g * grad_out,  grad_out_b = (1 - w) * grad_out
// elementwise, both overwritten. grad_out and the results are elem (f32, or f16 storage); the lse,
// the gate and the arithmetic are f32, and each result is rounded to elem once, on the store.
//
// Bindings (group 0):
//   0 grad_out: array<vec4<elem>>    read        [tokens, heads * head_dim]
//   1 lse_a: array<f32>              read        [batch, heads, seq]
//   2 lse_b: array<f32>              read        [batch, heads, seq]
//   3 gate: array<f32>               read        [tokens, gate_stride]
//   4 grad_out_a: array<vec4<elem>>  read_write  [tokens, heads * head_dim]
//   5 grad_out_b: array<vec4<elem>>  read_write  [tokens, heads * head_dim]
//   6 params: Params                 uniform     (shaders/lib/attention-merge-common.wgsl)
// Dispatch: ceil(tokens * heads * head_dim / 4 / 64) workgroups of 64 over x and y; one
// invocation per vec4.
// Reference: PyTorch autograd of the merge formula, scripts/make_attention_fixtures.py.

@group(0) @binding(0) var<storage, read> grad_out: array<vec4<elem>>;
@group(0) @binding(1) var<storage, read> lse_a: array<f32>;
@group(0) @binding(2) var<storage, read> lse_b: array<f32>;
@group(0) @binding(3) var<storage, read> gate: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad_out_a: array<vec4<elem>>;
@group(0) @binding(5) var<storage, read_write> grad_out_b: array<vec4<elem>>;
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
  let d = vec4<f32>(grad_out[n]);
  grad_out_a[n] = vec4<elem>((w.x * g) * d);
  grad_out_b[n] = vec4<elem>(w.y * d);
}
