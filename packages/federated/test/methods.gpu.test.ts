/**
 * A federated round for every adaptation method on loopback: the reference coordinator (SQLite)
 * started from an initial adapter of each method (its trainable state, as exportAdapterState()
 * gives it) and its description (adapter_config.json as exportAdapter() writes it, a webtune spec
 * JSON, or nothing where the keys say it all) sends the method and the architecture in the round
 * (protocol 1 for LoRA, 2 for the others); two clients train that method (tiny Llama, and IA3 and
 * UniPELT on the tiny GPT-2 too), upload their clipped deltas, and the published version 1 is exactly version
 * 0 plus the mean of the two uploads (FedAvg, equal weights) and imports as an adapter of that
 * method. Then the refusals: a round whose spec the client's model cannot use is bad_config.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FederatedError } from '@webtune/errors';
import { createNodeGpu } from '@webtune/gpu/node';
import { adapterConfigJson, adapterFromTensors, createAdapterOnBase, parseSafetensors, uploadBaseModel, resolveAdapterSpec, tensorToFloat32, type AdapterSpec, type HostTensor } from '@webtune/model';
import { nodeDirectorySource } from '@webtune/model/node';
import { createTrainer } from '@webtune/sdk';
import { useNodeContext } from '../../gpu/test/node-context.js';
import { FIXTURES, tinyModel, type TinyModel } from '../../model/test/tiny-models.js';
import { chapter } from '../../trainer/test/corpus.js';
import { startCoordinator } from '../../coordinator/src/index.js';
import { FederatedClient } from '../src/client.js';
import { decodeUpdate } from '../src/codec.js';
import type { RoundInfo } from '../src/protocol.js';
import { MemoryRoundStore } from '../src/round-store.js';

const gpu = useNodeContext();

/** How the operator describes the initial adapter: adapter_config.json (with --architecture for prompt methods), a spec JSON naming the architecture, or nothing. */
type Description = 'adapter_config.json' | 'spec' | 'none';

const CASES: Array<{ model: TinyModel; method: AdapterSpec['method']; config: Record<string, unknown>; architecture: string; describe: Description }> = [
  { model: 'tiny-llama', method: 'dora', config: { rank: 4, alpha: 8 }, architecture: 'llama', describe: 'adapter_config.json' },
  { model: 'tiny-llama', method: 'ia3', config: {}, architecture: 'llama', describe: 'adapter_config.json' },
  { model: 'tiny-llama', method: 'bitfit', config: { learningRateScale: 5 }, architecture: 'llama', describe: 'adapter_config.json' },
  { model: 'tiny-llama', method: 'lora', config: { rank: 4, alpha: 8, layers: [1] }, architecture: 'llama', describe: 'adapter_config.json' },
  { model: 'tiny-gpt2', method: 'ia3', config: {}, architecture: 'gpt2', describe: 'adapter_config.json' },
  { model: 'tiny-llama', method: 'prompt-tuning', config: { numVirtualTokens: 6 }, architecture: 'llama', describe: 'adapter_config.json' },
  { model: 'tiny-llama', method: 'p-tuning', config: { numVirtualTokens: 5, encoderHiddenSize: 32 }, architecture: 'llama', describe: 'spec' },
  { model: 'tiny-llama', method: 'prefix-tuning', config: { numVirtualTokens: 4, prefixProjection: true, encoderHiddenSize: 16 }, architecture: 'llama', describe: 'adapter_config.json' },
  { model: 'tiny-llama', method: 'prefix-tuning', config: { numVirtualTokens: 4 }, architecture: 'llama', describe: 'spec' },
  { model: 'tiny-llama', method: 'bottleneck', config: { bottleneckSize: 8 }, architecture: 'llama', describe: 'none' },
  { model: 'tiny-llama', method: 'unipelt', config: { rank: 2, alpha: 3, numVirtualTokens: 3, bottleneckSize: 8, nonLinearity: 'swish' }, architecture: 'llama', describe: 'adapter_config.json' },
  // Alpha and the non-linearity left at UniPELT's defaults: the keys alone say the rest.
  { model: 'tiny-gpt2', method: 'unipelt', config: { rank: 2, numVirtualTokens: 2, bottleneckSize: 4 }, architecture: 'gpt2', describe: 'none' },
];

