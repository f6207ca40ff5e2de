/**
 * Memory planner: before training, the GPU bytes a run needs (frozen weights, adapter, AdamW
 * moments, activations and scratch from the same workspace plan the model allocates), checked
 * against the device's limits and a budget; a plan that does not fit is refused with
 * MemoryPlanError naming what to lower, biggest saving first.
 */
import { type GpuContext } from '@webtune/gpu';
import { InvalidArgumentError, MemoryPlanError, formatBytes } from '@webtune/errors';
import { adapterLayout, adapterMethod, architectureOf, BYTES, defaultHeadChunk, linearHasBias, mlpRowStride, linearShape, planBytes, planWorkspace, toAdapterSpec, type AdapterSpec, type BaseFormat, type LoraConfig, type ModelConfig } from '@webtune/model';

export interface MemoryPlanInput {
  config: ModelConfig;
  format: BaseFormat;
  /** The adapter (any method), resolved. */
  adapter?: AdapterSpec;
  /** Shorthand for `adapter: { method: 'lora', config: lora }`. */
  lora?: LoraConfig;
  batch: number;
  seq: number;
  recompute: boolean;
  /** NF4 block size (default 64). */
  blockSize?: number;
  /** Activation storage (default 'f32'); 'f16' also stores embeddings and dense frozen weights in f16. */
  dtype?: 'f32' | 'f16';
  /** DP-SGD: the clipped per-example sum, one more f32 copy of the trainable tensors (pass batch 1: examples run one at a time). */
  perExampleClipping?: boolean;
}

export interface MemoryEstimate {
  weights: number;
  adapter: number;
  optimizer: number;
  activations: number;
  total: number;
  /** Largest single buffer (must fit maxStorageBufferBindingSize). */
  largestBuffer: { name: string; bytes: number };
}

/** NF4 with double quantization: 4 bits per weight, one u8 per block of absmax, one f32 per 256 blocks, the 256-entry code. */
function nf4Bytes(n: number, blockSize: number): number {
  const blocks = Math.ceil(n / blockSize);
  const pad = (b: number) => Math.ceil(b / 4) * 4;
  return pad(Math.ceil(n / 8) * 4) + pad(blocks) + Math.ceil(blocks / 256) * 4 + 256 * 4;
}

/** A stored 4-bit weight ('q4'): 4 bits per weight, one f32 scale per block, and the two 4-byte buffers bound to the unused double-quantization slots. */
function q4Bytes(n: number, blockSize: number): number {
  return Math.ceil(n / 8) * 4 + Math.ceil(n / blockSize) * 4 + 8;
}

export function estimateTrainingMemory(input: MemoryPlanInput, maxBinding = 2 ** 31): MemoryEstimate {
  const { config: c } = input;
  const spec = adapterOf(input);
  const method = adapterMethod(spec.method);
  const arch = architectureOf(c);
  const dtype = input.dtype ?? 'f32';
  const eb = dtype === 'f16' ? 2 : 4;
  const d = c.hiddenSize;
  let weights = c.vocabSize * d * eb * (c.tieWordEmbeddings ? 1 : 2);
  if (arch.positions === 'learned') weights += c.maxPositions * d * eb;
  weights += (2 * c.numLayers + 1) * d * 4 * (arch.norm === 'layer' ? 2 : 1);
  let largest = { name: 'embedding', bytes: c.vocabSize * d * eb };
  for (const name of arch.linears) {
    const { inFeatures, outFeatures } = linearShape(c, name);
    const n = inFeatures * outFeatures;
    const bytes = { f32: n * eb, nf4: nf4Bytes(n, input.blockSize ?? 64), q4: q4Bytes(n, input.blockSize ?? 32) }[input.format];
    weights += c.numLayers * bytes;
    if (linearHasBias(c, name)) weights += c.numLayers * outFeatures * 4;
    // Quantizing goes through one float32 copy of the weight.
    if (n * 4 > largest.bytes) largest = { name: name, bytes: n * 4 };
  }
  if (arch.positions === 'rope') weights += c.maxPositions * c.headDim * 4; // RoPE cos + sin tables
  const params = method.parameterCount(c, spec.config);
  // f32 weights + gradients, and with f16 compute their half copies where the method keeps them.
  const adapter = params * 4 * 2 + (dtype === 'f16' && method.halfCopies ? params * 2 * 2 : 0) + (method.runtimeBytes?.(c, spec.config, dtype) ?? 0)
    + (input.perExampleClipping ? params * 4 : 0);
  const optimizer = params * 4 * 2;
  // Virtual tokens are rows of every sequence; prefixes add keys and values (the transformer's workspaceShape does the same).
  const layout = adapterLayout(c, spec);
  const rows = input.seq + layout.sequence.virtualTokens;
  const tokens = input.batch * rows;
  const plan = planWorkspace(c, {
    batch: input.batch, seq: rows, prefixTokens: layout.sequence.prefixTokens, gatedPrefix: layout.sequence.gatedPrefix === true, training: true, recompute: input.recompute,
    adapter: method.buffers(c, spec.config, { tokens, training: true, dtype, fourBit: input.format !== 'f32' }),
    lowestTrainable: layout.lowestLayer,
    headChunk: defaultHeadChunk(c, tokens, maxBinding, dtype),
    mlpRowStride: mlpRowStride(c, dtype, !layout.touchesMlp),
    nf4: input.format !== 'f32',
    dtype,
  });
  const activations = planBytes(plan);
  for (const p of plan) {
    const bytes = p.shape.reduce((a, b) => a * b, 1) * BYTES[p.dtype];
    if (bytes > largest.bytes) largest = { name: `activation ${p.name}`, bytes };
  }
  return { weights, adapter, optimizer, activations, total: weights + adapter + optimizer + activations, largestBuffer: largest };
}

