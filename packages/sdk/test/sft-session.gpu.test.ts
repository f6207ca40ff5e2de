/**
 * Instruction tuning through the SDK on Dawn: conversations and prompt/completion pairs from files,
 * the model's chat template (tokenizer_config.json, or chat_template.jinja), completion-only loss,
 * held-out evaluation with early stopping and restoreBest, exact resume, generate(messages), and
 * every bad input as a typed error that leaves the session usable.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ChatTemplateError, DataFormatError, InvalidArgumentError } from '@webtune/errors';
import { createNodeGpu } from '@webtune/gpu/node';
import { filesSource, type ChatMessage } from '@webtune/model';
import { nodeDirectorySource } from '../../model/src/node.js';
import { FIXTURES } from '../../model/test/tiny-models.js';
import { MemoryCheckpointStore } from '@webtune/trainer';
import { TrainerSession, type TrainRequest } from '../src/index.js';

const CHAT = `${FIXTURES}models/tiny-chat`;
const dataText = readFileSync(`${FIXTURES}goldens/chat-data.jsonl`, 'utf8');
const conversations = dataText.trim().split('\n').map((l) => (JSON.parse(l) as { messages: ChatMessage[] }).messages);
const golden = JSON.parse(readFileSync(`${FIXTURES}goldens/chat.json`, 'utf8')) as {
  baseLoss: number;
  templates: { chatml: { generationPrompt: Array<{ conversation: number; messages: number; text: string; ids: number[] }> } };
};
const RUN: TrainRequest = { steps: 8, batchSize: 4, learningRate: 1e-2, seed: 5, checkpointEvery: 4, schedule: 'constant', lora: { rank: 4, alpha: 8 } };

async function sha(bytes: Uint8Array): Promise<string> {
  return Buffer.from(await crypto.subtle.digest('SHA-256', bytes as unknown as ArrayBuffer)).toString('hex');
}

async function chatSession(store = new MemoryCheckpointStore(), dir = CHAT) {
  const session = new TrainerSession({ gpu: await createNodeGpu(), checkpoints: store });
  await session.loadModel(nodeDirectorySource(dir));
  return session;
}

describe('instruction tuning through the session', () => {
  it('prepares conversations from a JSONL file with the model template; the base loss matches PyTorch', async () => {
    const session = await chatSession();
    try {
      const phases = new Set<string>();
      const info = await session.prepareData({ file: new File([dataText], 'chats.jsonl') }, { seqLen: 128, heldOut: 0.25, onProgress: (p) => phases.add(p.phase) });
      expect(info).toMatchObject({ kind: 'messages', examples: 16, trainSequences: 12, heldOutSequences: 4, skippedCount: 0, chatTemplate: 'tokenizer_config.json', seqLen: 128, truncatedExamples: 0 });
      expect([...phases]).toEqual(['read', 'tokenize']);
      expect(info.learnedTokens).toBeGreaterThan(0);
      // Which examples were held out (lines of the file), chosen by the seeded shuffle.
      expect(info.heldOutLines).toHaveLength(4);
      expect(new Set(info.heldOutLines).size).toBe(4);
      expect(info.heldOutLines!.every((l) => l >= 1 && l <= 16)).toBe(true);
      const again = await session.prepareData({ file: new File([dataText], 'chats.jsonl') }, { seqLen: 128, heldOut: 0.25 });
      expect(again.heldOutLines).toEqual(info.heldOutLines);
      expect((await session.prepareData({ file: new File([dataText], 'chats.jsonl') }, { seqLen: 128, heldOut: 0.25, seed: 7 })).heldOutLines).not.toEqual(info.heldOutLines);
      // Shorter sequences: the ends are cut and counted; examples left with nothing to learn are skipped when asked.
      const cut = await session.prepareData({ file: new File([dataText], 'chats.jsonl') }, { seqLen: 64, heldOut: 0, onInvalid: 'skip' });
      expect(cut.truncatedExamples).toBeGreaterThan(0);
      expect(cut.truncatedTokens).toBeGreaterThan(cut.truncatedExamples);
      expect(cut.skippedCount).toBe(16 - cut.trainSequences);
      expect(cut.skipped.every((s) => /left no completion token/.test(s.message))).toBe(true);
      // The golden batch: the first four conversations, nothing held out, scored by the base model.
      await session.prepareData({ records: conversations.slice(0, 4).map((messages) => ({ messages })) }, { seqLen: 64, heldOut: 0 });
      const base = await session.evaluate({ data: 'train', useAdapter: false, batchSize: 4 });
      expect(Math.abs(base.loss - golden.baseLoss)).toBeLessThan(1e-5);
      // Completion-only off: more targets, a different loss.
      const all = await session.prepareData({ records: conversations.slice(0, 4).map((messages) => ({ messages })) }, { seqLen: 64, heldOut: 0, completionOnly: false });
      // Every real position learns: 57 + 3 x 64 (the golden rows' lengths).
      expect(all.learnedTokens).toBe(249);
      expect((await session.evaluate({ data: 'train', useAdapter: false })).tokens).toBe(249);
    } finally {
      session.dispose();
    }
  });

  it('reads chat_template.jinja where the folder ships one (Llama 3 template)', async () => {
    const names = ['config.json', 'tokenizer.json', 'model.safetensors'];
    const files = names.map((name) => ({ name, bytes: new Uint8Array(readFileSync(`${CHAT}/${name}`)) }));
    files.push({ name: 'tokenizer_config.json', bytes: new Uint8Array(readFileSync(`${FIXTURES}goldens/chat-llama3/tokenizer_config.json`)) });
    files.push({ name: 'chat_template.jinja', bytes: new Uint8Array(readFileSync(`${FIXTURES}goldens/chat-llama3/chat_template.jinja`)) });
    const session = new TrainerSession({ gpu: await createNodeGpu() });
    try {
      await session.loadModel(filesSource(files));
      const info = await session.prepareData({ content: dataText, format: 'jsonl' }, { seqLen: 96, heldOut: 0 });
      expect(info).toMatchObject({ kind: 'messages', chatTemplate: 'chat_template.jinja', truncatedExamples: 0 });
    } finally {
      session.dispose();
    }
  });

  it('trains on assistant tokens, evaluates every N steps and resumes exactly, evaluations included', async () => {
    const request: TrainRequest = { ...RUN, evalEvery: 2, earlyStopping: { patience: 100 }, restoreBest: true, progressIntervalMs: 0 };
    const prepare = (s: TrainerSession) => s.prepareData({ file: new File([dataText], 'chats.jsonl') }, { seqLen: 128, heldOut: 0.25, seed: 1 });
    const straight = await chatSession();
    const store = new MemoryCheckpointStore();
    const first = await chatSession(store);
    const second = await chatSession(store);
    try {
      await prepare(straight);
      const evaluated: number[] = [];
      const a = await straight.train({ ...request, runId: 's' }, (p) => p.evaluation && evaluated.push(p.step));
      expect(evaluated).toEqual([2, 4, 6, 8]);
      expect(a.evaluations.map((e) => e.step)).toEqual([2, 4, 6, 8]);
      expect(a.evaluations.every((e) => Math.abs(e.perplexity - Math.exp(e.loss)) < 1e-9)).toBe(true);
      expect(a.evaluations.at(-1)!.loss).toBeLessThan(a.evaluations[0]!.loss);
      const wanted = await sha((await straight.exportAdapter())['adapter_model.safetensors']);

      await prepare(first);
      const paused = await first.train({ ...request, runId: 'r' }, (p) => p.step === 5 && first.pause());
      expect(paused).toMatchObject({ stopped: 'paused', step: 5 });
      // Asking the base model while paused leaves the run's adapter in place.
      await first.generate([{ role: 'user', content: 'Hi!' }], { maxNewTokens: 2, useAdapter: false });
      // resume() refuses data other than the run's.
      await first.prepareData({ records: conversations.slice(0, 8).map((messages) => ({ messages })) }, { seqLen: 128, heldOut: 0.25 });
      await expect(first.resume()).rejects.toThrowError(/The data changed since run "r" started/);
      await prepare(first);
      const more = await first.train({ ...request, runId: 'r2' }, (p) => p.step === 2 && first.pause());
      expect(more.stopped).toBe('paused');
      await first.generate([{ role: 'user', content: 'Hi!' }], { maxNewTokens: 2, useAdapter: false });
      await expect(first.resume()).resolves.toMatchObject({ stopped: 'completed', step: 8 });
      first.dispose();
      // A reload: a new session on the same store continues the run.
      await prepare(second);
      const resumed = await second.train({ ...request, runId: 'r', resume: true });
      expect(resumed).toMatchObject({ stopped: 'completed', step: 8, resumedFrom: 5 });
      expect(resumed.evaluations).toEqual(a.evaluations);
      expect(resumed).toMatchObject({ best: a.best, restoredBest: true, warnings: [] });
      expect(a.restoredBest).toBe(true);
      expect(await sha((await second.exportAdapter())['adapter_model.safetensors'])).toBe(wanted);
    } finally {
      straight.dispose();
      second.dispose();
    }
  });

  it('stops early where the held-out curve says, and restoreBest puts back the best adapter bytes', async () => {
    // A learning rate far too high for this data: the held-out loss soon rises.
    const request: TrainRequest = { ...RUN, steps: 30, learningRate: 0.2, evalEvery: 1, checkpointEvery: 0, progressIntervalMs: 0 };
    const prepare = (s: TrainerSession) => s.prepareData({ file: new File([dataText], 'chats.jsonl') }, { seqLen: 128, heldOut: 0.25, seed: 1 });
    const store = new MemoryCheckpointStore();
    const session = await chatSession(store);
    const reference = await chatSession();
    try {
      await prepare(session);
      const s = await session.train({ ...request, runId: 'es', earlyStopping: { patience: 2, minDelta: 0.001 }, restoreBest: true });
      expect(s.stopped).toBe('early-stopped');
      // transformers' rule (trainer_callback.py EarlyStoppingCallback, load_best_model_at_end) read
      // off the reported curve: the best is the lowest loss; the counter restarts on a gain above
      // minDelta over the best before it; training stops when the counter reaches patience.
      let best = Infinity;
      let bestStep = 0;
      let counter = 0;
      let stopAt = 0;
      for (const e of s.evaluations) {
        if (e.loss < best && best - e.loss > 0.001) counter = 0;
        else counter++;
        if (e.loss < best) [best, bestStep] = [e.loss, e.step];
        if (counter >= 2) {
          stopAt = e.step;
          break;
        }
      }
      expect(s.step).toBe(stopAt);
      expect(s.step).toBeLessThan(30);
      expect(s.best).toEqual({ step: bestStep, loss: best });
      expect(s.restoredBest).toBe(true);
      expect(Math.abs(s.heldOutLoss! - best)).toBeLessThan(1e-6);
      expect((await store.list('es.best')).map((m) => m.step)).toEqual([bestStep]);
      // Resuming a run that stopped early takes no more steps: the checkpoint says it had decided.
      const again = await session.train({ ...request, runId: 'es', earlyStopping: { patience: 2, minDelta: 0.001 }, restoreBest: true, resume: true });
      expect(again).toMatchObject({ stopped: 'early-stopped', step: s.step, resumedFrom: s.step });
      // The same run paused right after the best step holds the same adapter bytes.
      await prepare(reference);
      await reference.train({ ...request, runId: 'ref' }, (p) => p.step === bestStep && reference.pause());
      expect(await sha((await session.exportAdapter())['adapter_model.safetensors'])).toBe(await sha((await reference.exportAdapter())['adapter_model.safetensors']));
    } finally {
      session.dispose();
      reference.dispose();
    }
  });

  it('generate(messages) renders the template with the generation prompt and returns only the answer', async () => {
    // EOS here is <|endoftext|> (511), so the stop at <|im_end|> (513) comes from the template's end of turn.
    const read = (name: string) => new Uint8Array(readFileSync(`${CHAT}/${name}`));
    const json = (name: string, patch: Record<string, unknown>) =>
      ({ name, bytes: new TextEncoder().encode(JSON.stringify({ ...(JSON.parse(readFileSync(`${CHAT}/${name}`, 'utf8')) as object), ...patch })) });
    const session = new TrainerSession({ gpu: await createNodeGpu() });
    try {
      await session.loadModel(filesSource([
        json('config.json', { eos_token_id: 511 }), json('tokenizer_config.json', { eos_token: '<|endoftext|>' }),
        { name: 'tokenizer.json', bytes: read('tokenizer.json') }, { name: 'model.safetensors', bytes: read('model.safetensors') },
      ]));
      const g = golden.templates.chatml.generationPrompt[0]!;
      const messages = conversations[g.conversation]!.slice(0, g.messages);
      const viaText = await session.generate(g.text, { maxNewTokens: 6, stopTokens: [] });
      const viaChat = await session.generate(messages, { maxNewTokens: 6, stopTokens: [] });
      expect(viaChat.tokens).toEqual(viaText.tokens);
      // Teach it one answer, then it answers with it and stops at <|im_end|>.
      const taught = conversations[0]!;
      await session.prepareData({ records: Array.from({ length: 8 }, () => ({ messages: taught })) }, { seqLen: 64, heldOut: 0 });
      await session.train({ steps: 40, batchSize: 4, learningRate: 2e-2, schedule: 'constant', lora: { rank: 8, alpha: 16 }, checkpointEvery: 0 });
      const answer = await session.generate(taught.slice(0, -1), { maxNewTokens: 24 });
      expect(answer.text).toBe(taught.at(-1)!.content);
      expect(answer.tokens.at(-1)).toBe(513);
      const before = await session.generate(taught.slice(0, -1), { maxNewTokens: 24, useAdapter: false });
      expect(before.text).not.toBe(answer.text);
      // Another model: the template chosen for this one does not follow it.
      await session.loadModel(nodeDirectorySource(`${FIXTURES}models/tiny-llama`));
      await expect(session.generate([{ role: 'user', content: 'hi' }])).rejects.toThrowError(ChatTemplateError);
    } finally {
      session.dispose();
    }
  });

  it('bad data: typed errors with line numbers or counted skips; the data already prepared stays', async () => {
    const session = await chatSession();
    try {
      const good = await session.prepareData({ records: conversations.map((messages) => ({ messages })) }, { seqLen: 128, heldOut: 0.25 });
      const lines = dataText.trim().split('\n');
      const broken = [...lines.slice(0, 2), '{"messages": [ oops', ...lines.slice(2)].join('\n');
      const cases: Array<[string, Parameters<TrainerSession['prepareData']>[0], Parameters<TrainerSession['prepareData']>[1], RegExp]> = [
        ['empty file', { file: new File([], 'empty.jsonl') }, {}, /empty\.jsonl: it is empty/],
        ['not JSON', { file: new File([broken], 'chats.jsonl') }, {}, /chats\.jsonl, line 3: not valid JSON/],
        ['unknown role', { content: JSON.stringify({ messages: [{ role: 'bot', content: 'x' }] }), format: 'jsonl' }, {}, /line 1: message 1 has role "bot"/],
        ['no assistant turn', { records: [{ messages: [{ role: 'user', content: 'hello?' }] }] }, {}, /records, record 1: the conversation has no assistant turn/],
        ['longer than seqLen', { records: [{ messages: conversations[5]! }] }, { seqLen: 16, overlong: 'error' }, /record 1: the example has \d+ tokens, more than seqLen \+ 1 = 17/],
      ];
      for (const [what, input, options, message] of cases) {
        const error = await session.prepareData(input, { seqLen: 128, ...options }).catch((e: unknown) => e);
        expect(error, what).toBeInstanceOf(DataFormatError);
        expect((error as Error).message, what).toMatch(message);
      }
      const skipped = await session.prepareData({ file: new File([broken], 'chats.jsonl') }, { seqLen: 128, onInvalid: 'skip', heldOut: 0 });
      expect(skipped).toMatchObject({ examples: 16, skippedCount: 1, skipped: [{ line: 3, message: expect.stringMatching(/not valid JSON/) }] });
      // A model without a chat template: a clear error, or the template the app chose.
      const plain = new TrainerSession({ gpu: await createNodeGpu() });
      try {
        await plain.loadModel(nodeDirectorySource(`${FIXTURES}models/tiny-llama`));
        await expect(plain.prepareData({ records: [{ messages: conversations[0]! }] })).rejects.toThrowError(ChatTemplateError);
        await expect(plain.generate([{ role: 'user', content: 'hi' }])).rejects.toThrowError(/ships no chat template/);
        const chosen = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";
        const info = await plain.prepareData({ records: conversations.map((messages) => ({ messages })) }, { seqLen: 128, chatTemplate: chosen });
        expect(info.chatTemplate).toBe('prepareData({ chatTemplate })');
        expect((await plain.generate([{ role: 'user', content: 'hi' }], { maxNewTokens: 2 })).tokens.length).toBeGreaterThan(0);
        await expect(plain.prepareData({ records: [{ messages: conversations[0]! }] }, { chatTemplate: '{% if %}' })).rejects.toThrowError(ChatTemplateError);
      } finally {
        plain.dispose();
      }
      await expect(session.train({ steps: 1, restoreBest: true })).rejects.toThrowError(InvalidArgumentError);
      // Failed calls left the last good preparation (the skipping one) in place: training runs on it.
      const summary = await session.train({ steps: 2, batchSize: 4, checkpointEvery: 0 });
      expect(summary.stopped).toBe('completed');
      expect(good.examples).toBe(16);
    } finally {
      session.dispose();
    }
  });
});
