/**
 * A federated round with DP-SGD in local training (RoundConfig.localDpSgd), with the real inline
 * trainer on Dawn (tiny Llama, one Moby-Dick chapter as a single text, so each window is one row)
 * against the reference coordinator: the round speaks protocol 3 and advertises localDpSgd, the
 * client trains with DP-SGD and uploads, and its record-level epsilon (privacySpent().recordLevel)
 * is what estimatePrivacy gives for the rows, batch, steps and sigma it trained with, kept apart
 * from the update-level epsilon and surviving a reload.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNodeGpu } from '@webtune/gpu/node';
import { peftAdapterConfig, type ModelConfig } from '@webtune/model';
import { nodeDirectorySource } from '@webtune/model/node';
import { createTrainer, type DataInfo, type TrainerApi, type TrainRequest } from '@webtune/sdk';
import { computeDpEpsilon, estimatePrivacy } from '@webtune/trainer';
import { FIXTURES } from '../../model/test/tiny-models.js';
import { chapter } from '../../trainer/test/corpus.js';
import { startCoordinator } from '../../coordinator/src/index.js';
import { FederatedClient } from '../src/client.js';
import type { RoundInfo } from '../src/protocol.js';
import { MemoryRoundStore } from '../src/round-store.js';
import { initialAdapter, LORA } from './tiny-llama-adapter.js';

let trainer: TrainerApi;
let data: DataInfo;

beforeAll(async () => {
  trainer = await createTrainer({ inline: true, gpu: await createNodeGpu() });
  await trainer.loadModel(nodeDirectorySource(`${FIXTURES}models/tiny-llama`));
  // One text: its windows are the rows DP-SGD protects (packed documents are refused under DP).
  data = await trainer.prepareData({ texts: [chapter(1)] }, { seqLen: 32 });
});

afterAll(async () => {
  await trainer?.dispose();
});

describe('FederatedClient with localDpSgd on Dawn', () => {
  it('trains one round with DP-SGD; privacySpent().recordLevel is estimatePrivacy for the steps trained, apart from the update-level epsilon', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'webtune-fed-dpsgd-'));
    const steps = 3;
    const batchSize = 4;
    const localDpSgd = { noiseMultiplier: 1.1, maxGradNorm: 0.5, delta: 1e-4 };
    const dp = { mode: 'local' as const, noiseMultiplier: 0.8, delta: 1e-5 };
    const handle = await startCoordinator({
      db: join(dir, 'state.sqlite'), enrolmentSecret: 'secret', initialAdapter: initialAdapter(),
      adapterConfig: JSON.stringify(peftAdapterConfig({ architecture: 'llama' } as ModelConfig, LORA)),
      config: { minClients: 1, maxClients: 1, round: { steps, batchSize, learningRate: 5e-3, seqLen: 32, clipNorm: 0.05, dp, localDpSgd } }, log: () => {},
    });
    try {
      const rounds: RoundInfo[] = [];
      const requests: TrainRequest[] = [];
      const spy: typeof fetch = async (input, init) => {
        const res = await fetch(input, init);
        if (String(input).endsWith('/v1/round')) rounds.push((await res.clone().json()) as RoundInfo);
        return res;
      };
      const watched: TrainerApi = new Proxy(trainer, {
        get: (t, k) => (k === 'train' ? (r: TrainRequest, p?: Parameters<TrainerApi['train']>[1]) => (requests.push(r), t.train(r, p)) : Reflect.get(t, k)),
      });
      const store = new MemoryRoundStore();
      const make = () => new FederatedClient({ url: handle.url, enrolmentSecret: 'secret', trainer: watched, store, fetch: spy });

      const client = make();
      const result = await client.runRound();
      expect(result).toMatchObject({ status: 'uploaded', roundId: 1, accepted: 1, privacy: { mode: 'local', localDpSgd } });
      // The coordinator advertised it, in a protocol-3 round.
      expect(rounds[0]).toMatchObject({ protocol: 3, config: { localDpSgd } });
      expect(requests[0]!.privacy).toEqual(localDpSgd);

      const expected = estimatePrivacy({ dataSize: data.trainSequences, batchSize, steps, noiseMultiplier: localDpSgd.noiseMultiplier, delta: localDpSgd.delta });
      expect(Number.isFinite(expected.epsilon) && expected.epsilon > 0).toBe(true);
      const spent = client.privacySpent();
      expect(spent.recordLevel).toEqual({ epsilon: expected.epsilon, delta: localDpSgd.delta, steps, rounds: 1 });
      expect(result.recordLevel).toEqual(spent.recordLevel);
      // The update-level epsilon is the local-DP release of the whole update (q = 1, one round), a different number.
      expect(spent.rounds).toBe(1);
      expect(spent.epsilon).toBe(computeDpEpsilon({ noiseMultiplier: dp.noiseMultiplier, sampleRate: 1, steps: 1, delta: dp.delta }).epsilon);
      expect(spent.epsilon).not.toBe(spent.recordLevel!.epsilon);

      // After a reload (same store), the record-level accountant is the same.
      const reloaded = make();
      await reloaded.register();
      expect(reloaded.privacySpent().recordLevel).toEqual(spent.recordLevel);
    } finally {
      await handle.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
