// How `replicate --copy` shows its progress: a bar on a terminal (documents, bytes, rate, ETA),
// otherwise a log line every few seconds, so that a copy run from a script leaves a trail.

import cliProgress from 'cli-progress';
import type { CopyProgress } from '../copy/copy.ts';
import type { Logger } from '../log.ts';

const LOG_EVERY_MS = 5_000;

export interface ProgressDisplay {
  update(progress: CopyProgress): void;
  stop(): void;
}

/** `stream` a terminal: a bar; otherwise log lines through `logger`. */
export function progressDisplay(stream: NodeJS.WritableStream, logger: Logger): ProgressDisplay {
  return (stream as { isTTY?: boolean }).isTTY ? new Bar(stream) : new LogLines(logger);
}

/** Documents a second, and seconds left at that rate (undefined before a rate is known). */
export function rateAndEta(progress: CopyProgress): { rate: number; etaSeconds: number | undefined } {
  const rate = progress.copiedHere / Math.max(0.001, progress.elapsedMs / 1000);
  const left = Math.max(0, progress.total - progress.copied);
  return { rate, etaSeconds: rate > 0 ? left / rate : undefined };
}

export function durationText(seconds: number): string {
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} m`;
}

const mb = (bytes: number) => (bytes / (1024 * 1024)).toFixed(1);

class Bar implements ProgressDisplay {
  private readonly bar: cliProgress.SingleBar;
  private started = false;

  constructor(stream: NodeJS.WritableStream) {
    this.bar = new cliProgress.SingleBar(
      {
        stream: stream as NodeJS.WriteStream,
        format: 'copying [{bar}] {percentage}% | {value}/{total} documents | {mb} of {totalMb} MB | {rate} docs/s | ETA {etaText}',
        hideCursor: true,
        clearOnComplete: false,
      },
      cliProgress.Presets.shades_classic,
    );
  }

  update(progress: CopyProgress): void {
    const { rate, etaSeconds } = rateAndEta(progress);
    // The count is the server's estimate when the copy began: the collection may have grown.
    const total = Math.max(progress.total, progress.copied);
    const payload = { mb: mb(progress.bytes), totalMb: mb(progress.totalBytes), rate: Math.round(rate), etaText: etaSeconds === undefined ? '?' : durationText(etaSeconds) };
    if (!this.started) {
      this.bar.start(total, progress.copied, payload);
      this.started = true;
    } else {
      this.bar.setTotal(total);
      this.bar.update(progress.copied, payload);
    }
  }

  stop(): void {
    if (this.started) this.bar.stop();
  }
}

class LogLines implements ProgressDisplay {
  private last = 0;

  constructor(private readonly logger: Logger) {}

  update(progress: CopyProgress): void {
    if (Date.now() - this.last < LOG_EVERY_MS) return;
    this.last = Date.now();
    const { rate, etaSeconds } = rateAndEta(progress);
    this.logger.info(
      { copied: progress.copied, total: progress.total, bytes: progress.bytes, rate: Math.round(rate), etaSeconds: etaSeconds === undefined ? null : Math.round(etaSeconds) },
      'copying',
    );
  }

  stop(): void {}
}
