/**
 * Training records from what an app has: a string, an array, or a File. Three record kinds, as
 * Hugging Face TRL's SFTTrainer takes them: `{ text }` (language modelling), `{ prompt,
 * completion }` and `{ messages: [{ role, content }] }` (conversations). Files are JSONL, a JSON
 * array, CSV with a header row, or plain text (one document); JSONL, CSV and text are read as a
 * stream, line by line, so a large file never sits in memory as one string. A record that is not
 * usable is a DataFormatError with its line number, or, with `onInvalid: 'skip'`, skipped and
 * counted; nothing is dropped without being reported.
 */
import { DataFormatError } from '@webtune/errors';
import { chatMessageProblem, MAX_CHAT_MESSAGES, type ChatMessage } from '@webtune/model';

/** One training record: raw text, a prompt/completion pair, or a conversation (TRL's and the Hugging Face Hub's data set formats). */
export type DataRecord = { text: string } | { prompt: string; completion: string } | { messages: ChatMessage[] };
/** Which of the DataRecord shapes a data set holds (one kind per data set). */
export type RecordKind = 'text' | 'prompt-completion' | 'messages';
/** A data file's format: JSON Lines, a JSON array, CSV with a header row, or plain text (one document). */
export type FileFormat = 'jsonl' | 'json' | 'csv' | 'txt';

export interface ReadRecordsOptions {
  /**
   * The file's format; default from the file name (.jsonl/.ndjson, .json, .csv, .txt/.md), else
   * from the content: JSONL if its first line is a JSON object, a JSON array if the whole text is
   * one, otherwise plain text (CSV always needs its name or `format`).
   */
  format?: FileFormat;
  /** The records' kind; default from the first record. Every record must be of one kind. */
  kind?: RecordKind;
  /** 'error' (default): the first unusable record throws DataFormatError; 'skip': it is skipped and counted. */
  onInvalid?: 'error' | 'skip';
  /** Called as the file is read: bytes so far and records so far. */
  onProgress?: (p: ReadProgress) => void;
  /** Names the data in errors (default: the file's name, or 'the data'). */
  source?: string;
  /** The longest line (or JSON file) accepted, in characters; default 8 Mi. Bounds what one record can allocate. */
  maxRecordChars?: number;
}

export interface ReadProgress {
  bytesRead: number;
  totalBytes: number | undefined;
  records: number;
}

export interface SkippedRecord {
  /** 1-based line (JSONL, CSV) or index (JSON array, an array of records). */
  line: number;
  message: string;
}

export interface RecordsResult {
  kind: RecordKind;
  records: DataRecord[];
  /** The line (or 1-based index) each record came from, for errors found later (tokenizing, templates). */
  lines: number[];
  /** What `lines` count: lines of a file, or records of an array. */
  unit: 'line' | 'record';
  /** How many records were skipped (onInvalid: 'skip'), and the first 100 of them with the reason. */
  skippedCount: number;
  skipped: SkippedRecord[];
}

const MAX_SKIPPED_LISTED = 100;
const DEFAULT_MAX_RECORD_CHARS = 8 * 1024 * 1024;

/** The format a file name implies, if any. */
export function formatFromName(name: string | undefined): FileFormat | undefined {
  const ext = name?.toLowerCase().match(/\.([a-z]+)$/)?.[1];
  if (ext === 'jsonl' || ext === 'ndjson') return 'jsonl';
  if (ext === 'json') return 'json';
  if (ext === 'csv') return 'csv';
  if (ext === 'txt' || ext === 'md' || ext === 'text') return 'txt';
  return undefined;
}

/** The kind a record is, or a reason it is none. */
function kindOf(value: unknown): RecordKind | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'it is not an object';
  const r = value as Record<string, unknown>;
  if ('messages' in r) return 'messages';
  if ('prompt' in r || 'completion' in r) return 'prompt-completion';
  if ('text' in r) return 'text';
  const keys = Object.keys(r).slice(0, 5).join(', ');
  return `it has none of the fields "text", "prompt"/"completion" or "messages" (its fields: ${keys || 'none'})`;
}

