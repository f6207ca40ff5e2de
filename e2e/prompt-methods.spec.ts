/**
 * Prefix tuning (with projection), Houlsby bottleneck adapters, prompt tuning (TEXT init),
 * P-tuning and UniPELT in Chromium: createTrainer() in a module worker over Comlink, checkpoints in the page
 * origin's real IndexedDB, SwiftShader WebGPU, the tiny Llama fixture (e2e/pages/prompt-methods.ts).
 * Each method trains straight through, generates, exports its adapter files, and has the merged
 * and ONNX exports refused with UnsupportedModelError (a merged model has no place for virtual
 * tokens, prefixes, added modules or gates). Then, for prefix tuning, bottleneck adapters, prompt
 * tuning and UniPELT, the same run is killed by a reload after its first checkpoint and resumed from IndexedDB
 * to the same adapter bytes and the same generation. Each page load costs a worker start and a model load, so one
 * page serves several methods. The demo's picker for these methods is in e2e/methods.spec.ts.
 */
import { expect, test, type Page } from '@playwright/test';

async function open(page: Page): Promise<void> {
  await page.goto('/e2e/pages/prompt-methods.html');
  await page.waitForFunction(() => window.promptMethodsPage !== undefined);
}

/** e2e/pages/prompt-methods.ts: RUN.steps and checkpointEvery. */
const STEPS = 10;
const CHECKPOINT_EVERY = 2;

/** Per method: what its adapter_config.json says and the tensors it saves (tiny Llama: hidden 64, 2 layers, key/value width 2 x 16). */
const CASES = [
  {
    name: 'prefix-tuning' as const,
    config: { peft_type: 'PREFIX_TUNING', prefix_projection: true, num_virtual_tokens: 4, token_dim: 32, encoder_hidden_size: 16 },
    // With projection PEFT saves the MLP's output: num_virtual_tokens x (layers x 2 x token_dim).
    shapes: { prompt_embeddings: [4, 2 * 2 * 32] },
  },
  {
    name: 'bottleneck' as const,
    config: { webtune_method: 'bottleneck', variant: 'houlsby', bottleneck_size: 8 },
    shapes: Object.fromEntries([0, 1].flatMap((layer) => ['attention', 'output'].flatMap((site) => {
      const p = `model.layers.${layer}.${site}_adapter`;
      return [[`${p}.adapter_down.0.weight`, [8, 64]], [`${p}.adapter_down.0.bias`, [8]], [`${p}.adapter_up.weight`, [64, 8]], [`${p}.adapter_up.bias`, [64]]];
    }))),
  },
  {
    name: 'prompt-tuning' as const,
    config: { peft_type: 'PROMPT_TUNING', prompt_tuning_init: 'TEXT', prompt_tuning_init_text: 'Call me Ishmael', num_virtual_tokens: 4 },
    shapes: { prompt_embeddings: [4, 64] },
  },
  {
    name: 'p-tuning' as const,
    config: { peft_type: 'P_TUNING', encoder_reparameterization_type: 'MLP', num_virtual_tokens: 4 },
    // The encoder's output, as PEFT saves it.
    shapes: { prompt_embeddings: [4, 64] },
  },
  {
    name: 'unipelt' as const,
    // webtune's own files; LoRA on LoRA's default targets with alpha 2 x rank, a Pfeiffer adapter with relu.
    config: { webtune_method: 'unipelt', r: 4, lora_alpha: 8, target_modules: ['q_proj', 'v_proj'], num_virtual_tokens: 4, bottleneck_size: 8, non_linearity: 'relu' },
    // The prefix table (4 rows of layers x 2 x token_dim), then per layer: gated LoRA on q_proj (64 -> 64)
    // and v_proj (64 -> 32), the prefix's key and value gates, the gated adapter after the MLP.
    shapes: {
      'prefix.embedding.weight': [4, 2 * 2 * 32],
      ...Object.fromEntries([0, 1].flatMap((layer) => {
        const p = `model.layers.${layer}`;
        const lora = (m: string, out: number) => [
          [`${p}.self_attn.${m}.lora_A.weight`, [4, 64]], [`${p}.self_attn.${m}.lora_B.weight`, [out, 4]],
          [`${p}.self_attn.${m}.lora_gate.weight`, [1, 64]], [`${p}.self_attn.${m}.lora_gate.bias`, [1]],
        ];
        const a = `${p}.output_adapter`;
        return [
          ...lora('q_proj', 64), ...lora('v_proj', 32),
          [`${p}.prefix_gate.weight`, [2, 64]], [`${p}.prefix_gate.bias`, [2]],
          [`${a}.adapter_down.0.weight`, [8, 64]], [`${a}.adapter_down.0.bias`, [8]], [`${a}.adapter_up.weight`, [64, 8]], [`${a}.adapter_up.bias`, [64]],
          [`${a}.gate.weight`, [1, 64]], [`${a}.gate.bias`, [1]],
        ];
      })),
    },
  },
];
type Name = (typeof CASES)[number]['name'];

