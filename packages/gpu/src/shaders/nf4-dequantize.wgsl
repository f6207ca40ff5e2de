// nf4-dequantize: NF4 codes and block scales -> elem (f32 or f16), code[q] * absmax[block] computed in f32.
// The weight's rows (cols values each) land ld apart in the output (ld = cols: dense; more: padded
// rows for the matmul's ldb, whose padding is left as it is). With ld > cols the wrapper requires
// cols % 8 == 0, so a word's 8 values stay in one row.
//
// Bindings (group 0): 0-3 the NF4 weight (shaders/lib/nf4-weights.wgsl), then
//   4 output: the values as their bits, rows ld apart: one f32 per u32, or two f16 (HALF_OUTPUT;
//             element 2j in the low half, as array<f16> has it). Entry point `main` sees it as
//             array<u32>, `main_quads` as array<vec4<u32>> (two views of one binding, one per entry)
//   5 params: Params uniform
// Why words: on lavapipe each store to an address that differs across lanes is a scatter, and
// 16-bit ones cost more; packing two f16 per store halves them (a 1536 x 576 weight into f16:
// 2.8 -> 2.3 ms, after reading the scale once had taken it from 5.3).
// Entry points:
//   main        one invocation per packed word (8 values), any layout: a last word of fewer than 8
//               values, or rows whose start is not 16-byte aligned.
//   main_quads  QUAD_WORDS words per invocation, each word's 8 values in 16-byte stores (one for
//               f16, two for f32), the scale read once: 1.33-1.40x `main` for a 1536 x 576 weight
//               into f16 on lavapipe (four interleaved A/Bs). The wrapper takes it when every word
//               is whole (n % 8 == 0) and lands on 16 bytes (dense, or ld a multiple of the values
//               per 16 bytes).
// Dispatch: one invocation per word (main) or per QUAD_WORDS words (main_quads), rows along y past the limit.
// CPU reference: dequantizeNF4 in packages/gpu/src/nf4/quantize.ts

override WG: u32 = 64u;
override HALF_OUTPUT: bool = false;

struct Params {
  n: u32,
  row_stride: u32,
  offset: f32,
  cols: u32,
  ld: u32,
}

@group(0) @binding(4) var<storage, read_write> output: array<u32>;
@group(0) @binding(4) var<storage, read_write> output_quads: array<vec4<u32>>;
@group(0) @binding(5) var<uniform> params: Params;

// Words per main_quads invocation, set by the wrapper (kernels/nf4.ts), which sizes the grid by it.
override QUAD_WORDS: u32;

// Where value `first` of the weight goes: its row, ld apart.
fn output_index(first: u32) -> u32 {
  let row = first / params.cols;
  return row * params.ld + (first - row * params.cols);
}

fn word_values(word: u32, scale: f32) -> array<f32, 8> {
  var values: array<f32, 8>;
  for (var e = 0u; e < 8u; e++) {
    values[e] = code4(nf4_nibble(word, e)) * scale;
  }
  return values;
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let word_index = gid.x + gid.y * params.row_stride;
  let first = word_index * 8u;
  if (first >= params.n) {
    return;
  }
  let at = output_index(first);
  // Block sizes are multiples of 8 (NF4_BLOCK_SIZES), so the word's 8 values share one scale: one
  // lookup instead of 8 (3 with double quantization), which on lavapipe are gathers.
  let values = word_values(nf4_packed[word_index], nf4_scale(first / BLOCK_SIZE, params.offset));
  if (HALF_OUTPUT) {
    for (var p = 0u; p < 4u; p++) {
      let i = first + 2u * p;
      let o = (at + 2u * p) / 2u;
      if (i + 1u < params.n) {
        output[o] = pack2x16float(vec2<f32>(values[2u * p], values[2u * p + 1u]));
      } else if (i < params.n) {
        // The last value of an odd n: keep whatever the buffer holds past the end.
        let low = pack2x16float(vec2<f32>(values[2u * p], 0.0)) & 0xffffu;
        output[o] = (output[o] & 0xffff0000u) | low;
      }
    }
    return;
  }
  for (var e = 0u; e < 8u; e++) {
    if (first + e < params.n) {
      output[at + e] = bitcast<u32>(values[e]);
    }
  }
}

@compute @workgroup_size(WG)
fn main_quads(@builtin(global_invocation_id) gid: vec3<u32>) {
  let first_word = (gid.x + gid.y * params.row_stride) * QUAD_WORDS;
  if (first_word * 8u >= params.n) {
    return;
  }
  let scale = nf4_scale(first_word * 8u / BLOCK_SIZE, params.offset);
  for (var w = 0u; w < QUAD_WORDS; w++) {
    let first = (first_word + w) * 8u;
    if (first >= params.n) {
      return;
    }
    let at = output_index(first);
    let v = word_values(nf4_packed[first_word + w], scale);
    if (HALF_OUTPUT) {
      output_quads[at / 8u] = vec4<u32>(
        pack2x16float(vec2<f32>(v[0], v[1])), pack2x16float(vec2<f32>(v[2], v[3])),
        pack2x16float(vec2<f32>(v[4], v[5])), pack2x16float(vec2<f32>(v[6], v[7])));
    } else {
      output_quads[at / 4u] = bitcast<vec4<u32>>(vec4<f32>(v[0], v[1], v[2], v[3]));
      output_quads[at / 4u + 1u] = bitcast<vec4<u32>>(vec4<f32>(v[4], v[5], v[6], v[7]));
    }
  }
}
