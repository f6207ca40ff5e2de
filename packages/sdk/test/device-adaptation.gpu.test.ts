/**
 * Device adaptation on Dawn (lavapipe in CI): autoConfigure() on the adapter as it is and with
 * lowered limits (plans that differ, each within its estimate, each trains); automatic recovery
 * from a real lost device (device.destroy() mid-run) and from an out-of-memory error, with the
 * final adapter equal to a run that took the smaller micro-batch from the same checkpoint on; and
 * the battery / thermal policy driven through updateConditions(), as the page's watcher drives it.
 */
import { describe, expect, it } from 'vitest';
import { DeviceLostError, InvalidArgumentError, MemoryPlanError, WebGPUUnavailableError } from '@webtune/errors';
import { createNodeGpu } from '@webtune/gpu/node';
import { MemoryCheckpointStore } from '@webtune/trainer';
import { nodeDirectorySource } from '../../model/src/node.js';
import { parseSafetensors, tensorToFloat32 } from '../../model/src/index.js';
import { FIXTURES } from '../../model/test/tiny-models.js';
import { chapter } from '../../trainer/test/corpus.js';
import { TrainerSession, type ProgressEvent, type SessionEnvironment, type TrainRequest } from '../src/index.js';

const RUN: TrainRequest = {
  steps: 8, batchSize: 4, learningRate: 5e-3, checkpointEvery: 2, seed: 5, progressIntervalMs: 0,
  lora: { rank: 4, alpha: 8, dropout: 0.1, targets: ['q_proj', 'v_proj', 'down_proj'] },
};

async function sha(bytes: Uint8Array): Promise<string> {
  return Buffer.from(await crypto.subtle.digest('SHA-256', bytes as unknown as ArrayBuffer)).toString('hex');
}

/** A session whose devices can be reached: `devices` lists every GPUDevice it created, newest last. */
async function ready(env: Partial<SessionEnvironment> = {}, data = true, dtype: 'f32' | 'f16' = 'f32') {
  const gpu = await createNodeGpu();
  const devices: GPUDevice[] = [];
  let refusals = 0;
  const watched: GPU = {
    ...gpu,
    getPreferredCanvasFormat: () => gpu.getPreferredCanvasFormat(),
    wgslLanguageFeatures: gpu.wgslLanguageFeatures,
    async requestAdapter(options?: GPURequestAdapterOptions) {
      if (refusals > 0) {
        refusals--;
        return null;
      }
      const adapter = await gpu.requestAdapter(options);
      if (!adapter) return adapter;
      return new Proxy(adapter, {
        get(target, name) {
          if (name === 'requestDevice') {
            return async (descriptor?: GPUDeviceDescriptor) => {
              const device = await target.requestDevice(descriptor);
              devices.push(device);
              return device;
            };
          }
          const value = Reflect.get(target, name, target) as unknown;
          return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
        },
      });
    },
  } as GPU;
  const store = new MemoryCheckpointStore();
  const session = new TrainerSession({ gpu: watched, checkpoints: store, ...env });
  await session.loadModel(nodeDirectorySource(`${FIXTURES}models/tiny-llama`), { dtype });
  if (data) await session.prepareData({ texts: [chapter(1), chapter(2)] }, { seqLen: 32 });
  /** The next `n` requestAdapter() calls return null, as a browser without a usable GPU does. */
  const noAdapter = (n: number) => {
    refusals = n;
  };
  return { session, store, devices, noAdapter };
}

