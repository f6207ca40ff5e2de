/**
 * TrainerSession: everything an app does with webtune, as one object with plain-data arguments
 * and results, so it can live in a Web Worker behind Comlink (worker.ts, client.ts) or be used
 * directly in Node or on a page. It owns the GPU context, the model, the data, the run and its
 * checkpoints.
 */
import * as Comlink from 'comlink';
import { CheckpointMismatchError, InvalidArgumentError, MemoryPlanError } from '@webtune/errors';
import { createGpuContext, type GpuContext } from '@webtune/gpu';
import {
  exportPeftAdapter,
  filesSource,
  generate,
  importPeftAdapter,
  loadModelFiles,
  LoraAdapter,
  resolveLoraConfig,
  Transformer,
  uploadBaseModel,
  storedFourBit,
  urlSource,
  weightReader,
  type BaseFormat,
  type BaseModel,
  type GenerateOptions,
  type HostTensor,
  type LoadedModelFiles,
  type LoadProgress,
  type LoraConfig,
  type ModelCache,
  type ModelFileSource,
  type PeftFiles,
  type Tokenizer,
  type WeightFormat,
} from '@webtune/model';
import {
  checkMemoryPlan,
  checkpointFromFile,
  checkpointToFile,
  decodeCheckpoint,
  encodeCheckpoint,
  modelFingerprint,
  sha256Hex,
  DEFAULT_TRAIN_CONFIG,
  estimateTrainingMemory,
  MemoryCheckpointStore,
  packTokens,
  tokenizeDocuments,
  Trainer,
  type CheckpointMeta,
  type CheckpointStore,
  type DataCursor,
  type JsonObject,
  type MemoryEstimate,
  type StepProgress,
  type TrainConfig,
  type TrainerState,
} from '@webtune/trainer';
import type { ExportOnnxOptions } from '@webtune/onnx';

/** Options of TrainerSession.generate: sampling settings, and whether the adapter takes part. */
export interface SessionGenerateOptions extends Omit<GenerateOptions, 'onToken' | 'signal'> {
  /** false: generate from the base model alone (the adapter is kept). Default true. */
  useAdapter?: boolean;
}

export interface SessionEnvironment {
  /** WebGPU entry point; default navigator.gpu (in Node pass createNodeGpu()). */
  gpu?: GPU;
  /** Where checkpoints go; default in memory (the worker passes IndexedDB). */
  checkpoints?: CheckpointStore;
  /** Where downloaded model files are cached (default: the Cache API where it exists). */
  modelCache?: ModelCache | false;
  /**
   * ONNX files, in and out. Absent unless the app asked for them (createOnnxTrainer(), or a worker
   * on 'webtune/onnx-worker'), so that apps training safetensors models never bundle the ONNX
   * reader and protobufjs.
   */
  onnx?: OnnxSupport;
}

/** What the session needs from @webtune/onnx: the loader's WeightFormat for a graph, and the export. */
export interface OnnxSupport {
  weightFormat(file: string): WeightFormat;
  exportModel(files: LoadedModelFiles, config: LoraConfig, tensors: Map<string, HostTensor>, options: ExportOnnxOptions): Map<string, Uint8Array>;
}

/**
 * Options of loadModel(): how the frozen weights and activations are stored on the GPU, download
 * progress, caching, and reading an ONNX export instead of safetensors. All are optional; `format: 'nf4'`
 * (QLoRA) is the usual choice when GPU memory is tight.
 */
export interface LoadOptions {
  /**
   * Frozen linear weights on the GPU: 'f32' (LoRA), 'nf4' (QLoRA: quantized to NF4 at load), or
   * 'q4' (a 4-bit ONNX file's MatMulNBits weights kept 4-bit as stored). Default: 'q4' for an ONNX
   * file whose linear weights are all 4-bit, otherwise 'f32'.
   */
  format?: BaseFormat;
  /** Activation storage: 'f32', 'f16' (needs shader-f16), or 'auto' (f16 where available). Default 'f32'. */
  dtype?: 'f32' | 'f16' | 'auto';
  /** Called as each file's bytes arrive (cached files once, whole), with per-file and overall byte counts. */
  onProgress?: (p: LoadProgress) => void;
  /**
   * false: read the files from their source every time instead of keeping them in the model
   * cache (the Cache API in a browser), e.g. when the app's service worker already keeps them.
   * Default true.
   */
  cache?: boolean;
  /**
   * Read the weights from this ONNX graph in the folder (transformers.js / Optimum layout, e.g.
   * 'onnx/model.onnx' or 'onnx/model_q4.onnx'; f32, f16 and 4-bit MatMulNBits weights) instead of
   * safetensors. exportOnnx() then writes the fine-tuned model back as ONNX.
   */
  onnx?: string;
}

