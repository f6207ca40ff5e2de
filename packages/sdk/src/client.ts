/**
 * createTrainer(): starts the worker (or uses one the app supplies) and returns the typed facade
 * (facade.ts) over its TrainerSession. In Node, or to stay on the page, `createTrainer({ inline: true })`
 * runs the same session without a worker.
 */
import { connectTrainer, type CreateTrainerOptions, type TrainerApi } from './facade.js';

/**
 * Starts a trainer: a Web Worker running the training session (the page stays responsive), or the
 * same session inline with `{ inline: true }`. Handles safetensors models; for ONNX files use
 * createOnnxTrainer() from 'webtune/onnx'.
 *
 * @example
 * ```ts
 * import { createTrainer } from 'webtune';
 * const trainer = await createTrainer();
 * await trainer.loadModel('https://huggingface.co/HuggingFaceTB/SmolLM2-135M/resolve/main/', { format: 'nf4' });
 * ```
 */
export function createTrainer(options: CreateTrainerOptions = {}): Promise<TrainerApi> {
  // The literal `new Worker(new URL('./worker.js', import.meta.url))` is what Vite, webpack 5 and
  // esbuild recognise to bundle the worker with the app: keep it in this form.
  return connectTrainer(
    options,
    () => new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'webtune-trainer' }),
    // Loaded on demand: a page that trains in the worker does not carry the session (models,
    // tokenizer, kernels) in its own bundle.
    async (env) => new (await import('./session.js')).TrainerSession(env),
  );
}

