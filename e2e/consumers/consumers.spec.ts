/**
 * A stranger's apps, built in production mode by Vite, webpack 5 and esbuild from the packed tarballs
 * (e2e/consumers/setup.mjs) and served with a strict Content-Security-Policy:
 * the fine-tune runs in webtune's own worker, survives a reload mid-run by resuming from its
 * IndexedDB checkpoint, generates and exports the PEFT adapter; errors thrown in the worker arrive as
 * their own classes though both bundles are minified; an app's own worker file that imports
 * 'webtune/worker' trains too; instruction tuning (chat template, evaluation, chat) works in the worker.
 */
import { readFileSync } from 'node:fs';
import { expect, test, type Page } from '@playwright/test';
import { ESBUILD_APP_PORT, REPORT, VITE_APP_PORT, WEBPACK_APP_PORT } from './paths.mjs';

const apps = [
  { name: 'Vite', url: `http://localhost:${VITE_APP_PORT}/`, ownWorker: true },
  { name: 'webpack 5', url: `http://localhost:${WEBPACK_APP_PORT}/`, ownWorker: true },
  // esbuild bundles no `new Worker(new URL(...))`: the app's own worker file would be its own entry.
  { name: 'esbuild', url: `http://localhost:${ESBUILD_APP_PORT}/`, ownWorker: false },
];

interface Consumer {
  errors(): Promise<{ missing: Record<string, unknown> | undefined; empty: Record<string, unknown> | undefined }>;
  start(): Promise<number[]>;
  resume(): Promise<{
    summary: { stopped: string; step: number; totalSteps: number; resumedFrom: number | undefined; lastLoss: number | undefined };
    progressEvents: number; loadEvents: number; text: string; adapterBytes: number; adapterConfig: string;
  }>;
  ownWorker(): Promise<{ stopped: string; step: number }>;
  assistant(): Promise<{
    bad: Record<string, unknown> | undefined; kind: string; chatTemplate: string | undefined; examples: number;
    evaluations: number[]; answer: string; answerTokens: number;
  }>;
}

async function open(page: Page, url: string): Promise<void> {
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(e.message));
  await page.goto(url);
  await expect(page.locator('#status'), problems.join('\n')).toHaveText('ready');
}

const call = <K extends keyof Consumer>(page: Page, name: K) =>
  page.evaluate((n) => (window as unknown as { consumer: Record<string, () => Promise<unknown>> }).consumer[n]!(), name) as ReturnType<Consumer[K]>;

interface Report {
  node: {
    architecture: string; stopped: string; steps: number; losses: number[]; files: string[];
    methods: Record<string, { stopped: string; config: Record<string, unknown>; mergedBytes?: number; generated?: number; mergedError?: { name: string; code: string } }>;
    privacy: { stopped: string; summary: { epsilon: number; targetEpsilon: number; steps: number; mechanism: string }; epsilons: number[]; config: unknown; estimate: number };
    adapted: { format: string; dtype: string; measured: number; reasons: number; effective: number; stopped: string; microBatchSize: number; withinEstimate: boolean };
  };
  coordinator: {
    url: string; rejected: { isFederatedError: boolean; reason: string; status: number } | undefined; clientId: string | undefined;
    secureRound: { results: { status: string; survivors: number; resultVersion: number }[]; outcome: string; resultVersion: number };
  };
}

