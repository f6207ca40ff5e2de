/**
 * One way to get a WebGPU device in a page, a dedicated worker and Node. The caller may pass a
 * `GPU` (Node: `createNodeGpu()` from '@webtune/gpu/node'); otherwise `navigator.gpu` is used.
 * The device is created with the adapter's real limits, not WebGPU's defaults (128 MiB storage
 * bindings), and with every feature webtune can use that the adapter offers.
 */
import { DeviceLostError, InvalidArgumentError, WebGPUUnavailableError } from '@webtune/errors';
import { MemoryTracker } from './memory.js';
import { BufferPool } from './buffer-pool.js';
import { DispatchCache } from './dispatch-cache.js';
import { PipelineCache } from './pipeline-cache.js';

/** Features webtune takes advantage of when the adapter has them. */
export const OPTIONAL_FEATURES = ['shader-f16', 'subgroups', 'timestamp-query'] as const;
type OptionalFeature = (typeof OPTIONAL_FEATURES)[number];

/** Limits raised from WebGPU's defaults to whatever the adapter supports. */
const RAISED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
] as const;
type RaisedLimit = (typeof RAISED_LIMITS)[number];

export interface GpuFeatures {
  shaderF16: boolean;
  subgroups: boolean;
  timestampQuery: boolean;
}

export type GpuLimits = Record<RaisedLimit, number>;

export interface AdapterSummary {
  /** vendor, architecture and description in one line, for logs and reports. */
  name: string;
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** True for CPU implementations (SwiftShader, lavapipe/llvmpipe) where timings mean little. */
  isSoftware: boolean;
  /** Subgroup sizes the adapter may use (0 when it does not say). */
  subgroupMinSize: number;
  subgroupMaxSize: number;
}

/**
 * Kernel choices that depend on the adapter rather than on the shapes. Defaults come from
 * `defaultTuning` and were measured with `npm run bench`; override them to test a path or to
 * tune for new hardware.
 */
export interface KernelTuning {
  /**
   * The matmul kernel (for A B^T see `linear`); shapes 'vec4' cannot take fall back to 'scalar',
   * and 'tiled' takes every shape and transpose itself:
   * - 'tiled' (shaders/matmul-tiled.wgsl): 64 x 64 output tiles per 16 x 16 workgroup, operands
   *   staged through workgroup memory 16 along K at a time, 4 x 4 outputs per invocation. The
   *   default on hardware GPUs, where workgroup memory is on-chip and each element then comes from
   *   storage 16x less often (tfjs' and onnxruntime-web's WebGPU matmuls do the same). A B^T goes
   *   through it too, whatever `linear` says: its B^T tile load is coalesced along K, and the
   *   vec4 rule was measured on CPU adapters, where storage reads are cached like any other. On
   *   those adapters workgroup memory is ordinary memory and its barriers cost, so it is not
   *   their default: square f32
   *   products 256 to 2048 ran 2.6 to 6x slower than 'subgroup' on lavapipe, 256 and 512 2.6 to
   *   3.4x slower than 'vec4' on SwiftShader (bench/suite.ts, row 'webtune tiled').
   * - 'vec4' (shaders/matmul-vec4.wgsl): four elements per access. About 3x faster than 'scalar'
   *   on SwiftShader, which bounds-checks every access; SwiftShader's default.
   * - 'subgroup' (shaders/matmul-subgroup.wgsl): rows of A shared through subgroups (broadcasts
   *   from constant lanes where every subgroup has exactly 8 lanes, as on lavapipe: 1.1-1.3x the
   *   rate of shuffles there; shuffles within 8-lane groups otherwise); needs the
   *   subgroups feature with subgroups of 8 lanes or more. Each 8-lane group computes 32 rows of C
   *   (8 below M = 32), so every gather of B feeds 32 multiply-adds: on Mesa's llvmpipe (lavapipe),
   *   where loads that differ across lanes are gathers and set the speed, that ran the 135M step's
   *   shapes at 20-29 GFLOP/s against 12-17 with 8 rows (issue 22), and 8 rows was already about
   *   1.5x 'scalar'; 'vec4' is about 1.5x slower than 'scalar' there.
   * - 'scalar' (shaders/matmul.wgsl): any shape, any device.
   */
  matmul: 'tiled' | 'vec4' | 'subgroup' | 'scalar';
  /**
   * A B^T (every Linear layer's forward, and the LM head's) under 'vec4', 'subgroup' or 'scalar':
   * 'vec4' takes matmul-vec4.wgsl's dot-product form whenever K and N are multiples of 4 (about
   * as fast as 'scalar' on lavapipe without subgroups, and SwiftShader's matmul default anyway);
   * 'matmul' takes what `matmul` says. On lavapipe with subgroups 'matmul' (the subgroup kernel,
   * then with 8 rows per group) ran the 135M step's X W^T shapes at 1.5 to 3x the speed of 'vec4'
   * (6.6-8.2 vs 2.4-4.9 GFLOP/s at 256 x {192, 576, 1536, 8192} x 576, one run, issue 22). A context created with
   * `tuning: { matmul }` other than the adapter's default, and no `linear`, gets 'vec4'.
   */
  linear: 'vec4' | 'matmul';
}

