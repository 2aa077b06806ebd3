// Records a loop's progress in the destination's metadata document (next to its checkpoint),
// for `mmm status`: at once when the loop's state changes (started, retrying, recovered,
// stopped, failed) or it meets a change it does not replicate (a warning), and every
// `intervalMs` while it runs, which is also its heartbeat. Writes go out one at a time; a write
// asked for while one is in flight is made once it ends, with the progress as it is then, so a
// slow destination never queues more than one.

import os from 'node:os';
import type { Link, ReplicationConfigStore } from '../config/store.ts';
import type { Logger } from '../log.ts';
import type { LoopObserver, LoopState } from '../replicate/source-loop.ts';
import type { LoopProgress } from './progress.ts';
import type { LoopStatusRecord } from './record.ts';

export interface StatusRecorderOptions {
  sourceId: string;
  links: readonly Link[];
  store: ReplicationConfigStore;
  progress: LoopProgress;
  /** Milliseconds between heartbeats while the loop runs. */
  intervalMs: number;
  logger: Logger;
}

export class StatusRecorder implements LoopObserver {
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private queued = false;

  constructor(private readonly options: StatusRecorderOptions) {}

  state(state: LoopState): void {
    if (state === 'running' || state === 'retrying') {
      this.timer ??= setInterval(() => this.record(), this.options.intervalMs).unref();
    } else {
      clearInterval(this.timer);
      this.timer = undefined;
    }
    this.record();
  }

  /** A warning is recorded at once: an operator should not wait for the next heartbeat. */
  warning(): void {
    this.record();
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.writing;
  }

  private record(): void {
    if (this.queued) return;
    this.queued = true;
    this.writing = this.writing.then(async () => {
      this.queued = false;
      try {
        await this.options.store.saveStatus(this.options.sourceId, this.snapshot());
      } catch (err) {
        // The destination is unreachable: the loop reports that itself, and retries.
        this.options.logger.debug({ err: (err as Error).message }, 'could not record the status');
      }
    });
  }

  private snapshot(): Omit<LoopStatusRecord, 'heartbeat'> {
    const { progress, links, intervalMs } = this.options;
    return {
      state: progress.current ?? 'running',
      since: progress.since ?? new Date(),
      every: intervalMs / 1000,
      host: os.hostname(),
      pid: process.pid,
      links: links.map(({ src, dst }) => ({ src, dst })),
      applied: { ...progress.applied },
      missed: progress.missed,
      refused: progress.refused,
      ...(progress.error && { error: { ...progress.error } }),
      warnings: progress.warnings.map((w) => ({ ...w })),
    };
  }
}
