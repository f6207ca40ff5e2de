/**
 * The registry the worker transfer rebuilds errors from: every exported error class is in it, under
 * the literal name its instances carry (what a minifier cannot rename), and only there.
 */
import { describe, expect, it } from 'vitest';
import * as errors from '../src/index.js';
import { ERROR_CLASSES, WebtuneError } from '../src/index.js';

/** One instance of each class, built with ordinary arguments. */
const samples: WebtuneError[] = [
  new errors.WebtuneError('INVALID_ARGUMENT', 'a message'),
  new errors.WebGPUUnavailableError('no adapter'),
  new errors.ShaderCompileError('matmul', [{ type: 'error', file: 'shaders/matmul.wgsl', line: 3, column: 1, message: 'x' }]),
  new errors.DeviceLostError('destroyed', ''),
  new errors.OutOfMemoryError('w', 10, 20),
  new errors.InvalidArgumentError('batchSize must be positive'),
  new errors.BindingLimitError('t', 10, 5, 'maxStorageBufferBindingSize'),
  new errors.GpuValidationError('a dispatch', 'binding too small'),
  new errors.ModelFormatError('model.safetensors', 'truncated'),
  new errors.UnsupportedModelError('config.json', 'model_type bert'),
  new errors.ModelFileMissingError('config.json', '404'),
  new errors.DownloadError('https://example.com/x', 'reset', 500),
  new errors.MemoryPlanError('Training', 10, 5, ['batch']),
  new errors.CheckpointCorruptError('c1', 'checksum'),
  new errors.CheckpointMismatchError('c1', 'model'),
  new errors.CheckpointNotFoundError('c1'),
  new errors.StorageFullError('quota'),
  new errors.WorkerStartError('timeout'),
  new errors.DataFormatError('chats.jsonl', 'not valid JSON', 3),
  new errors.ChatTemplateError('The model ships no chat template.'),
  new errors.FederatedError('INVALID_ARGUMENT', 'round_closed', 'closed', { status: 409 }),
  new errors.UpdateRejectedError('malformed', 'bad header'),
  new errors.SecureAggregationError('bad_share', 3, 'the share from neighbour 2 fails AES-GCM authentication'),
  new errors.RunLockedError('notes'),
  new errors.CheckpointWriteError('notes-0001', 'TimeoutError: Transaction timed out due to inactivity'),
];

describe('ERROR_CLASSES', () => {
  it('holds every exported error class, keyed by the literal name its instances carry', () => {
    const exported = Object.entries(errors).filter(
      ([, v]) => typeof v === 'function' && (v === WebtuneError || (v as { prototype: unknown }).prototype instanceof WebtuneError),
    );
    expect(Object.keys(ERROR_CLASSES).sort()).toEqual(exported.map(([k]) => k).sort());
    expect(samples.map((e) => e.name).sort()).toEqual(Object.keys(ERROR_CLASSES).sort());
    for (const e of samples) {
      expect(ERROR_CLASSES[e.name], e.name).toBe(e.constructor);
      expect(e).toBeInstanceOf(WebtuneError);
      expect(e.message.length, e.name).toBeGreaterThan(5);
    }
  });

  it('names do not come from constructor.name (which a minifier renames)', () => {
    class M extends errors.ModelFileMissingError {} // what a minified class looks like to the runtime
    expect(new M('f', 'd').name).toBe('ModelFileMissingError');
  });
});