/** True when the device can run matmul-subgroup.wgsl (subgroups of at least 8 lanes). */
export function canUseSubgroupMatmul(adapter: AdapterSummary, features: GpuFeatures): boolean {
  return features.subgroups && adapter.subgroupMinSize >= 8;
}

export function defaultTuning(adapter: AdapterSummary, features: GpuFeatures): KernelTuning {
  const text = `${adapter.name} ${adapter.device}`.toLowerCase();
  if (/llvmpipe|lavapipe/.test(text)) {
    const subgroups = canUseSubgroupMatmul(adapter, features);
    return { matmul: subgroups ? 'subgroup' : 'scalar', linear: subgroups ? 'matmul' : 'vec4' };
  }
  // SwiftShader and any other software adapter: no on-chip memory for 'tiled' to exploit.
  return { matmul: adapter.isSoftware ? 'vec4' : 'tiled', linear: 'vec4' };
}

export interface CreateGpuContextOptions {
  /** The GPU entry point; defaults to `navigator.gpu`. In Node pass `createNodeGpu()`. */
  gpu?: GPU;
  powerPreference?: GPUPowerPreference;
  /** Features to leave off even when the adapter has them (e.g. `['shader-f16']` to test the f32 path). */
  disableFeatures?: OptionalFeature[];
  /** Called once if the device is lost. */
  onLost?: (error: DeviceLostError) => void;
  /** Called for errors that escaped every error scope. */
  onUncapturedError?: (error: GPUError) => void;
  label?: string;
  /** Overrides for the adapter-based kernel choices. */
  tuning?: Partial<KernelTuning>;
  /**
   * Caps on the limits webtune raises, to behave as a smaller device would (tests, or an app that
   * wants to leave room for other GPU work). The device is requested with at most these; where
   * WebGPU's own default is higher than a cap (the browser never grants less), `limits` still
   * reports the cap and every size check and plan keeps to it.
   */
  limits?: Partial<GpuLimits>;
}

export interface GpuContext {
  readonly device: GPUDevice;
  readonly adapter: AdapterSummary;
  readonly features: GpuFeatures;
  readonly limits: GpuLimits;
  readonly tuning: KernelTuning;
  readonly memory: MemoryTracker;
  readonly pool: BufferPool;
  readonly pipelines: PipelineCache;
  /** Bind groups and uniform buffers reused across steps (dispatch-cache.ts). */
  readonly dispatches: DispatchCache;
  /** Errors that escaped every error scope, newest last. Tests assert it stays empty. */
  readonly uncapturedErrors: GPUError[];
  /** Set once the device is lost; every later operation throws it. */
  readonly lostError: DeviceLostError | undefined;
  /** Resolves when the device is lost (never rejects). */
  readonly lost: Promise<DeviceLostError>;
  /** Throws `DeviceLostError` if the device is gone. */
  assertAlive(): void;
  destroy(): void;
}

function resolveGpu(gpu: GPU | undefined): GPU {
  if (gpu) return gpu;
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (!nav?.gpu) {
    const inNode = typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === 'string';
    throw new WebGPUUnavailableError(
      inNode ? 'Node has no navigator.gpu and no `gpu` option was given' : 'navigator.gpu is undefined in this browser or context',
    );
  }
  return nav.gpu;
}

