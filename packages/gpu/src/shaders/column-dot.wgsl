// column-dot: out[c] = (ACCUMULATE ? out[c] : 0) + sum over r of a[r, c] * (HAS_B ? b[r, c] : 1).
// IA3's vector gradient (sum over tokens of gy * y, or x * gxs) and BitFit's bias gradient (the
// column sum of the output gradient, HAS_B false). a and b are elem (f32 or f16 storage), out f32;
// every product and sum is f32.
//
// Each workgroup owns TILE_COLS adjacent columns, so out is written once, without atomics. Its
// TILE_COLS x ROW_THREADS invocations read rows in coalesced strips: invocation (x, y) sums rows
// y, y + ROW_THREADS, y + 2 ROW_THREADS, ... of column x in order, then a pairwise tree over y in
// workgroup memory combines the ROW_THREADS partial sums. The order depends only on the tile
// shape (fixed when the pipeline is created), never on scheduling: the result is deterministic.
//
// Bindings (group 0):
//   0 a: array<elem>    read        [rows, cols]
//   1 b: array<elem>    read        [rows, cols] (HAS_B; otherwise a again, unread)
//   2 out: array<f32>   read_write  [cols]
//   3 params: Params    uniform
// Dispatch: ceil(cols / TILE_COLS) workgroups of (TILE_COLS, ROW_THREADS) over x and y; a
// workgroup's first column is wid.x * TILE_COLS + wid.y * row_stride. ROW_THREADS is a power of two.
// Reference: columnDotRef (packages/gpu/src/kernels/vector-scale.ref.ts); goldens from PyTorch,
// scripts/make_vector_scale_fixtures.py.

override TILE_COLS: u32 = 32;
override ROW_THREADS: u32 = 8;
override HAS_B: bool = true;
override ACCUMULATE: bool = false;

struct Params {
  rows: u32,
  cols: u32,
  row_stride: u32,
}

@group(0) @binding(0) var<storage, read> a: array<elem>;
@group(0) @binding(1) var<storage, read> b: array<elem>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

var<workgroup> partial: array<f32, TILE_COLS * ROW_THREADS>;

@compute @workgroup_size(TILE_COLS, ROW_THREADS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = wid.x * TILE_COLS + wid.y * params.row_stride + lid.x;
  let cols = params.cols;
  var sum = 0.0;
  if (c < cols) {
    for (var r = lid.y; r < params.rows; r += ROW_THREADS) {
      let i = r * cols + c;
      if (HAS_B) {
        sum += f32(a[i]) * f32(b[i]);
      } else {
        sum += f32(a[i]);
      }
    }
  }
  let slot = lid.y * TILE_COLS + lid.x;
  partial[slot] = sum;
  workgroupBarrier();
  for (var stride = ROW_THREADS / 2u; stride > 0u; stride >>= 1u) {
    if (lid.y < stride) {
      partial[slot] += partial[slot + stride * TILE_COLS];
    }
    workgroupBarrier();
  }
  if (lid.y == 0u && c < cols) {
    var total = partial[lid.x];
    if (ACCUMULATE) {
      total = out[c] + total;
    }
    out[c] = total;
  }
}
