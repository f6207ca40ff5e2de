// workgroup_sum2: the sum of one vec2<f32> per invocation over the whole workgroup (a pairwise
// tree in workgroup memory), returned to every invocation. Two sums share one tree because the
// backward passes need two per row (layer norm: sum(g) and sum(g * xhat)); pass 0 in .y for one.
//
// The kernel that includes this declares `override WG: u32` (a power of two) and
// `@workgroup_size(WG)`, and calls workgroup_sum2 from uniform control flow: it holds barriers.

var<workgroup> wg_partial: array<vec2<f32>, WG>;

fn workgroup_sum2(lid: u32, value: vec2<f32>) -> vec2<f32> {
  wg_partial[lid] = value;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (lid < stride) {
      wg_partial[lid] += wg_partial[lid + stride];
    }
    workgroupBarrier();
  }
  let total = wg_partial[0];
  // A second call must not overwrite wg_partial[0] before every invocation has read it.
  workgroupBarrier();
  return total;
}
