/**
 * FederatedClient with the real inline trainer on Dawn (tiny Llama, Moby-Dick text) against the
 * reference coordinator (packages/coordinator, SQLite in a temp folder): a full round whose
 * upload is exactly the clipped (local - global) of the trained adapter and is aggregated into
 * version 1; then a local-DP q8 round from version 1 whose upload differs from the clipped delta
 * by noise of std sigma * S.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNodeGpu } from '@webtune/gpu/node';
import { parseSafetensors, peftAdapterConfig, tensorToFloat32, type ModelConfig } from '@webtune/model';
import { nodeDirectorySource } from '@webtune/model/node';
import { createTrainer, type TrainerApi } from '@webtune/sdk';
import { computeDpEpsilon } from '@webtune/trainer';
import { FIXTURES } from '../../model/test/tiny-models.js';
import { chapter } from '../../trainer/test/corpus.js';
import { startCoordinator } from '../../coordinator/src/index.js';
import { FederatedClient, type FederatedEvent } from '../src/client.js';
import { decodeUpdate, globalNorm } from '../src/codec.js';
import type { RoundConfig, RoundStatus } from '../src/protocol.js';
import { MemoryRoundStore } from '../src/round-store.js';
import { initialAdapter, LORA } from './tiny-llama-adapter.js';

const tensorsOf = (bytes: Uint8Array) => new Map([...parseSafetensors(bytes).tensors].map(([k, t]) => [k, tensorToFloat32(t)] as const));

let trainer: TrainerApi;

beforeAll(async () => {
  trainer = await createTrainer({ inline: true, gpu: await createNodeGpu() });
  await trainer.loadModel(nodeDirectorySource(`${FIXTURES}models/tiny-llama`));
  await trainer.prepareData({ texts: [chapter(1), chapter(2)] }, { seqLen: 32 });
});

afterAll(async () => {
  await trainer?.dispose();
});

async function coordinator(round: Partial<RoundConfig>) {
  const dir = mkdtempSync(join(tmpdir(), 'webtune-fed-gpu-'));
  const handle = await startCoordinator({
    db: join(dir, 'state.sqlite'), enrolmentSecret: 'secret', initialAdapter: initialAdapter(),
    adapterConfig: JSON.stringify(peftAdapterConfig({ architecture: 'llama' } as ModelConfig, LORA)),
    config: { minClients: 1, maxClients: 1, round: { steps: 4, batchSize: 4, learningRate: 5e-3, seqLen: 32, ...round } }, log: () => {},
  });
  return { handle, close: async () => (await handle.close(), rmSync(dir, { recursive: true, force: true })) };
}

describe('FederatedClient with the inline trainer on Dawn', () => {
  it('a full round: train from the global, clip to S, upload; the coordinator aggregates it into version 1', async () => {
    const S = 0.05;
    const c = await coordinator({ clipNorm: S, dp: { mode: 'none', noiseMultiplier: 0, delta: 1e-5 } });
    try {
      const uploads: Uint8Array[] = [];
      const spy: typeof fetch = async (input, init) => {
        if (String(input).includes('/updates')) uploads.push(new Uint8Array(init!.body as Uint8Array));
        return fetch(input, init);
      };
      const events: FederatedEvent[] = [];
      const store = new MemoryRoundStore();
      const make = (o: Partial<ConstructorParameters<typeof FederatedClient>[0]> = {}) =>
        new FederatedClient({ url: c.handle.url, enrolmentSecret: 'secret', trainer, store, fetch: spy, onEvent: (e) => events.push(e), ...o });
      const get = async (path: string) => {
        const token = ((await store.get(store.keys()[0]!)) as { token: string }).token;
        return fetch(`${c.handle.url}${path}`, { headers: { Authorization: `Bearer ${token}` } });
      };

      // Round 1: plain FedAvg, clipping active.
      const r1 = await make().runRound();
      expect(r1).toMatchObject({ status: 'uploaded', roundId: 1, duplicate: false, accepted: 1 });
      expect(r1.norm!).toBeGreaterThan(S);
      expect(r1.clippedNorm!).toBeCloseTo(S, 6);
      expect(events.filter((e) => e.phase === 'train')).not.toHaveLength(0);
      const global0 = initialAdapter();
      const shapes = new Map([...global0].map(([k, t]) => [k, t.shape] as const));
      const sent = decodeUpdate(uploads[0]!, shapes).tensors;
      expect(globalNorm(sent.values())).toBeLessThanOrEqual(S * (1 + 1e-6));
      // The upload is exactly (trained - global0) * S / ||trained - global0||.
      const local = tensorsOf((await trainer.exportAdapter())['adapter_model.safetensors']);
      const scale = S / r1.norm!;
      let maxErr = 0;
      for (const [k, g] of global0) {
        const l = local.get(k)!;
        sent.get(k)!.forEach((v, i) => (maxErr = Math.max(maxErr, Math.abs(v - (l[i]! - g.data[i]!) * scale))));
      }
      expect(maxErr).toBeLessThan(1e-6);

      // The coordinator aggregated it (one client, FedAvg lr 1): version 1 = version 0 + upload.
      const status = (await (await get('/v1/rounds/1')).json()) as RoundStatus;
      expect(status).toMatchObject({ status: 'closed', accepted: 1, resultVersion: 1 });
      const v1 = tensorsOf(new Uint8Array(await (await get('/v1/global/1')).arrayBuffer()));
      for (const [k, g] of global0) v1.get(k)!.forEach((v, i) => expect(v).toBeCloseTo(g.data[i]! + sent.get(k)![i]!, 6));
    } finally {
      await c.close();
    }
  });

  it('local DP with q8: the upload is the clipped delta plus N(0, (sigma S)^2), its tensor data about 4x smaller', async () => {
    const S = 0.05;
    const sigma = 0.8;
    const c = await coordinator({ clipNorm: S, dp: { mode: 'local', noiseMultiplier: sigma, delta: 1e-5 } });
    try {
      const uploads: Uint8Array[] = [];
      const client = new FederatedClient({
        url: c.handle.url, enrolmentSecret: 'secret', trainer, store: new MemoryRoundStore(), compression: { encoding: 'q8' },
        fetch: async (input, init) => {
          if (String(input).includes('/updates')) uploads.push(new Uint8Array(init!.body as Uint8Array));
          return fetch(input, init);
        },
      });
      const r = await client.runRound();
      expect(r).toMatchObject({ status: 'uploaded', roundId: 1 });
      // On an adapter this small the JSON header (16 tensor entries) is a third of the q8 file; the tensor data is 3.9x smaller.
      const header = Number(new DataView(uploads[0]!.buffer, uploads[0]!.byteOffset).getBigUint64(0, true));
      const q8Data = r.uploadBytes! - 8 - header;
      console.log(`tiny-llama rank-4 q/v adapter delta (1792 values): dense f32 ${r.denseBytes} B (data 7168 B), q8 ${r.uploadBytes} B (data ${q8Data} B)`);
      expect(q8Data).toBe(1792 + 8 * 8); // U8 codes + an F32 [offset, scale] per tensor
      expect(r.denseBytes! / r.uploadBytes!).toBeGreaterThan(2);
      expect(r.epsilon).toBeCloseTo(computeDpEpsilon({ noiseMultiplier: sigma, sampleRate: 1, steps: 1, delta: 1e-5 }).epsilon, 9);

      const global0 = initialAdapter();
      const shapes = new Map([...global0].map(([k, t]) => [k, t.shape] as const));
      const sent = decodeUpdate(uploads[0]!, shapes).tensors;
      const local = tensorsOf((await trainer.exportAdapter())['adapter_model.safetensors']);
      const scale = Math.min(1, S / r.norm!);
      let n = 0;
      let sum = 0;
      let sum2 = 0;
      for (const [k, g] of global0) {
        const l = local.get(k)!;
        sent.get(k)!.forEach((v, i) => {
          const e = v - (l[i]! - g.data[i]!) * scale;
          n++;
          sum += e;
          sum2 += e * e;
        });
      }
      const std = Math.sqrt(sum2 / n - (sum / n) ** 2);
      expect(n).toBe(1792);
      expect(Math.abs(sum / n)).toBeLessThan((5 * sigma * S) / Math.sqrt(n));
      expect(std / (sigma * S)).toBeGreaterThan(0.92);
      expect(std / (sigma * S)).toBeLessThan(1.08);
    } finally {
      await c.close();
    }
  });
});
