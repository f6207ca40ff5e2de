// dropout-forward: y = keep ? x * scale : 0, scale = 1 / (1 - p) (inverted dropout, as
// torch.nn.Dropout in training mode); keep from shaders/lib/dropout-hash.wgsl. x and y are elem
// (f32 or f16 storage), the scaling f32; the mask depends only on the index, not on elem.
//
// Bindings (group 0):
//   0 x: array<elem>  read        [size]
//   1 y: array<elem>  read_write  [size]
//   2 params: Params  uniform
// Needs shaders/lib/dropout-hash.wgsl.
// Dispatch: ceil(size / WG) workgroups of WG over x and y (i = gid.x + gid.y * row_stride).
// Reference: dropoutKeep (packages/gpu/src/kernels/dropout.ts); statistics tested in
// packages/gpu/test/transformer-ops.gpu.test.ts.

override WG: u32 = 256;

struct Params {
  size: u32,
  row_stride: u32,
  seed: u32,
  stream: u32,
  threshold: u32,
  scale: f32,
}

@group(0) @binding(0) var<storage, read> x: array<elem>;
@group(0) @binding(1) var<storage, read_write> y: array<elem>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row_stride;
  if (i >= params.size) {
    return;
  }
  let keep = dropout_keep(params.seed, params.stream, i, params.threshold);
  y[i] = elem(select(0.0, f32(x[i]) * params.scale, keep));
}
