// Shared NF4 snippet: a frozen NF4 weight [N, K] (row-major, flattened into blocks of BLOCK_SIZE)
// and its block scales, plain or double-quantized (bitsandbytes' nested absmax).
// Bindings (group 0) this snippet owns:
//   0 nf4_packed: array<u32>      packed codes, 8 per word (see nf4-code.wgsl)
//   1 nf4_absmax: array<f32>      absmax per block, or per 256 blocks when DOUBLE_QUANT
//   2 nf4_absmax_q: array<u32>    DOUBLE_QUANT: uint8 code of (absmax - offset) per block, 4 per word
//   3 nf4_absmax_code: array<f32> DOUBLE_QUANT: the 256-entry signed dynamic map
// CPU reference: nf4BlockScales in packages/gpu/src/nf4/quantize.ts

override BLOCK_SIZE: u32 = 64u;
override DOUBLE_QUANT: bool = false;

@group(0) @binding(0) var<storage, read> nf4_packed: array<u32>;
@group(0) @binding(1) var<storage, read> nf4_absmax: array<f32>;
@group(0) @binding(2) var<storage, read> nf4_absmax_q: array<u32>;
@group(0) @binding(3) var<storage, read> nf4_absmax_code: array<f32>;

fn nf4_scale(block: u32, offset: f32) -> f32 {
  if (DOUBLE_QUANT) {
    let q = (nf4_absmax_q[block >> 2u] >> (8u * (block & 3u))) & 255u;
    return nf4_absmax_code[q] * nf4_absmax[block >> 8u] + offset;
  }
  return nf4_absmax[block];
}

// Dequantized element at flat index i (row-major [N, K]).
fn nf4_weight(i: u32, offset: f32) -> f32 {
  return code4(nf4_nibble(nf4_packed[i >> 3u], i & 7u)) * nf4_scale(i / BLOCK_SIZE, offset);
}
