/**
 * matmul kernel wrapper: C = alpha * op(A) op(B) (+ C), batched, either operand transposed,
 * f32 or f16 storage with f32 accumulation. Shaders: shaders/matmul.wgsl (any shape, any device)
 * and the variants KernelTuning.matmul picks (matmul-vec4, matmul-subgroup(-wide), matmul-tiled).
 */
import commonLib from '../shaders/lib/matmul-common.wgsl.js';
import scalarIoLib from '../shaders/lib/matmul-scalar-io.wgsl.js';
import source from '../shaders/matmul.wgsl.js';
import vec4Source from '../shaders/matmul-vec4.wgsl.js';
import subgroupSource from '../shaders/matmul-subgroup.wgsl.js';
import tiledSource from '../shaders/matmul-tiled.wgsl.js';
import type { GpuContext } from '../device.js';
import { InvalidArgumentError } from '@webtune/errors';
import type { CompiledKernel, ElementType, KernelDefinition } from '../pipeline-cache.js';
import { CommandRecorder, packParams } from '../recorder.js';
import { BYTES_PER_ELEMENT, createTensor, type GpuTensor } from '../tensor.js';

const COMMON = { path: 'shaders/lib/matmul-common.wgsl', source: commonLib };
const SCALAR_IO = { path: 'shaders/lib/matmul-scalar-io.wgsl', source: scalarIoLib };

export const MATMUL_KERNEL: KernelDefinition = {
  name: 'matmul',
  files: [COMMON, SCALAR_IO, { path: 'shaders/matmul.wgsl', source }],
  bindings: ['read', 'read', 'read-write', 'uniform'],
};

/** Four elements per access; see KernelTuning.matmul for when it is used. */
export const MATMUL_VEC4_KERNEL: KernelDefinition = {
  name: 'matmul-vec4',
  files: [COMMON, { path: 'shaders/matmul-vec4.wgsl', source: vec4Source }],
  bindings: ['read', 'read', 'read-write', 'uniform'],
};

/**
 * Rows of A shared through subgroups (see KernelTuning.matmul), in two sizes: each 8-lane group
 * computes ROW_BLOCKS x 8 rows of C. 'wide' (4 blocks, 32 rows) does 4x the multiply-adds per
 * load of B, which is what counts on lavapipe; the narrow one serves M < 32, where most of a
 * 32-row block would be wasted.
 */
function subgroupKernel(name: string, rowBlocks: number): KernelDefinition {
  return {
    name,
    files: [
      COMMON, SCALAR_IO,
      { path: `<${name}: ROW_BLOCKS>`, source: `const ROW_BLOCKS = ${rowBlocks}u;\n` },
      { path: 'shaders/matmul-subgroup.wgsl', source: subgroupSource },
    ],
    bindings: ['read', 'read', 'read-write', 'uniform'],
    enables: ['subgroups'],
  };
}
export const MATMUL_SUBGROUP_KERNEL = subgroupKernel('matmul-subgroup', 1);
export const MATMUL_SUBGROUP_WIDE_KERNEL = subgroupKernel('matmul-subgroup-wide', 4);
/** Rows of C per 8-lane group in matmul-subgroup-wide; M below this takes matmul-subgroup. */
const SUBGROUP_WIDE_ROWS = 32;
/**
 * matmul-subgroup-wide's workgroup: two 8-lane groups, 64 x 32 outputs, so the step's 256-row
 * products still make dozens of workgroups for the CPU's threads. Its rate did not change from
 * 1 to 8 groups on lavapipe.
 */
const SUBGROUP_WIDE_WORKGROUP: readonly [number, number] = [8, 2];
/**
 * matmul-subgroup's workgroup: one 8-lane group, 8 x 32 outputs. It serves M < 32 (LoRA's
 * rank-sized gradients), where more groups would mostly compute clamped copies of the last row:
 * at 8 x 576 x 256 one group ran 7.5x faster than eight on lavapipe (11.3 vs 1.5 GFLOP/s).
 */
