// cross-entropy: per-row loss of one chunk of LM-head logits, then the logits replaced in place by
// the loss gradient, so no second [rows, vocab] buffer is needed. For row r with target
// t = targets[target_offset + r]:
//   lse = max + log sum_v exp(logits[r, v] - max)              (max-subtracted: stable)
//   losses[target_offset + r] = lse - logits[r, t]              (0 if t is IGNORE, NaN if t >= vocab)
//   logits[r, v] = grad_scale * (exp(logits[r, v] - lse) - [v == t])   (a zero row if t is IGNORE)
// logits are stored as `elem` (f32, or f16 with the shader-f16 prelude): each is read into f32, the
// max, sums of exp, lse, loss and gradient are all f32, and the gradient is rounded to elem on the
// store. Losses are always f32.
//
// Bindings (group 0):
//   0 logits: array<elem>  read_write  [rows, vocab], rows logits_stride elements apart
//   1 targets: array<u32>  read        [total rows]; 0xffffffff = ignore
//   2 losses: array<f32>   read_write  [total rows]
//   3 params: Params       uniform
// Dispatch: one workgroup of 256 per row (rows along y past the limit, row = x + y * row_stride).
// Each lane keeps an online (max, sum of exp) over every 256th logit; a tree merges the lanes in
// a fixed order, so the result is deterministic.
// Reference: torch.nn.functional.cross_entropy (scripts/make_attention_fixtures.py).

struct Params {
  rows: u32,
  vocab: u32,
  target_offset: u32,
  row_stride: u32,
  grad_scale: f32,
  logits_stride: u32,
}

@group(0) @binding(0) var<storage, read_write> logits: array<elem>;
@group(0) @binding(1) var<storage, read> targets: array<u32>;
@group(0) @binding(2) var<storage, read_write> losses: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

const IGNORE: u32 = 0xffffffffu;
// A finite stand-in for -inf, so that differences of two of them stay finite.
const LOWEST: f32 = -3.0e38;

var<workgroup> partial_max: array<f32, 256>;
var<workgroup> partial_sum: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = wid.x + wid.y * params.row_stride;
  if (r >= params.rows) {
    return;
  }
  let vocab = params.vocab;
  let base = r * params.logits_stride;
  let t = targets[params.target_offset + r];
  // Read before any lane overwrites the row (the first barrier comes later).
  let target_logit = f32(logits[base + min(t, vocab - 1u)]);

  var m = LOWEST;
  var s = 0.0;
  for (var i = lid; i < vocab; i += 256u) {
    let x = f32(logits[base + i]);
    if (x > m) {
      s = s * exp(m - x) + 1.0;
      m = x;
    } else {
      s += exp(x - m);
    }
  }
  partial_max[lid] = m;
  partial_sum[lid] = s;
  workgroupBarrier();
  for (var stride = 128u; stride > 0u; stride >>= 1u) {
    if (lid < stride) {
      let m1 = partial_max[lid];
      let m2 = partial_max[lid + stride];
      let mm = max(m1, m2);
      partial_sum[lid] = partial_sum[lid] * exp(m1 - mm) + partial_sum[lid + stride] * exp(m2 - mm);
      partial_max[lid] = mm;
    }
    workgroupBarrier();
  }
  let lse = partial_max[0] + log(partial_sum[0]);

  let ignored = t == IGNORE;
  if (lid == 0u) {
    // NaN (built at run time: a constant NaN is a shader-creation error) marks a target past the vocabulary.
    let nan = bitcast<f32>(0x7fc00000u | (t & 0u));
    losses[params.target_offset + r] = select(select(nan, lse - target_logit, t < vocab), 0.0, ignored);
  }
  for (var i = lid; i < vocab; i += 256u) {
    let g = exp(f32(logits[base + i]) - lse) - select(0.0, 1.0, i == t);
    logits[base + i] = elem(select(g * params.grad_scale, 0.0, ignored));
  }
}