/**
 * What loadModel() and recoverDevice() resolve to: the model's shape from config.json (`modelType` is its
 * model_type, `architecture` the family webtune runs it as: 'llama' or 'gpt2'), how the weights sit on
 * the GPU (`format`, `dtype`, and `weightBytes`, the bytes of GPU memory the frozen weights take) and
 * `adapter`, the GPU adapter's vendor, architecture and description (empty where the browser hides them).
 */
export interface ModelInfo {
  modelType: string;
  architecture: string;
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  maxPositions: number;
  format: BaseFormat;
  dtype: 'f32' | 'f16';
  weightBytes: number;
  adapter: string;
}

/** Training text for prepareData(): one string, several documents (each followed by the EOS token), or a text file. */
export type DataInput = { text: string } | { texts: string[] } | { file: Blob };

/** Options of prepareData(): how the tokenized text is cut into training sequences and how much is held out. */
export interface DataOptions {
  /** Tokens per training sequence (default 128). */
  seqLen?: number;
  /** Share of sequences held out for evaluation (default 0.1; 0 for none). */
  heldOut?: number;
}

/**
 * What prepareData() resolves to: the token count (EOS tokens included) and the sequences it gave. Each
 * sequence is `seqLen + 1` tokens (inputs and shifted targets); the held-out ones are the last sequences of
 * the text, not a random sample, and give TrainSummary.heldOutLoss.
 */
export interface DataInfo {
  tokens: number;
  seqLen: number;
  trainSequences: number;
  heldOutSequences: number;
  /** SHA-256 of the token windows: a checkpoint only resumes on the same data. */
  fingerprint: string;
}

/**
 * What train() runs: the number of optimizer steps, the LoRA settings, checkpointing and resuming, and any
 * TrainConfig field to override (batchSize 4, learningRate 2e-4, warmupSteps 0, seed 0, ... by default).
 * seqLen is fixed by prepareData(). Give a stable `runId` with `resume: true` to continue after a reload.
 */
export interface TrainRequest extends Partial<Omit<TrainConfig, 'seqLen'>> {
  steps: number;
  lora?: Partial<LoraConfig>;
  /** Names the run's checkpoints; default 'run'. A fresh run (resume: false) deletes that run's earlier checkpoints. */
  runId?: string;
  /** Checkpoint every N optimizer steps (and on pause and at the end). Default 50; 0: only on pause and at the end. */
  checkpointEvery?: number;
  /** Checkpoints kept per run. Default 3. */
  keepLast?: number;
  /** Continue from the run's newest valid checkpoint instead of starting over. */
  resume?: boolean;
  /** Progress at most this often (ms); the first and last steps always report. Default 250. */
  progressIntervalMs?: number;
  /** GPU memory budget for the planner (bytes; default 4 GiB). */
  memoryBudgetBytes?: number;
  /** 'fresh' (default): a new PEFT-initialised adapter; 'current': start from the adapter in place (imported or restored), e.g. a federated round's global adapter. */
  startFrom?: 'fresh' | 'current';
  /** FedProx: pull towards the starting weights with this weight (default 0). */
  proximalMu?: number;
}

/**
 * What train() and resume() resolve to when the run stops (completed, paused or cancelled): the step
 * reached, the loss of the last step this call took and, for a completed run with held-out data, the mean
 * held-out loss; throughput in tokens per second, and the GPU bytes webtune accounted at peak next to the
 * planner's estimate.
 */
