// `mmm conflicts` for a person: a table of the newest conflicts, newest first, a line when the
// limit left some out, then the servers that could not be read.
//
//   AT                    SERVER    NAMESPACE  _ID  LOST                               WON                                        POLICY
//   2026-12-01T13:40:02Z  server_b  test.foo   7    server_b Timestamp(1795318952, 4)  server_a Timestamp(1795318952, 9)          lww
//   2026-12-01T13:39:58Z  server_a  test.foo   "k"  server_a Timestamp(1795318950, 1)  server_b Timestamp(1795318951, 3) deleted  prefer:server_b
//
// SERVER keeps the record: the version lost there. A version is its origin and its time in the
// origin's oplog, `deleted` when it is no document, `(older than the oplog)` when its time is
// unknown; the winner is followed by `via SERVER` when it came relayed by another server. `_id`
// is relaxed extended JSON, as `--json` has it.

import type { ConflictsReport, ConflictView, VersionView } from './conflicts.ts';
import { table } from './format.ts';

export function formatConflicts(report: ConflictsReport, options: { allServers: boolean }): string {
  const out: string[] = [];
  if (report.conflicts.length > 0) {
    const rows = [['AT', 'SERVER', 'NAMESPACE', '_ID', 'LOST', 'WON', 'POLICY'], ...report.conflicts.map(row)];
    out.push(...table(rows));
    if (report.total > report.conflicts.length) {
      out.push(`${report.conflicts.length} of ${report.total} conflicts shown, newest first: --limit N shows more`);
    }
  } else if (report.read.length > 0) {
    // Which servers have none, unless it is all of them.
    out.push(`no conflicts recorded${options.allServers && report.unreadable.length === 0 ? '' : ` on ${report.read.join(', ')}`}`);
  }
  for (const { server, error } of report.unreadable) out.push(`${server}: unreachable: ${error}`);
  return `${out.join('\n')}\n`;
}

function row(conflict: ConflictView): string[] {
  const via = conflict.source === conflict.won.origin ? '' : ` via ${conflict.source}`;
  return [
    conflict.at.replace(/\.\d{3}Z$/, 'Z'),
    conflict.server,
    conflict.ns,
    JSON.stringify(conflict.id),
    version(conflict.lost),
    `${version(conflict.won)}${via}`,
    conflict.policy,
  ];
}

function version(v: VersionView): string {
  const time = v.ts ? `Timestamp(${v.ts.t}, ${v.ts.i})` : '(older than the oplog)';
  return `${v.origin} ${time}${v.doc === null ? ' deleted' : ''}`;
}