export interface PlanCheckOptions {
  /** Total GPU memory webtune may use. WebGPU does not report the device's memory, so this is the app's call; default 4 GiB. */
  budgetBytes?: number;
}

/** Throws MemoryPlanError if the run does not fit; returns the estimate otherwise. */
export function checkMemoryPlan(ctx: Pick<GpuContext, 'limits'>, input: MemoryPlanInput, options: PlanCheckOptions = {}): MemoryEstimate {
  const maxBinding = Math.min(ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxBufferSize);
  const estimate = estimateTrainingMemory(input, maxBinding);
  const budget = options.budgetBytes ?? 4 * 2 ** 30;
  const suggestions = suggest(input, estimate);
  if (estimate.largestBuffer.bytes > maxBinding) {
    throw new MemoryPlanError(
      `The buffer "${estimate.largestBuffer.name}" (${formatBytes(estimate.largestBuffer.bytes)})`,
      estimate.largestBuffer.bytes, maxBinding,
      ['this device\'s maxStorageBufferBindingSize cannot hold it; use a model with a smaller vocabulary or hidden size', ...suggestions],
    );
  }
  if (estimate.total > budget) {
    const spec = adapterOf(input);
    throw new MemoryPlanError(`Training ${input.config.modelType} (batch ${input.batch}, sequence ${input.seq}, ${adapterMethod(spec.method).describe(spec.config)}, ${input.format})`, estimate.total, budget, suggestions);
  }
  return estimate;
}

function suggest(input: MemoryPlanInput, e: MemoryEstimate): string[] {
  const options: Array<[number, string]> = [];
  const again = (patch: Partial<MemoryPlanInput>) => e.total - estimateTrainingMemory({ ...input, ...patch }).total;
  if (!input.recompute) options.push([again({ recompute: true }), 'turn on recompute (activation recomputation)']);
  if (input.format === 'f32') options.push([again({ format: 'nf4' }), "use format 'nf4' (QLoRA)"]);
  if (input.seq > 16) options.push([again({ seq: Math.floor(input.seq / 2) }), `sequence length (${input.seq} -> ${Math.floor(input.seq / 2)})`]);
  if (input.batch > 1) options.push([again({ batch: Math.ceil(input.batch / 2) }), `batch size (${input.batch} -> ${Math.ceil(input.batch / 2)}, with gradient accumulation to keep the effective batch)`]);
  const spec = adapterOf(input);
  const smaller = adapterMethod(spec.method).smaller?.(spec.config);
  if (smaller) options.push([again({ adapter: { method: spec.method, config: smaller.config as AdapterSpec['config'] }, lora: undefined }), smaller.what]);
  return options.filter(([saving]) => saving > 0).sort((a, b) => b[0] - a[0]).map(([saving, text]) => `${text}: saves ${formatBytes(saving)}`);
}

function adapterOf(input: MemoryPlanInput): AdapterSpec {
  if (input.adapter) return input.adapter;
  if (input.lora) return toAdapterSpec(input.lora);
  throw new InvalidArgumentError('The memory plan needs the adapter: pass `adapter` ({ method, config }) or `lora`.');
}
