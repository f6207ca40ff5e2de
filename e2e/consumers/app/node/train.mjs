// Plain Node, no bundler, no TypeScript loader: trains the model inline on Dawn (the `webgpu`
// package) and writes the PEFT adapter. Usage: node node/train.mjs MODEL_DIR TEXT_FILE OUT_DIR
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTrainer } from 'webtune';
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
await trainer.dispose();
console.log(JSON.stringify({ architecture: model.architecture, steps: summary.step, stopped: summary.stopped, losses, files: Object.keys(peft) }));
process.exit(0); // Dawn keeps its device thread alive
