/**
 * Token embedding lookup (with optional learned positions, GPT-2's wpe) and the table's
 * gradient, deterministic without float atomics. Tables, output and gradients are f32 or f16
 * (`dtype`); the position add and the gradient sums are f32.
 * Shaders: shaders/embedding-gather.wgsl, shaders/embedding-scatter-add.wgsl.
 * Expected values: PyTorch autograd of F.embedding (scripts/make_transformer_op_fixtures.py).
 */
import sumLib from '../shaders/lib/workgroup-sum.wgsl.js';
import gatherSource from '../shaders/embedding-gather.wgsl.js';
import scatterAddSource from '../shaders/embedding-scatter-add.wgsl.js';
import type { GpuContext } from '../device.js';
import { InvalidArgumentError } from '@webtune/errors';
import type { ElementType, KernelDefinition } from '../pipeline-cache.js';
import { packParams, type CommandRecorder } from '../recorder.js';
import type { GpuTensor } from '../tensor.js';
import { grid1D } from './grid.js';
import { requireCount, requireElementType, requireDistinct, requireTensor } from './tensor-checks.js';

export const EMBEDDING_GATHER_KERNEL: KernelDefinition = {
  name: 'embedding-gather',
  files: [{ path: 'shaders/embedding-gather.wgsl', source: gatherSource }],
  bindings: ['read', 'read', 'read', 'read-write', 'uniform'],
};
export const EMBEDDING_SCATTER_ADD_KERNEL: KernelDefinition = {
  name: 'embedding-scatter-add',
  files: [{ path: 'shaders/lib/workgroup-sum.wgsl', source: sumLib }, { path: 'shaders/embedding-scatter-add.wgsl', source: scatterAddSource }],
  bindings: ['read', 'read', 'read-write', 'uniform'],
};

const GATHER_WG = 256;
/** Invocations per token row in scatterAdd (they stride over the columns); a power of two. */
const SCATTER_WG = 64;

export interface EmbeddingOptions {
  /** Element type of the tables, out, gradOutput and gradTable (default 'f32'; 'f16' needs shader-f16). */
  dtype?: ElementType;
}

export interface EmbeddingGatherArgs {
  /** [vocab, dim] */
  table: GpuTensor;
  /** u32 [rows] */
  ids: GpuTensor;
  /** [rows, dim] */
  out: GpuTensor;
  rows: number;
  /** Learned positions added to row t: positions.table[(t % seqLen) + (offset ?? 0)]. */
  positions?: { table: GpuTensor; seqLen: number; offset?: number };
}

export interface EmbeddingScatterAddArgs {
  /** u32 [rows] */
  ids: GpuTensor;
  /** [rows, dim] */
  gradOutput: GpuTensor;
  /** [vocab, dim], added into. */
  gradTable: GpuTensor;
  rows: number;
}

export interface EmbeddingKernels {
  readonly dtype: ElementType;
  /**
   * out[t] = table[ids[t]] (+ positions[(t % seqLen) + positionOffset] when given). ids: u32
   * tensor [rows]; table [vocab, dim]; out [rows, dim]. An out-of-range id gives a zero row and
   * reads nothing out of bounds; validating ids is the caller's job (on the CPU, cheaply).
   */
  gather(rec: CommandRecorder, a: EmbeddingGatherArgs): void;
  /**
   * gradTable[v] += sum over t with ids[t] == v of gradOutput[t]; deterministic (each table row
   * is summed by one workgroup in token order). Out-of-range ids are skipped.
   */
  scatterAdd(rec: CommandRecorder, a: EmbeddingScatterAddArgs): void;
}

function tableDims(op: string, name: string, t: GpuTensor, dtype: ElementType): [number, number] {
  if (t.shape.length !== 2 || t.dtype !== dtype) {
    throw new InvalidArgumentError(`${op}: ${name} "${t.label}" must be a 2-D ${dtype} tensor [vocab, dim]; got ${t.dtype} [${t.shape.join(', ')}].`);
  }
  return [t.shape[0]!, t.shape[1]!];
}

