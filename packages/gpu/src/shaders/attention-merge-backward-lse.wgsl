// attention-merge-backward-lse: the log-sum-exps' gradients of attention-merge.wgsl,
//   D = sum over the head's columns of grad_out . (g * out_a - out_b)
//   grad_lse_a = w (1 - w) D,  grad_lse_b = -w (1 - w) D
// per (token, head) (dw / dlse_a = w (1 - w) = -dw / dlse_b), both overwritten. The other
// gradients are attention-merge-backward-out.wgsl and attention-merge-backward-gate.wgsl: one
// shader for all of them would bind ten storage buffers, past WebGPU's guaranteed eight.
// out_a, out_b and grad_out are elem (f32, or f16 storage); everything else, and all arithmetic,
// is f32. Each invocation sums its head's columns in order: deterministic.
//
// Bindings (group 0):
//   0 grad_out: array<vec4<elem>>  read        [tokens, heads * head_dim]
//   1 out_a: array<vec4<elem>>     read        [tokens, heads * head_dim]
//   2 out_b: array<vec4<elem>>     read        [tokens, heads * head_dim]
//   3 lse_a: array<f32>            read        [batch, heads, seq]
//   4 lse_b: array<f32>            read        [batch, heads, seq]
//   5 gate: array<f32>             read        [tokens, gate_stride]
//   6 grad_lse_a: array<f32>       read_write  [batch, heads, seq]
//   7 grad_lse_b: array<f32>       read_write  [batch, heads, seq]
//   8 params: Params               uniform     (shaders/lib/attention-merge-common.wgsl)
// Dispatch: ceil(tokens * heads / 64) workgroups of 64 over x and y; one invocation per (token, head).
// Reference: PyTorch autograd of the merge formula, scripts/make_attention_fixtures.py.

@group(0) @binding(0) var<storage, read> grad_out: array<vec4<elem>>;
@group(0) @binding(1) var<storage, read> out_a: array<vec4<elem>>;
@group(0) @binding(2) var<storage, read> out_b: array<vec4<elem>>;
@group(0) @binding(3) var<storage, read> lse_a: array<f32>;
@group(0) @binding(4) var<storage, read> lse_b: array<f32>;
@group(0) @binding(5) var<storage, read> gate: array<f32>;
@group(0) @binding(6) var<storage, read_write> grad_lse_a: array<f32>;
@group(0) @binding(7) var<storage, read_write> grad_lse_b: array<f32>;
@group(0) @binding(8) var<uniform> params: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = gid.x + gid.y * params.row_stride;
  if (n >= params.tokens * params.heads) {
    return;
  }
  let token = n / params.heads;
  let head = n % params.heads;
  let g = gate[token * params.gate_stride + params.gate_offset];
  let base = n * params.d4;
  var d = vec4<f32>();
  for (var c = 0u; c < params.d4; c++) {
    d += vec4<f32>(grad_out[base + c]) * (g * vec4<f32>(out_a[base + c]) - vec4<f32>(out_b[base + c]));
  }
  let stat = stat_index(token, head);
  let w = merge_weights(lse_a[stat] - lse_b[stat]);
  let grad = w.x * w.y * (d.x + d.y + d.z + d.w);
  grad_lse_a[stat] = grad;
  grad_lse_b[stat] = -grad;
}