const tensorsOf = (bytes: Uint8Array) => new Map<string, HostTensor>([...parseSafetensors(bytes).tensors].map(([k, t]) => [k, { data: tensorToFloat32(t), shape: [...t.shape] }]));

describe.each(CASES)('$method $config on $model (described by $describe): one federated round', ({ model, method, config, architecture, describe: described }) => {
  it('the round names the method and architecture; two clients train it; version 1 = version 0 + the mean of their uploads', async () => {
    const { config: modelConfig, reader } = tinyModel(model);
    const spec = resolveAdapterSpec(modelConfig, method, config);
    // The initial adapter as the method initialises it (LoRA/DoRA with a seed: B = 0, A random; DoRA's m from the base): its trainable state.
    const base = await uploadBaseModel(gpu(), modelConfig, reader);
    const initial = await createAdapterOnBase(gpu(), base, spec, 5);
    const initialTensors = await initial.read();
    initial.release();
    base.release();
    const dir = mkdtempSync(join(tmpdir(), 'webtune-methods-'));
    const prompt = ['prompt-tuning', 'p-tuning', 'prefix-tuning'].includes(method);
    const handle = await startCoordinator({
      db: join(dir, 'state.sqlite'), enrolmentSecret: 'm', initialAdapter: initialTensors,
      ...(described === 'adapter_config.json' ? { adapterConfig: JSON.stringify(adapterConfigJson(modelConfig, spec)), ...(prompt ? { architecture: modelConfig.architecture } : {}) } : {}),
      ...(described === 'spec' ? { adapterConfig: JSON.stringify({ ...spec, architecture: modelConfig.architecture }) } : {}),
      config: { minClients: 2, maxClients: 2, sampleRate: 1, maxRounds: 1, round: { steps: 2, batchSize: 2, learningRate: 1e-2, seqLen: 32 } },
      log: () => {},
    });
    const trainer = await createTrainer({ inline: true, gpu: await createNodeGpu() });
    try {
      await trainer.loadModel(nodeDirectorySource(`${FIXTURES}models/${model}`));
      const uploads: Uint8Array[][] = [[], []];
      const clients = [0, 1].map((i) => new FederatedClient({
        url: handle.url, enrolmentSecret: 'm', trainer, store: new MemoryRoundStore(), name: `c${i}`,
        fetch: async (input, init) => {
          if (String(input).endsWith('/updates')) uploads[i]!.push(new Uint8Array(init!.body as Uint8Array));
          return fetch(input, init);
        },
      }));
      for (const c of clients) await c.register();
      const token = (await (await fetch(`${handle.url}/v1/register`, { method: 'POST', body: JSON.stringify({ enrolmentSecret: 'm' }), headers: { 'content-type': 'application/json' } })).json()).token as string;
      const info = (await (await fetch(`${handle.url}/v1/round`, { headers: { Authorization: `Bearer ${token}` } })).json()) as RoundInfo;
      expect(info.protocol).toBe(method === 'lora' ? 1 : 2);
      expect(info.config.adapter).toEqual(spec);
      expect(info.config.architecture).toBe(architecture);
      expect(info.config.lora !== undefined).toBe(method === 'lora');
      for (const [i, c] of clients.entries()) {
        await trainer.prepareData({ texts: [chapter(2 + i), chapter(4 + i)] }, { seqLen: 32, heldOut: 0 });
        const result = await c.runRound();
        expect(result.status, JSON.stringify(result)).toBe('uploaded');
      }
      const res = await fetch(`${handle.url}/v1/global/1`, { headers: { Authorization: `Bearer ${token}` } });
      expect(res.status).toBe(200);
      const global = tensorsOf(new Uint8Array(await res.arrayBuffer()));
      expect([...global.keys()].sort()).toEqual([...initialTensors.keys()].sort());
      // FedAvg with lr 1 and equal weights (both report steps x batchSize examples): g1 = g0 + (d0 + d1) / 2.
      const shapes = new Map([...initialTensors].map(([k, t]) => [k, t.shape] as const));
      const deltas = uploads.map((u) => {
        expect(u).toHaveLength(1);
        return decodeUpdate(u[0]!, shapes).tensors;
      });
      let moved = 0;
      let worst = 0;
      for (const [k, g0] of initialTensors) {
        global.get(k)!.data.forEach((v, j) => {
          const want = g0.data[j]! + (deltas[0]!.get(k)![j]! + deltas[1]!.get(k)![j]!) / 2;
          worst = Math.max(worst, Math.abs(v - want) / Math.max(1, Math.abs(want)));
          moved += Math.abs(v - g0.data[j]!);
        });
      }
      expect(worst).toBeLessThan(1e-6);
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

describe('a round whose adapter the client\'s model cannot use', () => {
  it('is refused with bad_config before training: too many virtual tokens for its context, or another architecture', async () => {
    const trainer = await createTrainer({ inline: true, gpu: await createNodeGpu() });
    await trainer.loadModel(nodeDirectorySource(`${FIXTURES}models/tiny-llama`));
    await trainer.prepareData({ texts: [chapter(2)] }, { seqLen: 32, heldOut: 0 });
    const cases: Array<{ what: string; spec: AdapterSpec; architecture: string; tensors: Map<string, HostTensor>; message: RegExp }> = [
      {
        // tiny-llama has 256 positions: the coordinator cannot know that, the client's model can.
        what: 'prompt tuning with 300 virtual tokens', spec: { method: 'prompt-tuning', config: { numVirtualTokens: 300, init: 'random' } }, architecture: 'llama',
        tensors: new Map([['prompt_embeddings', { data: new Float32Array(300 * 64), shape: [300, 64] }]]), message: /leaves no room in the model's context/,
      },
      {
        what: 'prompt tuning for a GPT-2', spec: { method: 'prompt-tuning', config: { numVirtualTokens: 4, init: 'random' } }, architecture: 'gpt2',
        tensors: new Map([['prompt_embeddings', { data: new Float32Array(4 * 64), shape: [4, 64] }]]), message: /belongs to a gpt2 model, and the loaded model is llama/,
      },
    ];
    try {
      for (const { what, spec, architecture, tensors, message } of cases) {
        const dir = mkdtempSync(join(tmpdir(), 'webtune-bad-config-'));
        const handle = await startCoordinator({
          db: join(dir, 'state.sqlite'), enrolmentSecret: 'm', initialAdapter: tensors, adapterConfig: JSON.stringify({ ...spec, architecture }),
          config: { minClients: 1, maxClients: 1, round: { steps: 1, batchSize: 1, seqLen: 32 } }, log: () => {},
        });
        try {
          const requests: string[] = [];
          const client = new FederatedClient({
            url: handle.url, enrolmentSecret: 'm', trainer, store: new MemoryRoundStore(),
            fetch: (input, init) => (requests.push(`${init?.method ?? 'GET'} ${new URL(String(input)).pathname}`), fetch(input, init)),
          });
          const error = await client.runRound().catch((e: unknown) => e);
          expect(error, what).toBeInstanceOf(FederatedError);
          expect(error, what).toMatchObject({ reason: 'bad_config' });
          expect((error as Error).message, what).toMatch(message);
          expect(requests.filter((r) => r.startsWith('POST /v1/rounds')), what).toEqual([]);
        } finally {
          await handle.close();
          rmSync(dir, { recursive: true, force: true });
        }
      }
    } finally {
      await trainer.dispose();
    }
  }, 300_000);
});