/** The record, checked and reduced to the fields webtune uses; throws a plain Error with the reason. */
function checkRecord(value: Record<string, unknown>, kind: RecordKind): DataRecord {
  if (kind === 'text') {
    if (typeof value['text'] !== 'string') throw new Error('"text" is not a string');
    if (value['text'].trim() === '') throw new Error('"text" is empty');
    return { text: value['text'] };
  }
  if (kind === 'prompt-completion') {
    const { prompt, completion } = value;
    if (Array.isArray(prompt) || Array.isArray(completion)) {
      throw new Error('conversational prompt/completion (lists of messages) is not supported; put the turns in one "messages" list instead');
    }
    if (typeof prompt !== 'string' || typeof completion !== 'string') throw new Error('"prompt" and "completion" must both be strings');
    if (completion.trim() === '') throw new Error('"completion" is empty: there is nothing to learn');
    return { prompt, completion };
  }
  const messages = value['messages'];
  if (!Array.isArray(messages) || messages.length === 0) throw new Error('"messages" must be a non-empty list of { role, content }');
  if (messages.length > MAX_CHAT_MESSAGES) throw new Error(`the conversation has ${messages.length} messages, more than ${MAX_CHAT_MESSAGES}; split it`);
  const out: ChatMessage[] = [];
  messages.forEach((m: unknown, i) => {
    const problem = chatMessageProblem(m, `message ${i + 1}`);
    if (problem) throw new Error(problem);
    const { role, content } = m as ChatMessage;
    out.push({ role, content });
  });
  if (!out.some((m) => m.role === 'assistant')) throw new Error('the conversation has no assistant turn: there is nothing to learn');
  return { messages: out };
}

/** Collects records: checks each, keeps one kind, applies the onInvalid policy. */
class RecordSink {
  kind: RecordKind | undefined;
  readonly records: DataRecord[] = [];
  readonly lines: number[] = [];
  readonly skipped: SkippedRecord[] = [];
  skippedCount = 0;

  constructor(private readonly source: string, private readonly options: ReadRecordsOptions, private readonly unit: 'line' | 'record' = 'line') {
    this.kind = options.kind;
  }

  add(value: unknown, line: number): void {
    try {
      const found = kindOf(value);
      if (found !== 'text' && found !== 'prompt-completion' && found !== 'messages') throw new Error(found);
      if (this.kind === undefined) this.kind = found;
      if (found !== this.kind) throw new Error(`it is a "${found}" record, but the data is "${this.kind}" records; use one kind per data set`);
      this.records.push(checkRecord(value as Record<string, unknown>, this.kind));
      this.lines.push(line);
    } catch (cause) {
      this.reject((cause as Error).message, line, cause);
    }
  }

  reject(message: string, line: number, cause?: unknown): void {
    if (this.options.onInvalid !== 'skip') throw new DataFormatError(this.source, message, line, { cause, unit: this.unit });
    this.skippedCount++;
    if (this.skipped.length < MAX_SKIPPED_LISTED) this.skipped.push({ line, message });
  }

  result(): RecordsResult {
    if (this.records.length === 0) {
      const why = this.skippedCount > 0 ? `all ${this.skippedCount} records were skipped (first: line ${this.skipped[0]!.line}, ${this.skipped[0]!.message})` : 'it has no records';
      throw new DataFormatError(this.source, `${why}; there is nothing to train on`);
    }
    return { kind: this.kind!, records: this.records, lines: this.lines, unit: this.unit, skippedCount: this.skippedCount, skipped: this.skipped };
  }
}

const CHUNK_BYTES = 1 << 20;

/** A file's text in 1 MiB slices (never one read of the whole file), decoded as UTF-8 across slice boundaries. */
async function* streamText(blob: Blob): AsyncGenerator<{ text: string; bytesRead: number }> {
  const decoder = new TextDecoder('utf-8');
  for (let offset = 0; offset < blob.size; offset += CHUNK_BYTES) {
    const end = Math.min(offset + CHUNK_BYTES, blob.size);
    const last = end === blob.size;
    yield { text: decoder.decode(new Uint8Array(await blob.slice(offset, end).arrayBuffer()), { stream: !last }), bytesRead: end };
  }
}

/**
 * Lines of a file, one at a time, with the line ending they had ('\r\n', '\n', or '' for the
 * last) and the bytes read so far. No line may be longer than `maxChars`.
 */
