// `verify` as text: one line per link, and under a link that is not equal, each kind of
// difference with the first `_id`s, one per line (canonical extended JSON, so that 1 and 1.0,
// or "1" and 1, read differently), then what a repair did.
//
//   server_b/test.foo <= server_a/test.foo: differs (1000 documents on server_a, 999 on server_b)
//     different: 2
//       {"$numberInt":"7"}: n (int on server_a, double on server_b)
//       {"$numberInt":"9"}: field order
//     missing on server_b: 1
//       "k12"

import type { FieldDifference } from './differences.ts';
import type { KindReport, LinkReport, ReportedDocument } from './report.ts';

export function formatLink(report: LinkReport): string {
  const label = `${report.destination}/${report.dst} <= ${report.source}/${report.src}`;
  if (report.error !== null) return `${label}: error: ${report.error}\n`;
  const { source, destination } = report.documents;
  const found = report.different.count + report.missing.count + report.extra.count;
  if (found === 0 && report.changing.count === 0) {
    // Counts read while the collections are written to can differ, the documents being equal.
    return `${label}: equal (${source === destination ? documents(source) : bothCounts(report)})\n`;
  }
  const lines = [`${label}: ${found > 0 ? 'differs' : 'not settled'} (${bothCounts(report)})`];
  const section = (title: string, kind: KindReport, line: (doc: ReportedDocument) => string) => {
    if (kind.count === 0) return;
    lines.push(`  ${title}: ${kind.count}`);
    for (const doc of kind.first) lines.push(`    ${line(doc)}`);
    if (kind.count > kind.first.length) lines.push(`    ... and ${kind.count - kind.first.length} more`);
  };
  const id = (doc: ReportedDocument) => JSON.stringify(doc._id);
  section('different', report.different, (doc) => `${id(doc)}: ${details(doc, report)}`);
  section(`missing on ${report.destination}`, report.missing, id);
  section(`extra on ${report.destination}`, report.extra, id);
  section('still changing', report.changing, id);
  const { repair } = report;
  if (repair) {
    const done = [`${repair.replaced} replaced`, `${repair.inserted} inserted`, `${repair.deleted} deleted`];
    if (repair.changed > 0) done.push(`${repair.changed} left as they are (changed on ${repair.target} since verify read them)`);
    if (repair.unwritable > 0) done.push(`${repair.unwritable} not written (the driver cannot write them back exactly)`);
    lines.push(`  repaired on ${repair.target}, as on ${repair.prefer}: ${done.join(', ')}`);
    const { after } = repair;
    const left = [
      [after.different, 'different'],
      [after.missing, `missing on ${report.destination}`],
      [after.extra, `extra on ${report.destination}`],
      [after.changing, 'still changing'],
    ] as const;
    lines.push(`  after the repair: ${after.equal ? 'equal' : left.filter(([n]) => n > 0).map(([n, what]) => `${n} ${what}`).join(', ')}`);
  }
  return `${lines.join('\n')}\n`;
}

function bothCounts(report: LinkReport): string {
  return `${documents(report.documents.source)} on ${report.source}, ${report.documents.destination} on ${report.destination}`;
}

function documents(n: number): string {
  return n === 1 ? '1 document' : `${n} documents`;
}

function details(doc: ReportedDocument, report: LinkReport): string {
  if (doc.fieldOrder) return 'field order';
  return (doc.fields ?? []).map((f) => field(f, report)).join(', ');
}

function field(f: FieldDifference, report: LinkReport): string {
  if (f.source === null) return `${f.name} (only on ${report.destination})`;
  if (f.destination === null) return `${f.name} (only on ${report.source})`;
  if (f.source !== f.destination) return `${f.name} (${f.source} on ${report.source}, ${f.destination} on ${report.destination})`;
  return f.name;
}
