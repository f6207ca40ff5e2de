/**
 * Bind groups and uniform buffers kept across command recorders. A training step dispatches the
 * same kernels on the same buffers with the same Params every step (the shapes do not change),
 * so after the first step a dispatch creates nothing: its uniform buffer is found by the Params'
 * bytes (and shared by every dispatch with equal Params, e.g. the same op in every layer), and its
 * bind group by (layout, buffers, uniform). Before this cache each dispatch created and wrote a
 * uniform buffer and created a bind group, thousands per step.
 *
 * Cached uniform buffers are written once and never written again, so a recorder that bound one
 * can never see it change. Entries are dropped when any buffer they hold is destroyed (the pool
 * reports every destroy), and the least recently used are dropped past the capacities below;
 * a uniform buffer is never destroyed while a recorder that bound it is still open.
 */
import type { BufferPool } from './buffer-pool.js';
import type { CompiledKernel, OverrideConstants } from './pipeline-cache.js';

/**
 * Bind groups: every distinct dispatch of a step's forward, backward and optimizer (about 1,500
 * for SmolLM2-135M with LoRA on q and v), with room for bigger models and more targets; past it a
 * step evicts its own oldest entries. Uniforms: distinct Params, a few hundred per step since
 * layers share them. Params that change every step (AdamW's bias corrections, a decoding
 * position) add entries that are never hit again; they age out at these bounds, so the cache
 * holds at most 2048 uniform buffers of at most 64 bytes.
 */
export const DEFAULT_DISPATCH_CACHE_CAPACITY = { bindGroups: 8192, uniforms: 2048 };
const UNIFORM_LABEL = 'uniforms (cached)';

interface CachedBindGroup {
  group: GPUBindGroup;
  buffers: readonly GPUBuffer[];
}


/** Counters for benchmarks: how much each step still creates. */
export interface DispatchCacheStats {
  bindGroupsCreated: number;
  bindGroupHits: number;
  uniformsCreated: number;
  uniformHits: number;
  /** Time spent inside CommandRecorder.dispatch and .submit (WebGPU encoding calls), ms. */
  recordMs: number;
  dispatches: number;
  submits: number;
}

/** One dispatch as recorded, for the profiler to replay on its own. */
export interface CapturedDispatch {
  kernel: string;
  /** The recorder's label, e.g. 'train forward'. */
  phase: string;
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  buffers: GPUBuffer[];
  workgroups: [number, number, number];
  flops: number | undefined;
  /** The pipeline's override constants (which form of a kernel ran). */
  constants: Readonly<OverrideConstants>;
}

export class DispatchCache {
  /** Set by the profiler while it captures a step; every dispatch is appended. */
  capture: CapturedDispatch[] | undefined;
  /**
   * False bypasses the cache as webtune recorded before it: every dispatch creates its bind group
   * and takes a uniform buffer from the pool, written and given back after the submit. Only for
   * benchmarks measuring what the cache saves.
   */
  reuseAcrossSubmits = true;
  /** Entries kept past a submit; tests lower them to exercise eviction. */
  readonly capacity = { ...DEFAULT_DISPATCH_CACHE_CAPACITY };
  private readonly bindGroups = new Map<string, CachedBindGroup>();
  private readonly uniforms = new Map<string, GPUBuffer>();
  private readonly keysByBuffer = new Map<GPUBuffer, Set<string>>();
  private readonly uniformKeys = new Map<GPUBuffer, string>();
  private readonly ids = new WeakMap<object, number>();
  private nextId = 1;
  private nextSerial = 1;
  /** The uniform buffers each recorder not yet submitted has bound: those are never destroyed. */
  private readonly openRecorders = new Map<number, Set<GPUBuffer>>();
  /** Uniform buffers taken for one recorder when reuse is off, given back to the pool after its submit. */
  private readonly transient = new Map<number, GPUBuffer[]>();
  /** A recorder dropped without submit (its work threw) stops holding uniforms once collected. */
  private readonly abandoned = new FinalizationRegistry<number>((serial) => this.release(serial));
  readonly stats: DispatchCacheStats = {
    bindGroupsCreated: 0, bindGroupHits: 0, uniformsCreated: 0, uniformHits: 0, recordMs: 0, dispatches: 0, submits: 0,
  };

  constructor(
    private readonly device: GPUDevice,
    private readonly pool: BufferPool,
  ) {
    pool.onDestroy((buffer) => this.forget(buffer));
  }

  /** Called by a new CommandRecorder; the serial marks what it uses until `closeRecorder`. */
  openRecorder(recorder: object): number {
    const serial = this.nextSerial++;
    this.openRecorders.set(serial, new Set());
    this.abandoned.register(recorder, serial, recorder);
    return serial;
  }