const SUBGROUP_WORKGROUP: readonly [number, number] = [8, 1];

/**
 * Operands staged through workgroup memory in 64 x 64 output tiles; see KernelTuning.matmul.
 * Bindings as the scalar kernel's, so any shape works.
 */
export const MATMUL_TILED_KERNEL: KernelDefinition = {
  name: 'matmul-tiled',
  files: [COMMON, SCALAR_IO, { path: 'shaders/matmul-tiled.wgsl', source: tiledSource }],
  bindings: ['read', 'read', 'read-write', 'uniform'],
};

/**
 * matmul-tiled's shape, set from here (the shader derives its tiles from these overrides):
 * 16 x 16 = 256 invocations, WebGPU's guaranteed maximum, each owning a 4 x 4 block of C, so a
 * workgroup computes a 64 x 64 tile: each element loaded into workgroup memory is used by 16
 * invocations, and shapes of a few hundred (LoRA's) still make dozens of workgroups. K advances 16
 * at a time: the two 64 x 16 f32 tiles (padded) take 9.25 KiB of workgroup memory, under WebGPU's
 * guaranteed 16 KiB, and between two barriers each invocation loads 4 elements of A and 4 of B and
 * does 256 multiply-adds. Not measured on a hardware GPU yet: retune with `npm run bench` there.
 */
const TILED_WORKGROUP: readonly [number, number] = [16, 16];
const TILED_K = 16;
/** Outputs per invocation in matmul-tiled (fixed in the shader: four vec4 accumulators). */
const TILED_BLOCK = 4;

/** Outputs per invocation (fixed in the shader: ROWS x 4 registers). */
const BLOCK_ROWS = 8;
const BLOCK_COLS = 4;

export interface MatmulVariant {
  dtype?: ElementType;
  /** A is stored [K, M] (use A^T). */
  transA?: boolean;
  /** B is stored [N, K] (use B^T), as PyTorch's Linear weight is. */
  transB?: boolean;
  /** Add the product into C instead of overwriting it. */
  accumulate?: boolean;
  /**
   * Workgroup shape in invocations; each covers an 8x4 output block. Not used by matmul-tiled
   * and the subgroup kernels, whose shapes are fixed with their blocks (TILED_WORKGROUP,
   * SUBGROUP_WORKGROUP, SUBGROUP_WIDE_WORKGROUP).
   */
  workgroup?: readonly [number, number];
}

export interface MatmulArgs {
  a: GpuTensor;
  b: GpuTensor;
  c: GpuTensor;
  m: number;
  n: number;
  k: number;
  batch?: number;
  alpha?: number;
  /** Batch strides in elements; default the operand's stored rows times its row stride. Pass 0 to share one operand across the batch. */
  strideA?: number;
  strideB?: number;
  /** C's batch stride in elements; default m * ldc. At least what one batch of C spans, so batches do not overlap. */
  strideC?: number;
  /**
   * Where batch 0 of each operand starts in its tensor, in elements (default 0): a block of a
   * larger tensor, such as rows r0.. of a [rows, k] matrix at offset r0 * k.
   */
  offsetA?: number;
  offsetB?: number;
  offsetC?: number;
  /**
   * Row strides ("leading dimensions", as BLAS calls them): elements from one stored row of the
   * operand to the next, at least the row's length (the default, dense). A is stored [M, K] rows
   * (lda >= K), or [K, M] with transA (lda >= M); B [K, N] (ldb >= N), or [N, K] with transB
   * (ldb >= K); C [M, N] (ldc >= N). Larger values read or write columns of a wider matrix, or
   * rows padded so that a power-of-two row length does not map every row to the same CPU cache
   * sets (see paddedRowStride).
   */
  lda?: number;
  ldb?: number;
  ldc?: number;
}

export interface MatmulKernel {
  readonly variant: Required<MatmulVariant>;
  encode(recorder: CommandRecorder, args: MatmulArgs): void;
}

export const DEFAULT_MATMUL_WORKGROUP: readonly [number, number] = [8, 8];

