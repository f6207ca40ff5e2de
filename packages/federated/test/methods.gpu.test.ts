/**
 * A federated round for every adaptation method on loopback: the reference coordinator (SQLite)
 * started from an initial IA3 / BitFit / layer-selective LoRA adapter infers the method and the
 * architecture from it and sends both in the round; two clients train that method (tiny Llama,
 * and IA3 on the tiny GPT-2 too, whose Conv1D layout the client takes from the round), upload,
 * and the published global version imports as an adapter of that method.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createNodeGpu } from '@webtune/gpu/node';
import { adapterConfigJson, adapterFromTensors, createAdapterOnBase, parseSafetensors, uploadBaseModel, resolveAdapterSpec, tensorToFloat32, type AdapterSpec, type HostTensor } from '@webtune/model';
import { nodeDirectorySource } from '@webtune/model/node';
import { createTrainer } from '@webtune/sdk';
import { useNodeContext } from '../../gpu/test/node-context.js';
import { FIXTURES, tinyModel, type TinyModel } from '../../model/test/tiny-models.js';
import { chapter } from '../../trainer/test/corpus.js';
import { startCoordinator } from '../../coordinator/src/index.js';
import { FederatedClient } from '../src/client.js';
import type { RoundInfo } from '../src/protocol.js';
import { MemoryRoundStore } from '../src/round-store.js';

const gpu = useNodeContext();

const CASES: Array<{ model: TinyModel; method: AdapterSpec['method']; config: Record<string, unknown>; architecture: string }> = [
  { model: 'tiny-llama', method: 'dora', config: { rank: 4, alpha: 8 }, architecture: 'llama' },
  { model: 'tiny-llama', method: 'ia3', config: {}, architecture: 'llama' },
  { model: 'tiny-llama', method: 'bitfit', config: { learningRateScale: 5 }, architecture: 'llama' },
  { model: 'tiny-llama', method: 'lora', config: { rank: 4, alpha: 8, layers: [1] }, architecture: 'llama' },
  { model: 'tiny-gpt2', method: 'ia3', config: {}, architecture: 'gpt2' },
];

describe.each(CASES)('$method on $model: one federated round', ({ model, method, config, architecture }) => {
  it('the round names the method and architecture; clients train it; the new global imports as that method', async () => {
    const { config: modelConfig, reader } = tinyModel(model);
    const spec = resolveAdapterSpec(modelConfig, method, config);
    // The initial adapter as the method initialises it (LoRA/DoRA with a seed: B = 0, A random; DoRA's m from the base).
    const base = await uploadBaseModel(gpu(), modelConfig, reader);
    const initial = await createAdapterOnBase(gpu(), base, spec, 5);
    const initialTensors = await initial.read();
    initial.release();
    base.release();
    const dir = mkdtempSync(join(tmpdir(), 'webtune-methods-'));
    const handle = await startCoordinator({
      db: join(dir, 'state.sqlite'), enrolmentSecret: 'm', initialAdapter: initialTensors,
      adapterConfig: JSON.stringify(adapterConfigJson(modelConfig, spec)),
      config: { minClients: 2, maxClients: 2, sampleRate: 1, maxRounds: 1, round: { steps: 2, batchSize: 2, learningRate: 1e-2, seqLen: 32 } },
      log: () => {},
    });
    const trainer = await createTrainer({ inline: true, gpu: await createNodeGpu() });
    try {
      await trainer.loadModel(nodeDirectorySource(`${FIXTURES}models/${model}`));
      const clients = [0, 1].map((i) => new FederatedClient({ url: handle.url, enrolmentSecret: 'm', trainer, store: new MemoryRoundStore(), name: `c${i}` }));
      for (const c of clients) await c.register();
      const token = (await (await fetch(`${handle.url}/v1/register`, { method: 'POST', body: JSON.stringify({ enrolmentSecret: 'm' }), headers: { 'content-type': 'application/json' } })).json()).token as string;
      const info = (await (await fetch(`${handle.url}/v1/round`, { headers: { Authorization: `Bearer ${token}` } })).json()) as RoundInfo;
      expect(info.config.adapter).toEqual(spec);
      expect(info.config.architecture).toBe(architecture);
      expect(info.config.lora !== undefined).toBe(method === 'lora');
      expect(info.config.adapter?.method).toBe(method);
      for (const [i, c] of clients.entries()) {
        await trainer.prepareData({ texts: [chapter(2 + i), chapter(4 + i)] }, { seqLen: 32, heldOut: 0 });
        const result = await c.runRound();
        expect(result.status, JSON.stringify(result)).toBe('uploaded');
      }
      const res = await fetch(`${handle.url}/v1/global/1`, { headers: { Authorization: `Bearer ${token}` } });
      expect(res.status).toBe(200);
      const file = parseSafetensors(new Uint8Array(await res.arrayBuffer()));
      const global = new Map<string, HostTensor>([...file.tensors].map(([k, t]) => [k, { data: tensorToFloat32(t), shape: [...t.shape] }]));
      expect([...global.keys()].sort()).toEqual([...initialTensors.keys()].sort());
      let moved = 0;
      for (const [k, t] of global) moved += t.data.reduce((s, v, j) => s + Math.abs(v - initialTensors.get(k)!.data[j]!), 0);
      expect(moved).toBeGreaterThan(0);
      const adapter = adapterFromTensors(gpu(), modelConfig, spec, global);
      expect(adapter.method).toBe(method);
      adapter.release();
    } finally {
      await trainer.dispose();
      await handle.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});