describe('autoConfigure', () => {
  it('on lavapipe: measures every format and activation type that fits, explains the choice, and the plan trains within its estimate', async () => {
    const { session } = await ready({}, false);
    try {
      const phases: string[] = [];
      const plan = await session.autoConfigure({ batchSize: 4, maxSeqLen: 32, calibrationSteps: 2, memoryBudgetBytes: 64 * 2 ** 20 }, (p) => phases.push(p.phase));
      expect(plan.device.features.shaderF16).toBe(true);
      // f32 and nf4 weights, each with f32 and f16 activations.
      expect(new Set(plan.measured.map((m) => `${m.format}/${m.dtype}`))).toEqual(new Set(['f32/f32', 'f32/f16', 'nf4/f32', 'nf4/f16']));
      for (const m of plan.measured) {
        expect(m.passes).toBe(2);
        expect(m.msPerPass).toBeGreaterThan(0);
        expect(m.tokensPerSecond).toBeCloseTo((m.microBatchSize * m.seqLen) / (m.msPerPass / 1000), 6);
      }
      expect(plan.calibration.passes).toBe(4 * 3);
      expect(phases).toContain('calibrate');
      expect(plan.reasons[0]).toMatch(/weights, .* activations, micro-batch \d+/);
      expect(plan.microBatchSize * plan.gradientAccumulation).toBe(4);
      expect(plan.train).toMatchObject({ batchSize: plan.microBatchSize, gradientAccumulation: plan.gradientAccumulation, recompute: plan.recompute });
      const info = await session.prepareData({ texts: [chapter(1), chapter(2)] }, { seqLen: plan.seqLen });
      expect(info.seqLen).toBe(32);
      const summary = await session.train({ steps: 3, ...plan.train, progressIntervalMs: 0 });
      expect(summary.stopped).toBe('completed');
      expect(summary.estimateBytes).toBe(plan.estimate.total);
      expect(summary.peakBytes).toBeLessThanOrEqual(plan.estimate.total * 1.05 + 2 ** 20);
      // The model stays loaded in the chosen format: the planner's weights for it are the plan's.
      expect((await session.planTraining({ batchSize: plan.microBatchSize, lora: { rank: 8 } })).estimate.weights).toBe(plan.estimate.weights);
      expect(new Set(plan.measured.map((m) => m.estimateBytes)).size).toBeGreaterThan(1);
    } finally {
      session.dispose();
    }
  });

  it("'maximum' takes the smallest plan: NF4 weights, f16 activations, recomputation, micro-batch 1; 'minimal' the largest micro-batch", async () => {
    const { session } = await ready();
    try {
      const max = await session.autoConfigure({ memoryOptimization: 'maximum', batchSize: 4, calibrationSteps: 1 });
      expect(max).toMatchObject({ format: 'nf4', dtype: 'f16', recompute: true, microBatchSize: 1, gradientAccumulation: 4, seqLen: 32, reprepare: false });
      // The f32 weights it replaced are freed, not kept in the buffer pool: only the NF4 model is held, and the run stays within the small plan.
      expect(session.status().liveBytes).toBeLessThanOrEqual(max.estimate.weights * 1.02);
      const small = await session.train({ steps: 1, ...max.train, progressIntervalMs: 0 });
      expect(small.peakBytes).toBeLessThanOrEqual(max.estimate.total * 1.05 + 2 ** 20);
      const min = await session.autoConfigure({ memoryOptimization: 'minimal', batchSize: 4, calibrationSteps: 1 });
      expect(min).toMatchObject({ recompute: false, microBatchSize: 4, gradientAccumulation: 1 });
      expect(min.estimate.total).toBeGreaterThan(max.estimate.total);
      const summary = await session.train({ steps: 2, ...min.train, progressIntervalMs: 0 });
      expect(summary.peakBytes).toBeLessThanOrEqual(min.estimate.total * 1.05 + 2 ** 20);
    } finally {
      session.dispose();
    }
  });

  it('a tight budget lowers the micro-batch, then recomputes; the app can fix any field; nothing fitting is a MemoryPlanError', async () => {
    const { session } = await ready();
    try {
      const roomy = await session.autoConfigure({ memoryOptimization: 'minimal', batchSize: 8, calibrationSteps: 0, override: { format: 'f32', dtype: 'f32' } });
      expect(roomy.microBatchSize).toBe(8);
      // Between the micro-batch-2 and micro-batch-4 estimates: 4 no longer fits.
      const two = await session.planTraining({ batchSize: 2, lora: { rank: 8 } });
      const tight = await session.autoConfigure({ memoryOptimization: 'minimal', batchSize: 8, calibrationSteps: 0, memoryBudgetBytes: two.estimate.total, override: { format: 'f32', dtype: 'f32' } });
      expect(tight.microBatchSize).toBe(2);
      expect(tight.gradientAccumulation).toBe(4);
      expect(tight.rejected.some((r) => /micro-batch 4/.test(r.what) && /over the budget/.test(r.reason))).toBe(true);
      const fixed = await session.autoConfigure({ batchSize: 8, calibrationSteps: 0, override: { microBatchSize: 4, recompute: true, format: 'nf4' } });
      expect(fixed).toMatchObject({ microBatchSize: 4, recompute: true, format: 'nf4', gradientAccumulation: 2 });
      await expect(session.autoConfigure({ calibrationSteps: 0, memoryBudgetBytes: 1024 })).rejects.toThrowError(MemoryPlanError);
      await expect(session.autoConfigure({ override: { microBatchSize: 3 }, batchSize: 8 })).rejects.toThrowError(InvalidArgumentError);
      await expect(session.autoConfigure({ override: { format: 'q4' } })).rejects.toThrowError(/4-bit ONNX/);
    } finally {
      session.dispose();
    }
  });

  it('refused while a run is paused; says when it reloaded; plans DP-SGD runs one example at a time', async () => {
    const { session } = await ready();
    try {
      const paused = await session.train({ ...RUN, runId: 'held' }, (p) => p.step === 1 && session.pause());
      expect(paused.stopped).toBe('paused');
      await expect(session.autoConfigure({ calibrationSteps: 0 })).rejects.toThrowError(/Run "held" is paused/);
      await session.train({ ...RUN, runId: 'held', resume: true }); // finished: nothing left to lose
      const same = await session.autoConfigure({ calibrationSteps: 0, override: { format: 'f32', dtype: 'f32' } });
      expect(same.reloaded).toBe(false);
      const other = await session.autoConfigure({ calibrationSteps: 0, override: { format: 'nf4', dtype: 'f32' } });
      expect(other.reloaded).toBe(true);
      await expect(session.exportAdapter()).rejects.toThrowError(/no adapter yet/);
      // DP-SGD's privacy unit is a row: one text, cut into windows.
      await session.prepareData({ text: chapter(1) }, { seqLen: 32 });
      const dp = await session.autoConfigure({ calibrationSteps: 1, privacy: true, batchSize: 4 });
      expect(dp).toMatchObject({ microBatchSize: 1, gradientAccumulation: 4 });
      const run = await session.train({ steps: 1, ...dp.train, privacy: { noiseMultiplier: 1 } });
      expect(run.privacy?.sampleRate).toBeCloseTo(4 / run.privacy!.dataSize, 12);
    } finally {
      session.dispose();
    }
  });

  it('with lowered limits (a 64 KiB largest binding) the plan differs: only f16 embeddings fit, and it trains', async () => {
    // A device this small cannot even hold the f32 embedding (128 KiB): the app loads in f16, and autoConfigure keeps to what fits.
    await expect(ready({ gpuOptions: { limits: { maxStorageBufferBindingSize: 64 * 1024 } } }, false)).rejects.toThrowError(/maxStorageBufferBindingSize is 64.0 KiB/);
    const { session } = await ready({ gpuOptions: { limits: { maxStorageBufferBindingSize: 64 * 1024 } } }, true, 'f16');
    try {
      const plan = await session.autoConfigure({ batchSize: 4, calibrationSteps: 1 });
      expect(plan.device.limits.maxStorageBufferBindingSize).toBe(64 * 1024);
      expect(plan.dtype).toBe('f16');
      expect(plan.measured.every((m) => m.dtype === 'f16')).toBe(true);
      expect(plan.rejected.some((r) => /f32 activations/.test(r.what) && /largest binding/.test(r.reason))).toBe(true);
      const summary = await session.train({ steps: 2, ...plan.train, progressIntervalMs: 0 });
      expect(summary.stopped).toBe('completed');
      expect(summary.peakBytes).toBeLessThanOrEqual(plan.estimate.total * 1.05 + 2 ** 20);
    } finally {
      session.dispose();
    }
  });
});