/**
 * A row stride (in elements) for a [rows, cols] matrix that the matmul reads a row block of at a
 * time: cols rounded up so that a row is an odd number of 64-byte lines. Why: a row of a
 * power-of-two-heavy length (an LM head's 49,152-entry vocabulary is 3,072 lines) puts the same
 * column of every row in the same few sets of a CPU's L1 cache, and a software adapter reading 32
 * rows at one column evicts its own lines on every step of K. On lavapipe the LM head's input
 * gradient (64 x 576 x 49,152) ran 1.16x faster from logits rows padded this way (interleaved
 * A/B, issue 22). A GPU loses at most 63 bytes a row.
 */
export function paddedRowStride(cols: number, dtype: ElementType): number {
  const perLine = 64 / BYTES_PER_ELEMENT[dtype];
  const lines = Math.ceil(cols / perLine);
  return (lines % 2 === 1 ? lines : lines + 1) * perLine;
}

function checkOperand(name: string, t: GpuTensor, dtype: ElementType, needed: number): void {
  if (t.dtype !== dtype) {
    throw new InvalidArgumentError(`matmul: ${name} "${t.label}" is ${t.dtype} but the kernel was created for ${dtype}.`);
  }
  if (t.size < needed) {
    throw new InvalidArgumentError(
      `matmul: ${name} "${t.label}" has ${t.size} elements (shape [${t.shape.join(', ')}]) but the call needs ${needed}.`,
    );
  }
}