async function* streamLines(blob: Blob, maxChars: number, source: string): AsyncGenerator<{ line: string; eol: string; bytesRead: number }> {
  let buffered = '';
  let lineNo = 0;
  const tooLong = () => new DataFormatError(source, `the line is longer than ${maxChars} characters; is this really line-based text?`, lineNo + 1);
  for await (const { text, bytesRead } of streamText(blob)) {
    buffered += text;
    let start = 0;
    let nl: number;
    while ((nl = buffered.indexOf('\n', start)) >= 0) {
      if (nl - start > maxChars) throw tooLong();
      lineNo++;
      const cr = nl > start && buffered[nl - 1] === '\r';
      yield { line: buffered.slice(start, cr ? nl - 1 : nl), eol: cr ? '\r\n' : '\n', bytesRead };
      start = nl + 1;
    }
    buffered = buffered.slice(start);
    if (buffered.length > maxChars) throw tooLong();
  }
  if (buffered.length > 0) yield { line: buffered.replace(/\r$/, ''), eol: '', bytesRead: blob.size };
}

/**
 * Reads records from a File/Blob, a string (`format` or sniffed), or an array of records.
 *
 * @example
 * const { kind, records } = await readRecords(file, { onInvalid: 'skip' }); // 'messages', [...]
 */
export async function readRecords(input: Blob | string | readonly unknown[], options: ReadRecordsOptions = {}): Promise<RecordsResult> {
  const name = typeof Blob !== 'undefined' && input instanceof Blob && 'name' in input ? (input as File).name : undefined;
  const source = options.source ?? name ?? 'the data';
  if (Array.isArray(input)) {
    const sink = new RecordSink(source, options, 'record');
    input.forEach((r, i) => sink.add(r, i + 1));
    return sink.result();
  }
  const blob = typeof input === 'string' ? new Blob([input]) : (input as Blob);
  if (blob.size === 0) throw new DataFormatError(source, 'it is empty');
  const maxChars = options.maxRecordChars ?? DEFAULT_MAX_RECORD_CHARS;
  const named = options.format ?? formatFromName(name);
  // A sniffed JSON array was parsed to be recognised; it is not parsed a second time.
  const { format, array } = named ? { format: named, array: undefined } : await sniffFormat(blob, maxChars);
  const sink = new RecordSink(source, options, format === 'json' ? 'record' : 'line');
  const progress = (bytesRead: number) => options.onProgress?.({ bytesRead, totalBytes: blob.size, records: sink.records.length });

  if (format === 'json') {
    (array ?? (await readJsonArray(blob, maxChars, source))).forEach((r, i) => sink.add(r, i + 1));
    progress(blob.size);
    return sink.result();
  }

  if (format === 'txt') {
    // One document, exactly as prepareData({ file }) always read a text file (line endings kept),
    // so token windows and checkpoints of earlier runs still match; read in slices for the progress.
    let text = '';
    for await (const chunk of streamText(blob)) {
      text += chunk.text;
      progress(chunk.bytesRead);
    }
    if (text.trim() !== '') sink.add({ text }, 1);
    progress(blob.size);
    return sink.result();
  }

  let lineNo = 0;
  let lastReport = 0;
  const report = (bytesRead: number) => {
    if (bytesRead - lastReport >= CHUNK_BYTES) progress((lastReport = bytesRead));
  };
  if (format === 'jsonl') {
    for await (const { line, bytesRead } of streamLines(blob, maxChars, source)) {
      lineNo++;
      if (line.trim() === '') continue;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch (cause) {
        // The parser counts within this one line; its "line 1" would contradict the file's line number.
        sink.reject(`not valid JSON (${(cause as Error).message.replace(/\(line 1 column (\d+)\)/, '(column $1)')})`, lineNo, cause);
        continue;
      }
      sink.add(value, lineNo);
      report(bytesRead);
    }
  } else {
    const csv = new CsvRecords(source, maxChars);
    for await (const { line, eol, bytesRead } of streamLines(blob, maxChars, source)) {
      for (const row of csv.push(line, eol)) {
        if ('error' in row) sink.reject(row.error, row.line);
        else sink.add(row.record, row.line);
      }
      report(bytesRead);
    }
    csv.end();
  }
  progress(blob.size);
  return sink.result();
}