export interface TrainSummary {
  runId: string;
  stopped: 'completed' | 'paused' | 'cancelled';
  step: number;
  totalSteps: number;
  lastLoss: number | undefined;
  heldOutLoss: number | undefined;
  tokensPerSecond: number;
  peakBytes: number;
  estimateBytes: number;
  /** The checkpoint written when the run stopped (pause or completion), if any. */
  checkpoint: CheckpointMeta | undefined;
  /** Newer checkpoints that failed verification and were skipped when resuming. */
  skippedCheckpoints: Array<{ id: string; message: string }>;
  /** The step of the checkpoint this call resumed from (train with resume: true). */
  resumedFrom: number | undefined;
  /**
   * What the app should know but that did not stop the run, e.g. that it resumed from a checkpoint
   * written by an older webtune, whose metadata (step, data position, settings) had no checksum.
   */
  warnings: string[];
}

/**
 * Training progress for train()'s and resume()'s callback, after an optimizer step: step, loss, learning
 * rate, gradient norm, speed, seconds left and live GPU bytes. At most one per `progressIntervalMs` (default
 * 250 ms); the first and last steps always report. Not the DOM's ProgressEvent.
 */
export interface ProgressEvent extends StepProgress {
  /** The run this progress belongs to (TrainRequest.runId). */
  runId: string;
}

interface Loaded {
  files: LoadedModelFiles;
  base: BaseModel;
  model: Transformer;
  format: BaseFormat;
  dtype: 'f32' | 'f16';
}

interface Run {
  runId: string;
  request: TrainRequest;
  trainer: Trainer;
  adapter: LoraAdapter;
  controller: AbortController | undefined;
  cursor: DataCursor | undefined;
  resumedFrom: number | undefined;
  warnings: string[];
}

export class TrainerSession {
  private ctx: GpuContext | undefined;
  private loaded: Loaded | undefined;
  private data: { train: Uint32Array[]; heldOut: Uint32Array[]; info: DataInfo } | undefined;
  private run: Run | undefined;
  private adapter: LoraAdapter | undefined;
  private readonly store: CheckpointStore;

  constructor(private readonly env: SessionEnvironment = {}) {
    this.store = env.checkpoints ?? new MemoryCheckpointStore();
  }

  private async context(): Promise<GpuContext> {
    if (this.ctx && !this.ctx.lostError) return this.ctx;
    this.ctx = await createGpuContext({ gpu: this.env.gpu });
    return this.ctx;
  }

  /**
   * After a lost device (status().deviceLost, or a DeviceLostError from any call): a new device,
   * the loaded model uploaded again from the files already in memory. The run's adapter is gone
   * with the old device; continue with train({ ..., resume: true }) from the last checkpoint.
   */
  async recoverDevice(): Promise<ModelInfo> {
    const { files, format, dtype } = this.requireModel();
    this.run = undefined;
    this.adapter = undefined;
    this.loaded = undefined;
    this.ctx = undefined;
    const ctx = await this.context();
    const base = await uploadBaseModel(ctx, files.config, weightReader(files), { format, dtype });
    this.loaded = { files, base, model: await Transformer.create(ctx, base), format, dtype };
    return this.modelInfo();
  }

  /** Loads a Hugging Face model folder: a URL, picked files, or (in Node) a ModelFileSource. */
  async loadModel(
    source: string | File[] | Array<{ name: string; bytes: Uint8Array }> | ModelFileSource,
    options: LoadOptions = {},
    /** Progress as a separate argument: Comlink proxies only top-level callbacks (createTrainer passes it here). */
    onProgress: ((p: LoadProgress) => void) | undefined = options.onProgress,
  ): Promise<ModelInfo> {
    const ctx = await this.context();
    this.releaseModel();
    const src = typeof source === 'string' ? urlSource(source) : Array.isArray(source) ? filesSource(source) : source;
    const files = await loadModelFiles(src, {
      onProgress, cache: options.cache === false ? false : this.env.modelCache, ...(options.onnx ? { weights: this.onnx().weightFormat(options.onnx) } : {}),
    });
    const format = options.format ?? ('blockSize' in storedFourBit(files.config, weightReader(files)) ? 'q4' : 'f32');
    const dtype = options.dtype === 'auto' ? (ctx.features.shaderF16 ? 'f16' : 'f32') : (options.dtype ?? 'f32');
    const base = await uploadBaseModel(ctx, files.config, weightReader(files), { format, dtype });
    const model = await Transformer.create(ctx, base);
    this.loaded = { files, base, model, format, dtype };
    return this.modelInfo();
  }

