// attention-merge-backward-gate: the gate's gradient of attention-merge.wgsl,
//   grad_gate[token * grad_gate_stride + grad_gate_offset] = sum over heads h of w_h (grad_out . out_a)_h
// (dout / dg = w out_a; the dot over head h's columns), overwritten. A sum over heads, so one
// invocation per token, which walks its heads and their columns in order: deterministic, without
// atomics or barriers. grad_out and out_a are elem (f32, or f16 storage); the rest is f32.
//
// Bindings (group 0):
//   0 grad_out: array<vec4<elem>>  read        [tokens, heads * head_dim]
//   1 out_a: array<vec4<elem>>     read        [tokens, heads * head_dim]
//   2 lse_a: array<f32>            read        [batch, heads, seq]
//   3 lse_b: array<f32>            read        [batch, heads, seq]
//   4 grad_gate: array<f32>        read_write  [tokens, grad_gate_stride]
//   5 params: Params               uniform     (shaders/lib/attention-merge-common.wgsl)
// Dispatch: ceil(tokens / 64) workgroups of 64 over x and y; one invocation per token.
// Reference: PyTorch autograd of the merge formula, scripts/make_attention_fixtures.py.

@group(0) @binding(0) var<storage, read> grad_out: array<vec4<elem>>;
@group(0) @binding(1) var<storage, read> out_a: array<vec4<elem>>;
@group(0) @binding(2) var<storage, read> lse_a: array<f32>;
@group(0) @binding(3) var<storage, read> lse_b: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad_gate: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let token = gid.x + gid.y * params.row_stride;
  if (token >= params.tokens) {
    return;
  }
  var total = 0.0;
  for (var head = 0u; head < params.heads; head++) {
    let base = (token * params.heads + head) * params.d4;
    var e = vec4<f32>();
    for (var c = 0u; c < params.d4; c++) {
      e += vec4<f32>(grad_out[base + c]) * vec4<f32>(out_a[base + c]);
    }
    let stat = stat_index(token, head);
    total += merge_weights(lse_a[stat] - lse_b[stat]).x * (e.x + e.y + e.z + e.w);
  }
  grad_gate[token * params.grad_gate_stride + params.grad_gate_offset] = total;
}
