// The conflicts a server keeps, read from its `mmm.conflicts`: one document per version that
// lost there, written in the transaction of the write that won it (README, "Conflicts"):
//
//   {_id: ObjectId, at: Date, ns: 'test.foo', id: <the document's _id>, source: <uuid>,
//    policy: 'lww' | 'prefer:<uuid>',
//    lost: {origin: <uuid>, ts: Timestamp | null, doc: Document | null},
//    won:  {origin: <uuid>, ts: Timestamp | null, doc: Document | null}}
//
// `mmm conflicts` lists the newest (./conflicts.ts), `status` counts them per loop (./report.ts).

import { ObjectId, Timestamp, type Document, type MongoClient } from 'mongodb';
import type { ConflictRecord } from '../conflict/record.ts';
import { CONFLICTS_COLLECTION, MMM_DATABASE } from '../replicate/tag.ts';

/** A conflict as a server keeps it, with the `_id` the server gave it. */
export type StoredConflict = ConflictRecord & { _id: ObjectId };

/** One version of the document: its origin's UUID, its time in that oplog (null: older than the oplog), the document (null: none). */
export type StoredVersion = StoredConflict['lost'];

/**
 * The newest `limit` conflicts the server keeps, newest first, and how many it keeps in all.
 * None (and 0) when the collection does not exist.
 */
export async function newestConflicts(client: MongoClient, limit: number): Promise<{ newest: StoredConflict[]; total: number }> {
  const collection = client.db(MMM_DATABASE).collection(CONFLICTS_COLLECTION);
  // Sorted on `at` alone, the order of the collection's index {at: -1}: the server reads the
  // newest `limit` entries of the index, not the whole collection. The total is the count the
  // collection's metadata keeps, not a scan of it.
  const [documents, total] = await Promise.all([
    collection.find({}).sort({ at: -1 }).limit(limit).toArray(),
    collection.estimatedDocumentCount(),
  ]);
  // A document not in the shape mmm writes (one written by hand) is left out of the listing.
  return { newest: documents.filter(isStoredConflict), total };
}

/**
 * How many conflicts the server keeps, by `source`: `status` shows one count per loop. Empty
 * when the collection does not exist. Counted on the `{source: 1}` index (../conflict/record.ts),
 * so a large collection is not read whole each time `status` runs.
 */
export async function conflictCounts(client: MongoClient): Promise<Map<string, number>> {
  const collection = client.db(MMM_DATABASE).collection(CONFLICTS_COLLECTION);
  const sources = (await collection.distinct('source')).filter((s): s is string => typeof s === 'string');
  const counts = await Promise.all(sources.map(async (source) => [source, await collection.countDocuments({ source })] as const));
  return new Map(counts);
}

function isStoredConflict(d: Document): d is StoredConflict {
  return (
    d._id instanceof ObjectId &&
    d.at instanceof Date &&
    typeof d.ns === 'string' &&
    'id' in d &&
    typeof d.source === 'string' &&
    typeof d.policy === 'string' &&
    isVersion(d.lost) &&
    isVersion(d.won)
  );
}

function isVersion(value: unknown): value is StoredVersion {
  if (typeof value !== 'object' || value === null) return false;
  const { origin, ts, doc } = value as Record<string, unknown>;
  return typeof origin === 'string' && (ts === null || ts instanceof Timestamp) && (doc === null || typeof doc === 'object');
}
