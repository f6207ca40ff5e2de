// Shared by attention-backward-dq.wgsl and attention-backward-dkv.wgsl: their Params (one layout
// for both passes, chosen in packages/gpu/src/kernels/attention.ts) and their read-only inputs.
// seq query rows and seq_kv key rows per batch; query i is the token at key position
// position_offset + i (a prefix or a KV cache before it), so it sees keys j <= position_offset + i.
// The wrapper guarantees position_offset + seq <= seq_kv (every query sees its own key), or
// seq_kv <= position_offset (every query sees every key: a prefix on its own); plain
// self-attention is seq_kv = seq, position_offset = 0. delta already holds dO_i . O_i - dL/dlse_i
// where the caller passed the lse's gradient (shaders/attention-backward-delta.wgsl).

struct Params {
  // Layout (attention.ts): d4 = head_dim / 4, lanes = head_dim / 16 per row, rows per workgroup, tile.
  d4: u32,
  lanes: u32,
  rows: u32,
  tile: u32,
  seq: u32,
  seq_kv: u32,
  position_offset: u32,
  heads: u32,
  kv_heads: u32,
  scale: f32,
}

@group(0) @binding(0) var<storage, read> q: array<vec4<elem>>;
@group(0) @binding(1) var<storage, read> k: array<vec4<elem>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<elem>>;
@group(0) @binding(3) var<storage, read> grad_out: array<vec4<elem>>;
@group(0) @binding(4) var<storage, read> lse: array<f32>;
@group(0) @binding(5) var<storage, read> delta: array<f32>;
