/**
 * Instruction-tuning benchmark: what the SFT path costs next to plain-text training.
 * - Data preparation: conversations per second through template rendering (@huggingface/jinja)
 *   and tokenization with completion-only masks, for 10,000 conversations, next to the same
 *   text tokenized as plain documents.
 * - Training steps at one batch size and seqLen on the bundled demo model: padded SFT rows (each
 *   batch cut to its longest row) vs packed text windows of the same text. Real tokens per second
 *   is the useful rate; learned tokens per second is what the completion-only mask leaves of it.
 */
import { readFileSync } from 'node:fs';
import { ChatTemplate, createTokenizer, type ChatMessage } from '@webtune/model';
import { nodeDirectorySource } from '@webtune/model/node';
import { TrainerSession } from '@webtune/sdk';
import { tokenizeConversation, tokenizeDocuments } from '@webtune/trainer';

export interface SftBenchRow {
  benchmark: string;
  variant: string;
  /** Median over runs. */
  medianMs: number;
  perSecond: number;
  unit: string;
  note?: string;
}

const FIXTURES = 'packages/model/test/fixtures';
const DEMO = 'demo-app/public/models/webtune-demo';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** 10,000 distinct conversations: the fixture set with a number woven into every turn. */
function conversations(n: number): ChatMessage[][] {
  const base = readFileSync(`${FIXTURES}/goldens/chat-data.jsonl`, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { messages: ChatMessage[] }).messages);
  return Array.from({ length: n }, (_, i) => base[i % base.length]!.map((m) => ({ ...m, content: `${m.content} (${i})` })));
}

export async function runSftBench(gpu: GPU, log: (line: string) => void, runs = 3): Promise<SftBenchRow[]> {
  const rows: SftBenchRow[] = [];
  // --- data preparation (CPU)
  const tokenizerConfig = JSON.parse(readFileSync(`${FIXTURES}/models/tiny-chat/tokenizer_config.json`, 'utf8')) as Record<string, unknown>;
  const tok = createTokenizer(JSON.parse(readFileSync(`${FIXTURES}/models/tiny-chat/tokenizer.json`, 'utf8')) as object, tokenizerConfig);
  const template = ChatTemplate.parse(tokenizerConfig['chat_template'] as string, tok.specialTokens, 'tokenizer_config.json');
  const convs = conversations(10_000);
  const encode = (t: string) => tok.encode(t, { addSpecialTokens: false });
  const times = { render: [] as number[], sft: [] as number[], text: [] as number[] };
  const texts = convs.map((c) => template.render(c));
  for (let r = 0; r < runs; r++) {
    let t0 = performance.now();
    for (const c of convs) template.render(c);
    times.render.push(performance.now() - t0);
    t0 = performance.now();
    for (const c of convs) tokenizeConversation(c, template, encode);
    times.sft.push(performance.now() - t0);
    t0 = performance.now();
    tokenizeDocuments(encode, texts, tok.eosTokenId);
    times.text.push(performance.now() - t0);
  }
  const per = (ms: number) => (convs.length * 1000) / ms;
  rows.push({ benchmark: 'prepare 10,000 conversations', variant: 'render only (ChatML, @huggingface/jinja)', medianMs: median(times.render), perSecond: per(median(times.render)), unit: 'conversations/s' });
  rows.push({ benchmark: 'prepare 10,000 conversations', variant: 'render + tokenize + assistant mask (webtune SFT)', medianMs: median(times.sft), perSecond: per(median(times.sft)), unit: 'conversations/s', note: 'renders each conversation 1 + 2 x (assistant turns) times to find the turn boundaries' });
  rows.push({ benchmark: 'prepare 10,000 conversations', variant: 'the rendered text tokenized as plain documents', medianMs: median(times.text), perSecond: per(median(times.text)), unit: 'conversations/s' });
  for (const r of rows) log(`sft: ${r.variant}: ${r.medianMs.toFixed(0)} ms, ${r.perSecond.toFixed(0)} ${r.unit}`);

  // --- training steps at one shape on the demo model
  const batchSize = 4;
  const seqLen = 128;
  const steps = 8;
  const session = new TrainerSession({ gpu });
  try {
    await session.loadModel(nodeDirectorySource(DEMO));
    // The plain-text variant trains on the very text the SFT rows hold: the demo model's own template, rendered.
    const demoConfig = JSON.parse(readFileSync(`${DEMO}/tokenizer_config.json`, 'utf8')) as Record<string, unknown>;
    const demoTemplate = ChatTemplate.parse(demoConfig['chat_template'] as string, { eos_token: '<|endoftext|>' }, 'tokenizer_config.json');
    const chats = convs.slice(0, 64).map((messages) => ({ messages }));
    const variants: Array<{ name: string; prepare: () => Promise<{ padding: number; learned: number; positions: number }> }> = [
      {
        name: 'SFT: one conversation per row, right-padded, each batch cut to its longest row, assistant tokens learned',
        prepare: async () => {
          const d = await session.prepareData({ records: chats }, { seqLen, heldOut: 0 });
          const positions = d.trainSequences * seqLen;
          return { padding: d.paddingTokens / positions, learned: d.learnedTokens / positions, positions };
        },
      },
      {
        name: 'plain text: the same conversations packed into windows, every token learned',
        prepare: async () => {
          const d = await session.prepareData({ texts: chats.map((c) => demoTemplate.render(c.messages)) }, { seqLen, heldOut: 0 });
          return { padding: 0, learned: 1, positions: d.trainSequences * seqLen };
        },
      },
    ];
    // Interleaved (A B A B ...), so a slower moment of the machine does not land on one variant only.
    const stepMs = variants.map(() => [] as number[]);
    const shapes = new Map<number, { padding: number; learned: number }>();
    for (let round = 0; round < runs; round++) {
      for (const [i, v] of variants.entries()) {
        shapes.set(i, await v.prepare());
        await session.train({ steps: 2, batchSize, checkpointEvery: 0, runId: 'warmup' });
        let last = performance.now();
        const times: number[] = [];
        await session.train({ steps, batchSize, checkpointEvery: 0, runId: 'bench', progressIntervalMs: 0 }, () => {
          const now = performance.now();
          times.push(now - last);
          last = now;
        });
        stepMs[i]!.push(...times.slice(1));
      }
    }
    for (const [i, v] of variants.entries()) {
      const ms = median(stepMs[i]!);
      const shape = shapes.get(i)!;
      // Real (not padding) tokens per step: batch x the mean real length of a row.
      const realPerSecond = (batchSize * seqLen * (1 - shape.padding) * 1000) / ms;
      rows.push({ benchmark: `train step, demo model, batch ${batchSize}, seqLen ${seqLen}`, variant: v.name, medianMs: ms, perSecond: realPerSecond, unit: 'real tokens/s',
        note: `${(100 * shape.padding).toFixed(0)}% of the rows' positions are padding; learned tokens/s ${((batchSize * seqLen * shape.learned * 1000) / ms).toFixed(0)}` });
      log(`sft: ${v.name}: ${ms.toFixed(0)} ms/step, ${realPerSecond.toFixed(0)} real tokens/s, ${rows.at(-1)!.note}`);
    }
  } finally {
    session.dispose();
  }
  return rows;
}