describe('automatic recovery', () => {
  it('a device lost mid-run (device.destroy()) resumes from the newest checkpoint on a new device with half the micro-batch; the adapter equals a run that took the smaller micro-batch from that checkpoint on', async () => {
    const { session, devices, store } = await ready();
    const events: ProgressEvent[] = [];
    let summary;
    try {
      summary = await session.train({ ...RUN, runId: 'lost' }, (p) => {
        events.push(p);
        // After step 5 the device goes away: the newest checkpoint is step 4.
        if (p.step === 5 && !p.recovery && devices.length === 1) devices[0]!.destroy();
      });
      expect(summary).toMatchObject({ stopped: 'completed', step: 8, microBatchSize: 2 });
      expect(summary.recoveries).toEqual([
        expect.objectContaining({ attempt: 1, error: 'DeviceLostError', failedAtStep: 6, resumedFrom: 4, microBatchSize: 2, passesPerStep: 2 }),
      ]);
      const recovery = events.find((e) => e.recovery);
      expect(recovery?.step).toBe(4);
      expect(events.filter((e) => !e.recovery).map((e) => e.step)).toEqual([1, 2, 3, 4, 5, 5, 6, 7, 8]);
      expect(devices).toHaveLength(2);
      expect((await store.list('lost')).map((c) => c.step)).toEqual([8, 6, 4]);
      const recovered = await sha((await session.exportAdapter())['adapter_model.safetensors']);
      // The same run, resumed by hand from step 4 with microBatchSize 2.
      const other = await ready();
      try {
        const first = await other.session.train({ ...RUN, runId: 'by-hand' }, (p) => p.step === 4 && other.session.pause());
        expect(first.step).toBe(4);
        const rest = await other.session.train({ ...RUN, runId: 'by-hand', resume: true, microBatchSize: 2 });
        expect(rest).toMatchObject({ resumedFrom: 4, step: 8, recoveries: [] });
        expect(await sha((await other.session.exportAdapter())['adapter_model.safetensors'])).toBe(recovered);
      } finally {
        other.session.dispose();
      }
    } finally {
      session.dispose();
    }
  });

  it('recovery: false, or retries used up, gives the DeviceLostError; the checkpoints written so far stay', async () => {
    const { session, devices, store } = await ready();
    try {
      await expect(session.train({ ...RUN, runId: 'off', recovery: false }, (p) => p.step === 3 && devices.at(-1)!.destroy())).rejects.toThrowError(DeviceLostError);
      expect((await store.list('off')).map((c) => c.step)).toEqual([2]);
      await session.recoverDevice();
      let lost = 0;
      await expect(session.train({ ...RUN, runId: 'twice', recovery: { maxRetries: 1 } }, (p) => {
        if (p.step === 3 && !p.recovery && lost < 2) {
          lost++;
          devices.at(-1)!.destroy();
        }
      })).rejects.toThrowError(DeviceLostError);
      expect(lost).toBe(2);
      await expect(session.train({ ...RUN, recovery: { maxRetries: -1 } })).rejects.toThrowError(/maxRetries/);
    } finally {
      session.dispose();
    }
  });
});

