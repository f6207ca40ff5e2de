// reduce-sum: partial sums of an f32 array, one per workgroup (a tree within the workgroup).
// Applied repeatedly until one value is left; the pairwise order keeps the float32 error near
// log2(n) ulps instead of n.
//
// Bindings (group 0):
//   0 input: array<f32>   read        n values
//   1 output: array<f32>  read_write  ceil(n / 256) partial sums
//   2 params: Params      uniform
// Dispatch: ceil(n / 256) workgroups of 256 along x (rows along y past the limit, index = x + y * row_stride).
// CPU reference: the float64 sum in doubleQuantizeAbsmax (packages/gpu/src/nf4/quantize.ts)

struct Params {
  n: u32,
  row_stride: u32,
}

@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read_write> output: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let group = wid.x + wid.y * params.row_stride;
  let i = group * 256u + lid;
  partial[lid] = select(0.0, input[min(i, params.n - 1u)], i < params.n);
  workgroupBarrier();
  for (var stride = 128u; stride > 0u; stride >>= 1u) {
    if (lid < stride) {
      partial[lid] += partial[lid + stride];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    output[group] = partial[0];
  }
}
