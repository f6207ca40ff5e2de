/**
 * Supervised fine-tuning data against goldens from scripts/make_chat_fixtures.py: Python's Jinja2
 * renders the same ChatML (SmolLM2-Instruct) and Llama 3 templates, the repo's Python BPE encodes
 * the pieces, and the masks follow TRL's completion-only rules. webtune must reproduce the text,
 * the ids and the masks exactly, and the padded rows of the PyTorch batch golden.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ChatTemplateError, DataFormatError } from '@webtune/errors';
import { IGNORE_INDEX } from '@webtune/gpu';
import { ChatTemplate, createTokenizer, shippedChatTemplate, type ChatMessage, type Tokenizer } from '@webtune/model';
import { FIXTURES } from '../../model/test/tiny-models.js';
import { exampleToRow, readRecords, recordEvaluation, EMPTY_EVALUATION_STATE, rowsFromExamples, tokenizeConversation, tokenizePromptCompletion } from '../src/index.js';

interface TemplateGolden {
  bos: string; bosId: number; eos: string; eosId: number; pad: string | null; padId: number;
  conversations: Array<{ rendered: string; pieces: Array<{ text: string; learned: boolean }>; ids: number[]; mask: number[] }>;
  generationPrompt: Array<{ conversation: number; messages: number; text: string; ids: number[] }>;
}
const golden = JSON.parse(readFileSync(`${FIXTURES}goldens/chat.json`, 'utf8')) as {
  templates: Record<'chatml' | 'llama3', TemplateGolden>;
  promptCompletion: Array<{ ids: number[]; mask: number[] }>;
  batch: { seqLen: number; conversations: number[]; inputIds: number[][]; labels: number[][]; lengths: number[] };
};
const read = (path: string) => readFileSync(`${FIXTURES}${path}`, 'utf8');
const jsonl = (path: string) => read(path).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
const conversations = jsonl('goldens/chat-data.jsonl').map((r) => r['messages'] as ChatMessage[]);
const pairs = jsonl('goldens/chat-qa.jsonl') as Array<{ prompt: string; completion: string }>;

function variant(name: 'chatml' | 'llama3'): { tok: Tokenizer; template: ChatTemplate } {
  const tokenizerJson = JSON.parse(read('models/tiny-chat/tokenizer.json')) as object;
  const config = JSON.parse(read(name === 'chatml' ? 'models/tiny-chat/tokenizer_config.json' : 'goldens/chat-llama3/tokenizer_config.json')) as Record<string, unknown>;
  const tok = createTokenizer(tokenizerJson, config);
  const shipped = shippedChatTemplate(config, name === 'llama3' ? read('goldens/chat-llama3/chat_template.jinja') : undefined)!;
  return { tok, template: ChatTemplate.parse(shipped.text, tok.specialTokens, shipped.source) };
}

describe('chat templates (@huggingface/jinja against Python Jinja2)', () => {
  for (const name of ['chatml', 'llama3'] as const) {
    it(`${name}: renders every conversation as Jinja2 does, with and without the generation prompt`, () => {
      const { tok, template } = variant(name);
      const g = golden.templates[name];
      expect(tok.specialTokens.bos_token).toBe(g.bos);
      expect(tok.specialTokens.eos_token).toBe(g.eos);
      conversations.forEach((messages, i) => expect(template.render(messages), `conversation ${i}`).toBe(g.conversations[i]!.rendered));
      for (const p of g.generationPrompt) {
        const text = template.render(conversations[p.conversation]!.slice(0, p.messages), { addGenerationPrompt: true });
        expect(text).toBe(p.text);
        expect(tok.encode(text, { addSpecialTokens: false })).toEqual(p.ids);
      }
    });

    it(`${name}: conversation ids and assistant masks match the golden exactly`, () => {
      const { tok, template } = variant(name);
      conversations.forEach((messages, i) => {
        const e = tokenizeConversation(messages, template, (t) => tok.encode(t, { addSpecialTokens: false }));
        expect(e.ids, `conversation ${i}`).toEqual(golden.templates[name].conversations[i]!.ids);
        expect([...e.mask], `conversation ${i}`).toEqual(golden.templates[name].conversations[i]!.mask);
      });
    });
  }

  it('finds where a template source comes from and what ends an assistant turn', () => {
    const { tok, template } = variant('chatml');
    expect(template.source).toBe('tokenizer_config.json');
    expect(template.endOfTurn()).toBe('<|im_end|>\n');
    expect(tok.specialTokenId('<|im_end|>')).toBe(513);
    expect(variant('llama3').template.endOfTurn()).toBe('<|eot_id|>');
    expect(variant('llama3').template.source).toBe('chat_template.jinja');
    expect(shippedChatTemplate({ chat_template: [{ name: 'tool_use', template: 'x' }, { name: 'default', template: 'y' }] })?.text).toBe('y');
    expect(shippedChatTemplate({})).toBeUndefined();
  });

  it('refuses a template that does not parse, and reports errors the template raises', () => {
    expect(() => ChatTemplate.parse('{% for m in messages %}')).toThrowError(ChatTemplateError);
    const strict = ChatTemplate.parse("{% if messages[0]['role'] == 'assistant' %}{{ raise_exception('Conversations must start with the user') }}{% endif %}ok");
    expect(() => strict.render([{ role: 'assistant', content: 'x' }])).toThrowError(/must start with the user/);
    expect(strict.render([{ role: 'user', content: 'x' }])).toBe('ok');
  });

  it('refuses completion-only loss where a template rewrites earlier turns', () => {
    // Drops every assistant turn but the last, as some reasoning templates drop earlier thoughts.
    const rewriting = ChatTemplate.parse(
      "{% for m in messages %}{% if m['role'] != 'assistant' or loop.last %}{{ m['role'] }}: {{ m['content'] }}\n{% endif %}{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}",
    );
    const { tok } = variant('chatml');
    const encode = (t: string) => tok.encode(t, { addSpecialTokens: false });
    expect(() => tokenizeConversation(conversations[1]!, rewriting, encode)).toThrowError(ChatTemplateError);
    // Learning every token needs no boundary.
    expect([...tokenizeConversation(conversations[1]!, rewriting, encode, false).mask].every((m) => m === 1)).toBe(true);
  });
});

describe('prompt/completion pairs (TRL rule)', () => {
  it('ids and completion masks match the golden; completionOnly: false learns every token', () => {
    const { tok } = variant('chatml');
    pairs.forEach((p, i) => {
      const e = tokenizePromptCompletion(p.prompt, p.completion, (t) => tok.encode(t), { id: tok.eosTokenId, text: tok.specialTokens.eos_token });
      expect(e.ids, `pair ${i}`).toEqual(golden.promptCompletion[i]!.ids);
      expect([...e.mask], `pair ${i}`).toEqual(golden.promptCompletion[i]!.mask);
      expect(e.mismatch).toBe(false);
      expect([...tokenizePromptCompletion(p.prompt, p.completion, (t) => tok.encode(t), { id: tok.eosTokenId }, false).mask].every((m) => m === 1)).toBe(true);
    });
  });

  it('flags a pair whose tokens merge across the boundary', () => {
    const { tok } = variant('chatml');
    // "Answer" + "s" merges into a different token than "Answer" alone.
    expect(tokenizePromptCompletion('Question: two\nAnswer', 's here', (t) => tok.encode(t), { id: tok.eosTokenId, text: tok.specialTokens.eos_token }).mismatch).toBe(true);
  });
});

describe('rows', () => {
  it('the padded, truncated rows of the PyTorch batch golden', () => {
    const { tok, template } = variant('chatml');
    const b = golden.batch;
    const examples = b.conversations.map((c, i) => ({ example: tokenizeConversation(conversations[c]!, template, (t) => tok.encode(t, { addSpecialTokens: false })), line: i + 1 }));
    const rows = rowsFromExamples(examples, { seqLen: b.seqLen, padId: golden.templates.chatml.padId });
    expect(rows.rows).toHaveLength(b.inputIds.length);
    rows.rows.forEach((row, r) => {
      const { ids, targets } = row as { ids: Uint32Array; targets: Uint32Array };
      expect([...ids]).toEqual(b.inputIds[r]);
      expect([...targets].map((t) => (t === IGNORE_INDEX ? -100 : t))).toEqual(b.labels[r]);
    });
    // Rows 1-3 are cut inside an answer; row 0 is padded.
    expect(rows.truncatedExamples).toBe(examples.filter((e) => e.example.ids.length > b.seqLen + 1).length);
    expect(rows.truncatedTokens).toBe(examples.reduce((n, e) => n + Math.max(0, e.example.ids.length - b.seqLen - 1), 0));
    expect(rows.paddingTokens).toBe(b.lengths.reduce((n, l) => n + b.seqLen - l, 0));
  });

  it('an example whose learned tokens are all cut off is an error, or skipped and counted', () => {
    const example = { ids: [1, 2, 3, 4, 5, 6], mask: Uint8Array.from([0, 0, 0, 0, 1, 1]) };
    expect(exampleToRow(example, 3, 0).learnedTokens).toBe(0);
    expect(() => rowsFromExamples([{ example, line: 7 }], { seqLen: 3, padId: 0 })).toThrowError(/line 7: truncating it/);
    const skipped = rowsFromExamples([{ example, line: 7 }], { seqLen: 3, padId: 0, onInvalid: 'skip' });
    expect(skipped.rows).toHaveLength(0);
    expect(skipped.skipped).toEqual([{ line: 7, message: expect.stringMatching(/no completion token/) }]);
    expect(() => rowsFromExamples([{ example, line: 2 }], { seqLen: 4, padId: 0, overlong: 'error' })).toThrowError(DataFormatError);
    expect(rowsFromExamples([{ example, line: 2 }], { seqLen: 4, padId: 0, overlong: 'skip' }).skipped[0]!.message).toMatch(/more than seqLen \+ 1 = 5/);
    const cut = rowsFromExamples([{ example, line: 2 }], { seqLen: 4, padId: 0 });
    expect(cut).toMatchObject({ truncatedExamples: 1, truncatedTokens: 1, learnedTokens: 1 });
  });
});

describe('readRecords', () => {
  const file = (text: string, name: string) => new File([text], name);

  it('reads JSONL, a JSON array, CSV and text, and detects the kind', async () => {
    const jl = await readRecords(file(read('goldens/chat-data.jsonl'), 'chats.jsonl'));
    expect(jl.kind).toBe('messages');
    expect(jl.records).toHaveLength(16);
    expect(jl.records[0]).toEqual({ messages: conversations[0] });
    const arr = await readRecords(file(JSON.stringify(pairs), 'qa.json'));
    expect(arr).toMatchObject({ kind: 'prompt-completion', records: pairs });
    const csv = await readRecords(file('prompt,completion\r\n"Q: a, b?\nA:"," yes ""quoted"""\nplain,text\n\n', 'qa.csv'));
    expect(csv.records).toEqual([{ prompt: 'Q: a, b?\nA:', completion: ' yes "quoted"' }, { prompt: 'plain', completion: 'text' }]);
    expect(csv.lines).toEqual([2, 4]);
    // A text file is one document, byte for byte (line endings and the last newline kept).
    const txt = await readRecords(file('line one\r\nline two\n', 'notes.txt'));
    expect(txt).toMatchObject({ kind: 'text', records: [{ text: 'line one\r\nline two\n' }] });
    // Inside a quoted CSV field the line ending is kept as written.
    expect((await readRecords(file('text\r\n"a\r\nb"\r\n', 'crlf.csv'))).records).toEqual([{ text: 'a\r\nb' }]);
    // No name: JSONL if the first line is a JSON object, a JSON array if the whole text is one, else text.
    expect((await readRecords('{"text":"a"}\n{"text":"b"}')).records).toEqual([{ text: 'a' }, { text: 'b' }]);
    expect((await readRecords('[{"text":"a"}]')).records).toEqual([{ text: 'a' }]);
    expect((await readRecords('[1] is a footnote.\n{see} this')).records).toEqual([{ text: '[1] is a footnote.\n{see} this' }]);
  });

  it('names the line of a bad record, or skips and counts it when asked', async () => {
    const lines = [
      JSON.stringify({ messages: conversations[0] }),
      JSON.stringify({ messages: conversations[1] }),
      '{"messages": [ not json',
      JSON.stringify({ messages: [{ role: 'robot', content: 'beep' }, { role: 'assistant', content: 'x' }] }),
      JSON.stringify({ messages: [{ role: 'user', content: 'no answer' }] }),
      JSON.stringify({ prompt: 'a', completion: 'b' }),
      JSON.stringify({ messages: conversations[2] }),
    ].join('\n');
    const error = await readRecords(file(lines, 'chats.jsonl')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DataFormatError);
    expect(error).toMatchObject({ line: 3, source: 'chats.jsonl' });
    expect((error as Error).message).toMatch(/^chats\.jsonl, line 3: not valid JSON/);
    const r = await readRecords(file(lines, 'chats.jsonl'), { onInvalid: 'skip' });
    expect(r.records).toHaveLength(3);
    expect(r.lines).toEqual([1, 2, 7]);
    expect(r.skippedCount).toBe(4);
    expect(r.skipped.map((s) => s.line)).toEqual([3, 4, 5, 6]);
    expect(r.skipped[1]!.message).toMatch(/role "robot"; the roles are system, user, assistant/);
    expect(r.skipped[2]!.message).toMatch(/no assistant turn/);
    expect(r.skipped[3]!.message).toMatch(/"prompt-completion" record, but the data is "messages"/);
  });

  it('refuses empty data, data with no usable record, and unbounded lines', async () => {
    await expect(readRecords(file('', 'empty.jsonl'))).rejects.toThrowError(/empty\.jsonl: it is empty/);
    await expect(readRecords(file('\n\n', 'blank.jsonl'))).rejects.toThrowError(/it has no records/);
    await expect(readRecords(file('{"foo": 1}\n', 'x.jsonl'), { onInvalid: 'skip' })).rejects.toThrowError(/all 1 records were skipped/);
    await expect(readRecords(file('x'.repeat(5000), 'long.jsonl'), { maxRecordChars: 1000 })).rejects.toThrowError(/longer than 1000 characters/);
    await expect(readRecords(file(`{"text":"a"}\n${'x'.repeat(5000)}\n{"text":"b"}\n`, 'long.jsonl'), { maxRecordChars: 1000 })).rejects.toThrowError(/line 2: the line is longer than 1000/);
    // A JSON array names records by index, not line.
    await expect(readRecords(file('[{"text":"a"},{"nope":1}]', 'x.json'))).rejects.toThrowError(/x\.json, record 2: it has none of the fields/);
    await expect(readRecords([{ prompt: [{ role: 'user', content: 'hi' }], completion: [{ role: 'assistant', content: 'yo' }] }])).rejects.toThrowError(/record 1: conversational prompt\/completion .* one "messages" list/);
    await expect(readRecords(file('text\n"never closed\n', 'bad.csv'))).rejects.toThrowError(/bad\.csv, line 2: a quoted field is never closed/);
    await expect(readRecords(file('question,answer\na,b\n', 'bad.csv'))).rejects.toThrowError(/names neither a "text" column nor "prompt" and "completion"/);
    await expect(readRecords(file('{"a":1}', 'x.json'))).rejects.toThrowError(/must hold an array/);
  });

  it('reports progress while streaming a large file', async () => {
    const line = JSON.stringify({ messages: conversations[3] });
    const big = file(Array.from({ length: 20000 }, () => line).join('\n'), 'big.jsonl');
    const seen: number[] = [];
    const r = await readRecords(big, { onProgress: (p) => seen.push(p.bytesRead) });
    expect(r.records).toHaveLength(20000);
    expect(seen.length).toBeGreaterThan(2);
    expect(seen.at(-1)).toBe(big.size);
    expect([...seen].sort((a, b) => a - b)).toEqual(seen);
  });
});

describe('early stopping (transformers EarlyStoppingCallback with load_best_model_at_end)', () => {
  // Transcribed from transformers/trainer_callback.py: a metric improves when it is lower than
  // state.best_metric and |metric - best| > threshold; the counter resets on an improvement and
  // stops training at `patience`; best_metric (what load_best_model_at_end restores) is the strict
  // minimum, updated whether or not the change passed the threshold.
  function transformersRule(losses: number[], patience: number, threshold: number): { stopAfter: number | undefined; bestIndex: number } {
    let best: number | undefined;
    let bestIndex = 0;
    let counter = 0;
    for (let i = 0; i < losses.length; i++) {
      const m = losses[i]!;
      if (best === undefined || (m < best && Math.abs(m - best) > threshold)) counter = 0;
      else counter++;
      if (best === undefined || m < best) [best, bestIndex] = [m, i];
      if (counter >= patience) return { stopAfter: i, bestIndex };
    }
    return { stopAfter: undefined, bestIndex };
  }

  const cases: Array<[string, number[], number, number]> = [
    ['falls then rises', [3, 2.5, 2.4, 2.45, 2.6, 2.7], 2, 0],
    ['small gains below minDelta still move the best', [1.0, 0.995, 0.99, 0.985, 0.98], 3, 0.01],
    ['a gain above minDelta restarts the count', [2, 1.999, 1.5, 1.6, 1.7, 1.8], 2, 0.1],
    ['never stops', [5, 4, 3, 2, 1], 1, 0],
  ];
  for (const [what, losses, patience, minDelta] of cases) {
    it(what, () => {
      const want = transformersRule(losses, patience, minDelta);
      let state = EMPTY_EVALUATION_STATE;
      let stopAfter: number | undefined;
      for (let i = 0; i < losses.length && stopAfter === undefined; i++) {
        state = recordEvaluation(state, { step: i + 1, loss: losses[i]! }, minDelta).state;
        if (state.sinceImprovement >= patience) stopAfter = i;
      }
      expect(stopAfter).toBe(want.stopAfter);
      expect(state.best).toEqual({ step: want.bestIndex + 1, loss: losses[want.bestIndex] });
    });
  }
});