  /** Called after the recorder's submit: what it used may now be evicted. */
  closeRecorder(recorder: object, serial: number): void {
    this.abandoned.unregister(recorder);
    this.release(serial);
    this.evict();
  }

  private release(serial: number): void {
    this.openRecorders.delete(serial);
    // A later writeBuffer to a released uniform is ordered after this submit.
    for (const buffer of this.transient.get(serial) ?? []) this.pool.release(buffer);
    this.transient.delete(serial);
  }

  /** A uniform buffer holding `params`, shared by every dispatch with the same bytes. */
  uniform(params: ArrayBuffer, serial: number): GPUBuffer {
    if (!this.reuseAcrossSubmits) {
      this.stats.uniformsCreated++;
      const buffer = this.pool.acquire(params.byteLength, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, 'uniforms');
      this.device.queue.writeBuffer(buffer, 0, params);
      const list = this.transient.get(serial) ?? [];
      list.push(buffer);
      this.transient.set(serial, list);
      return buffer;
    }
    const key = Array.prototype.join.call(new Uint32Array(params), ',') as string;
    let buffer = this.uniforms.get(key);
    if (buffer) {
      this.stats.uniformHits++;
      // Map order is the LRU order: move to the end.
      this.uniforms.delete(key);
      this.uniforms.set(key, buffer);
    } else {
      this.stats.uniformsCreated++;
      buffer = this.pool.acquire(params.byteLength, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, UNIFORM_LABEL);
      this.device.queue.writeBuffer(buffer, 0, params);
      this.uniforms.set(key, buffer);
      this.uniformKeys.set(buffer, key);
    }
    this.openRecorders.get(serial)?.add(buffer);
    return buffer;
  }

  /** The bind group of `kernel` over `buffers` (bindings 0..n-1) and the uniform (binding n). */
  bindGroup(kernel: CompiledKernel, buffers: readonly GPUBuffer[], uniform: GPUBuffer | undefined): GPUBindGroup {
    const all = uniform ? [...buffers, uniform] : buffers;
    const create = () => {
      this.stats.bindGroupsCreated++;
      return this.device.createBindGroup({
        label: `${kernel.definition.name} bind group`,
        layout: kernel.layout,
        entries: all.map((buffer, binding) => ({ binding, resource: { buffer } })),
      });
    };
    if (!this.reuseAcrossSubmits) return create();
    let key = `${this.idOf(kernel.layout)}`;
    for (const b of all) key += `:${this.idOf(b)}`;
    const hit = this.bindGroups.get(key);
    if (hit) {
      this.stats.bindGroupHits++;
      this.bindGroups.delete(key);
      this.bindGroups.set(key, hit);
      return hit.group;
    }
    const group = create();
    this.bindGroups.set(key, { group, buffers: all });
    for (const b of all) {
      let keys = this.keysByBuffer.get(b);
      if (!keys) this.keysByBuffer.set(b, (keys = new Set()));
      keys.add(key);
    }
    return group;
  }

  get size(): { bindGroups: number; uniforms: number } {
    return { bindGroups: this.bindGroups.size, uniforms: this.uniforms.size };
  }

  private idOf(object: object): number {
    let id = this.ids.get(object);
    if (id === undefined) this.ids.set(object, (id = this.nextId++));
    return id;
  }

  /** A destroyed buffer can no longer be bound: drop every entry that holds it. */
  private forget(buffer: GPUBuffer): void {
    const keys = this.keysByBuffer.get(buffer);
    if (keys) {
      for (const key of keys) this.dropBindGroup(key);
      this.keysByBuffer.delete(buffer);
    }
    const uniformKey = this.uniformKeys.get(buffer);
    if (uniformKey !== undefined) {
      this.uniforms.delete(uniformKey);
      this.uniformKeys.delete(buffer);
    }
  }

  private dropBindGroup(key: string): void {
    const entry = this.bindGroups.get(key);
    if (!entry) return;
    this.bindGroups.delete(key);
    for (const b of entry.buffers) {
      const keys = this.keysByBuffer.get(b);
      keys?.delete(key);
      if (keys?.size === 0) this.keysByBuffer.delete(b);
    }
  }

  private evict(): void {
    while (this.bindGroups.size > this.capacity.bindGroups) this.dropBindGroup(this.bindGroups.keys().next().value!);
    if (this.uniforms.size <= this.capacity.uniforms) return;
    // A recorder that is still open may have bound an old uniform; those stay until it submits.
    const bound = (buffer: GPUBuffer) => [...this.openRecorders.values()].some((used) => used.has(buffer));
    for (const [key, buffer] of this.uniforms) {
      if (this.uniforms.size <= this.capacity.uniforms) break;
      if (bound(buffer)) continue;
      this.uniforms.delete(key);
      this.pool.destroy(buffer); // forget() drops its bind groups
    }
  }
}
