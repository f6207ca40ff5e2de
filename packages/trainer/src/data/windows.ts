/**
 * Training rows and their order. From text, documents are tokenized, joined with the
 * end-of-sequence token and cut into windows of seq + 1 tokens (inputs are the first seq, targets
 * the last seq, so every token is predicted once); supervised examples (examples.ts) are rows of
 * seq inputs and seq targets with IGNORE_INDEX where there is no loss. Batches come in a seeded
 * shuffled order per epoch; the position (epoch, cursor, RNG state) is plain data for checkpoints.
 */
import { InvalidArgumentError } from '@webtune/errors';
import { IGNORE_INDEX } from '@webtune/gpu';
import { Rng, type RngState, type TokenBatch } from '@webtune/model';

/**
 * One training row: a window of seq + 1 tokens (inputs and targets are the same tokens shifted by
 * one), or seq inputs with seq targets (IGNORE_INDEX where a position has no loss).
 */
export type TrainingRow = Uint32Array | {
  ids: Uint32Array;
  targets: Uint32Array;
  /** Real positions before the right padding (absent: all of them are real). */
  length?: number;
};

/** Batches of right-padded rows run only as long as their longest row, rounded up to this (fewer distinct workspace shapes). */
export const TRIM_MULTIPLE = 16;

/** The row's sequence length. */
export function rowLength(row: TrainingRow): number {
  return row instanceof Uint32Array ? row.length - 1 : row.ids.length;
}

/** Non-overlapping windows of `seq + 1` tokens (stride `seq`); a short tail is dropped. */
export function packTokens(tokens: ArrayLike<number>, seq: number): Uint32Array[] {
  if (!Number.isInteger(seq) || seq < 1) throw new InvalidArgumentError(`Sequence length must be a positive integer, got ${seq}.`);
  const out: Uint32Array[] = [];
  for (let start = 0; start + seq + 1 <= tokens.length; start += seq) {
    out.push(Uint32Array.from({ length: seq + 1 }, (_, i) => tokens[start + i]!));
  }
  return out;
}

/** Token ids of several documents, each followed by `eos` when given. */
export function tokenizeDocuments(encode: (text: string) => number[], documents: readonly string[], eos?: number): number[] {
  const out: number[] = [];
  for (const doc of documents) {
    out.push(...encode(doc));
    if (eos !== undefined) out.push(eos);
  }
  return out;
}

/**
 * A batch from rows of one length. `padRows` more rows of ignored targets are appended (evaluation
 * pads its last batch to the workspace's batch size this way; they add no loss). When every row
 * says how long it really is, the batch is cut to its longest row (rounded up to TRIM_MULTIPLE):
 * under causal attention the positions after a row's end change nothing before it, so the loss
 * and gradients are the same and the padding costs no compute.
 */
export function batchFromWindows(rows: readonly TrainingRow[], padRows = 0): TokenBatch {
  const full = rowLength(rows[0]!);
  let longest = 0;
  for (const r of rows) longest = Math.max(longest, r instanceof Uint32Array || r.length === undefined ? full : r.length);
  const seq = Math.min(full, Math.max(TRIM_MULTIPLE, Math.ceil(longest / TRIM_MULTIPLE) * TRIM_MULTIPLE));
  const n = rows.length + padRows;
  const ids = new Uint32Array(n * seq);
  const targets = new Uint32Array(n * seq).fill(IGNORE_INDEX);
  rows.forEach((w, b) => {
    if (rowLength(w) !== full) throw new InvalidArgumentError(`All rows must have sequence length ${full}; row ${b} has ${rowLength(w)}.`);
    if (w instanceof Uint32Array) {
      ids.set(w.subarray(0, seq), b * seq);
      targets.set(w.subarray(1, seq + 1), b * seq);
    } else {
      if (w.targets.length !== full) throw new InvalidArgumentError(`Row ${b} has ${w.ids.length} inputs but ${w.targets.length} targets.`);
      ids.set(w.ids.subarray(0, seq), b * seq);
      targets.set(w.targets.subarray(0, seq), b * seq);
    }
  });
  return { ids, targets, batch: n, seq };
}

export interface DataCursor {
  epoch: number;
  /** Next position in this epoch's order. */
  index: number;
  /** RNG state at the start of this epoch (the order is re-derived from it). */
  epochRng: RngState;
}

export class BatchStream {
  private order: number[] = [];
  private cursor: DataCursor;

  constructor(
    private readonly windows: readonly TrainingRow[],
    private readonly batchSize: number,
    seedOrCursor: number | DataCursor,
    private readonly shuffle = true,
  ) {
    if (windows.length < batchSize) {
      throw new InvalidArgumentError(`The data gives ${windows.length} sequences but a batch needs ${batchSize}; add text or lower the batch size or sequence length.`);
    }
    this.cursor = typeof seedOrCursor === 'number' ? { epoch: 0, index: 0, epochRng: new Rng(seedOrCursor).state } : { ...seedOrCursor };
    this.reorder();
  }

  private reorder(): void {
    this.order = this.windows.map((_, i) => i);
    if (this.shuffle) new Rng(this.cursor.epochRng).shuffle(this.order);
  }

  next(): TokenBatch {
    return batchFromWindows(this.nextRows());
  }

  /** The next batch's rows, in order (a caller that splits them into smaller micro-batches). */
  nextRows(): TrainingRow[] {
    if (this.cursor.index + this.batchSize > this.order.length) {
      // Next epoch: a new order from the RNG carried on from the last one.
      const rng = new Rng(this.cursor.epochRng);
      rng.nextU32();
      this.cursor = { epoch: this.cursor.epoch + 1, index: 0, epochRng: rng.state };
      this.reorder();
    }
    const picked = this.order.slice(this.cursor.index, this.cursor.index + this.batchSize).map((i) => this.windows[i]!);
    this.cursor = { ...this.cursor, index: this.cursor.index + this.batchSize };
    return picked;
  }

  get position(): DataCursor {
    return { ...this.cursor };
  }
}
