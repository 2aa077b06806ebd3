// Where conflicts are kept: `mmm.conflicts` on the server whose version lost, one document per
// conflict, written in the transaction that overwrote the version (./resolve.ts). Nothing
// removes them: they are the only copy of the version that lost (see the README for cleaning up).

import { BSON, type Document, type MongoClient, type Timestamp } from 'mongodb';
import { CONFLICTS_COLLECTION, MMM_DATABASE } from '../replicate/tag.ts';
import { policyName, type ConflictPolicy, type Version } from './version.ts';

export interface ConflictRecord {
  at: Date;
  /** The namespace on the server that keeps the record. */
  ns: string;
  id: unknown;
  /** The server whose oplog brought the winning write. */
  source: string;
  policy: string;
  lost: { origin: string; ts: Timestamp | null; doc: Document | null };
  won: { origin: string; ts: Timestamp | null; doc: Document | null };
  /** The documents left out (null above) because the record would outgrow 16 MB: the winner's first. */
  omitted?: Array<'won' | 'lost'>;
}

export function conflictRecord(c: {
  ns: string;
  id: unknown;
  sourceId: string;
  policy: ConflictPolicy;
  lost: { version: Version; doc: Document | null };
  won: { version: Version; doc: Document | null };
}): ConflictRecord {
  return fitted({
    at: new Date(),
    ns: c.ns,
    id: c.id,
    source: c.sourceId,
    policy: policyName(c.policy),
    lost: { origin: c.lost.version.origin, ts: c.lost.version.ts, doc: c.lost.doc },
    won: { origin: c.won.version.origin, ts: c.won.version.ts, doc: c.won.doc },
  });
}

/** BSON's limit on a document, less room for the record's other fields. */
const MAX_RECORD_BYTES = 16 * 1024 * 1024 - 16 * 1024;

/**
 * The record within the size of a document: two versions of a document of more than 8 MB do
 * not fit in one. The winner is left out first (every server holds it); the loser only when it
 * does not fit on its own, and then the conflict is still recorded, without it.
 */
function fitted(record: ConflictRecord): ConflictRecord {
  const size = () => BSON.calculateObjectSize(record);
  if (size() <= MAX_RECORD_BYTES) return record;
  record.won = { ...record.won, doc: null };
  record.omitted = ['won'];
  if (size() <= MAX_RECORD_BYTES) return record;
  record.lost = { ...record.lost, doc: null };
  record.omitted.push('lost');
  return record;
}

/**
 * Creates the collection and its indexes before any transaction writes it: newest first (for
 * `mmm conflicts`), and by source (for the counts of `mmm status`).
 */
export async function prepareConflicts(client: MongoClient): Promise<void> {
  const conflicts = client.db(MMM_DATABASE).collection(CONFLICTS_COLLECTION);
  await conflicts.createIndex({ at: -1 });
  await conflicts.createIndex({ source: 1 });
}

export function conflictsCollection(client: MongoClient) {
  return client.db(MMM_DATABASE).collection<ConflictRecord>(CONFLICTS_COLLECTION);
}