describe('recovery and stop requests', () => {
  it('cancel() while the run recovers stops it before its next step; a cancelled run does not block autoConfigure()', async () => {
    const { session, devices } = await ready();
    try {
      const summary = await session.train({ ...RUN, runId: 'stop' }, (p) => {
        if (p.step === 3 && !p.recovery && devices.length === 1) devices[0]!.destroy();
        if (p.recovery) session.cancel();
      });
      expect(summary).toMatchObject({ stopped: 'cancelled', step: 2 });
      expect(summary.recoveries).toHaveLength(1);
      await expect(session.autoConfigure({ calibrationSteps: 0 })).resolves.toMatchObject({ format: 'nf4', reloaded: true });
    } finally {
      session.dispose();
    }
  });

  it('a device lost while the run is being set up (resuming from its checkpoint) is recovered too', async () => {
    const store = new MemoryCheckpointStore();
    let armed = false;
    const latest = store.latest.bind(store);
    const { session, devices } = await ready({ checkpoints: store });
    // The device goes while train() reads the checkpoint to resume from, before the adapter and the optimizer are made.
    store.latest = async (...args) => {
      if (armed) {
        armed = false;
        devices.at(-1)!.destroy();
        await new Promise((r) => setTimeout(r, 20));
      }
      return latest(...args);
    };
    try {
      await session.train({ ...RUN, runId: 'setup' }, (p) => p.step === 4 && session.pause());
      armed = true;
      const summary = await session.train({ ...RUN, runId: 'setup', resume: true });
      expect(summary).toMatchObject({ stopped: 'completed', step: 8, resumedFrom: 4 });
      expect(summary.recoveries).toEqual([expect.objectContaining({ error: 'DeviceLostError', resumedFrom: 4, microBatchSize: 2 })]);
      expect(devices).toHaveLength(2);
    } finally {
      session.dispose();
    }
  });

  it('a device lost between runs is replaced when the next run starts', async () => {
    const { session, devices } = await ready();
    try {
      await session.train({ ...RUN, runId: 'idle', steps: 2 });
      devices[0]!.destroy();
      await new Promise((r) => setTimeout(r, 50));
      const summary = await session.train({ ...RUN, runId: 'idle', steps: 4, resume: true });
      expect(summary).toMatchObject({ stopped: 'completed', step: 4, resumedFrom: 2, recoveries: [] });
      expect(devices).toHaveLength(2);
    } finally {
      session.dispose();
    }
  });

  it('a recovery that cannot get a device fails with the typed error, and keeps what recoverDevice() needs to try again', async () => {
    const { session, devices, noAdapter } = await ready();
    try {
      await expect(session.train({ ...RUN, runId: 'gone' }, (p) => {
        if (p.step === 3 && devices.length === 1) {
          noAdapter(1); // the browser offers no adapter while the GPU process restarts
          devices[0]!.destroy();
        }
      })).rejects.toThrowError(WebGPUUnavailableError);
      await session.recoverDevice();
      const resumed = await session.train({ ...RUN, runId: 'gone', resume: true });
      expect(resumed).toMatchObject({ stopped: 'completed', step: 8, resumedFrom: 2 });
    } finally {
      session.dispose();
    }
  });
});

