/**
 * Accounting of every GPU buffer webtune allocates: live and peak bytes in total and by label.
 * Benchmarks and the memory planner read it; it never asks the driver, so it is exact for what
 * webtune owns and blind to everything else.
 */

export interface LabelUsage {
  liveBytes: number;
  peakBytes: number;
  buffers: number;
}

export interface MemorySnapshot {
  liveBytes: number;
  peakBytes: number;
  byLabel: Record<string, LabelUsage>;
}

export class MemoryTracker {
  private live = 0;
  private peak = 0;
  private readonly labels = new Map<string, LabelUsage>();

  allocated(label: string, bytes: number): void {
    this.live += bytes;
    this.peak = Math.max(this.peak, this.live);
    const usage = this.labels.get(label) ?? { liveBytes: 0, peakBytes: 0, buffers: 0 };
    usage.liveBytes += bytes;
    usage.buffers += 1;
    usage.peakBytes = Math.max(usage.peakBytes, usage.liveBytes);
    this.labels.set(label, usage);
  }

  released(label: string, bytes: number): void {
    this.live -= bytes;
    const usage = this.labels.get(label);
    if (usage) {
      usage.liveBytes -= bytes;
      usage.buffers -= 1;
    }
  }

  get liveBytes(): number {
    return this.live;
  }

  get peakBytes(): number {
    return this.peak;
  }

  /** Starts a new peak window at the current live size (e.g. before one training step). */
  resetPeak(): void {
    this.peak = this.live;
    for (const usage of this.labels.values()) usage.peakBytes = usage.liveBytes;
  }

  snapshot(): MemorySnapshot {
    const byLabel: Record<string, LabelUsage> = {};
    for (const [label, usage] of this.labels) byLabel[label] = { ...usage };
    return { liveBytes: this.live, peakBytes: this.peak, byLabel };
  }
}
