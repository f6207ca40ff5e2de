// embedding-scatter-add: the embedding table's gradient, grad_table[v, :] += sum of
// grad_output[t, :] over the t with ids[t] == v, without float atomics, so it is deterministic:
// the workgroup of a token's first occurrence owns that table row and adds every occurrence's
// gradient in token order; later occurrences do nothing. Ids >= vocab are skipped.
// grad_output and grad_table are elem (f32 or f16 storage): each table element is summed in f32
// (its old value, then every occurrence in token order) and stored once, so an f16 table is
// rounded once, not once per occurrence.
// Cost: up to rows id compares per invocation to find the owner, and (rows - t) per column an
// owner's invocation handles (cheap, uniform across the workgroup), plus one add per gradient
// element; fine for the few thousand tokens of a batch.
//
// Bindings (group 0):
//   0 ids: array<u32>           read        [rows]
//   1 grad_output: array<elem>  read        [rows, dim]
//   2 grad_table: array<elem>   read_write  [vocab, dim]
//   3 params: Params            uniform
// Needs shaders/lib/workgroup-sum.wgsl.
// Dispatch: one workgroup of WG per token row (t = workgroup_id.x + workgroup_id.y * row_stride);
// its invocations stride over the dim columns.
// Reference: PyTorch autograd of F.embedding, scripts/make_transformer_op_fixtures.py.

override WG: u32 = 64;

struct Params {
  rows: u32,
  dim: u32,
  vocab: u32,
  row_stride: u32,
}

@group(0) @binding(0) var<storage, read> ids: array<u32>;
@group(0) @binding(1) var<storage, read> grad_output: array<elem>;
@group(0) @binding(2) var<storage, read_write> grad_table: array<elem>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wid.x + wid.y * params.row_stride;
  let in_range = t < params.rows;
  let v = select(params.vocab, ids[min(t, params.rows - 1u)], in_range);
  // Count earlier occurrences of v, WG ids at a time; the sum holds barriers, so every
  // invocation gets here before any returns.
  var earlier = 0.0;
  for (var j = lid; j < t && in_range; j += WG) {
    earlier += select(0.0, 1.0, ids[j] == v);
  }
  let owners = workgroup_sum2(lid, vec2<f32>(earlier, 0.0)).x;
  if (!in_range || v >= params.vocab || owners > 0.0) {
    return;
  }
  let dst = v * params.dim;
  for (var c = lid; c < params.dim; c += WG) {
    var sum = f32(grad_table[dst + c]);
    for (var j = t; j < params.rows; j++) {
      if (ids[j] == v) {
        sum += f32(grad_output[j * params.dim + c]);
      }
    }
    grad_table[dst + c] = elem(sum);
  }
}