/** A .json data file: one array of records, read whole (so bounded in size). */
async function readJsonArray(blob: Blob, maxChars: number, source: string): Promise<unknown[]> {
  if (blob.size > maxChars * 4) throw new DataFormatError(source, `a JSON array file is read whole and this one is ${blob.size} bytes; use JSONL (one record per line) for large data`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(await blob.text());
  } catch (cause) {
    throw new DataFormatError(source, `it is not valid JSON (${(cause as Error).message})`, undefined, { cause });
  }
  if (!Array.isArray(parsed)) throw new DataFormatError(source, 'a .json data file must hold an array of records (for one record per line, use .jsonl)');
  return parsed;
}

/**
 * JSONL if the first line is a JSON object, a JSON array if the whole text is one (returned, parsed),
 * else plain text: only what parses as JSON is read as JSON, so prose that happens to start with
 * "[" or "{" is text.
 */
async function sniffFormat(blob: Blob, maxChars: number): Promise<{ format: FileFormat; array: unknown[] | undefined }> {
  const head = (await blob.slice(0, 64 * 1024).text()).trimStart();
  if (head.startsWith('{')) {
    const firstLine = head.split('\n', 1)[0]!;
    try {
      const value: unknown = JSON.parse(firstLine);
      if (typeof value === 'object' && value !== null && !Array.isArray(value)) return { format: 'jsonl', array: undefined };
    } catch {
      // not JSON: text
    }
  } else if (head.startsWith('[') && blob.size <= maxChars * 4) {
    try {
      const value: unknown = JSON.parse(await blob.text());
      if (Array.isArray(value)) return { format: 'json', array: value };
    } catch {
      // not JSON: text
    }
  }
  return { format: 'txt', array: undefined };
}

type CsvRow = { record: Record<string, string>; line: number } | { error: string; line: number };

/**
 * CSV as RFC 4180 writes it: a header row naming the fields (text, or prompt and completion),
 * comma separators, fields in double quotes may hold commas, newlines and "" for a quote. Fed one
 * line at a time; a quoted field may span lines.
 */
class CsvRecords {
  private header: string[] | undefined;
  private fields: string[] = [];
  private field = '';
  private quoted = false;
  private startLine = 0;
  private lineNo = 0;
  private pendingChars = 0;
  private previousEol = '\n';

  constructor(private readonly source: string, private readonly maxChars: number) {}

  /** One line and the line ending it had (kept inside a quoted field, as RFC 4180 readers keep it). */
  *push(line: string, eol = '\n'): Generator<CsvRow> {
    this.lineNo++;
    if (!this.quoted) {
      if (line.trim() === '' && this.fields.length === 0 && this.field === '') return;
      this.startLine = this.lineNo;
      this.pendingChars = 0;
    } else {
      this.field += this.previousEol;
    }
    this.previousEol = eol;
    this.pendingChars += line.length;
    if (this.pendingChars > this.maxChars) throw new DataFormatError(this.source, `a quoted field runs for more than ${this.maxChars} characters; is a closing quote missing?`, this.startLine);
    for (let i = 0; i < line.length; i++) {
      const ch = line[i]!;
      if (this.quoted) {
        if (ch === '"') {
          if (line[i + 1] === '"') {
            this.field += '"';
            i++;
          } else {
            this.quoted = false;
          }
        } else {
          this.field += ch;
        }
      } else if (ch === '"' && this.field === '') {
        this.quoted = true;
      } else if (ch === ',') {
        this.fields.push(this.field);
        this.field = '';
      } else {
        this.field += ch;
      }
    }
    if (this.quoted) return; // the row continues on the next line
    this.fields.push(this.field);
    const row = this.fields;
    this.fields = [];
    this.field = '';
    if (!this.header) {
      this.header = row.map((h) => h.trim().toLowerCase());
      if (!this.header.includes('text') && !(this.header.includes('prompt') && this.header.includes('completion'))) {
        throw new DataFormatError(this.source, `the CSV header (${row.join(', ')}) names neither a "text" column nor "prompt" and "completion" columns`, this.startLine);
      }
      return;
    }
    const record: Record<string, string> = {};
    this.header.forEach((h, i) => {
      if (h === 'text' || h === 'prompt' || h === 'completion') record[h] = row[i] ?? '';
    });
    if (row.length !== this.header.length) {
      yield { error: `it has ${row.length} fields but the header has ${this.header.length}`, line: this.startLine };
      return;
    }
    yield { record, line: this.startLine };
  }

  /** At the end of the file: a field still open is an error. */
  end(): void {
    if (this.quoted) throw new DataFormatError(this.source, 'a quoted field is never closed', this.startLine);
  }
}
