// fill: dst[i] = value (zeroing gradient buffers, masks). dst is elem (f32 or f16 storage); the
// value arrives as f32 and is converted once.
//
// Bindings (group 0):
//   0 dst: array<elem>  read_write  [size]
//   1 params: Params    uniform
// Dispatch: ceil(size / WG) workgroups of WG over x and y (i = gid.x + gid.y * row_stride).
// Reference: none needed (the test compares with the value itself).

override WG: u32 = 256;

struct Params {
  size: u32,
  row_stride: u32,
  value: f32,
}

@group(0) @binding(0) var<storage, read_write> dst: array<elem>;
@group(0) @binding(1) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row_stride;
  if (i >= params.size) {
    return;
  }
  dst[i] = elem(params.value);
}
