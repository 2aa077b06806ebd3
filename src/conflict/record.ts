// Where conflicts are kept: `mmm.conflicts` on the server whose version lost, one document per
// conflict, written in the transaction that overwrote the version (./resolve.ts). Nothing
// removes them: they are the only copy of the version that lost (see the README for cleaning up).

import type { Document, MongoClient, Timestamp } from 'mongodb';
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
}

export function conflictRecord(c: {
  ns: string;
  id: unknown;
  sourceId: string;
  policy: ConflictPolicy;
  lost: { version: Version; doc: Document | null };
  won: { version: Version; doc: Document | null };
}): ConflictRecord {
  return {
    at: new Date(),
    ns: c.ns,
    id: c.id,
    source: c.sourceId,
    policy: policyName(c.policy),
    lost: { origin: c.lost.version.origin, ts: c.lost.version.ts, doc: c.lost.doc },
    won: { origin: c.won.version.origin, ts: c.won.version.ts, doc: c.won.doc },
  };
}

/** Creates the collection and its index (newest first) before any transaction writes it. */
export async function prepareConflicts(client: MongoClient): Promise<void> {
  await client.db(MMM_DATABASE).collection(CONFLICTS_COLLECTION).createIndex({ at: -1 });
}

export function conflictsCollection(client: MongoClient) {
  return client.db(MMM_DATABASE).collection<ConflictRecord>(CONFLICTS_COLLECTION);
}