test('in plain Node, from the tarballs: training on Dawn, the coordinator bin and the federated client (setup.mjs)', () => {
  const report = JSON.parse(readFileSync(REPORT, 'utf8')) as Report;
  expect(report.node).toMatchObject({ architecture: 'llama', stopped: 'completed', steps: 4, files: ['adapter_config.json', 'adapter_model.safetensors'] });
  expect(report.node.losses).toHaveLength(4);
  expect(report.node.losses.every(Number.isFinite)).toBe(true);
  // DoRA, IA3 and BitFit from the packed packages: trained, exported as their files, merged.
  expect(report.node.methods['dora']).toMatchObject({ stopped: 'completed', config: { peft_type: 'LORA', use_dora: true } });
  expect(report.node.methods['ia3']).toMatchObject({ stopped: 'completed', config: { peft_type: 'IA3' } });
  expect(report.node.methods['bitfit']).toMatchObject({ stopped: 'completed', config: { webtune_method: 'bitfit' } });
  for (const m of ['dora', 'ia3', 'bitfit']) expect(report.node.methods[m]!.mergedBytes).toBeGreaterThan(0);
  // Prefix tuning and bottleneck adapters: trained, exported as their files, generating; merging refused with the typed error.
  expect(report.node.methods['prefix-tuning']).toMatchObject({ stopped: 'completed', config: { peft_type: 'PREFIX_TUNING', prefix_projection: true }, mergedError: { name: 'UnsupportedModelError' } });
  expect(report.node.methods['bottleneck']).toMatchObject({ stopped: 'completed', config: { webtune_method: 'bottleneck', variant: 'houlsby' }, mergedError: { name: 'UnsupportedModelError' } });
  for (const m of ['prefix-tuning', 'bottleneck']) expect(report.node.methods[m]!.generated).toBeGreaterThan(0);
  // DP-SGD from the packed packages: the budget kept, the spend reported the same everywhere.
  const dp = report.node.privacy;
  expect(dp).toMatchObject({ stopped: 'completed', summary: { targetEpsilon: 10, steps: 2, mechanism: 'dp-sgd' } });
  expect(dp.summary.epsilon).toBeLessThanOrEqual(10);
  expect(dp.epsilons).toEqual([expect.any(Number), dp.summary.epsilon]);
  expect(dp.config).toEqual(dp.summary);
  expect(dp.estimate).toBeCloseTo(dp.summary.epsilon, 12);
  // autoConfigure from the packed packages: four formats measured on lavapipe (shader-f16), a plan that trains within its estimate.
  expect(report.node.adapted).toMatchObject({ measured: 4, effective: 2, stopped: 'completed', withinEstimate: true });
  expect(report.node.adapted.reasons).toBeGreaterThan(0);
  expect(['f32', 'nf4']).toContain(report.node.adapted.format);
  expect(report.coordinator.rejected).toEqual({ isFederatedError: true, reason: 'bad_secret', status: 401 });
  expect(report.coordinator.clientId).toMatch(/\S/);
  // A secure-aggregation round of three Node clients with real trainers, from the tarballs.
  expect(report.coordinator.secureRound).toEqual({
    results: [0, 1, 2].map(() => ({ status: 'uploaded', survivors: 3, resultVersion: 1 })), outcome: 'aggregated', resultVersion: 1,
  });
});

for (const app of apps) {
  test.describe(app.name, () => {
    test('errors thrown in the worker keep their class in the minified build', async ({ page }) => {
      await open(page, app.url);
      const { missing, empty } = await call(page, 'errors');
      expect(missing).toMatchObject({ isWebtuneError: true, isModelFileMissing: true, name: 'ModelFileMissingError', code: 'MODEL_FILE_MISSING' });
      expect(empty).toMatchObject({ isWebtuneError: true, isInvalidArgument: true, name: 'InvalidArgumentError', code: 'INVALID_ARGUMENT' });
    });

    test('trains in the worker, resumes after a reload mid-run, generates and exports the adapter', async ({ page }) => {
      await open(page, app.url);
      const stored = await call(page, 'start');
      expect(stored).toContain(2);
      await page.reload(); // mid-run: the worker dies with the page
      await expect(page.locator('#status')).toHaveText('ready');
      const result = await call(page, 'resume');
      expect(result.summary).toMatchObject({ stopped: 'completed', step: 6, totalSteps: 6 });
      expect(result.summary.resumedFrom).toBeGreaterThanOrEqual(2);
      expect(result.summary.resumedFrom).toBeLessThan(6);
      expect(Number.isFinite(result.summary.lastLoss)).toBe(true);
      expect(result.progressEvents).toBeGreaterThan(0);
      expect(result.loadEvents).toBeGreaterThan(0);
      expect(result.text.length).toBeGreaterThan(0);
      expect(result.adapterBytes).toBeGreaterThan(1000);
      expect(JSON.parse(result.adapterConfig)).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 8 });
    });

    test('instruction tuning in the worker: the chat template, evaluation while training, chat', async ({ page }) => {
      await open(page, app.url);
      const r = await call(page, 'assistant');
      expect(r.bad).toMatchObject({ isWebtuneError: true, isDataFormat: true, name: 'DataFormatError', code: 'DATA_FORMAT', line: 2 });
      expect(r).toMatchObject({ kind: 'messages', chatTemplate: 'tokenizer_config.json', examples: 16, evaluations: [2, 4] });
      expect(r.answerTokens).toBeGreaterThan(0);
      expect(typeof r.answer).toBe('string');
    });

    if (app.ownWorker) {
      test("an app's own worker file that imports 'webtune/worker' trains", async ({ page }) => {
        await open(page, app.url);
        expect(await call(page, 'ownWorker')).toMatchObject({ stopped: 'completed', step: 2 });
      });
    }
  });
}