export async function createMatmulKernel(ctx: GpuContext, variant: MatmulVariant = {}): Promise<MatmulKernel> {
  const v: Required<MatmulVariant> = {
    dtype: variant.dtype ?? 'f32',
    transA: variant.transA ?? false,
    transB: variant.transB ?? false,
    accumulate: variant.accumulate ?? false,
    workgroup: variant.workgroup ?? DEFAULT_MATMUL_WORKGROUP,
  };
  const overrides = {
    WG_X: v.workgroup[0],
    WG_Y: v.workgroup[1],
    TRANS_A: v.transA,
    TRANS_B: v.transB,
    ACCUMULATE: v.accumulate,
  };
  // 'tiled' (hardware GPUs) serves every shape and transpose itself. Otherwise A B^T (PyTorch's
  // Linear) takes the vec4 kernel whenever the shape allows if tuning.linear says so, and the rest
  // follows tuning.matmul; see KernelTuning.
  const tiledOnly = ctx.tuning.matmul === 'tiled';
  const vec4Always = v.transB && !v.transA && !tiledOnly && ctx.tuning.linear === 'vec4';
  const subgroups = ctx.tuning.matmul === 'subgroup';
  // The subgroup kernels map each 8-lane group to one workgroup row, so WG_X is 8. Where every
  // subgroup has exactly 8 lanes (lavapipe on AVX2) the group is the subgroup and rows are
  // shared by broadcasts from constant lanes (see shaders/matmul-subgroup.wgsl).
  const eightLanes = ctx.adapter.subgroupMinSize === 8 && ctx.adapter.subgroupMaxSize === 8;
  const subgroupShape = ([x, y]: readonly [number, number]) => ({ ...overrides, WG_X: x, WG_Y: y, EIGHT_LANES: eightLanes });
  const [scalar, vec4, subgroup, subgroupWide, tiled] = await Promise.all([
    tiledOnly ? undefined : ctx.pipelines.get(MATMUL_KERNEL, v.dtype, overrides),
    vec4Always || ctx.tuning.matmul === 'vec4' ? ctx.pipelines.get(MATMUL_VEC4_KERNEL, v.dtype, overrides) : undefined,
    subgroups ? ctx.pipelines.get(MATMUL_SUBGROUP_KERNEL, v.dtype, subgroupShape(SUBGROUP_WORKGROUP)) : undefined,
    subgroups ? ctx.pipelines.get(MATMUL_SUBGROUP_WIDE_KERNEL, v.dtype, subgroupShape(SUBGROUP_WIDE_WORKGROUP)) : undefined,
    tiledOnly
      ? ctx.pipelines.get(MATMUL_TILED_KERNEL, v.dtype, {
          ...overrides, WG_X: TILED_WORKGROUP[0], WG_Y: TILED_WORKGROUP[1], TILE_K: TILED_K,
        })
      : undefined,
  ]);
  // The vec4 kernel reads whole quads along K and N (and M when A is transposed), and batch
  // strides, operand offsets and row strides must land on quad boundaries.
  const fitsVec4 = (m: number, n: number, k: number, strides: number[]) =>
    n % 4 === 0 && k % 4 === 0 && (!v.transA || m % 4 === 0) && strides.every((s) => s % 4 === 0);
  return {
    variant: v,
    encode(recorder, args) {
      const { m, n, k } = args;
      const batch = args.batch ?? 1;
      for (const [name, value] of [['m', m], ['n', n], ['k', k], ['batch', batch]] as const) {
        if (!Number.isInteger(value) || value < 1) {
          throw new InvalidArgumentError(`matmul: ${name} must be a positive integer, got ${value}.`);
        }
      }
      // Each operand as stored: rows x cols, rows `ld` elements apart.
      const stored = {
        A: v.transA ? { rows: k, cols: m, ld: args.lda } : { rows: m, cols: k, ld: args.lda },
        B: v.transB ? { rows: n, cols: k, ld: args.ldb } : { rows: k, cols: n, ld: args.ldb },
        C: { rows: m, cols: n, ld: args.ldc },
      };
      for (const [name, { cols, ld }] of Object.entries(stored)) {
        if (ld !== undefined && (!Number.isInteger(ld) || ld < cols)) {
          throw new InvalidArgumentError(
            `matmul: ld${name.toLowerCase()} must be an integer of at least ${cols} (the length of ${name}'s stored rows), got ${ld}.`,
          );
        }
      }
      const [lda, ldb, ldc] = [stored.A.ld ?? stored.A.cols, stored.B.ld ?? stored.B.cols, stored.C.ld ?? stored.C.cols];
      // Elements one batch of each operand spans: the last row ends at its length, not its stride.
      const [extentA, extentB, extentC] = [
        (stored.A.rows - 1) * lda + stored.A.cols, (stored.B.rows - 1) * ldb + stored.B.cols, (m - 1) * ldc + n,
      ];
      const strideA = args.strideA ?? stored.A.rows * lda;
      const strideB = args.strideB ?? stored.B.rows * ldb;
      const strideC = args.strideC ?? m * ldc;
      const [offsetA, offsetB, offsetC] = [args.offsetA ?? 0, args.offsetB ?? 0, args.offsetC ?? 0];
      for (const [name, value] of [['strideA', strideA], ['strideB', strideB], ['strideC', strideC], ['offsetA', offsetA], ['offsetB', offsetB], ['offsetC', offsetC]] as const) {
        if (!Number.isInteger(value) || value < 0) {
          throw new InvalidArgumentError(`matmul: ${name} must be a non-negative integer, got ${value}.`);
        }
      }
      // Batches of C that overlapped would be written by two workgroups at once.
      if (batch > 1 && strideC < extentC) {
        throw new InvalidArgumentError(`matmul: strideC (${strideC}) is below the ${extentC} elements one batch of C spans; the batches of C would overlap.`);
      }
      checkOperand('A', args.a, v.dtype, offsetA + strideA * (batch - 1) + extentA);
      checkOperand('B', args.b, v.dtype, offsetB + strideB * (batch - 1) + extentB);
      checkOperand('C', args.c, v.dtype, offsetC + strideC * (batch - 1) + extentC);
      const params = packParams([
        ['u32', m], ['u32', n], ['u32', k],
        ['u32', strideA], ['u32', strideB], ['u32', strideC],
        ['f32', args.alpha ?? 1],
        ['u32', offsetA], ['u32', offsetB], ['u32', offsetC],
        ['u32', lda], ['u32', ldb], ['u32', ldc],
      ]);
      const buffers = [args.a.buffer, args.b.buffer, args.c.buffer];
      const cost = { flops: 2 * m * n * k * batch };
      if (tiled) {
        const [tx, ty] = TILED_WORKGROUP;
        recorder.dispatch(tiled, buffers, params, [Math.ceil(n / (tx * TILED_BLOCK)), Math.ceil(m / (ty * TILED_BLOCK)), batch], cost);
        return;
      }
      const useVec4 = vec4 !== undefined && fitsVec4(m, n, k, [strideA, strideB, strideC, offsetA, offsetB, offsetC, lda, ldb, ldc]);
      if (!useVec4 && subgroup && subgroupWide) {
        const [kernel, [wx, wy], rows] = m >= SUBGROUP_WIDE_ROWS
          ? [subgroupWide, SUBGROUP_WIDE_WORKGROUP, SUBGROUP_WIDE_ROWS]
          : [subgroup, SUBGROUP_WORKGROUP, BLOCK_ROWS];
        recorder.dispatch(kernel, buffers, params, [Math.ceil(n / (wx * BLOCK_COLS)), Math.ceil(m / (wy * rows)), batch], cost);
        return;
      }
      const [wx, wy] = v.workgroup;
      const compiled: CompiledKernel = useVec4 ? vec4 : scalar!;
      recorder.dispatch(compiled, buffers, params, [
        Math.ceil(n / (wx * BLOCK_COLS)),
        Math.ceil(m / (wy * BLOCK_ROWS)),
        batch,
      ], cost);
    },
  };
}