/**
 * @example
 * ```ts
 * const emb = await createEmbeddingKernels(ctx); // or (ctx, { dtype: 'f16' })
 * emb.gather(rec, { table: wte, ids, out: hidden, rows: batch * seqLen, positions: { table: wpe, seqLen } });
 * ```
 */
export async function createEmbeddingKernels(ctx: GpuContext, options: EmbeddingOptions = {}): Promise<EmbeddingKernels> {
  const dtype = requireElementType(ctx, 'createEmbeddingKernels', options.dtype);
  const [gatherPlain, gatherPositions, scatterAdd] = await Promise.all([
    ctx.pipelines.get(EMBEDDING_GATHER_KERNEL, dtype, { WG: GATHER_WG, HAS_POSITIONS: false }),
    ctx.pipelines.get(EMBEDDING_GATHER_KERNEL, dtype, { WG: GATHER_WG, HAS_POSITIONS: true }),
    ctx.pipelines.get(EMBEDDING_SCATTER_ADD_KERNEL, dtype, { WG: SCATTER_WG }),
  ]);
  const maxGroups = ctx.limits.maxComputeWorkgroupsPerDimension;
  return {
    dtype,
    gather(rec, a) {
      const op = 'embedding gather';
      const [vocab, dim] = tableDims(op, 'table', a.table, dtype);
      requireCount(op, 'rows', a.rows);
      requireCount(op, 'dim (table columns)', dim);
      requireTensor(op, 'ids', a.ids, a.rows, `[${a.rows}]`, 'u32');
      requireTensor(op, 'out', a.out, a.rows * dim, `[${a.rows}, ${dim}] for table [${vocab}, ${dim}]`, dtype);
      const pos = a.positions;
      let seqLen = 1;
      let offset = 0;
      if (pos) {
        seqLen = pos.seqLen;
        offset = pos.offset ?? 0;
        requireCount(op, 'positions.seqLen', seqLen);
        requireCount(op, 'positions.offset', offset, 0);
        const [maxPositions, posDim] = tableDims(op, 'positions.table', pos.table, dtype);
        if (posDim !== dim || seqLen + offset > maxPositions) {
          throw new InvalidArgumentError(
            `${op}: positions.table [${maxPositions}, ${posDim}] must be [>= seqLen + offset = ${seqLen + offset}, ${dim}] ` +
              `to match table [${vocab}, ${dim}].`,
          );
        }
      }
      requireDistinct(op, { out: a.out }, { table: a.table, ids: a.ids, positions: pos?.table });
      const g = grid1D(a.rows * dim, GATHER_WG, maxGroups);
      rec.dispatch(
        pos ? gatherPositions : gatherPlain,
        // Without positions the table fills their binding: two read-only bindings of one buffer are allowed.
        [a.table.buffer, a.ids.buffer, (pos?.table ?? a.table).buffer, a.out.buffer],
        packParams([['u32', a.rows], ['u32', dim], ['u32', vocab], ['u32', seqLen], ['u32', offset], ['u32', g.rowStride]]),
        g.workgroups,
      );
    },
    scatterAdd(rec, a) {
      const op = 'embedding scatterAdd';
      const [vocab, dim] = tableDims(op, 'gradTable', a.gradTable, dtype);
      requireCount(op, 'rows', a.rows);
      requireCount(op, 'dim (gradTable columns)', dim);
      requireTensor(op, 'ids', a.ids, a.rows, `[${a.rows}]`, 'u32');
      requireTensor(op, 'gradOutput', a.gradOutput, a.rows * dim, `[${a.rows}, ${dim}] for gradTable [${vocab}, ${dim}]`, dtype);
      requireDistinct(op, { gradTable: a.gradTable }, { ids: a.ids, gradOutput: a.gradOutput });
      const g = grid1D(a.rows, 1, maxGroups);
      rec.dispatch(scatterAdd, [a.ids.buffer, a.gradOutput.buffer, a.gradTable.buffer],
        packParams([['u32', a.rows], ['u32', dim], ['u32', vocab], ['u32', g.rowStride]]), g.workgroups);
    },
  };
}
