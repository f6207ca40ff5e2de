// dropout_keep: the counter-based dropout mask, a pure function of (seed, stream, index), so
// backward recomputes the mask instead of storing it. Two rounds of Wellons' lowbias32 integer
// mixer keyed by seed and stream; for fixed (seed, stream) it permutes the u32 indices.
// The element is kept when the hash is >= threshold = floor(p * 2^32), so P(keep) = 1 - p
// to within 2^-32.
// CPU twin (must stay bit-identical): dropoutKeep in packages/gpu/src/kernels/dropout.ts.

fn lowbias32(v: u32) -> u32 {
  var x = v;
  x ^= x >> 16u;
  x *= 0x7feb352du;
  x ^= x >> 15u;
  x *= 0x846ca68bu;
  x ^= x >> 16u;
  return x;
}

fn dropout_hash(seed: u32, stream: u32, index: u32) -> u32 {
  let key_a = lowbias32(seed ^ 0x9e3779b9u);
  let key_b = lowbias32(stream ^ key_a ^ 0x85ebca6bu);
  return lowbias32(lowbias32(index + key_a) ^ key_b);
}

fn dropout_keep(seed: u32, stream: u32, index: u32, threshold: u32) -> bool {
  return dropout_hash(seed, stream, index) >= threshold;
}
