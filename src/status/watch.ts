// Everything that watches a run's loops, as one `observe` option for runReplication: per loop,
// its progress (./progress.ts), the status recorded in the metadata (./recorder.ts), the
// summary log (./summary.ts), and, when asked for, Prometheus metrics (../metrics/metrics.ts).

import type { Logger } from '../log.ts';
import type { ReplicationMetrics } from '../metrics/metrics.ts';
import type { RunOptions } from '../replicate/runner.ts';
import type { LoopObserver } from '../replicate/source-loop.ts';
import { LoopProgress } from './progress.ts';
import { StatusRecorder } from './recorder.ts';
import { SummaryLog } from './summary.ts';

export interface WatchOptions {
  logger: Logger;
  /** Milliseconds between status records (heartbeats) of a running loop. */
  statusIntervalMs: number;
  /** Milliseconds between summary lines of a loop; 0 for none. */
  summaryIntervalMs: number;
  metrics?: ReplicationMetrics;
}

export const WATCH_DEFAULTS = {
  statusIntervalMs: 5_000,
  summaryIntervalMs: 60_000,
} as const satisfies Partial<WatchOptions>;

export function watchLoops(options: WatchOptions): NonNullable<RunOptions['observe']> {
  // A loop restarted to follow new links (../replicate/runner.ts) goes on with its progress:
  // counters, warnings and lag carry over, as for the user it is the same replication.
  const progressOf = new Map<string, LoopProgress>();
  return ({ source, destination, links, store }) => {
    const key = `${source.id}>${destination.id}`;
    const progress = progressOf.get(key) ?? new LoopProgress();
    progressOf.set(key, progress);
    const logger = options.logger.child({ source: source.name, destination: destination.name });
    const observers: LoopObserver[] = [
      progress, // first: the others read it
      new StatusRecorder({ sourceId: source.id, links, store, progress, intervalMs: options.statusIntervalMs, logger }),
    ];
    if (options.summaryIntervalMs > 0) {
      observers.push(new SummaryLog({ links, progress, intervalMs: options.summaryIntervalMs, logger }));
    }
    if (options.metrics) observers.push(options.metrics.observer({ source: source.name, destination: destination.name }, progress));
    return combineObservers(observers, logger);
  };
}

/**
 * One observer that calls each of `observers` in order. A hook that throws is logged and does
 * not stop the others, nor the loop (which observers must never disturb).
 */
export function combineObservers(observers: readonly LoopObserver[], logger: Logger): LoopObserver {
  const each = (hook: string, call: (o: LoopObserver) => void) => {
    for (const o of observers) {
      try {
        call(o);
      } catch (err) {
        logger.error({ hook, err: (err as Error).message }, 'a loop observer failed');
      }
    }
  };
  return {
    state: (state, error) => each('state', (o) => o.state?.(state, error)),
    batch: (report) => each('batch', (o) => o.batch?.(report)),
    idle: () => each('idle', (o) => o.idle?.()),
    warning: (warning) => each('warning', (o) => o.warning?.(warning)),
    refusedKept: (kept) => each('refusedKept', (o) => o.refusedKept?.(kept)),
    close: async () => {
      await Promise.all(observers.map((o) => o.close?.()));
    },
  };
}
