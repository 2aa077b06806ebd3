// What one loop of a run has done so far, kept in memory from the loop's observer hooks: its
// state and last error, what it applied, and how far behind its source it is. The status
// recorder, the metrics and the summary log all read it.

import type { Timestamp } from 'mongodb';
import type { LinkWarning } from '../replicate/commands.ts';
import type { BatchReport, LoopObserver, LoopState } from '../replicate/source-loop.ts';

export interface AppliedCounts {
  i: number;
  u: number;
  d: number;
}

/** A change on a replicated namespace that mmm did not replicate, as status keeps it. */
export interface WarningNote {
  command: string;
  ns: string;
  message: string;
  /** When the source logged the change (its oplog entry's seconds). */
  at: Date;
}

/** How many warnings a loop keeps: the newest. */
export const KEPT_WARNINGS = 5;

export class LoopProgress implements LoopObserver {
  /** The loop's state; undefined until it starts. */
  current: LoopState | undefined;
  /** When the loop started. */
  since: Date | undefined;
  /** The last error: the one the loop is retrying after, or the one it stopped on. */
  error: { message: string; at: Date } | undefined;
  readonly applied: AppliedCounts = { i: 0, u: 0, d: 0 };
  /** Updates whose document the destination did not have. */
  missed = 0;
  /** Writes from this source the destination refused and keeps in mmm.refused (across runs). */
  refused = 0;
  /** Oplog entries read, replicated or not, and the batches they came in. */
  entries = 0;
  batches = 0;
  checkpoint: Timestamp | undefined;
  /** The newest warnings, oldest first; one repeated is kept once, with its latest time. */
  readonly warnings: WarningNote[] = [];
  /** Source wall-clock time of the newest entry read, when the source logged one. */
  private lastWall: Date | undefined;
  /** The last read found nothing new: the loop has applied all the source had. */
  private caughtUp = false;

  constructor(private readonly clock: () => number = Date.now) {}

  state(state: LoopState, error?: Error): void {
    this.since ??= new Date(this.clock());
    this.current = state;
    if (error) this.error = { message: error.message, at: new Date(this.clock()) };
    if (state !== 'running') this.caughtUp = false;
  }

  batch(report: BatchReport): void {
    const { stats } = report;
    this.applied.i += stats.inserted;
    this.applied.u += stats.updated;
    this.applied.d += stats.deleted;
    this.missed += stats.missed;
    this.entries += report.entries;
    this.batches++;
    this.checkpoint = report.checkpoint;
    this.lastWall = report.lastWall ?? this.lastWall;
    this.caughtUp = false;
  }

  refusedKept(kept: number): void {
    this.refused = kept;
  }

  idle(): void {
    this.caughtUp = true;
  }

  warning(warning: LinkWarning): void {
    const { command, ns, message } = warning;
    const same = this.warnings.findIndex((w) => w.command === command && w.ns === ns && w.message === message);
    if (same !== -1) this.warnings.splice(same, 1);
    this.warnings.push({ command, ns, message, at: new Date(warning.ts.t * 1000) });
    if (this.warnings.length > KEPT_WARNINGS) this.warnings.shift();
  }

  /** Writes applied, of every kind. */
  get appliedTotal(): number {
    return this.applied.i + this.applied.u + this.applied.d;
  }

  /**
   * Seconds the loop is behind its source, by this machine's clock: 0 while the last read found
   * nothing new, else the age of the newest entry read (of the checkpoint when the source logs
   * no wall time). Undefined until the loop has read something or found nothing to read.
   */
  lagSeconds(): number | undefined {
    if (this.current === 'running' && this.caughtUp) return 0;
    const newest = this.lastWall?.getTime() ?? (this.checkpoint ? this.checkpoint.t * 1000 : undefined);
    if (newest === undefined) return undefined;
    return Math.max(0, (this.clock() - newest) / 1000);
  }
}
