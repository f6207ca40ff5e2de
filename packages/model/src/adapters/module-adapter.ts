/**
 * The bookkeeping every adapter shares (AdapterBase): owning its GPU buffers, reading and writing
 * its tensors by key, clearing gradients, the spec, refusing files with tensors it does not have.
 * A method's class extends it and lists its tensors in `trainable()`; methods that adapt linear
 * modules extend ModuleAdapter, which keeps their tensors per targeted module.
 */
import { createTensor, readF32, writeTensor, type GpuContext, type GpuTensor } from '@webtune/gpu';
import { InvalidArgumentError, ModelFormatError } from '@webtune/errors';
import type { ModelConfig } from '../config.js';
import { NO_SEQUENCE_CHANGE, type AdapterMethod, type AdapterSpec, type HostTensor, type SequenceLayout, type TargetModule, type TrainableTensor } from './types.js';

export abstract class AdapterBase<C> {
  /** Bumped whenever a trainable tensor changes (optimizer step, write). */
  version = 0;
  abstract readonly method: AdapterMethod;
  private readonly owned: GpuTensor[] = [];

  protected constructor(
    protected readonly ctx: GpuContext,
    readonly model: ModelConfig,
    readonly config: C,
  ) {}

  abstract trainable(): Generator<TrainableTensor>;

  /** The lowest layer with a trainable tensor: backward stops there. */
  abstract get lowestLayer(): number;

  /** Whether the method changes this linear module (none unless a method says so). */
  touches(_module: string): boolean {
    return false;
  }

  /** Rows placed before each sequence (none unless the method changes the sequence). */
  get sequence(): SequenceLayout {
    return NO_SEQUENCE_CHANGE;
  }

  /** Multiplies the run's learning rate for this adapter's tensors. */
  get learningRateScale(): number {
    return 1;
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
  }
}

export abstract class ModuleAdapter<P extends TargetModule, C> extends AdapterBase<C> {
  /** By module path, in layer order. */
  readonly params = new Map<string, P>();

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

  /** The targeted modules are the ones the method changes. */
  override touches(module: string): boolean {
    return this.params.has(module);
  }

  get lowestLayer(): number {
    return Math.min(...[...this.params.values()].map((p) => p.layer));
  }

  override release(): void {
    super.release();
    this.params.clear();
  }
}

/** A trainable tensor's key, shape and initial values. */
export interface TensorInit {
  key: string;
  shape: number[];
  data: Float32Array;
}

/** The key and shape of each tensor a method trains, for checking saved tensors against. */
export interface TensorShape {
  key: string;
  shape: number[];
}

/**
 * An adapter whose tensors are a fixed list of named tensors (prompt embeddings, encoder MLPs,
 * bottleneck adapters) rather than one set per targeted linear.
 */
export abstract class TensorSetAdapter<C> extends AdapterBase<C> {
  /** By key, in the method's order (the optimizer's and checkpoints' order). */
  readonly tensors = new Map<string, { param: GpuTensor; grad: GpuTensor; shape: number[] }>();

  /** Creates the tensors (all released again if one fails). */
  protected build(inits: readonly TensorInit[], label: string): void {
    try {
      for (const t of inits) {
        const param = this.own(createTensor(this.ctx, { shape: t.shape, label, data: t.data }));
        const grad = this.own(createTensor(this.ctx, { shape: t.shape, label: `${label} grad`, data: new Float32Array(t.data.length) }));
        this.tensors.set(t.key, { param, grad, shape: t.shape });
      }
    } catch (error) {
      this.release();
      throw error;
    }
  }

  /** The tensor under `key` (one the method creates). */
  tensor(key: string): GpuTensor {
    return this.tensors.get(key)!.param;
  }

  gradient(key: string): GpuTensor {
    return this.tensors.get(key)!.grad;
  }

  *trainable(): Generator<TrainableTensor> {
    for (const [key, t] of this.tensors) yield { key, param: t.param, grad: t.grad };
  }

  get lowestLayer(): number {
    return 0;
  }

  override release(): void {
    super.release();
    this.tensors.clear();
  }
}

/** Saved tensors matched against the shapes a method needs: missing, misshapen and extra keys are refused. */
export function savedTensorInits(shapes: readonly TensorShape[], tensors: ReadonlyMap<string, HostTensor>, title: string, source: string): TensorInit[] {
  const out: TensorInit[] = [];
  for (const { key, shape } of shapes) {
    const t = tensors.get(key);
    if (!t) throw new ModelFormatError(source, `has no "${key}", which this ${title} adapter needs`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new ModelFormatError(source, `"${key}" is [${t.shape.join(', ')}]; this ${title} adapter needs [${shape.join(', ')}]`);
    }
    out.push({ key, shape, data: t.data });
  }
  const known = new Set(shapes.map((s) => s.key));
  const extra = [...tensors.keys()].filter((k) => !known.has(k));
  if (extra.length > 0) throw new ModelFormatError(source, `has tensors this ${title} adapter does not have: ${extra.slice(0, 3).join(', ')}${extra.length > 3 ? ', ...' : ''} (an adapter for another model or other settings?)`);
  return out;
}
