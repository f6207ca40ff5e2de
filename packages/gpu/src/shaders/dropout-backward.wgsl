// dropout-backward: grad_input (+)= keep ? grad_output * scale : 0, with the mask recomputed
// from the same (seed, stream) the forward pass used. The gradients are elem (f32 or f16
// storage); the scaling and the accumulating add are f32.
//
// Bindings (group 0):
//   0 grad_output: array<elem>  read        [size]
//   1 grad_input: array<elem>   read_write  [size]
//   2 params: Params            uniform
// Needs shaders/lib/dropout-hash.wgsl.
// Dispatch: ceil(size / WG) workgroups of WG over x and y (i = gid.x + gid.y * row_stride).
// Reference: dropoutKeep (packages/gpu/src/kernels/dropout.ts).

override WG: u32 = 256;
override ACCUMULATE: bool = false;

struct Params {
  size: u32,
  row_stride: u32,
  seed: u32,
  stream: u32,
  threshold: u32,
  scale: f32,
}

@group(0) @binding(0) var<storage, read> grad_output: array<elem>;
@group(0) @binding(1) var<storage, read_write> grad_input: array<elem>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row_stride;
  if (i >= params.size) {
    return;
  }
  let keep = dropout_keep(params.seed, params.stream, i, params.threshold);
  var g = select(0.0, f32(grad_output[i]) * params.scale, keep);
  if (ACCUMULATE) {
    g += f32(grad_input[i]);
  }
  grad_input[i] = elem(g);
}
