/**
 * GPU buffers come from here. Freed buffers are kept by (usage, size) and handed out again,
 * so a training loop that allocates the same shapes every step allocates nothing after the
 * first. Every buffer is accounted in the MemoryTracker under its label while in use and
 * under "pool (free)" while parked.
 */
import { BindingLimitError } from '@webtune/errors';
import type { MemoryTracker } from './memory.js';

const FREE_LABEL = 'pool (free)';

export interface PoolLimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
}

interface Parked {
  buffer: GPUBuffer;
  size: number;
}

export class BufferPool {
  private readonly free = new Map<string, Parked[]>();
  private readonly owners = new Map<GPUBuffer, { label: string; key: string; size: number }>();
  /** Allocation error scopes not yet awaited; `checkAllocations()` awaits them. */
  private pendingScopes: Promise<{ label: string; size: number; error: GPUError | null }>[] = [];
  private readonly destroyListeners: Array<(buffer: GPUBuffer) => void> = [];

  constructor(
    private readonly device: GPUDevice,
    private readonly memory: MemoryTracker,
    private readonly limits: PoolLimits,
  ) {}

  /**
   * A buffer of at least `bytes` (rounded up to 4) for `usage`. Refuses with BindingLimitError
   * when a storage buffer would exceed one binding, so nothing is ever silently truncated.
   */
  acquire(bytes: number, usage: GPUBufferUsageFlags, label: string): GPUBuffer {
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    if (size > this.limits.maxBufferSize) {
      throw new BindingLimitError(label, size, this.limits.maxBufferSize, 'maxBufferSize');
    }
    if (usage & GPUBufferUsage.STORAGE && size > this.limits.maxStorageBufferBindingSize) {
      throw new BindingLimitError(label, size, this.limits.maxStorageBufferBindingSize, 'maxStorageBufferBindingSize');
    }
    const key = `${usage}:${size}`;
    const parked = this.free.get(key)?.pop();
    if (parked) {
      this.memory.released(FREE_LABEL, size);
      this.memory.allocated(label, size);
      this.owners.set(parked.buffer, { label, key, size });
      parked.buffer.label = label;
      return parked.buffer;
    }
    this.device.pushErrorScope('out-of-memory');
    const buffer = this.device.createBuffer({ size, usage, label });
    this.pendingScopes.push(this.device.popErrorScope().then((error) => ({ label, size, error })));
    this.memory.allocated(label, size);
    this.owners.set(buffer, { label, key, size });
    return buffer;
  }

  /** Calls `listener` with every buffer the pool destroys (the dispatch cache drops its bind groups); returns the unsubscribe. */
  onDestroy(listener: (buffer: GPUBuffer) => void): () => void {
    this.destroyListeners.push(listener);
    return () => {
      const i = this.destroyListeners.indexOf(listener);
      if (i >= 0) this.destroyListeners.splice(i, 1);
    };
  }

  private destroyBuffer(buffer: GPUBuffer): void {
    buffer.destroy();
    for (const listener of this.destroyListeners) listener(buffer);
  }

  /** Parks a buffer for reuse. */
  release(buffer: GPUBuffer): void {
    const owner = this.owners.get(buffer);
    if (!owner) return;
    this.owners.delete(buffer);
    this.memory.released(owner.label, owner.size);
    this.memory.allocated(FREE_LABEL, owner.size);
    const list = this.free.get(owner.key) ?? [];
    list.push({ buffer, size: owner.size });
    this.free.set(owner.key, list);
  }

  /** Destroys a buffer now instead of parking it (one-off staging and uniform buffers). */
  destroy(buffer: GPUBuffer): void {
    const owner = this.owners.get(buffer);
    if (owner) {
      this.owners.delete(buffer);
      this.memory.released(owner.label, owner.size);
    }
    this.destroyBuffer(buffer);
  }

  /** Frees every parked buffer. */
  trim(): void {
    for (const list of this.free.values()) {
      for (const { buffer, size } of list) {
        this.memory.released(FREE_LABEL, size);
        this.destroyBuffer(buffer);
      }
    }
    this.free.clear();
  }

  destroyAll(): void {
    this.trim();
    for (const [buffer, owner] of this.owners) {
      this.memory.released(owner.label, owner.size);
      this.destroyBuffer(buffer);
    }
    this.owners.clear();
  }

  /** Resolves the out-of-memory scopes of allocations made so far; returns the first failure. */
  async checkAllocations(): Promise<{ label: string; size: number; error: GPUError } | undefined> {
    const pending = this.pendingScopes;
    this.pendingScopes = [];
    let failure: { label: string; size: number; error: GPUError } | undefined;
    for (const result of await Promise.all(pending)) {
      if (result.error && !failure) failure = { label: result.label, size: result.size, error: result.error };
    }
    return failure;
  }
}
