/**
 * ONNX support for the SDK, kept in its own entry so that only apps that import it bundle the
 * ONNX reader (protobufjs) in their worker.
 */
/// <reference types="@webgpu/types" preserve="true" />
import { connectTrainer, type CreateTrainerOptions, type TrainerApi } from './facade.js';

/**
 * createTrainer() with ONNX files in and out: `loadModel(url, { onnx: 'onnx/model_q4.onnx' })`
 * trains on a transformers.js / Optimum export (f32, f16 or 4-bit MatMulNBits) and `exportOnnx()`
 * gives the fine-tuned graph back. Safetensors models load as with createTrainer().
 *
 * @example
 * ```ts
 * import { createOnnxTrainer } from 'webtune/onnx';
 * const trainer = await createOnnxTrainer();
 * await trainer.loadModel('https://example.com/my-llama/', { onnx: 'onnx/model_q4.onnx' });
 * ```
 */
export function createOnnxTrainer(options: CreateTrainerOptions = {}): Promise<TrainerApi> {
  return connectTrainer(
    options,
    () => new Worker(new URL('./onnx-worker.js', import.meta.url), { type: 'module', name: 'webtune-onnx-trainer' }),
    // The session and the ONNX reader reach the page's bundle only as a lazy chunk, for inline mode.
    async (env) => (await import('./onnx-session.js')).createOnnxSession(env),
  );
}

/** ONNX support for a TrainerSession built by hand: `new TrainerSession({ onnx: onnxSupport })`. */
export { onnxSupport } from './onnx-support.js';
