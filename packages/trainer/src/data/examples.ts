/**
 * Supervised fine-tuning examples: a prompt/completion pair or a conversation becomes token ids
 * with a mask of the tokens the model learns (completion-only loss, as TRL's SFTTrainer computes
 * it with `completion_only_loss` / `assistant_only_loss`), then one training row of `seqLen`
 * inputs and targets, right-padded, with IGNORE_INDEX on every target that carries no loss.
 *
 * Conversations are rendered with the model's chat template and tokenized in pieces cut where
 * each assistant turn begins and ends: the prompt before an assistant turn is exactly
 * `render(messages[:i], add_generation_prompt=True)`, tokenized alone, which is what generation
 * encodes; a whole-string encode could merge characters across that boundary (byte-level BPE
 * joins '\n\n' + 'Hello' differently from '\n\n' alone), and then training and generation would
 * see different prompt tokens. scripts/make_chat_fixtures.py writes the same rule in Python.
 */
import { ChatTemplateError, DataFormatError } from '@webtune/errors';
import { IGNORE_INDEX } from '@webtune/gpu';
import type { ChatMessage, ChatTemplate } from '@webtune/model';
import type { TrainingRow } from './windows.js';

export interface TokenizedExample {
  ids: number[];
  /** 1 where the token is learned (it is a target with a loss), 0 where it is context. */
  mask: Uint8Array;
}

type Encode = (text: string) => number[];

/**
 * A conversation's ids and assistant mask (see the module comment for the rule). With
 * `completionOnly: false` every token is learned. Throws ChatTemplateError if the template
 * renders earlier turns differently once later turns are added (then no token boundary marks
 * where the assistant's turn begins).
 */
export function tokenizeConversation(messages: readonly ChatMessage[], template: ChatTemplate, encode: Encode, completionOnly = true): TokenizedExample {
  const full = template.render(messages);
  const cuts = new Set<number>([0, full.length]);
  const spans: Array<[number, number]> = [];
  messages.forEach((m, i) => {
    if (m.role !== 'assistant') return;
    const prompt = template.render(messages.slice(0, i), { addGenerationPrompt: true });
    const turn = template.render(messages.slice(0, i + 1));
    if (!turn.startsWith(prompt) || !full.startsWith(turn)) {
      if (!completionOnly) return; // every token is learned: no boundary is needed
      throw new ChatTemplateError(
        `The chat template from ${template.source} renders assistant turn ${i + 1} differently once the conversation goes on ` +
          '(its text before that turn is not a prefix of the whole conversation), so the turn cannot be located for completion-only loss. ' +
          'Train on conversations that end after this turn, or pass completionOnly: false.',
      );
    }
    cuts.add(prompt.length).add(turn.length);
    spans.push([prompt.length, turn.length]);
  });
  const points = [...cuts].sort((a, b) => a - b);
  const ids: number[] = [];
  const mask: number[] = [];
  for (let p = 0; p + 1 < points.length; p++) {
    const [start, end] = [points[p]!, points[p + 1]!];
    const learned = !completionOnly || spans.some(([s, e]) => start >= s && end <= e);
    for (const id of encode(full.slice(start, end))) {
      ids.push(id);
      mask.push(learned ? 1 : 0);
    }
  }
  return { ids, mask: Uint8Array.from(mask) };
}

/**
 * A prompt/completion pair as TRL tokenizes it (trl/trainer/sft_trainer.py): the prompt alone, and
 * prompt + completion followed by EOS (unless the completion already ends with the EOS token's
 * text); the tokens past the prompt's are learned. `mismatch` is true where the tokens of prompt +
 * completion do not start with the prompt's (a merge across the boundary; TRL warns, and so does
 * prepareData()).
 */
export function tokenizePromptCompletion(
  prompt: string, completion: string, encode: Encode, eos: { id: number | undefined; text?: string | undefined }, completionOnly = true,
): TokenizedExample & { mismatch: boolean } {
  const promptIds = encode(prompt);
  const ids = encode(prompt + completion);
  if (eos.id !== undefined && !(eos.text && completion.endsWith(eos.text))) ids.push(eos.id);
  const mismatch = promptIds.some((id, i) => ids[i] !== id);
  const mask = new Uint8Array(ids.length).fill(1);
  if (completionOnly) mask.fill(0, 0, Math.min(promptIds.length, ids.length));
  return { ids, mask, mismatch };
}

export interface RowResult {
  row: TrainingRow;
  /** Tokens cut off the end to fit seqLen + 1. */
  truncatedTokens: number;
  /** Targets with a loss in the row. */
  learnedTokens: number;
  /** Real (not padding) input positions. */
  length: number;
}

