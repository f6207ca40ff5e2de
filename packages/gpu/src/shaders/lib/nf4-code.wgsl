// Shared 4-bit snippet: the codebooks and nibble access.
// A packed u32 word holds 8 codes; bytes are little-endian and each byte keeps its FIRST
// element in the HIGH nibble, so element e of a word sits at bit 8 * (e / 2) + 4 * (1 - e % 2).
// Codebooks: bitsandbytes' NormalFloat4 (NF4_CODE), or with INT4_CODE the symmetric integer code
// (q - 8) / 8 of onnxruntime's MatMulNBits, whose scale s is stored as 8s so that
// code4(q) * 8s = (q - 8) * s exactly.
// CPU reference: packages/gpu/src/nf4/format.ts

override INT4_CODE: bool = false;

var<private> NF4_CODE: array<f32, 16> = array<f32, 16>(
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
  -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
  0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0);

fn code4(q: u32) -> f32 {
  if (INT4_CODE) {
    return f32(q) * 0.125 - 1.0;
  }
  return NF4_CODE[q];
}

fn nf4_nibble(word: u32, e: u32) -> u32 {
  return (word >> (8u * (e >> 1u) + 4u * (1u - (e & 1u)))) & 15u;
}
