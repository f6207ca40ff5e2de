/**
 * webtune/onnx-worker: the worker entry with ONNX support, for an app's own worker file used with
 * createTrainer({ worker }). Importing it starts serving (a declared side effect).
 * @packageDocumentation
 */
import '@webtune/sdk/onnx-worker';