/**
 * One row of `seqLen` inputs and targets: the first seqLen + 1 tokens are kept (truncation keeps
 * the start, as TRL does), inputs are ids[0..m-1], targets ids[1..m] where the mask says learned,
 * else IGNORE_INDEX; then both are padded to seqLen (inputs with `padId`, targets ignored). Right
 * padding under causal attention: no real token attends to a pad, so a row's loss does not depend
 * on how much padding follows it.
 */
export function exampleToRow(example: TokenizedExample, seqLen: number, padId: number): RowResult {
  const kept = Math.min(example.ids.length, seqLen + 1);
  const ids = new Uint32Array(seqLen).fill(padId);
  const targets = new Uint32Array(seqLen).fill(IGNORE_INDEX);
  let learnedTokens = 0;
  for (let j = 0; j + 1 < kept; j++) {
    ids[j] = example.ids[j]!;
    if (example.mask[j + 1]) {
      targets[j] = example.ids[j + 1]!;
      learnedTokens++;
    }
  }
  const length = Math.max(kept - 1, 0);
  return { row: { ids, targets, length }, truncatedTokens: example.ids.length - kept, learnedTokens, length };
}

export interface ExampleOptions {
  seqLen: number;
  /** Learn only completion/assistant tokens (default true). */
  completionOnly?: boolean;
  /** An example longer than seqLen + 1 tokens: 'truncate' (default; counted), 'skip' (counted) or 'error'. */
  overlong?: 'truncate' | 'skip' | 'error';
  /** 'error' (default) or 'skip' an example with nothing to learn (e.g. truncation cut every assistant token). */
  onInvalid?: 'error' | 'skip';
  source?: string;
  /** What the examples' numbers count in errors: lines of a file (default) or records of an array. */
  unit?: 'line' | 'record';
}

export interface ExampleRows {
  rows: TrainingRow[];
  /** The line each row came from. */
  lines: number[];
  truncatedExamples: number;
  truncatedTokens: number;
  /** Examples left out (overlong: 'skip', nothing to learn with onInvalid: 'skip'), with line and reason. */
  skipped: Array<{ line: number; message: string }>;
  learnedTokens: number;
  /** Real input tokens and padding tokens over all rows (padding is compute spent on nothing). */
  inputTokens: number;
  paddingTokens: number;
  /** Prompt/completion pairs whose tokens merged across the boundary (see tokenizePromptCompletion). */
  boundaryMismatches: number;
}

/** Rows from tokenized examples, with the truncation and skip accounting prepareData() reports. */
export function rowsFromExamples(
  examples: Iterable<{ example: TokenizedExample; line: number; mismatch?: boolean }>,
  options: ExampleOptions & { padId: number },
): ExampleRows {
  const source = options.source ?? 'the data';
  const out: ExampleRows = { rows: [], lines: [], truncatedExamples: 0, truncatedTokens: 0, skipped: [], learnedTokens: 0, inputTokens: 0, paddingTokens: 0, boundaryMismatches: 0 };
  const refuse = (line: number, message: string, policy: 'error' | 'skip') => {
    if (policy === 'error') throw new DataFormatError(source, message, line, { unit: options.unit });
    out.skipped.push({ line, message });
  };
  for (const { example, line, mismatch } of examples) {
    const r = exampleToRow(example, options.seqLen, options.padId);
    if (r.truncatedTokens > 0) {
      const overlong = options.overlong ?? 'truncate';
      if (overlong !== 'truncate') {
        refuse(line, `the example has ${example.ids.length} tokens, more than seqLen + 1 = ${options.seqLen + 1}; raise seqLen, shorten it, or pass overlong: 'truncate'`, overlong);
        continue;
      }
    }
    if (r.learnedTokens === 0) {
      const why = r.truncatedTokens > 0 ? `truncating it to seqLen + 1 = ${options.seqLen + 1} tokens left no completion token to learn; raise seqLen or shorten its prompt` : 'it has no token to learn';
      refuse(line, why, options.onInvalid ?? 'error');
      continue;
    }
    if (r.truncatedTokens > 0) {
      out.truncatedExamples++;
      out.truncatedTokens += r.truncatedTokens;
    }
    if (mismatch) out.boundaryMismatches++;
    out.rows.push(r.row);
    out.lines.push(line);
    out.learnedTokens += r.learnedTokens;
    out.inputTokens += r.length;
    out.paddingTokens += options.seqLen - r.length;
  }
  return out;
}