  private onnx(): OnnxSupport {
    if (this.env.onnx) return this.env.onnx;
    throw new InvalidArgumentError(
      "This trainer has no ONNX support, which is kept out of apps that do not ask for it: create it with createOnnxTrainer() from 'webtune/onnx' " +
        "(or, with your own worker, import 'webtune/onnx-worker' in it).",
    );
  }

  private modelInfo(): ModelInfo {
    const { files, base, format, dtype } = this.requireModel();
    const c = files.config;
    return {
      modelType: c.modelType, architecture: c.architecture, vocabSize: c.vocabSize, hiddenSize: c.hiddenSize,
      numLayers: c.numLayers, maxPositions: c.maxPositions, format, dtype, weightBytes: base.byteLength, adapter: this.ctx!.adapter.name,
    };
  }

  private requireModel(): Loaded {
    if (!this.loaded) throw new InvalidArgumentError('No model is loaded: call loadModel() first.');
    return this.loaded;
  }

  private tokenizer(): Tokenizer {
    const t = this.requireModel().files.tokenizer;
    if (!t) throw new InvalidArgumentError('This model folder has no tokenizer.json, so text cannot be tokenized.');
    return t;
  }

  /** Tokenizes the training text and cuts it into sequences; the last `heldOut` share is kept for evaluation. */
  async prepareData(input: DataInput, options: DataOptions = {}): Promise<DataInfo> {
    const tok = this.tokenizer();
    const seqLen = options.seqLen ?? 128;
    const texts = 'text' in input ? [input.text] : 'texts' in input ? input.texts : [await input.file.text()];
    if (texts.every((t) => t.trim().length === 0)) throw new InvalidArgumentError('The training text is empty.');
    const tokens = tokenizeDocuments((t) => tok.encode(t), texts, tok.eosTokenId);
    const windows = packTokens(tokens, seqLen);
    const heldOutCount = Math.floor(windows.length * (options.heldOut ?? 0.1));
    if (windows.length - heldOutCount < 1) {
      throw new InvalidArgumentError(`The text gives ${tokens.length} tokens, fewer than one sequence of ${seqLen + 1}; add text or lower seqLen.`);
    }
    const all = new Uint8Array(windows.length * (seqLen + 1) * 4);
    windows.forEach((w, i) => all.set(new Uint8Array(w.buffer, w.byteOffset, w.byteLength), i * (seqLen + 1) * 4));
    const info: DataInfo = {
      tokens: tokens.length, seqLen, trainSequences: windows.length - heldOutCount, heldOutSequences: heldOutCount, fingerprint: await sha256Hex(all),
    };
    this.data = { train: windows.slice(0, windows.length - heldOutCount), heldOut: windows.slice(windows.length - heldOutCount), info };
    return info;
  }

