// Shared by the matmul kernels (matmul.wgsl, matmul-vec4.wgsl, matmul-subgroup.wgsl): the variant
// flags, the output block each invocation owns and the uniform parameters.
// The wrapper: packages/gpu/src/kernels/matmul.ts

override WG_X: u32 = 8u;
override WG_Y: u32 = 8u;
override TRANS_A: bool = false;
override TRANS_B: bool = false;
override ACCUMULATE: bool = false;

// Rows of C per invocation (registers) in matmul.wgsl and matmul-vec4.wgsl; four columns each. A
// multiple of 4 (matmul-vec4 loads quads of rows when TRANS_A). matmul-subgroup has its own.
const ROWS = 8u;

// Sizes, per-batch strides in elements (0 broadcasts an operand), the output scale, where each
// operand's batch 0 starts in its buffer (elements; a block of a larger tensor), and the distance
// between consecutive stored rows of each operand (elements; at least the row's length, so rows
// can be padded or be columns of a wider tensor).
struct Params {
  m: u32,
  n: u32,
  k: u32,
  stride_a: u32,
  stride_b: u32,
  stride_c: u32,
  alpha: f32,
  offset_a: u32,
  offset_b: u32,
  offset_c: u32,
  ld_a: u32,
  ld_b: u32,
  ld_c: u32,
}
