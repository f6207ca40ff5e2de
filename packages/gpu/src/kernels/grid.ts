/**
 * Spreads a 1-D dispatch over x and y when it needs more workgroups than one dimension allows
 * (65535 by default); shaders rebuild the index as x + y * rowStride.
 */
export interface Grid {
  workgroups: [number, number];
  /** Invocations per y row: what the shader multiplies gid.y by. */
  rowStride: number;
}

export function grid1D(invocations: number, workgroupSize: number, maxPerDimension: number): Grid {
  const groups = Math.max(1, Math.ceil(invocations / workgroupSize));
  const x = Math.min(groups, maxPerDimension);
  const y = Math.ceil(groups / x);
  return { workgroups: [x, y], rowStride: x * workgroupSize };
}
