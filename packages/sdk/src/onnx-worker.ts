/**
 * The trainer's worker entry with ONNX support (loadModel({ onnx }), exportOnnx()). A side effect
 * like worker.ts; createOnnxTrainer() starts it, an app's own worker file may import it.
 */
import { exposeTrainerSession } from './expose.js';
import { onnxSupport } from './onnx-support.js';

exposeTrainerSession({ onnx: onnxSupport });
