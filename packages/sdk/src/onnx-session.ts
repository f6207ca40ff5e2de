/** An inline TrainerSession with ONNX support: createOnnxTrainer({ inline: true }) loads this lazily. */
import { onnxSupport } from './onnx-support.js';
import { TrainerSession, type SessionEnvironment } from './session.js';

export function createOnnxSession(env: SessionEnvironment): TrainerSession {
  return new TrainerSession({ ...env, onnx: onnxSupport });
}
