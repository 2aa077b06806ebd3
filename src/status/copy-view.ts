// A link being copied (`replicate --copy`), as `status` tells it: how far, and how long to go at
// the rate so far, from the progress the copy keeps on the destination (../copy/state.ts).

import type { CopyState } from '../copy/state.ts';

export interface CopyView {
  copied: number;
  /** The source's count when the copy began (the server's estimate): at least `copied`. */
  total: number;
  percent: number;
  /** At the copy's average rate; null before it has copied anything, or once interrupted. */
  etaSeconds: number | null;
  /** No batch written for a while: the copying process is gone; `replicate --copy` again resumes. */
  interrupted: boolean;
  /** When its last batch was written. */
  updated: string | null;
}

/** A copy with no batch for this long is taken for interrupted. */
const INTERRUPTED_SECONDS = 30;

export function copyView(copy: CopyState, now: Date): CopyView {
  const copied = copy.ranges.reduce((n, r) => n + r.copied, 0);
  const total = Math.max(copied, copy.header.total);
  const updates = copy.ranges.map((r) => r.updated?.getTime() ?? 0);
  const updated = Math.max(copy.header.started.getTime(), ...updates);
  const interrupted = (now.getTime() - updated) / 1000 > INTERRUPTED_SECONDS;
  const elapsed = (updated - copy.header.started.getTime()) / 1000;
  const rate = elapsed > 0 ? copied / elapsed : 0;
  return {
    copied,
    total,
    percent: total === 0 ? 100 : Math.floor((100 * copied) / total),
    etaSeconds: interrupted || rate === 0 ? null : Math.round((total - copied) / rate),
    interrupted,
    updated: updates.some((u) => u > 0) ? new Date(updated).toISOString().replace(/\.\d+Z$/, 'Z') : null,
  };
}

/** `copying 41% (820,000 of 2,000,000), ETA 1 m 10 s`. */
export function copyText(view: CopyView): string {
  const count = (n: number) => n.toLocaleString('en-US');
  let text = `copying ${view.percent}% (${count(view.copied)} of ${count(view.total)})`;
  if (view.interrupted) text += ', interrupted: run the same `mmm replicate --copy` again to resume';
  else if (view.etaSeconds !== null) text += `, ETA ${etaText(view.etaSeconds)}`;
  return text;
}

function etaText(seconds: number): string {
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} m ${seconds % 60} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} m`;
}
