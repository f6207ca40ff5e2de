// Shared by the fused NF4 kernels (nf4-matmul.wgsl, nf4-matmul-grad-input.wgsl): workgroup shape,
// the accumulate flag and the uniform parameters (sizes, output scale, the double-quantization
// offset of the weight's scales).
// The wrapper: createNF4MatmulKernel in packages/gpu/src/kernels/nf4.ts

override WG_X: u32 = 8u;
override WG_Y: u32 = 8u;
override ACCUMULATE: bool = false;

struct Params {
  m: u32,
  n: u32,
  k: u32,
  alpha: f32,
  offset: f32,
}
