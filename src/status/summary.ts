// The run's summary log: for each loop, one info line every interval (a minute by default)
// saying what it did since the last one: writes applied (and per second), lag, state.
// Nothing per operation: that is the `applied` line, at debug.

import type { Link } from '../config/store.ts';
import type { Logger } from '../log.ts';
import type { LoopObserver, LoopState } from '../replicate/source-loop.ts';
import type { AppliedCounts, LoopProgress } from './progress.ts';

export interface SummaryLogOptions {
  links: readonly Link[];
  progress: LoopProgress;
  /** Milliseconds between lines. */
  intervalMs: number;
  /** Carries the loop's source and destination. */
  logger: Logger;
  clock?: () => number;
}

export class SummaryLog implements LoopObserver {
  private timer: NodeJS.Timeout | undefined;
  private last: { at: number; applied: AppliedCounts } | undefined;
  private readonly clock: () => number;

  constructor(private readonly options: SummaryLogOptions) {
    this.clock = options.clock ?? Date.now;
  }

  state(state: LoopState): void {
    if (state === 'running' || state === 'retrying') {
      this.last ??= { at: this.clock(), applied: { ...this.options.progress.applied } };
      this.timer ??= setInterval(() => this.log(), this.options.intervalMs).unref();
    } else {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private log(): void {
    const { progress, links, logger } = this.options;
    const now = this.clock();
    const since = this.last ?? { at: now, applied: { i: 0, u: 0, d: 0 } };
    const applied = {
      i: progress.applied.i - since.applied.i,
      u: progress.applied.u - since.applied.u,
      d: progress.applied.d - since.applied.d,
    };
    const seconds = Math.max((now - since.at) / 1000, 0.001);
    const lag = progress.lagSeconds();
    logger.info(
      {
        state: progress.current,
        links: links.map((l) => `${l.dst} <= ${l.src}`),
        applied,
        opsPerSec: round((applied.i + applied.u + applied.d) / seconds, 2),
        lagSeconds: lag === undefined ? null : round(lag, 1),
      },
      'summary',
    );
    this.last = { at: now, applied: { ...progress.applied } };
  }
}

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}
