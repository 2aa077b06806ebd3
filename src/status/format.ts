// `mmm status` for a person: a table of the links, a line per loop on its run, errors and
// warnings, then each server's oplog window.

import { copyText } from './copy-view.ts';
import type { LoopView, PositionView, StatusReport } from './report.ts';

export function formatStatus(report: StatusReport): string {
  const out: string[] = [];
  if (report.loops.length === 0) {
    out.push('No replication links: add one with `mmm replicate`.');
  } else {
    const rows: string[][] = [['LINK', 'OPS', 'STATE', 'CHECKPOINT', 'LAG', 'APPLIED i/u/d']];
    for (const loop of report.loops) {
      loop.links.forEach((link, k) => {
        const first = k === 0;
        rows.push([
          `${loop.destination}/${link.dst} <= ${loop.source}/${link.src}`,
          link.ops,
          link.copy ? copyText(link.copy) : link.state,
          // The checkpoint, the lag and the counters belong to the loop: shown once for its links.
          first ? checkpoint(loop.checkpoint) : '',
          first ? lag(loop) : '',
          first && loop.applied ? `${loop.applied.i}/${loop.applied.u}/${loop.applied.d}${countersAge(loop)}` : '',
        ]);
      });
    }
    out.push(...table(rows), '');
    for (const loop of report.loops) out.push(...loopNotes(loop));
  }
  out.push('');
  const oplogs: string[][] = [['OPLOG', 'WINDOW', 'OLDEST', 'NEWEST', 'USED']];
  const unreachable: string[] = [];
  for (const server of report.servers) {
    if (!server.oplog) {
      unreachable.push(`${server.name}: unreachable: ${server.error ?? 'unknown error'}`);
      continue;
    }
    const { oplog } = server;
    oplogs.push([
      server.name,
      duration(oplog.newest.t - oplog.oldest.t),
      oplog.oldest.time,
      oplog.newest.time,
      oplog.usedMB === null || oplog.sizeMB === null ? '?' : `${oplog.usedMB} of ${oplog.sizeMB} MB`,
    ]);
  }
  if (oplogs.length > 1) out.push(...table(oplogs));
  out.push(...unreachable);
  return `${out.join('\n').replace(/\n{3,}/g, '\n\n').trim()}\n`;
}

function loopNotes(loop: LoopView): string[] {
  const name = `${loop.destination} <= ${loop.source}`;
  const lines: string[] = [];
  const { run } = loop;
  let line = `${name}: ${loop.state}`;
  if (run && (loop.state === 'running' || loop.state === 'retrying')) {
    line += ` (run on ${run.host}, pid ${run.pid}, since ${run.since}; heartbeat ${duration(run.heartbeatAgeSeconds)} ago)`;
  } else if (run) {
    line += ` (last run on ${run.host}, pid ${run.pid}, from ${run.since} to ${run.heartbeat})`;
  }
  lines.push(line);
  if (loop.error) lines.push(`  error at ${loop.error.at}: ${loop.error.message}`);
  if (loop.missed || loop.refused) {
    lines.push(`  ${loop.missed} updates found no document, ${loop.refused} writes refused by ${loop.destination} (kept in its mmm.refused)`);
  }
  if (loop.conflicts) {
    const conflicts = loop.conflicts === 1 ? '1 conflict' : `${loop.conflicts} conflicts`;
    lines.push(`  ${conflicts}: writes from ${loop.source} overwrote concurrent versions on ${loop.destination} (kept in its mmm.conflicts; see \`mmm conflicts\`)`);
  }
  for (const warning of loop.warnings) lines.push(`  warning: ${warning}`);
  for (const { at, message } of loop.notReplicated) lines.push(`  warning at ${at}: ${message}`);
  return lines;
}

/**
 * How old the counters are, while a run runs: they are as of its last record (its heartbeat,
 * every --status-interval seconds), so ` (4 s ago)`; nothing when under a second old.
 */
function countersAge(loop: LoopView): string {
  const age = loop.run?.heartbeatAgeSeconds;
  if (age === undefined || (loop.state !== 'running' && loop.state !== 'retrying') || Math.round(age) < 1) return '';
  return ` (${duration(age)} ago)`;
}

function checkpoint(position: PositionView | null): string {
  return position ? `Timestamp(${position.t}, ${position.i}) ${position.time}` : '-';
}

/** The lag, `?` when unknown (source unreachable), `-` when there is no checkpoint yet. */
function lag(loop: LoopView): string {
  if (loop.lagSeconds !== null) return duration(loop.lagSeconds);
  return loop.checkpoint ? '?' : '-';
}

function duration(seconds: number): string {
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(2)} h`;
}

/** Columns padded to their widest cell, two spaces apart; no trailing spaces. */
export function table(rows: readonly string[][]): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) =>
    r
      .map((cell, c) => cell.padEnd(widths[c]!))
      .join('  ')
      .trimEnd(),
  );
}