describe('micro-batches', () => {
  it('a batch split into smaller micro-batches takes the same rows and the same mean gradient: the adapter matches to float rounding', async () => {
    const { session } = await ready();
    try {
      // Without dropout: one mask stream per pass would differ from one per batch.
      const plain = { ...RUN, lora: { ...RUN.lora, dropout: 0 } };
      await session.train({ ...plain, runId: 'whole', steps: 4 });
      const whole = (await session.exportAdapterState()).weights;
      const split = await session.train({ ...plain, runId: 'split', steps: 4, microBatchSize: 1 });
      expect(split.microBatchSize).toBe(1);
      const parts = (await session.exportAdapterState()).weights;
      const wholeTensors = parseSafetensors(whole).tensors;
      const partTensors = parseSafetensors(parts).tensors;
      expect([...partTensors.keys()]).toEqual([...wholeTensors.keys()]);
      let worst = 0;
      for (const [name, t] of wholeTensors) {
        const a = tensorToFloat32(t, name);
        const b = tensorToFloat32(partTensors.get(name)!, name);
        for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
      }
      expect(worst).toBeLessThan(1e-4);
      await expect(session.train({ ...RUN, microBatchSize: 3 })).rejects.toThrowError(/microBatchSize must be a positive divisor of batchSize \(4\)/);
    } finally {
      session.dispose();
    }
  });
});

describe('recovery from out of memory', () => {
  it('an OutOfMemoryError mid-run recovers as a lost device does: new device, newest checkpoint, half the micro-batch', async () => {
    const { session, devices } = await ready();
    try {
      let injected = false;
      const summary = await session.train({ ...RUN, runId: 'oom' }, (p) => {
        if (p.step !== 3 || injected) return;
        injected = true;
        // The one mock here: a CPU adapter (lavapipe, SwiftShader) cannot be driven out of memory without
        // exhausting the host's RAM. The pool's allocation check reports one failed allocation, as Dawn's
        // 'out-of-memory' error scope does, and the real readback path turns it into OutOfMemoryError.
        const pool = (session as unknown as { ctx: { pool: { checkAllocations(): Promise<unknown> } } }).ctx.pool;
        pool.checkAllocations = async () => ({ label: 'workspace (simulated)', size: 2 ** 30, error: { message: 'simulated allocation failure' } });
      });
      expect(summary).toMatchObject({ stopped: 'completed', step: 8, microBatchSize: 2 });
      expect(summary.recoveries).toEqual([expect.objectContaining({ error: 'OutOfMemoryError', failedAtStep: 4, resumedFrom: 2, microBatchSize: 2 })]);
      expect(summary.recoveries[0]!.message).toMatch(/GPU out of memory allocating 1.00 GiB/);
      expect(devices).toHaveLength(2);
      expect(summary.warnings.some((w) => /Recovered from OutOfMemoryError at step 4/.test(w))).toBe(true);
    } finally {
      session.dispose();
    }
  });
});

