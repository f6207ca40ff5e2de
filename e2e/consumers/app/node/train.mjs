// Plain Node, no bundler, no TypeScript loader: trains the model inline on Dawn (the `webgpu`
// package) and writes the PEFT adapter. Usage: node node/train.mjs MODEL_DIR TEXT_FILE OUT_DIR
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTrainer, estimatePrivacy } from 'webtune';
import { createNodeGpu, nodeDirectorySource } from 'webtune/node';

const [modelDir, textFile, outDir] = process.argv.slice(2);
const trainer = await createTrainer({ inline: true, gpu: await createNodeGpu() });
const model = await trainer.loadModel(nodeDirectorySource(modelDir));
await trainer.prepareData({ text: readFileSync(textFile, 'utf8') }, { seqLen: 32, heldOut: 0 });
const losses = [];
const summary = await trainer.train({ steps: 4, batchSize: 2, learningRate: 5e-3, seed: 3, progressIntervalMs: 0, lora: { rank: 4, alpha: 8 } }, (p) => losses.push(p.loss));
const peft = await trainer.exportAdapter();
mkdirSync(outDir, { recursive: true });
for (const [name, data] of Object.entries(peft)) writeFileSync(join(outDir, name), data);
// The other adaptation methods from the published packages: DoRA (created on the base), IA3 and
// BitFit on the top layer, each exported as adapter files and as a merged model.
const methods = {};
for (const adapter of [{ method: 'dora', config: { rank: 4, alpha: 8 } }, { method: 'ia3' }, { method: 'bitfit', config: { layers: [model.numLayers - 1] } }]) {
  const run = await trainer.train({ steps: 2, batchSize: 2, learningRate: 5e-3, seed: 3, runId: adapter.method, adapter });
  const files = await trainer.exportAdapter();
  const merged = await trainer.exportMerged();
  methods[adapter.method] = { stopped: run.stopped, config: JSON.parse(files['adapter_config.json']), mergedBytes: merged['model.safetensors'].byteLength };
}
// Prefix tuning (with projection) and bottleneck adapters: they change the sequence or add modules,
// so generation runs with them and merging is refused with a typed error.
for (const adapter of [{ method: 'prefix-tuning', config: { numVirtualTokens: 4, prefixProjection: true } }, { method: 'bottleneck', config: { bottleneckSize: 8 } }]) {
  const run = await trainer.train({ steps: 2, batchSize: 2, learningRate: 5e-3, seed: 3, runId: adapter.method, adapter });
  const files = await trainer.exportAdapter();
  const { tokens } = await trainer.generate('Call me', { maxNewTokens: 3 });
  const mergedError = await trainer.exportMerged().then(() => undefined, (e) => ({ name: e.name, code: e.code }));
  methods[adapter.method] = { stopped: run.stopped, config: JSON.parse(files['adapter_config.json']), generated: tokens.length, mergedError };
}
// DP-SGD under a budget (README "Train with differential privacy"): the privacy spent is in the
// summary, in every progress event and in the exported adapter_config.json.
const epsilons = [];
const priv = await trainer.train({ steps: 2, batchSize: 2, seed: 3, runId: 'private', lora: { rank: 4 }, progressIntervalMs: 0, privacy: { preset: 'low' } }, (p) => epsilons.push(p.privacy.epsilon));
const privacy = {
  stopped: priv.stopped, summary: priv.privacy, epsilons, config: JSON.parse((await trainer.exportAdapter())['adapter_config.json']).webtune_privacy,
  estimate: estimatePrivacy({ dataSize: priv.privacy.dataSize, batchSize: 2, steps: 2, noiseMultiplier: priv.privacy.noiseMultiplier }).epsilon,
};
// Device adaptation (README "Adapt to the device"): settings chosen and measured for this adapter
// (lavapipe has shader-f16: four formats are timed), then a run with them.
const plan = await trainer.autoConfigure({ batchSize: 2, calibrationSteps: 1 });
const planned = await trainer.train({ steps: 2, seed: 3, runId: 'planned', ...plan.train });
const adapted = {
  format: plan.format, dtype: plan.dtype, measured: plan.measured.length, reasons: plan.reasons.length, effective: plan.microBatchSize * plan.gradientAccumulation,
  stopped: planned.stopped, microBatchSize: planned.microBatchSize, withinEstimate: planned.peakBytes <= plan.estimate.total * 1.05 + 2 ** 20,
};
await trainer.dispose();
console.log(JSON.stringify({ architecture: model.architecture, steps: summary.step, stopped: summary.stopped, losses, files: Object.keys(peft), methods, privacy, adapted }));
process.exit(0); // Dawn keeps its device thread alive
