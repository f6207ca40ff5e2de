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
import { CHAT_ROLES, type ChatMessage } from '@webtune/model';

export type DataRecord = { text: string } | { prompt: string; completion: string } | { messages: ChatMessage[] };
export type RecordKind = 'text' | 'prompt-completion' | 'messages';
export type FileFormat = 'jsonl' | 'json' | 'csv' | 'txt';

export interface ReadRecordsOptions {
  /** The file's format; default from the file name (.jsonl/.ndjson, .json, .csv, .txt/.md), else from its first character. */
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
    if (typeof prompt !== 'string' || typeof completion !== 'string') throw new Error('"prompt" and "completion" must both be strings');
    if (completion.trim() === '') throw new Error('"completion" is empty: there is nothing to learn');
    return { prompt, completion };
  }
  const messages = value['messages'];
  if (!Array.isArray(messages) || messages.length === 0) throw new Error('"messages" must be a non-empty list of { role, content }');
  const out: ChatMessage[] = [];
  messages.forEach((m: unknown, i) => {
    if (typeof m !== 'object' || m === null) throw new Error(`message ${i + 1} is not an object with role and content`);
    const { role, content } = m as { role?: unknown; content?: unknown };
    if (typeof role !== 'string' || !(CHAT_ROLES as readonly string[]).includes(role)) {
      throw new Error(`message ${i + 1} has role ${JSON.stringify(role)}; the roles are ${CHAT_ROLES.join(', ')}`);
    }
    if (typeof content !== 'string') throw new Error(`message ${i + 1} has no text content (content must be a string)`);
    out.push({ role: role as ChatMessage['role'], content });
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

  constructor(private readonly source: string, private readonly options: ReadRecordsOptions) {
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
    if (this.options.onInvalid !== 'skip') throw new DataFormatError(this.source, message, line, { cause });
    this.skippedCount++;
    if (this.skipped.length < MAX_SKIPPED_LISTED) this.skipped.push({ line, message });
  }

  result(): RecordsResult {
    if (this.records.length === 0) {
      const why = this.skippedCount > 0 ? `all ${this.skippedCount} records were skipped (first: line ${this.skipped[0]!.line}, ${this.skipped[0]!.message})` : 'it has no records';
      throw new DataFormatError(this.source, `${why}; there is nothing to train on`);
    }
    return { kind: this.kind!, records: this.records, lines: this.lines, skippedCount: this.skippedCount, skipped: this.skipped };
  }
}

const CHUNK_BYTES = 1 << 20;

/**
 * Lines of a file, one at a time, with the bytes read so far. The file is read in 1 MiB slices
 * (not one string), and a line may not grow past `maxChars`.
 */
async function* streamLines(blob: Blob, maxChars: number, source: string): AsyncGenerator<{ line: string; bytesRead: number }> {
  const decoder = new TextDecoder('utf-8');
  let buffered = '';
  let lineNo = 0;
  for (let offset = 0; offset < blob.size; offset += CHUNK_BYTES) {
    const bytesRead = Math.min(offset + CHUNK_BYTES, blob.size);
    const last = bytesRead === blob.size;
    buffered += decoder.decode(new Uint8Array(await blob.slice(offset, bytesRead).arrayBuffer()), { stream: !last });
    let start = 0;
    let nl: number;
    while ((nl = buffered.indexOf('\n', start)) >= 0) {
      lineNo++;
      yield { line: buffered.slice(start, nl).replace(/\r$/, ''), bytesRead };
      start = nl + 1;
    }
    buffered = buffered.slice(start);
    if (buffered.length > maxChars) throw new DataFormatError(source, `a line is longer than ${maxChars} characters; is this really line-based text?`, lineNo + 1);
  }
  if (buffered.length > 0) yield { line: buffered.replace(/\r$/, ''), bytesRead: blob.size };
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
  const sink = new RecordSink(source, options);
  if (Array.isArray(input)) {
    input.forEach((r, i) => sink.add(r, i + 1));
    return sink.result();
  }
  const blob = typeof input === 'string' ? new Blob([input]) : (input as Blob);
  if (blob.size === 0) throw new DataFormatError(source, 'it is empty');
  const maxChars = options.maxRecordChars ?? DEFAULT_MAX_RECORD_CHARS;
  const format = options.format ?? formatFromName(name) ?? (await sniffFormat(blob));
  const progress = (bytesRead: number) => options.onProgress?.({ bytesRead, totalBytes: blob.size, records: sink.records.length });

  if (format === 'json') {
    if (blob.size > maxChars * 4) throw new DataFormatError(source, `a JSON array file is read whole and this one is ${blob.size} bytes; use JSONL (one record per line) for large data`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(await blob.text());
    } catch (cause) {
      throw new DataFormatError(source, `it is not valid JSON (${(cause as Error).message})`, undefined, { cause });
    }
    if (!Array.isArray(parsed)) throw new DataFormatError(source, 'a .json data file must hold an array of records (for one record per line, use .jsonl)');
    parsed.forEach((r, i) => sink.add(r, i + 1));
    progress(blob.size);
    return sink.result();
  }

  if (format === 'txt') {
    // One document, as prepareData({ file }) always read a text file; read as a stream for the progress.
    let text = '';
    let lastReport = 0;
    for await (const { line, bytesRead } of streamLines(blob, maxChars, source)) {
      text += (text.length > 0 ? '\n' : '') + line;
      if (bytesRead - lastReport >= CHUNK_BYTES) progress((lastReport = bytesRead));
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
        sink.reject(`not valid JSON (${(cause as Error).message})`, lineNo, cause);
        continue;
      }
      sink.add(value, lineNo);
      report(bytesRead);
    }
  } else {
    const csv = new CsvRecords(source, maxChars);
    for await (const { line, bytesRead } of streamLines(blob, maxChars, source)) {
      for (const row of csv.push(line)) {
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

/** JSON array, JSONL or text, from the first character that is not whitespace. */
async function sniffFormat(blob: Blob): Promise<FileFormat> {
  const head = (await blob.slice(0, 4096).text()).trimStart();
  if (head.startsWith('[')) return 'json';
  if (head.startsWith('{')) return 'jsonl';
  return 'txt';
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

  constructor(private readonly source: string, private readonly maxChars: number) {}

  *push(line: string): Generator<CsvRow> {
    this.lineNo++;
    if (!this.quoted) {
      if (line.trim() === '' && this.fields.length === 0 && this.field === '') return;
      this.startLine = this.lineNo;
      this.pendingChars = 0;
    } else {
      this.field += '\n';
    }
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