  /**
   * Trains a LoRA adapter on the prepared data. With `resume`, continues the run from its newest
   * checkpoint that verifies (the same model, adapter settings and data are required).
   */
  async train(request: TrainRequest, onProgress?: (p: ProgressEvent) => void): Promise<TrainSummary> {
    if (this.run?.controller) throw new InvalidArgumentError('A run is already in progress; pause or cancel it first.');
    const { files, model } = this.requireModel();
    if (!this.data) throw new InvalidArgumentError('No training data: call prepareData() first.');
    const ctx = await this.context();
    const runId = request.runId ?? 'run';
    const lora = resolveLoraConfig(files.config, request.lora ?? {});
    const expect = { model: modelFingerprint(files.config), lora };
    let restored: { state: Omit<TrainerState, 'cursor'>; cursor: DataCursor } | undefined;
    const skipped: TrainSummary['skippedCheckpoints'] = [];
    const warnings: string[] = [];
    if (request.resume) {
      const latest = await this.store.latest(runId, expect);
      for (const s of latest?.skipped ?? []) skipped.push({ id: s.id, message: s.error.message });
      if (latest) {
        const decoded = await decodeCheckpoint(latest.record, expect);
        if (decoded.meta.label !== undefined && decoded.meta.label !== `data:${this.data.info.fingerprint}`) {
          throw new CheckpointMismatchError(decoded.meta.id, 'it was trained on different data (the token windows differ); prepare the same data to resume');
        }
        restored = { state: { step: decoded.meta.step, adapter: decoded.adapter, optimizer: decoded.optimizer }, cursor: decoded.meta.cursor };
        if (!decoded.metaProtected) {
          warnings.push(`Checkpoint ${decoded.meta.id} was written by an older webtune: its tensors were verified, but its metadata (step, data position, settings) had no checksum and could not be.`);
        }
      }
    }
    let start: Map<string, HostTensor> | undefined;
    if (request.startFrom === 'current') {
      if (!this.adapter) throw new InvalidArgumentError("startFrom: 'current' needs an adapter in place: importAdapter() or restoreCheckpoint() first.");
      start = await this.adapter.read();
    }
    if (!request.resume) {
      // A fresh run replaces the run of the same name: its old checkpoints would otherwise be
      // what a later resume: true picks up (the newest checkpoint is the highest step).
      for (const meta of await this.store.list(runId)) await this.store.delete(meta.id);
    }
    this.disposeRun();
    const adapter = LoraAdapter.create(ctx, files.config, lora, request.seed ?? DEFAULT_TRAIN_CONFIG.seed);
    if (start) {
      try {
        adapter.write(start);
      } catch (cause) {
        adapter.release();
        throw new InvalidArgumentError(`The adapter in place does not match the requested LoRA settings (rank, targets): ${(cause as Error).message}`);
      }
    }
    const {
      lora: _lora, runId: _runId, checkpointEvery: _every, keepLast: _keep, resume: _resume, progressIntervalMs: _interval,
      memoryBudgetBytes, startFrom: _start, proximalMu, ...config
    } = request;
    const trainer = await Trainer.create(ctx, model, adapter, { ...config, seqLen: this.data.info.seqLen }, { budgetBytes: memoryBudgetBytes });
    if (restored) trainer.restore(restored.state);
    if (proximalMu) trainer.optimizer.setProximal(proximalMu);
    this.adapter = adapter;
    this.run = { runId, request, trainer, adapter, controller: undefined, cursor: restored?.cursor, resumedFrom: restored?.state.step, warnings };
    return this.continueRun(onProgress, skipped);
  }

  /**
   * The memory planner's estimate for a run, before starting it: bytes by part and whether it fits
   * the budget (with the planner's advice when it does not). Needs a loaded model; data optional.
   */
  async planTraining(request: Pick<TrainRequest, 'batchSize' | 'lora' | 'recompute' | 'memoryBudgetBytes'> & { seqLen?: number }): Promise<{
    estimate: MemoryEstimate; fits: boolean; advice: string | undefined;
  }> {
    const { files, base } = this.requireModel();
    const ctx = await this.context();
    const input = {
      config: files.config, format: base.format, dtype: base.dtype, lora: resolveLoraConfig(files.config, request.lora ?? {}),
      batch: request.batchSize ?? DEFAULT_TRAIN_CONFIG.batchSize, seq: request.seqLen ?? this.data?.info.seqLen ?? DEFAULT_TRAIN_CONFIG.seqLen,
      recompute: request.recompute ?? false, blockSize: base.nf4?.blockSize,
    };
    try {
      return { estimate: checkMemoryPlan(ctx, input, { budgetBytes: request.memoryBudgetBytes }), fits: true, advice: undefined };
    } catch (error) {
      if (!(error instanceof MemoryPlanError)) throw error;
      return { estimate: estimateTrainingMemory(input, Math.min(ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxBufferSize)), fits: false, advice: error.message };
    }
  }

  /** Continues a paused run of this session (after a reload, call train({ ..., resume: true }) instead). */
  async resume(onProgress?: (p: ProgressEvent) => void): Promise<TrainSummary> {
    if (!this.run) throw new InvalidArgumentError('There is no paused run to resume; call train() (with resume: true after a reload).');
    if (this.run.controller) throw new InvalidArgumentError('The run is already going.');
    if (this.run.trainer.optimizer.step >= this.run.trainer.config.steps) {
      throw new InvalidArgumentError(`Run "${this.run.runId}" has finished all ${this.run.trainer.config.steps} steps; start a new run with train().`);
    }
    this.run.resumedFrom = undefined;
    return this.continueRun(onProgress, []);
  }