test('prefix tuning, bottleneck adapters, prompt tuning, P-tuning and UniPELT train in the worker, generate, refuse the merged exports; resumed after a reload they reach the same bytes', async ({ page }) => {
  test.setTimeout(300_000);
  const log: string[] = [];
  page.on('console', (m) => log.push(`${m.type()}: ${m.text()}`));
  await open(page);

  const straight = new Map<Name, Awaited<ReturnType<NonNullable<Window['promptMethodsPage']>['straight']>>>();
  for (const c of CASES) {
    await test.step(`${c.name}: train, generate, export; merged and ONNX exports refused`, async () => {
      const s = await page.evaluate((n) => window.promptMethodsPage!.straight(n), c.name);
      straight.set(c.name, s);
      expect(s.summary, log.join('\n')).toMatchObject({ stopped: 'completed', step: STEPS });
      expect(Number.isFinite(s.summary.lastLoss)).toBe(true);
      expect(s.checkpoints).toEqual([2, 4, 6, 8, 10]);
      // Greedy generation through the adapter's hooks (virtual tokens, prefixes in the KV cache, added modules, UniPELT's gated prefix beside it).
      for (const out of [s.base, s.tuned]) {
        expect(out.tokens.length).toBeGreaterThan(0);
        expect(out.text.trim()).not.toBe('');
      }
      expect(s.adapter.config).toMatchObject(c.config);
      expect(s.adapter.shapes).toEqual(c.shapes);
      // A merged model has no place for them: typed errors, rebuilt as the same class on this side of the worker, that point at the adapter files.
      for (const refused of [s.merged, s.onnx]) {
        expect(refused).toMatchObject({ isWebtuneError: true, constructorName: 'UnsupportedModelError', name: 'UnsupportedModelError', code: 'UNSUPPORTED_MODEL' });
        expect(refused !== 'resolved' && refused.message).toMatch(/no place for/);
        expect(refused !== 'resolved' && refused.message).toMatch(/exportAdapter/);
      }
    });
  }

  // The same runs under another id, the page reloaded (worker killed) once a run's first checkpoint
  // is stored; the next page resumes it, then starts the next method's run.
  // Prompt tuning too: its checkpoint must record the TEXT init's token ids for the resumed run to match it;
  // UniPELT's holds three kinds of tensors and its gates, with the LoRA factors' rank checked on restore.
  const resumable: Name[] = ['prefix-tuning', 'bottleneck', 'prompt-tuning', 'unipelt'];
  for (const name of resumable) {
    await test.step(`${name}: killed by a reload after a checkpoint, resumed to the same bytes`, async () => {
      const stored = await page.evaluate((n) => window.promptMethodsPage!.startAndWaitForCheckpoint(n), name);
      expect(Math.min(...stored)).toBeLessThan(STEPS);
      await open(page);
      const resumed = await page.evaluate((n) => window.promptMethodsPage!.resume(n), name);
      expect(resumed.summary, log.join('\n')).toMatchObject({ stopped: 'completed', step: STEPS });
      expect(resumed.summary.resumedFrom).toBeGreaterThanOrEqual(CHECKPOINT_EVERY);
      expect(resumed.summary.resumedFrom).toBeLessThan(STEPS);
      expect(resumed.adapter.sha).toBe(straight.get(name)!.adapter.sha);
      expect(resumed.tuned).toEqual(straight.get(name)!.tuned);
    });
  }
});
