// nf4-dequantize: NF4 codes and block scales -> elem (f32 or f16), code[q] * absmax[block] computed in f32.
//
// Bindings (group 0): 0-3 the NF4 weight (shaders/lib/nf4-weights.wgsl), then
//   4 output: array<elem> read_write  n values
//   5 params: Params      uniform
// Dispatch: one invocation per packed word (8 values), rows along y past the limit.
// CPU reference: dequantizeNF4 in packages/gpu/src/nf4/quantize.ts

override WG: u32 = 64u;

struct Params {
  n: u32,
  row_stride: u32,
  offset: f32,
}

@group(0) @binding(4) var<storage, read_write> output: array<elem>;
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let word_index = gid.x + gid.y * params.row_stride;
  let first = word_index * 8u;
  if (first >= params.n) {
    return;
  }
  let word = nf4_packed[word_index];
  for (var e = 0u; e < 8u; e++) {
    let i = first + e;
    if (i < params.n) {
      output[i] = elem(code4(nf4_nibble(word, e)) * nf4_scale(i / BLOCK_SIZE, params.offset));
    }
  }
}
