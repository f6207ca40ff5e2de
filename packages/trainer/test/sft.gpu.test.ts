/**
 * Supervised fine-tuning on Dawn against PyTorch (scripts/make_chat_fixtures.py): a batch of four
 * ChatML conversations, rendered by Jinja2, right-padded and truncated to 64 positions, with the
 * loss on assistant tokens only. The masked loss and every LoRA gradient must match PyTorch's, and
 * each row's loss must be the same alone (unpadded) as in the padded batch.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { useNodeContext } from '../../gpu/test/node-context.js';
import { ChatTemplate, createTokenizer, LoraAdapter, resolveLoraConfig, Transformer, uploadBaseModel, type ChatMessage } from '@webtune/model';
import { batchFromWindows, exampleToRow, tokenizeConversation } from '../src/index.js';
import { f32, FIXTURES, host, relativeError, tinyModel, type LoraVariant } from '../../model/test/tiny-models.js';

const gpu = useNodeContext();
const LOSS_ATOL = 1e-5;
const GRAD_RTOL = 2e-5;

const golden = JSON.parse(readFileSync(`${FIXTURES}goldens/chat.json`, 'utf8')) as {
  batch: { seqLen: number; inputIds: number[][]; labels: number[][]; lengths: number[]; lora: Omit<LoraVariant, 'logits' | 'greedy'> & { rowLosses: number[]; rowTokens: number[] } };
  baseLoss: number;
};

function rows(seq: number, pick: number[] = golden.batch.inputIds.map((_, i) => i)) {
  const ids = new Uint32Array(pick.length * seq);
  const targets = new Uint32Array(pick.length * seq);
  pick.forEach((r, b) => {
    for (let j = 0; j < seq; j++) {
      ids[b * seq + j] = golden.batch.inputIds[r]![j]!;
      const label = golden.batch.labels[r]![j]!;
      targets[b * seq + j] = label === -100 ? 0xffffffff : label;
    }
  });
  return { ids, targets, batch: pick.length, seq };
}

describe('SFT batch against PyTorch', () => {
  it('masked loss and every LoRA gradient; each row scores the same without its padding', async () => {
    const { config, reader } = tinyModel('tiny-chat');
    const base = await uploadBaseModel(gpu(), config, reader);
    const model = await Transformer.create(gpu(), base);
    const v = golden.batch.lora;
    const lora = resolveLoraConfig(config, { rank: v.config.r, alpha: v.config.alpha, targets: v.config.targets });
    const adapter = LoraAdapter.fromTensors(gpu(), config, lora, new Map(Object.entries(v.adapters).map(([k, t]) => [k, host(t)])));
    try {
      const batch = rows(golden.batch.seqLen);
      expect(Math.abs((await model.evaluate(batch)).loss - golden.baseLoss)).toBeLessThan(LOSS_ATOL);
      model.setAdapter(adapter);
      const { loss, tokens } = await model.trainStep(batch);
      expect(tokens).toBe(v.rowTokens.reduce((a, b) => a + b, 0));
      expect(Math.abs(loss - v.loss)).toBeLessThan(LOSS_ATOL);
      const grads = await adapter.readGradients();
      expect([...grads.keys()].sort()).toEqual(Object.keys(v.grads).sort());
      for (const [key, expected] of Object.entries(v.grads)) expect(relativeError(grads.get(key)!.data, f32(expected)), key).toBeLessThan(GRAD_RTOL);
      // Right padding: a row alone, cut to its real length, gives the loss PyTorch computed for it unpadded.
      for (let r = 0; r < golden.batch.lengths.length; r++) {
        const alone = rows(golden.batch.lengths[r]!, [r]);
        const e = await model.evaluate(alone);
        expect(e.tokens).toBe(v.rowTokens[r]);
        expect(Math.abs(e.loss - v.rowLosses[r]!), `row ${r}`).toBeLessThan(LOSS_ATOL);
      }
    } finally {
      adapter.release();
      model.release();
      base.release();
    }
  });
});

describe('batches cut to their longest row', () => {
  it('give the same loss and gradients as the full padded length', async () => {
    const { config, reader } = tinyModel('tiny-chat');
    const tokenizerConfig = JSON.parse(readFileSync(`${FIXTURES}models/tiny-chat/tokenizer_config.json`, 'utf8')) as Record<string, unknown>;
    const tok = createTokenizer(JSON.parse(readFileSync(`${FIXTURES}models/tiny-chat/tokenizer.json`, 'utf8')) as object, tokenizerConfig);
    const template = ChatTemplate.parse(tokenizerConfig['chat_template'] as string, tok.specialTokens);
    const conversations = readFileSync(`${FIXTURES}goldens/chat-data.jsonl`, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { messages: ChatMessage[] }).messages);
    const examples = conversations.map((c) => tokenizeConversation(c, template, (t) => tok.encode(t, { addSpecialTokens: false })));
    const shortest = [...examples].sort((a, b) => a.ids.length - b.ids.length).slice(0, 4);
    const rows = shortest.map((e) => exampleToRow(e, 128, tok.padTokenId!).row as { ids: Uint32Array; targets: Uint32Array; length: number });
    const cut = batchFromWindows(rows);
    const full = batchFromWindows(rows.map(({ ids, targets }) => ({ ids, targets })));
    expect(full.seq).toBe(128);
    expect(cut.seq).toBe(Math.ceil(Math.max(...rows.map((r) => r.length)) / 16) * 16);
    expect(cut.seq).toBeLessThan(128);

    const base = await uploadBaseModel(gpu(), config, reader);
    const model = await Transformer.create(gpu(), base);
    const v = golden.batch.lora;
    const lora = resolveLoraConfig(config, { rank: v.config.r, alpha: v.config.alpha, targets: v.config.targets });
    const run = async (batch: typeof cut) => {
      const adapter = LoraAdapter.fromTensors(gpu(), config, lora, new Map(Object.entries(v.adapters).map(([k, t]) => [k, host(t)])));
      model.setAdapter(adapter);
      try {
        const r = await model.trainStep(batch);
        return { ...r, grads: await adapter.readGradients() };
      } finally {
        model.setAdapter(undefined);
        adapter.release();
      }
    };
    try {
      const a = await run(full);
      const b = await run(cut);
      expect(b.tokens).toBe(a.tokens);
      expect(Math.abs(b.loss - a.loss)).toBeLessThan(1e-6);
      for (const [key, g] of a.grads) expect(relativeError(b.grads.get(key)!.data, g.data), key).toBeLessThan(GRAD_RTOL);
    } finally {
      model.release();
      base.release();
    }
  });
});
