// dora-norm: DoRA's weight norm (PEFT tuners/lora/dora.py, get_weight_norm), per output row o of
// a frozen W [out, in] with a LoRA pair A [r, in], B [out, r] and scale s:
//   norm[o]        = sqrt(sum over i of (W[o, i] + s * sum over k of B[o, k] A[k, i])^2)
//   inv_norm[o]    = 1 / norm[o]
//   m_over_norm[o] = magnitude[o] / norm[o]
// params.outputs says which of the three are written (bit 0 norm, 1 inv_norm, 2 m_over_norm): a
// uniform rather than override flags, so one pipeline serves every subset. W is elem (f32 or f16
// storage, dense: an NF4 base is dequantized first); A, B, magnitude and outputs are f32, and all
// arithmetic is f32.
//
// One workgroup per row. Row o of B is staged in workgroup memory (every invocation reads all of
// it); invocation t takes columns t, t + WG, t + 2 WG, ... in order, so for each k the workgroup
// reads a contiguous stretch of A's row k. A pairwise tree over the WG partial sums of squares
// finishes the row. The order depends only on WG (fixed when the pipeline is created), never on
// scheduling: the result is deterministic. A zero row gives norm 0; its inv_norm and m_over_norm
// are then whatever the device's 1 / 0 is (WGSL leaves it indeterminate; PyTorch gives inf).
//
// Bindings (group 0):
//   0 weight: array<elem>       read        [out, in]
//   1 a: array<f32>             read        [rank, in]
//   2 b: array<f32>             read        [out, rank]
//   3 magnitude: array<f32>     read        [out] (bit 2 of outputs; otherwise a again, unread)
//   4 norm: array<f32>          read_write  [out] (bit 0; otherwise a 1-element stand-in, unwritten)
//   5 inv_norm: array<f32>      read_write  [out] (bit 1; likewise)
//   6 m_over_norm: array<f32>   read_write  [out] (bit 2; likewise)
//   7 params: Params            uniform
// Needs shaders/lib/workgroup-sum.wgsl.
// Dispatch: one workgroup of WG per row; rows past the x limit continue along y
// (row = workgroup_id.x + workgroup_id.y * row_stride). WG is a power of two; rank <= MAX_RANK.
// Reference: doraWeightNormRef (packages/gpu/src/kernels/dora.ref.ts); goldens from PyTorch,
// scripts/make_dora_fixtures.py.

override WG: u32 = 128;
override MAX_RANK: u32 = 64;

const WRITE_NORM: u32 = 1u;
const WRITE_INV_NORM: u32 = 2u;
const WRITE_M_OVER_NORM: u32 = 4u;

struct Params {
  rows: u32,
  cols: u32,
  rank: u32,
  scale: f32,
  row_stride: u32,
  outputs: u32,
}

@group(0) @binding(0) var<storage, read> weight: array<elem>;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> magnitude: array<f32>;
@group(0) @binding(4) var<storage, read_write> norm: array<f32>;
@group(0) @binding(5) var<storage, read_write> inv_norm: array<f32>;
@group(0) @binding(6) var<storage, read_write> m_over_norm: array<f32>;
@group(0) @binding(7) var<uniform> params: Params;

var<workgroup> b_row: array<f32, MAX_RANK>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * params.row_stride;
  if (row >= params.rows) {
    return;
  }
  let cols = params.cols;
  let rank = params.rank;
  for (var k = lid; k < rank; k += WG) {
    b_row[k] = b[row * rank + k];
  }
  workgroupBarrier();
  let base = row * cols;
  var squares = 0.0;
  for (var i = lid; i < cols; i += WG) {
    var ba = 0.0;
    for (var k = 0u; k < rank; k++) {
      ba += b_row[k] * a[k * cols + i];
    }
    let v = f32(weight[base + i]) + params.scale * ba;
    squares += v * v;
  }
  let total = workgroup_sum2(lid, vec2<f32>(squares, 0.0)).x;
  if (lid == 0u) {
    let n = sqrt(total);
    let outputs = params.outputs;
    if ((outputs & WRITE_NORM) != 0u) {
      norm[row] = n;
    }
    if ((outputs & WRITE_INV_NORM) != 0u) {
      inv_norm[row] = 1.0 / n;
    }
    if ((outputs & WRITE_M_OVER_NORM) != 0u) {
      m_over_norm[row] = magnitude[row] / n;
    }
  }
}
