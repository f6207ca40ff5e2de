// add-bias: dst[r, c] += bias[c] (a Linear layer's bias after its matmul), rows ld apart (ld >= cols:
// a padded matrix's padding is left as it is). dst is elem (f32 or f16 storage), the bias f32; the
// add is f32.
//
// Bindings (group 0):
//   0 bias: array<f32>  read        [cols]
//   1 dst: array<elem>  read_write  [rows, ld]
//   2 params: Params    uniform
// Dispatch: ceil(rows * cols / WG) workgroups of WG over x and y (i = gid.x + gid.y * row_stride);
// invocation i adds to row i / cols, column i % cols.
// Reference: PyTorch broadcasting, scripts/make_transformer_op_fixtures.py.

override WG: u32 = 256;

struct Params {
  size: u32,
  cols: u32,
  row_stride: u32,
  ld: u32,
}

@group(0) @binding(0) var<storage, read> bias: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<elem>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row_stride;
  if (i >= params.size) {
    return;
  }
  let c = i % params.cols;
  let at = (i / params.cols) * params.ld + c;
  dst[at] = elem(f32(dst[at]) + bias[c]);
}
