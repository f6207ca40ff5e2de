/**
 * The files an app hands the SDK, mutated: safetensors weights, an ONNX graph, a PEFT adapter and a
 * portable checkpoint. Each mutation (bit flips, overwritten length fields, truncation, inserted
 * and duplicated bytes; a fixed seed, 1,500 per format) must either parse or fail with a
 * WebtuneError (typed: ModelFormatError, CheckpointCorruptError, ...), never with another exception
 * or a hang (the test's one-minute timeout). A regression to an untyped throw fails CI.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { WebtuneError } from '@webtune/errors';
import { parseModelConfig, parseSafetensors, readPeftAdapter, serializeSafetensors } from '@webtune/model';
import { parseOnnx, tensorBytes } from '@webtune/onnx';
import { checkpointFromFile, checkpointToFile, decodeCheckpoint, encodeCheckpoint } from '@webtune/trainer';

const FIXTURES = join(import.meta.dirname, '../../model/test/fixtures');
const MUTATIONS = 1500;

/** xorshift32: the same mutations on every run. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

function mutate(bytes: Uint8Array, r: () => number): Uint8Array {
  const pick = (n: number) => Math.floor(r() * n);
  const out = bytes.slice();
  switch (pick(6)) {
    case 0: // flip a few bits
      for (let i = pick(8) + 1; i > 0; i--) out[pick(out.length)]! ^= 1 << pick(8);
      return out;
    case 1: // a length or offset field made huge (or zero)
      out.fill(r() < 0.5 ? 0xff : 0x00, pick(out.length), Math.min(out.length, pick(out.length) + pick(9)));
      return out;
    case 2: // truncated
      return out.subarray(0, pick(out.length));
    case 3: { // bytes inserted
      const at = pick(out.length);
      const extra = Uint8Array.from({ length: pick(16) + 1 }, () => pick(256));
      const grown = new Uint8Array(out.length + extra.length);
      grown.set(out.subarray(0, at));
      grown.set(extra, at);
      grown.set(out.subarray(at), at + extra.length);
      return grown;
    }
    case 4: { // a chunk duplicated over another place
      const from = pick(out.length);
      const len = pick(64) + 1;
      out.copyWithin(pick(out.length), from, from + len);
      return out;
    }
    default: // the first bytes (length prefixes, tags) randomised
      for (let i = 0; i < Math.min(16, out.length); i++) if (r() < 0.3) out[i] = pick(256);
      return out;
  }
}

/** Runs `parse` on every mutation; returns how many parsed and how many failed typed. */
async function fuzz(seed: Uint8Array, salt: number, parse: (b: Uint8Array) => unknown): Promise<{ parsed: number; typed: number }> {
  const r = rng(0x5eed + salt);
  let parsed = 0;
  let typed = 0;
  for (let i = 0; i < MUTATIONS; i++) {
    const bytes = mutate(seed, r);
    try {
      await parse(bytes);
      parsed++;
    } catch (error) {
      if (!(error instanceof WebtuneError)) {
        throw new Error(`mutation ${i} threw an untyped ${(error as Error)?.name}: ${(error as Error)?.message}`, { cause: error });
      }
      typed++;
    }
  }
  return { parsed, typed };
}

describe('parsers under mutation: typed errors only', { timeout: 60_000 }, () => {
  it('safetensors', async () => {
    const seed = serializeSafetensors(
      [
        { name: 'a', dtype: 'F32', shape: [3, 4], data: new Float32Array(12).fill(0.5) },
        { name: 'b', dtype: 'F16', shape: [5], data: new Uint8Array(10) },
        { name: 'c', dtype: 'BF16', shape: [2, 2], data: new Uint8Array(8) },
      ],
      { format: 'pt' },
    );
    const { typed } = await fuzz(seed, 1, (b) => parseSafetensors(b, 'fuzzed.safetensors'));
    expect(typed).toBeGreaterThan(MUTATIONS / 4);
  });

  it('ONNX (a graph with external data)', async () => {
    const seed = new Uint8Array(readFileSync(join(FIXTURES, 'onnx/tiny-llama-external/onnx/model.onnx')));
    const data = new Map([['model.onnx_data', new Uint8Array(readFileSync(join(FIXTURES, 'onnx/tiny-llama-external/onnx/model.onnx_data')))]]);
    const { typed } = await fuzz(seed, 2, (b) => {
      const model = parseOnnx(b, 'fuzzed.onnx');
      for (const t of model.graph.initializers.values()) tensorBytes(model, t, data);
    });
    expect(typed).toBeGreaterThan(MUTATIONS / 4);
  });

  it('PEFT adapter', async () => {
    const dir = join(FIXTURES, 'webtune-adapters/tiny-llama');
    const config = parseModelConfig(JSON.parse(readFileSync(join(FIXTURES, 'models/tiny-llama/config.json'), 'utf8')), 'config.json');
    const adapterConfig = readFileSync(join(dir, 'adapter_config.json'), 'utf8');
    const seed = new Uint8Array(readFileSync(join(dir, 'adapter_model.safetensors')));
    const { typed } = await fuzz(seed, 3, (b) => readPeftAdapter(config, { config: adapterConfig, weights: b }));
    expect(typed).toBeGreaterThan(MUTATIONS / 4);
    // The config file mutated too.
    const text = new TextEncoder().encode(adapterConfig);
    await fuzz(text, 4, (b) => readPeftAdapter(config, { config: new TextDecoder().decode(b), weights: seed }));
  });

  it('portable checkpoint (imported, then decoded as a resume would)', async () => {
    const adapter = new Map([
      ['base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', { shape: [2, 4], data: new Float32Array(8).fill(0.1) }],
      ['base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', { shape: [4, 2], data: new Float32Array(8) }],
    ]);
    const optimizer = new Map([...adapter].flatMap(([k, t]) => [[`${k}.exp_avg`, t], [`${k}.exp_avg_sq`, t]] as const));
    const record = await encodeCheckpoint({
      runId: 'fuzz', step: 3, totalSteps: 10, adapter, optimizer,
      model: { modelType: 'llama', hiddenSize: 4, numLayers: 1, numHeads: 2, numKvHeads: 1, intermediateSize: 8, vocabSize: 16 },
      lora: { rank: 2, alpha: 4, dropout: 0, targets: ['q_proj'], rslora: false },
      train: { steps: 10 }, cursor: { epoch: 0, index: 6, epochRng: [1, 2, 3, 4] },
    });
    const seed = checkpointToFile(record);
    const { typed } = await fuzz(seed, 5, async (b) => decodeCheckpoint(checkpointFromFile(b, 'fuzzed checkpoint')));
    expect(typed).toBeGreaterThan(MUTATIONS / 2);
  });
});
