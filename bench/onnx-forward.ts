/**
 * "ONNX forward": one ONNX decoder export (transformers.js / Optimum with-past layout) run by
 * webtune and by onnxruntime-web on the same file in the same process: forward latency of one
 * prompt (batch 1, `seq` tokens, empty past), median of `runs` timed runs after one untimed
 * warm-up, every run ending with the logits [1, seq, vocab] on the CPU.
 *   webtune: loadModelFiles + onnxWeightFormat, uploadBaseModel, Transformer.logits; a file with
 *            4-bit MatMulNBits weights runs twice: kept 4-bit (format 'q4', the SDK's default for
 *            it; row 'webtune-q4') and dequantized to f32 at upload (row 'webtune');
 *   onnxruntime-web: InferenceSession on the file's bytes, once per execution provider given
 *            (e.g. 'webgpu', 'wasm'), run(feeds, ['logits']).
 * Session creation, upload and workspace allocation are not timed. Each row also reports tokens/s
 * (seq / median) and, for the ORT rows, the max |logits difference| against webtune's logits.
 */
import type * as ORT from 'onnxruntime-web';
import type { GpuContext } from '@webtune/gpu';
import { loadModelFiles, storedFourBit, Transformer, uploadBaseModel, weightReader, type BaseFormat, type ModelFileSource } from '@webtune/model';
import { decoderFeeds, onnxWeightFormat } from '@webtune/onnx';
import { median, type BenchRow } from './suite.js';

export interface OnnxForwardModel {
  /** Row label, e.g. 'webtune-demo model_q4.onnx'. */
  name: string;
  /** The model folder (URL, or a ModelFileSource in Node): config.json, tokenizer.json, onnx/... */
  source: string | ModelFileSource;
  /** The graph's path in the folder, e.g. 'onnx/model_q4.onnx'. */
  file: string;
  /** The same file's bytes, for onnxruntime-web. */
  bytes: Uint8Array;
}

export interface OnnxForwardOptions {
  models: OnnxForwardModel[];
  runs: number;
  /** Prompt length (default 64). */
  seq?: number;
  /** onnxruntime-web execution providers to time (default ['webgpu', 'wasm']). */
  executionProviders?: Array<'webgpu' | 'wasm'>;
  log?: (line: string) => void;
}


function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return a.length === b.length ? m : Infinity;
}

export async function runOnnxForwardBench(ctx: GpuContext, ort: typeof ORT, o: OnnxForwardOptions): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const seq = o.seq ?? 64;
  const eps = o.executionProviders ?? ['webgpu', 'wasm'];
  const log = o.log ?? (() => {});
  const push = (row: BenchRow, note = '') => {
    rows.push(row);
    log(`${row.benchmark} ${row.shape} ${row.library}: ${row.medianMs.toFixed(2)} ms, ${row.tokensPerSecond?.toFixed(0)} tok/s${note}`);
  };

  for (const m of o.models) {
    const files = await loadModelFiles(m.source, { weights: onnxWeightFormat({ file: m.file }), cache: false });
    const { config } = files;
    // A fixed, deterministic prompt: the time does not depend on which tokens.
    const ids = Array.from({ length: seq }, (_, i) => (i * 37 + 11) % config.vocabSize);
    const shape = `${m.name} 1x${seq}`;

    const formats: BaseFormat[] = 'blockSize' in storedFourBit(config, weightReader(files)) ? ['q4', 'f32'] : ['f32'];
    const batch = { ids: new Uint32Array(ids), batch: 1, seq };
    // The ORT rows are compared with the first webtune row's logits.
    let ours: Float32Array | undefined;
    for (const format of formats) {
      const base = await uploadBaseModel(ctx, config, weightReader(files), { format });
      const model = await Transformer.create(ctx, base);
      try {
        let logits: Float32Array = new Float32Array(0);
        const ms = await median(o.runs, async () => {
          logits = await model.logits(batch);
        });
        ours ??= logits;
        const library = format === 'q4' ? 'webtune-q4' : 'webtune';
        push({ benchmark: 'ONNX forward', shape, library, medianMs: ms, tokensPerSecond: (seq * 1000) / ms, weightBytes: base.byteLength, runs: o.runs });
      } finally {
        model.release();
        base.release();
      }
    }

    for (const ep of eps) {
      const session = await ort.InferenceSession.create(m.bytes, { executionProviders: [ep], logSeverityLevel: 3 });
      try {
        const tensor = (type: 'int64' | 'float32', data: BigInt64Array | Float32Array, dims: number[]) => new ort.Tensor(type, data, dims);
        const feeds = decoderFeeds(tensor, config, [ids]);
        let theirs: Float32Array = new Float32Array(0);
        const ms = await median(o.runs, async () => {
          const out = await session.run(feeds, ['logits']);
          theirs = (await out.logits!.getData()) as Float32Array;
        });
        const diff = maxDiff(theirs, ours!);
        push(
          { benchmark: 'ONNX forward', shape, library: `onnxruntime-web-${ep}`, medianMs: ms, tokensPerSecond: (seq * 1000) / ms, weightBytes: m.bytes.byteLength, runs: o.runs },
          `, max |logits - webtune| ${diff.toExponential(1)}`,
        );
      } finally {
        await session.release();
      }
    }
  }
  return rows;
}