  /** Stops after the current step and writes a checkpoint; train() resolves with stopped: 'paused'. */
  pause(): void {
    this.run?.controller?.abort('pause');
  }

  /** Stops after the current step without a checkpoint; train() resolves with stopped: 'cancelled'. */
  cancel(): void {
    this.run?.controller?.abort('cancel');
  }

  private async continueRun(onProgress: ((p: ProgressEvent) => void) | undefined, skipped: TrainSummary['skippedCheckpoints']): Promise<TrainSummary> {
    const run = this.run!;
    const data = this.data!;
    const { files } = this.requireModel();
    const controller = new AbortController();
    run.controller = controller;
    const interval = run.request.progressIntervalMs ?? 250;
    let lastReport = -Infinity;
    const save = async (state: TrainerState) =>
      this.store.put(
        await encodeCheckpoint({
          runId: run.runId, step: state.step, totalSteps: run.trainer.config.steps, model: modelFingerprint(files.config),
          lora: run.adapter.config, train: JSON.parse(JSON.stringify(run.trainer.config)) as JsonObject, cursor: state.cursor, label: `data:${data.info.fingerprint}`,
          adapter: state.adapter, optimizer: state.optimizer,
        }),
        run.request.keepLast ?? 3,
      );
    try {
      const result = await run.trainer.train(data.train, {
        cursor: run.cursor,
        signal: controller.signal,
        checkpointEvery: run.request.checkpointEvery ?? 50,
        onCheckpoint: save,
        onStep: (p) => {
          const now = performance.now();
          // Throttled: the first step, the last, and at most one event per interval.
          if (p.step === 1 || p.step === p.totalSteps || now - lastReport >= interval) {
            lastReport = now;
            onProgress?.({ ...p, runId: run.runId });
          }
        },
      });
      run.cursor = result.cursor;
      let checkpoint: CheckpointMeta | undefined;
      if (result.stopped !== 'cancelled') {
        await save(await run.trainer.state(result.cursor));
        checkpoint = (await this.store.list(run.runId))[0];
      }
      const heldOutLoss = result.stopped === 'completed' && data.heldOut.length > 0 ? await run.trainer.evaluate(data.heldOut) : undefined;
      return {
        runId: run.runId, stopped: result.stopped, step: result.step, totalSteps: run.trainer.config.steps,
        lastLoss: result.losses.at(-1), heldOutLoss, tokensPerSecond: result.tokensPerSecond, peakBytes: result.peakBytes,
        estimateBytes: result.estimate.total, checkpoint, skippedCheckpoints: skipped, resumedFrom: run.resumedFrom,
        warnings: run.warnings,
      };
    } finally {
      run.controller = undefined;
    }
  }

  /**
   * Continues `prompt` with the current adapter (or the base model before training). With
   * `useAdapter: false` the base model answers alone, for a before/after comparison after
   * training; the adapter stays in the session and the next call or run uses it again.
   */
  async generate(prompt: string, options: SessionGenerateOptions = {}): Promise<{ text: string; tokens: number[] }> {
    const { model } = this.requireModel();
    const tok = this.tokenizer();
    model.setAdapter(options.useAdapter === false ? undefined : this.adapter);
    const tokens = await generate(model, tok.encode(prompt), options);
    return { text: tok.decode(tokens), tokens };
  }

  /** The adapter as PEFT files (adapter_config.json + adapter_model.safetensors). */
  async exportAdapter(): Promise<PeftFiles> {
    if (!this.adapter) throw new InvalidArgumentError('There is no adapter yet: train or import one first.');
    const files = await exportPeftAdapter(this.adapter, { baseModel: this.requireModel().files.source ?? '' });
    // Across a worker boundary the bytes move instead of being copied.
    return Comlink.transfer(files, [files['adapter_model.safetensors'].buffer as ArrayBuffer]);
  }

