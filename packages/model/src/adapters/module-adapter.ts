/**
 * The bookkeeping every adapter shares: its tensors per targeted module, owning their GPU
 * buffers, reading and writing them by key, clearing gradients, the spec, refusing files with
 * tensors it does not have. A method's class extends it and lists its tensors in `trainable()`.
 */
import { readF32, writeTensor, type GpuContext, type GpuTensor } from '@webtune/gpu';
import { InvalidArgumentError, ModelFormatError } from '@webtune/errors';
import type { ModelConfig } from '../config.js';
import type { AdapterMethod, AdapterSpec, HostTensor, TargetModule, TrainableTensor } from './types.js';

export abstract class ModuleAdapter<P extends TargetModule, C> {
  /** Bumped whenever a trainable tensor changes (optimizer step, write). */
  version = 0;
  abstract readonly method: AdapterMethod;
  /** By module path, in layer order. */
  readonly params = new Map<string, P>();
  private readonly owned: GpuTensor[] = [];

  protected constructor(
    protected readonly ctx: GpuContext,
    readonly model: ModelConfig,
    readonly config: C,
  ) {}

  abstract trainable(): Generator<TrainableTensor>;

  /** Creates every module's tensors with `make` (all released again if one fails); `title` names the method in errors. */
  protected fill(modules: readonly TargetModule[], make: (t: TargetModule) => P, title: string, targets: readonly string[]): void {
    try {
      for (const t of modules) this.params.set(t.module, make(t));
    } catch (error) {
      this.release();
      throw error;
    }
    if (this.params.size === 0) throw new InvalidArgumentError(`${title} targets ${JSON.stringify(targets)} select no module.`);
  }

  /** The lowest layer with a trainable tensor: backward stops there. */
  get lowestLayer(): number {
    return Math.min(...[...this.params.values()].map((p) => p.layer));
  }

  /** `{ method, config }`, for checkpoints and federated rounds. */
  spec(): AdapterSpec {
    return { method: this.method, config: JSON.parse(JSON.stringify(this.config)) as AdapterSpec['config'] };
  }

  protected own(t: GpuTensor): GpuTensor {
    this.owned.push(t);
    return t;
  }

  /** Number of trainable parameters. */
  get parameterCount(): number {
    let n = 0;
    for (const t of this.trainable()) n += t.param.size;
    return n;
  }

  /** Reads the trainable tensors back under their keys. */
  async read(): Promise<Map<string, HostTensor>> {
    const out = new Map<string, HostTensor>();
    for (const t of this.trainable()) out.set(t.key, { data: await readF32(this.ctx, t.param), shape: [...t.param.shape] });
    return out;
  }

  /** Reads the accumulated gradients under the parameters' keys. */
  async readGradients(): Promise<Map<string, HostTensor>> {
    const out = new Map<string, HostTensor>();
    for (const t of this.trainable()) out.set(t.key, { data: await readF32(this.ctx, t.grad), shape: [...t.grad.shape] });
    return out;
  }

  /** Overwrites every trainable tensor (same keys and shapes as `read()` returns). */
  write(tensors: ReadonlyMap<string, HostTensor>): void {
    for (const t of this.trainable()) {
      const h = tensors.get(t.key);
      if (!h) throw new InvalidArgumentError(`${this.constructor.name}.write: no tensor "${t.key}".`);
      writeTensor(this.ctx, t.param, h.data);
    }
    this.version++;
  }

  /** Sets every gradient to zero. */
  zeroGradients(): void {
    for (const t of this.trainable()) writeTensor(this.ctx, t.grad, new Float32Array(t.grad.size));
  }

  /** Releases this adapter and throws when `tensors` has keys it did not use (an adapter for another model or other targets). */
  protected refuseExtra(tensors: ReadonlyMap<string, HostTensor>, used: ReadonlySet<string>, source: string): void {
    const extra = [...tensors.keys()].filter((k) => !used.has(k));
    if (extra.length === 0) return;
    this.release();
    throw new ModelFormatError(source, `has tensors this model does not have: ${extra.slice(0, 3).join(', ')}${extra.length > 3 ? ', ...' : ''} (an adapter for another model or other targets?)`);
  }

  release(): void {
    for (const t of this.owned) t.release();
    this.owned.length = 0;
    this.params.clear();
  }
}
