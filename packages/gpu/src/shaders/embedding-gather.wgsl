// embedding-gather: out[t, :] = table[ids[t], :] (+ positions[t % seq_len + pos_offset, :]),
// nn.Embedding's lookup plus GPT-2's learned positions. An id >= vocab gives a zero row instead
// of reading past the table (ids are validated on the CPU; this only keeps a bad one in bounds).
// The tables and out are elem (f32 or f16 storage); the position add is f32.
//
// Bindings (group 0):
//   0 table: array<elem>      read        [vocab, dim]
//   1 ids: array<u32>         read        [rows]
//   2 positions: array<elem>  read        [>= seq_len + pos_offset, dim] (HAS_POSITIONS; otherwise any buffer, unread)
//   3 out: array<elem>        read_write  [rows, dim]
//   4 params: Params          uniform
// Dispatch: ceil(rows * dim / WG) workgroups of WG over x and y (i = gid.x + gid.y * row_stride).
// Reference: PyTorch (F.embedding), scripts/make_transformer_op_fixtures.py.

override WG: u32 = 256;
override HAS_POSITIONS: bool = false;

struct Params {
  rows: u32,
  dim: u32,
  vocab: u32,
  seq_len: u32,
  pos_offset: u32,
  row_stride: u32,
}

@group(0) @binding(0) var<storage, read> table: array<elem>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> positions: array<elem>;
@group(0) @binding(3) var<storage, read_write> out: array<elem>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row_stride;
  if (i >= params.rows * params.dim) {
    return;
  }
  let t = i / params.dim;
  let c = i - t * params.dim;
  let id = ids[t];
  if (id >= params.vocab) {
    out[i] = 0.0;
    return;
  }
  var v = f32(table[id * params.dim + c]);
  if (HAS_POSITIONS) {
    v += f32(positions[(t % params.seq_len + params.pos_offset) * params.dim + c]);
  }
  out[i] = elem(v);
}