  /**
   * The fine-tuned model as ONNX, for a model loaded with `onnx`: the original graph with the
   * adapter merged into its f32/f16 weights, and 4-bit MatMulNBits weights kept with the adapter as
   * an exact side branch (or merged and re-quantized with `fourBit: 'requantize'`), keyed by path in
   * the model folder (e.g. onnx/model.onnx, plus onnx/model.onnx_data when the original has
   * external data). onnxruntime-web and transformers.js run it as they ran the original.
   */
  async exportOnnx(options: ExportOnnxOptions = {}): Promise<Record<string, Uint8Array>> {
    if (!this.adapter) throw new InvalidArgumentError('There is no adapter yet: train or import one first.');
    const { files } = this.requireModel();
    const out = this.onnx().exportModel(files, this.adapter.config, await this.adapter.read(), options);
    const result = Object.fromEntries(out);
    return Comlink.transfer(result, [...out.values()].map((b) => b.buffer as ArrayBuffer));
  }

  /** Uses a PEFT adapter (for generation, or as the start of training with resume: false). */
  async importAdapter(files: { config: string; weights: Uint8Array }): Promise<void> {
    const ctx = await this.context();
    const { files: model } = this.requireModel();
    const adapter = importPeftAdapter(ctx, model.config, files);
    this.disposeRun();
    this.adapter = adapter;
  }

  listCheckpoints(runId?: string): Promise<CheckpointMeta[]> {
    return this.store.list(runId);
  }

  deleteCheckpoint(id: string): Promise<void> {
    return this.store.delete(id);
  }

  /** Puts a checkpoint's adapter in place for generation or export (training resumes with train({ resume: true })). */
  async restoreCheckpoint(id: string): Promise<CheckpointMeta> {
    const ctx = await this.context();
    const { files } = this.requireModel();
    const decoded = await decodeCheckpoint(await this.store.get(id), { model: modelFingerprint(files.config) });
    const adapter = LoraAdapter.fromTensors(ctx, files.config, decoded.meta.lora, decoded.adapter, `checkpoint ${id}`);
    this.disposeRun();
    this.adapter = adapter;
    return decoded.meta;
  }

  /** One portable file holding the checkpoint (verified on import). */
  async exportCheckpoint(id: string): Promise<Uint8Array> {
    const bytes = checkpointToFile(await this.store.get(id));
    return Comlink.transfer(bytes, [bytes.buffer as ArrayBuffer]);
  }

  async importCheckpoint(bytes: Uint8Array): Promise<CheckpointMeta> {
    const record = checkpointFromFile(bytes, 'imported checkpoint');
    await decodeCheckpoint(record);
    await this.store.put(record, Number.MAX_SAFE_INTEGER);
    return record.meta;
  }

  /**
   * Asks the browser to keep this origin's storage (checkpoints, cached models) under pressure.
   * `persisted` is undefined where the API is missing: in Node, and in workers (persist() is
   * page-only; createTrainer() asks from the page).
   */
  async persistStorage(): Promise<{ persisted: boolean | undefined }> {
    const storage = (globalThis as { navigator?: { storage?: StorageManager } }).navigator?.storage;
    if (!storage?.persist) return { persisted: undefined };
    return { persisted: await storage.persist() };
  }

  /** GPU memory webtune holds right now, and the device it runs on. */
  status(): { liveBytes: number; peakBytes: number; adapter: string | undefined; running: boolean; deviceLost: string | undefined } {
    return {
      liveBytes: this.ctx?.memory.liveBytes ?? 0,
      peakBytes: this.ctx?.memory.peakBytes ?? 0,
      adapter: this.ctx?.adapter.name,
      running: this.run?.controller !== undefined,
      deviceLost: this.ctx?.lostError?.message,
    };
  }

  private disposeRun(): void {
    if (this.run) {
      this.run.trainer.release();
      if (this.run.adapter !== this.adapter) this.run.adapter.release();
    }
    this.run = undefined;
    this.adapter?.release();
    this.adapter = undefined;
    this.loaded?.model.setAdapter(undefined);
  }

  private releaseModel(): void {
    this.disposeRun();
    this.loaded?.model.release();
    this.loaded?.base.release();
    this.loaded = undefined;
  }

  dispose(): void {
    this.releaseModel();
    this.ctx?.destroy();
    this.ctx = undefined;
  }
}

