// What `verify` reports, link by link: the shape of `verify --json` (README, "Verifying that two
// sides agree"), built from what ./link.ts found.

import { BSON, type Document } from 'mongodb';
import { EXACT_DECODE } from '../bson/raw.ts';
import { documentDifference, type FieldDifference } from './differences.ts';
import type { LinkOutcome, RepairOutcome } from './link.ts';
import type { Candidate } from './match.ts';
import type { Finding } from './recheck.ts';
import type { RepairCounts } from './repair.ts';

/** How many `_id`s of each kind a report lists. */
export const FIRST_IDS = 10;

export interface ReportedDocument {
  /** Canonical extended JSON (`{"$numberInt": "1"}`): the `_id`'s type is part of it. */
  _id: unknown;
  /** For a document that differs: the top-level fields that do, or only their order. */
  fields?: FieldDifference[];
  fieldOrder?: boolean;
}

export interface KindReport {
  count: number;
  /** The first FIRST_IDS, in `_id` order. */
  first: ReportedDocument[];
}

export interface RepairReport extends RepairCounts {
  /** The server whose documents were kept, and the one written to. */
  prefer: string;
  target: string;
  /** The repaired documents, read again. */
  after: { equal: boolean; different: number; missing: number; extra: number; changing: number };
}

export interface LinkReport {
  /** Server names (or the source's id, if the topology does not name it) and namespaces. */
  source: string;
  src: string;
  destination: string;
  dst: string;
  /** Equal now: after the repair, if one was asked for. */
  equal: boolean;
  /** Why the link could not be compared; then the rest is empty. */
  error: string | null;
  documents: { source: number; destination: number };
  different: KindReport;
  /** On the destination. */
  missing: KindReport;
  extra: KindReport;
  changing: KindReport;
  repair: RepairReport | null;
}

export interface VerifyReport {
  /** Every link equal. */
  equal: boolean;
  links: LinkReport[];
}

export interface LinkNames {
  source: string;
  src: string;
  destination: string;
  dst: string;
}

export function linkReport(names: LinkNames, outcome: LinkOutcome, repaired?: { outcome: RepairOutcome; prefer: string; target: string }): LinkReport {
  const byKind = (kind: Finding['kind']) => kindReport(outcome.findings.filter((f) => f.kind === kind));
  const report: LinkReport = {
    ...names,
    equal: outcome.findings.length === 0 && outcome.changing.length === 0,
    error: null,
    documents: outcome.counts,
    different: byKind('different'),
    missing: byKind('missing'),
    extra: byKind('extra'),
    changing: kindReport(outcome.changing),
    repair: null,
  };
  if (repaired) {
    const { findings, changing } = repaired.outcome.after;
    const count = (kind: Finding['kind']) => findings.filter((f) => f.kind === kind).length;
    const after = { equal: findings.length === 0 && changing.length === 0, different: count('different'), missing: count('missing'), extra: count('extra'), changing: changing.length };
    report.repair = { prefer: repaired.prefer, target: repaired.target, ...repaired.outcome.counts, after };
    // What was still changing was left alone.
    report.equal = after.equal && outcome.changing.length === 0;
  }
  return report;
}

export function errorReport(names: LinkNames, message: string): LinkReport {
  const none = (): KindReport => ({ count: 0, first: [] });
  return { ...names, equal: false, error: message, documents: { source: 0, destination: 0 }, different: none(), missing: none(), extra: none(), changing: none(), repair: null };
}

function kindReport(found: ReadonlyArray<Candidate | Finding>): KindReport {
  return { count: found.length, first: found.slice(0, FIRST_IDS).map(reported) };
}

function reported(found: Candidate | Finding): ReportedDocument {
  const _id = BSON.EJSON.serialize((BSON.deserialize(found.id, EXACT_DECODE) as Document)._id, { relaxed: false });
  if (found.kind !== 'different' || !('source' in found) || !found.source || !found.destination) return { _id };
  return { _id, ...documentDifference(found.source, found.destination) };
}
