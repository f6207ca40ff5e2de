/**
 * Instruction tuning as an app does it, in Node (inline; in a page `createTrainer()` runs the same
 * calls in its worker): conversations from a JSONL file rendered with the model's own chat
 * template, loss on the assistant's answers only, held-out evaluation every few steps with early
 * stopping and restoreBest, then the base model and the adapter answer the same question.
 *
 *   node scripts/run-ts.mjs examples/assistant.ts
 */
import { readFileSync } from 'node:fs';
import { createTrainer, type ChatMessage } from 'webtune';
import { createNodeGpu, nodeDirectorySource } from 'webtune/node';

const FIXTURES = 'packages/model/test/fixtures';
const trainer = await createTrainer({ inline: true, gpu: await createNodeGpu() });
await trainer.loadModel(nodeDirectorySource(`${FIXTURES}/models/tiny-chat`)); // ChatML template in tokenizer_config.json

const file = new File([readFileSync(`${FIXTURES}/goldens/chat-data.jsonl`)], 'chat-data.jsonl');
const data = await trainer.prepareData({ file }, { seqLen: 128, heldOut: 0.25, onInvalid: 'skip' });
console.log(`${data.examples} conversations (${data.kind}), template from ${data.chatTemplate}: ${data.trainSequences} to train, ${data.heldOutSequences} held out; ` +
  `${data.learnedTokens} assistant tokens learned, ${data.paddingTokens} padding positions, ${data.truncatedExamples} truncated, ${data.skippedCount} skipped`);

const before = await trainer.evaluate({ data: 'heldOut', useAdapter: false });
console.log(`held-out completion loss before: ${before.loss.toFixed(3)} (perplexity ${before.perplexity.toFixed(1)})`);
const summary = await trainer.train(
  { steps: 60, batchSize: 4, learningRate: 1e-2, lora: { rank: 8, alpha: 16 }, evalEvery: 5, earlyStopping: { patience: 3, minDelta: 0.005 }, restoreBest: true, runId: 'assistant', checkpointEvery: 0 },
  (p) => p.evaluation && console.log(`step ${p.step}: train loss ${p.loss.toFixed(3)}, held-out ${p.evaluation.loss.toFixed(3)}${p.evaluation.improved ? ' (best)' : ''}`),
);
console.log(`stopped: ${summary.stopped} at step ${summary.step}; best ${JSON.stringify(summary.best)}; restored best: ${summary.restoredBest}; held-out loss now ${summary.heldOutLoss?.toFixed(3)}`);

// The fixture's weights are random, so both answers are noise here; with a real instruct model
// (README, "Fine-tune an assistant") the adapter answers in the data's voice.
const question: ChatMessage[] = [{ role: 'system', content: 'You are Fern.' }, { role: 'user', content: 'When do I water tomatoes?' }];
console.log('base:   ', (await trainer.generate(question, { maxNewTokens: 24, useAdapter: false })).text);
console.log('adapter:', (await trainer.generate(question, { maxNewTokens: 24 })).text);
await trainer.dispose();
process.exit(0);