function summarize(info: GPUAdapterInfo): AdapterSummary {
  const text = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`.toLowerCase();
  return {
    name: [info.vendor, info.architecture, info.description].filter(Boolean).join(' '),
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    isSoftware: /swiftshader|llvmpipe|lavapipe|software|cpu/.test(text),
    subgroupMinSize: (info as { subgroupMinSize?: number }).subgroupMinSize ?? 0,
    subgroupMaxSize: (info as { subgroupMaxSize?: number }).subgroupMaxSize ?? 0,
  };
}

/**
 * Creates a device with the adapter's real limits and webtune's optional features.
 *
 * @example
 * ```ts
 * const ctx = await createGpuContext();              // page or worker
 * console.log(ctx.adapter.description, ctx.features, ctx.limits.maxStorageBufferBindingSize);
 * ```
 */
export async function createGpuContext(options: CreateGpuContextOptions = {}): Promise<GpuContext> {
  const gpu = resolveGpu(options.gpu);
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter(options.powerPreference ? { powerPreference: options.powerPreference } : undefined);
  } catch (cause) {
    throw new WebGPUUnavailableError(`requestAdapter() threw: ${String(cause)}`, { cause });
  }
  if (!adapter) {
    throw new WebGPUUnavailableError('requestAdapter() returned null: the browser or driver offers no WebGPU adapter');
  }

  const disabled = new Set(options.disableFeatures ?? []);
  const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f) && !disabled.has(f));
  const requiredLimits: Record<string, number> = {};
  const caps = options.limits ?? {};
  for (const name of RAISED_LIMITS) {
    const cap = caps[name];
    if (cap !== undefined && (!Number.isInteger(cap) || cap < 1)) throw new InvalidArgumentError(`limits.${name} must be a positive integer, got ${String(cap)}.`);
    requiredLimits[name] = Math.min(adapter.limits[name], cap ?? Infinity);
  }

  const device = await adapter.requestDevice({
    label: options.label ?? 'webtune',
    requiredFeatures,
    requiredLimits,
  });

  const limits = {} as GpuLimits;
  for (const name of RAISED_LIMITS) limits[name] = Math.min(device.limits[name], caps[name] ?? Infinity);
  const features: GpuFeatures = {
    shaderF16: device.features.has('shader-f16'),
    subgroups: device.features.has('subgroups'),
    timestampQuery: device.features.has('timestamp-query'),
  };

  const memory = new MemoryTracker();
  const uncapturedErrors: GPUError[] = [];
  let lostError: DeviceLostError | undefined;

  device.addEventListener('uncapturederror', (event) => {
    const error = (event as GPUUncapturedErrorEvent).error;
    uncapturedErrors.push(error);
    options.onUncapturedError?.(error);
  });

  const lost = device.lost.then((info) => {
    lostError = new DeviceLostError(info.reason, info.message);
    options.onLost?.(lostError);
    return lostError;
  });

  const summary = summarize(adapter.info);
  const defaults = defaultTuning(summary, features);
  // A caller who picks the matmul kernel but not `linear` gets the A B^T rule of that kernel: the
  // subgroup kernel's only where it is the adapter's own choice, else the vec4 dot-product form.
  const linear = options.tuning?.linear ?? (options.tuning?.matmul && options.tuning.matmul !== defaults.matmul ? 'vec4' : defaults.linear);
  const tuning: KernelTuning = { ...defaults, ...options.tuning, linear };
  if (tuning.matmul === 'subgroup' && !canUseSubgroupMatmul(summary, features)) {
    device.destroy();
    throw new InvalidArgumentError(
      `tuning.matmul 'subgroup' needs the subgroups feature with subgroups of at least 8 lanes; this device has ` +
        `${features.subgroups ? `subgroups of ${summary.subgroupMinSize}-${summary.subgroupMaxSize} lanes` : 'no subgroups'}. Use 'vec4' or 'scalar'.`,
    );
  }
  const pool = new BufferPool(device, memory, limits);
  const ctx: GpuContext = {
    device,
    adapter: summary,
    features,
    limits,
    tuning,
    memory,
    pool,
    pipelines: new PipelineCache(device, features),
    dispatches: new DispatchCache(device, pool),
    uncapturedErrors,
    get lostError() {
      return lostError;
    },
    lost,
    assertAlive() {
      if (lostError) throw lostError;
    },
    destroy() {
      ctx.pool.destroyAll();
      device.destroy();
    },
  };
  return ctx;
}
