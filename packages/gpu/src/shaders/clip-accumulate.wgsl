// clip-accumulate: DP-SGD's per-example clipping (Opacus optimizers/optimizer.py,
// clip_and_accumulate) for one parameter tensor of one example:
//   sum[i] += clip[0] * grad[i];  grad[i] = 0
// clip[0] is min(1, C / (norm + 1e-6)) over ALL of the example's trainable tensors, written by
// clip-coefficient.wgsl; reading it here keeps the factor on the GPU, so an example needs no
// readback. grad is cleared for the next example's backward to write into. When RECORD is set
// (one tensor per example), invocation 0 also appends the example's norm (clip[1]) to
// norms[example], for progress reports (the fraction of examples clipped).
//
// Bindings (group 0):
//   0 grad: array<f32>   read_write  [size] (zeroed)
//   1 sum: array<f32>    read_write  [size]
//   2 clip: array<f32>   read        [2] (clip-coefficient.wgsl)
//   3 norms: array<f32>  read_write  [>= example + 1]
//   4 params: Params     uniform
// Dispatch: ceil(size / WG) workgroups of WG over x and y (i = gid.x + gid.y * row_stride).
// Reference: the per-example loop of scripts/make_dp_sgd_fixtures.py (plain PyTorch).

override WG: u32 = 256;

struct Params {
  size: u32,
  row_stride: u32,
  record: u32,
  example: u32,
}

@group(0) @binding(0) var<storage, read_write> grad: array<f32>;
@group(0) @binding(1) var<storage, read_write> sum: array<f32>;
@group(0) @binding(2) var<storage, read> clip: array<f32>;
@group(0) @binding(3) var<storage, read_write> norms: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row_stride;
  if (i == 0u && params.record != 0u) {
    norms[params.example] = clip[1];
  }
  if (i >= params.size) {
    return;
  }
  sum[i] = sum[i] + clip[0] * grad[i];
  grad[i] = 0.0;
}