export interface MatmulOptions extends MatmulVariant {
  batch?: number;
  alpha?: number;
  label?: string;
}

/**
 * C = op(A) op(B) for A and B with shapes [..., M, K] and [..., K, N] (or transposed per the
 * options); a 2-D operand is shared across the other's batch.
 *
 * @example
 * ```ts
 * const y = await matmul(ctx, x, w, { transB: true }); // y = x W^T, W stored [out, in]
 * ```
 */
export async function matmul(ctx: GpuContext, a: GpuTensor, b: GpuTensor, options: MatmulOptions = {}): Promise<GpuTensor> {
  if (a.shape.length < 2 || b.shape.length < 2) {
    throw new InvalidArgumentError(
      `matmul: operands need at least 2 dimensions, got A [${a.shape.join(', ')}] and B [${b.shape.join(', ')}].`,
    );
  }
  const [ar, ac] = a.shape.slice(-2) as [number, number];
  const [br, bc] = b.shape.slice(-2) as [number, number];
  const [m, kA] = options.transA ? [ac, ar] : [ar, ac];
  const [kB, n] = options.transB ? [bc, br] : [br, bc];
  if (kA !== kB) {
    throw new InvalidArgumentError(
      `matmul: inner dimensions differ: A [${a.shape.join(', ')}]${options.transA ? '^T' : ''} has K=${kA}, ` +
        `B [${b.shape.join(', ')}]${options.transB ? '^T' : ''} has K=${kB}.`,
    );
  }
  const batchA = a.size / (ar * ac);
  const batchB = b.size / (br * bc);
  if (batchA !== batchB && batchA !== 1 && batchB !== 1) {
    throw new InvalidArgumentError(`matmul: batch sizes differ: A has ${batchA}, B has ${batchB}.`);
  }
  const batch = Math.max(batchA, batchB);
  const kernel = await createMatmulKernel(ctx, { ...options, dtype: options.dtype ?? (a.dtype === 'f16' ? 'f16' : 'f32') });
  const lead = (batchA >= batchB ? a.shape : b.shape).slice(0, -2);
  const c = createTensor(ctx, { shape: [...lead, m, n], dtype: kernel.variant.dtype, label: options.label ?? 'matmul output' });
  const recorder = new CommandRecorder(ctx, 'matmul');
  kernel.encode(recorder, {
    a, b, c, m, n, k: kA, batch,
    alpha: options.alpha,
    strideA: batchA === 1 ? 0 : m * kA,
    strideB: batchB === 1 ? 0 : kA * n,
  });
  recorder.submit();
  return c;
}
