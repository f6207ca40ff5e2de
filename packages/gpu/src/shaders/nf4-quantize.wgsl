// nf4-quantize: float32 values -> NF4 codes and per-block absmax, as bitsandbytes' quantize_4bit.
//
// Bindings (group 0):
//   0 input: array<f32>                 read        n values (row-major flattened weight)
//   1 packed: array<u32>                read_write  ceil(n / 8) words, 8 codes each
//   2 absmax: array<f32>                read_write  one per block (a short last block has its own)
//   3 status: array<atomic<u32>>        read_write  [0] set to 1 if any value is NaN or infinite
//   4 params: Params                    uniform
// Dispatch: one invocation per block, ceil(blocks / WG) workgroups along x, rows along y when
// x would exceed the per-dimension limit (index = x + y * row_stride).
// Scaled value x * (1 / absmax) clamped to [-1, 1]; nearest code by the first minimum of
// |scaled - code| (ties to the lower code; NaN from an all-zero block gives code 0);
// an odd element count pads with code 7 (0.0). BLOCK_SIZE is a multiple of 8, so every block
// owns whole words.
// CPU reference: quantizeNF4 in packages/gpu/src/nf4/quantize.ts

override WG: u32 = 64u;

struct Params {
  n: u32,
  block_size: u32,
  blocks: u32,
  row_stride: u32,
}

@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read_write> packed: array<u32>;
@group(0) @binding(2) var<storage, read_write> absmax: array<f32>;
@group(0) @binding(3) var<storage, read_write> status: array<atomic<u32>>;
@group(0) @binding(4) var<uniform> params: Params;

fn nearest_nf4(scaled: f32) -> u32 {
  var best = 0u;
  var best_distance = abs(scaled - NF4_CODE[0]);
  for (var i = 1u; i < 16u; i++) {
    let d = abs(scaled - NF4_CODE[i]);
    if (d < best_distance) {
      best = i;
      best_distance = d;
    }
  }
  return best;
}

fn is_finite(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let block = gid.x + gid.y * params.row_stride;
  if (block >= params.blocks) {
    return;
  }
  let first = block * params.block_size;
  let end = min(first + params.block_size, params.n);
  var m = 0.0;
  var finite = true;
  for (var i = first; i < end; i++) {
    let x = input[i];
    finite = finite && is_finite(x);
    m = max(m, abs(x));
  }
  if (!finite) {
    atomicOr(&status[0], 1u);
  }
  absmax[block] = m;
  // An all-zero block scales 0 * (1 / 0) = NaN in bitsandbytes, whose argmin then picks code 0.
  // WGSL leaves 1 / 0 unspecified, so that case is spelled out.
  let zero_block = m == 0.0;
  let reciprocal = select(1.0 / m, 0.0, zero_block);
  let padded_end = min(first + params.block_size, (params.n + 7u) & ~7u);
  for (var w = first; w < padded_end; w += 8u) {
    var word = 0u;
    for (var e = 0u; e < 8u; e++) {
      var code = 7u;
      if (w + e < params.n) {
        code = select(nearest_nf4(clamp(input[w + e] * reciprocal, -1.0, 1.0)), 0u, zero_block);
      }
      word |= code << (8u * (e >> 1u) + 4u * (1u - (e & 1u)));
    }
    packed[w >> 3u] = word;
  }
}
