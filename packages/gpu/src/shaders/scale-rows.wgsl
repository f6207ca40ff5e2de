// scale-rows: dst[r, c] = (ACCUMULATE ? dst[r, c] : 0) + src[r, c] * gate[r * gate_stride + gate_offset].
// A per-row (per-token) scalar times an activation row: UniPELT's gates, each a sigmoid output with
// one value per token (g * y forward, g * gy backward). The gate is one column of an f32
// [rows, gate_stride] tensor, so a layer's gates can live side by side in one buffer.
// src and dst are elem (f32 or f16 storage), the gate f32; the arithmetic is f32 and dst is rounded
// to elem once, on the store.
//
// Bindings (group 0):
//   0 src: array<elem>     read        [rows, cols]
//   1 gate: array<f32>     read        [rows, gate_stride]; column gate_offset is read
//   2 dst: array<elem>     read_write  [rows, cols]
//   3 params: Params       uniform
// Dispatch: ceil(rows * cols / WG) workgroups of WG over x and y (i = gid.x + gid.y * row_stride).
// Reference: PyTorch (src * gate[:, offset:offset + 1]), scripts/make_vector_scale_fixtures.py.

override WG: u32 = 256;
override ACCUMULATE: bool = false;

struct Params {
  size: u32,
  cols: u32,
  row_stride: u32,
  gate_stride: u32,
  gate_offset: u32,
}

@group(0) @binding(0) var<storage, read> src: array<elem>;
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<elem>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row_stride;
  if (i >= params.size) {
    return;
  }
  let r = i / params.cols;
  var v = f32(src[i]) * gate[r * params.gate_stride + params.gate_offset];
  if (ACCUMULATE) {
    v += f32(dst[i]);
  }
  dst[i] = elem(v);
}
