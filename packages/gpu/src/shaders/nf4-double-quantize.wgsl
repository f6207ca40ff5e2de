// nf4-double-quantize: bitsandbytes' double quantization of NF4 block scales.
// offset = mean(absmax); (absmax - offset) is quantized in blocks of 256 to the signed dynamic
// 8-bit map: one float32 nested absmax per 256 blocks, one uint8 code per block (nearest by the
// first minimum of |scaled - code|, scaled = x * (1 / nested_absmax) clamped to [-1, 1]).
//
// Bindings (group 0):
//   0 absmax: array<f32>           read        the per-block absmax from nf4-quantize
//   1 total: array<f32>            read        [0] = sum of absmax (reduce-sum)
//   2 code: array<f32>             read        the 256-entry signed dynamic map
//   3 quantized: array<u32>        read_write  one uint8 code per block, 4 per word
//   4 nested_absmax: array<f32>    read_write  one per 256 blocks
//   5 offset_out: array<f32>       read_write  [0] = offset, for the host to keep
//   6 params: Params               uniform
// Dispatch: one invocation per nested block (256 absmax values own 64 whole words).
// CPU reference: doubleQuantizeAbsmax in packages/gpu/src/nf4/quantize.ts

override WG: u32 = 64u;

struct Params {
  blocks: u32,
  nested_blocks: u32,
}

@group(0) @binding(0) var<storage, read> absmax: array<f32>;
@group(0) @binding(1) var<storage, read> total: array<f32>;
@group(0) @binding(2) var<storage, read> code: array<f32>;
@group(0) @binding(3) var<storage, read_write> quantized: array<u32>;
@group(0) @binding(4) var<storage, read_write> nested_absmax: array<f32>;
@group(0) @binding(5) var<storage, read_write> offset_out: array<f32>;
@group(0) @binding(6) var<uniform> params: Params;

fn nearest_dynamic(scaled: f32) -> u32 {
  var best = 0u;
  var best_distance = abs(scaled - code[0]);
  for (var i = 1u; i < 256u; i++) {
    let d = abs(scaled - code[i]);
    if (d < best_distance) {
      best = i;
      best_distance = d;
    }
  }
  return best;
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let nb = gid.x;
  if (nb >= params.nested_blocks) {
    return;
  }
  let offset = total[0] / f32(params.blocks);
  if (nb == 0u) {
    offset_out[0] = offset;
  }
  let first = nb * 256u;
  let end = min(first + 256u, params.blocks);
  var m = 0.0;
  for (var i = first; i < end; i++) {
    m = max(m, abs(absmax[i] - offset));
  }
  nested_absmax[nb] = m;
  let zero_block = m == 0.0;
  let reciprocal = select(1.0 / m, 0.0, zero_block);
  for (var w = first; w < end; w += 4u) {
    var word = 0u;
    for (var e = 0u; e < 4u; e++) {
      if (w + e < end) {
        let q = select(nearest_dynamic(clamp((absmax[w + e] - offset) * reciprocal, -1.0, 1.0)), 0u, zero_block);
        word |= q << (8u * e);
      }
    }
    quantized[w >> 2u] = word;
  }
}