describe('battery and heat', () => {
  it("paces at 'serious', pauses with a checkpoint at 'critical' and on a low discharging battery, and goes on when the conditions clear", async () => {
    const { session, store } = await ready();
    try {
      const events: ProgressEvent[] = [];
      const seen = new Set<number>();
      const later = (ms: number, c: Parameters<TrainerSession['updateConditions']>[0]) => setTimeout(() => session.updateConditions(c), ms);
      const summary = await session.train({ ...RUN, runId: 'power', checkpointEvery: 0, power: { battery: true, thermal: { gapMs: 30 } } }, (p) => {
        events.push(p);
        // A wait is reported when it begins; the conditions clear a little later, as a cooling device's would.
        if (p.paused === 'thermal') later(50, { pressure: 'nominal' });
        if (p.paused === 'battery') later(50, { battery: { charging: true, level: 0.1 } });
        if (p.paused || p.recovery || seen.has(p.step)) return;
        seen.add(p.step);
        if (p.step === 1) session.updateConditions({ pressure: 'serious' });
        if (p.step === 3) session.updateConditions({ pressure: 'critical' });
        if (p.step === 5) session.updateConditions({ battery: { charging: false, level: 0.1 } });
      });
      expect(summary.stopped).toBe('completed');
      expect(events.filter((e) => e.pacingMs === 30).length).toBeGreaterThan(0);
      expect(summary.pauses.map((p) => [p.reason, p.step])).toEqual([['thermal', 3], ['battery', 5]]);
      expect(events.filter((e) => e.paused).map((e) => [e.paused, e.step])).toEqual([['thermal', 3], ['battery', 5]]);
      expect(events.find((e) => e.paused === 'battery')!.conditions).toEqual({ pressure: 'nominal', battery: { charging: false, level: 0.1 } });
      // Each wait began with a checkpoint at its step.
      expect((await store.list('power')).map((c) => c.step)).toEqual([8, 5, 3]);
    } finally {
      session.dispose();
    }
  }, 60_000);

  it('one wait is one checkpoint, one event and one entry, however many updates arrive until it clears', async () => {
    const { session, store } = await ready();
    try {
      const events: ProgressEvent[] = [];
      const summary = await session.train({ ...RUN, runId: 'drain', steps: 3, checkpointEvery: 0, power: { battery: true } }, (p) => {
        events.push(p);
        if (p.step === 1 && !p.paused) session.updateConditions({ battery: { charging: false, level: 0.15 } });
        if (p.paused) {
          // The level keeps falling (levelchange every 1%), then the charger goes in.
          for (const [i, level] of [0.14, 0.13, 0.12].entries()) setTimeout(() => session.updateConditions({ battery: { charging: false, level } }), 10 * (i + 1));
          setTimeout(() => session.updateConditions({ battery: { charging: true, level: 0.12 } }), 60);
        }
      });
      expect(summary.stopped).toBe('completed');
      expect(summary.pauses).toEqual([expect.objectContaining({ reason: 'battery', step: 1 })]);
      expect(events.filter((e) => e.paused)).toHaveLength(1);
      expect((await store.list('drain')).map((c) => c.step)).toEqual([3, 1]);
    } finally {
      session.dispose();
    }
  });

  it('pause() ends a wait; bad conditions are refused; without a policy the conditions change nothing', async () => {
    const { session } = await ready();
    try {
      session.updateConditions({ pressure: 'critical', battery: { charging: false, level: 0.05 } });
      const plain = await session.train({ ...RUN, runId: 'plain', steps: 2 });
      expect(plain.pauses).toEqual([]);
      const paused = await session.train({ ...RUN, runId: 'waiting', power: { thermal: true } }, (p) => p.paused && session.pause());
      expect(paused).toMatchObject({ stopped: 'paused', step: 0 });
      expect(() => session.updateConditions({ pressure: 'melting' as 'critical' })).toThrowError(InvalidArgumentError);
      expect(() => session.updateConditions({ battery: { charging: true, level: 2 } })).toThrowError(/level: number in \[0, 1\]/);
      await expect(session.train({ ...RUN, power: { battery: { minLevel: 3 } } })).rejects.toThrowError(/minLevel must be in \[0, 1\]/);
      await expect(session.train({ ...RUN, ifRunLocked: 'wiat' as 'wait' })).rejects.toThrowError(/ifRunLocked must be 'error' or 'wait'/);
      expect(session.status().conditions).toEqual({ pressure: 'critical', battery: { charging: false, level: 0.05 } });
    } finally {
      session.dispose();
    }
  });
});
