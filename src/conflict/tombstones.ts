// Tombstones: a delete that met no document, kept on the destination where its collection is
// replicated into from more than one server (a full mesh). There a write can arrive by two
// paths, and a delete can arrive before the insert or update it was made after: in a mesh of
// A, B and C, C inserts a document, B receives it and deletes it, and B's delete reaches A
// before C's insert does. On A the delete meets nothing and leaves no trace (no document, no
// pre-image); the insert that follows would meet nothing either and be applied, and A would
// keep a document the others deleted. So such a delete keeps its version here, in the
// transaction that applies it, and a write meeting no document where one is kept is decided
// against it as against the document's last version (./resolve.ts). With one source per
// collection (two servers, a ring), writes from one origin arrive in the order they were made,
// and none is kept.
//
// One document per document deleted: `_id: {ns, id}`, the delete's tag and when it was kept.
// They go after TOMBSTONE_SECONDS (a TTL index): a write that reaches the destination later
// still than that, by another path, than the delete made after it, is not caught. Nor is one
// applied at the same moment as the delete, by another loop into the same server: the two
// transactions write nothing in common, so neither waits for the other, and neither sees what
// the other writes (the seeded mesh test of test/conflicts.test.ts, whose commits are held a
// second, meets this with some seeds).

import type { ClientSession, Document, MongoClient } from 'mongodb';
import { MMM_DATABASE, TOMBSTONES_COLLECTION } from '../replicate/tag.ts';

/** How long a tombstone is kept: far longer than a write takes to reach a server, unless a link is down that long. */
export const TOMBSTONE_SECONDS = 24 * 60 * 60;

export interface Tombstone {
  ns: string;
  id: unknown;
  /** The delete's version, as its tag names it. */
  tag: string;
}

interface TombstoneDocument {
  _id: { ns: string; id: unknown };
  tag: string;
  at: Date;
}

function tombstones(client: MongoClient) {
  return client.db(MMM_DATABASE).collection<TombstoneDocument>(TOMBSTONES_COLLECTION);
}

/** Creates the collection and its TTL index before any transaction writes it. */
export async function prepareTombstones(client: MongoClient): Promise<void> {
  await tombstones(client).createIndex({ at: 1 }, { expireAfterSeconds: TOMBSTONE_SECONDS });
}

/** The tags of the deletes kept for documents `ids` of `ns`, in `session`'s transaction, by the document's `_id` as read (not promoted, as the writes' are). */
export async function readTombstones(
  client: MongoClient,
  session: ClientSession,
  ns: string,
  ids: readonly unknown[],
  maxTimeMS: number,
): Promise<Array<{ id: unknown; tag: string }>> {
  const filter = { _id: { $in: ids.map((id) => ({ ns, id })) } } as Document;
  const found = await tombstones(client).find(filter, { session, maxTimeMS, promoteValues: false, batchSize: ids.length }).toArray();
  return found.map((t) => ({ id: t._id.id, tag: String(t.tag) }));
}

/** Keeps `deletes` in `session`'s transaction, each in place of any kept before for its document. */
export async function writeTombstones(client: MongoClient, session: ClientSession, deletes: readonly Tombstone[], maxTimeMS: number): Promise<void> {
  const at = new Date();
  await tombstones(client).bulkWrite(
    deletes.map((t) => ({ replaceOne: { filter: { _id: { ns: t.ns, id: t.id } }, replacement: { _id: { ns: t.ns, id: t.id }, tag: t.tag, at }, upsert: true } })),
    { session, maxTimeMS, ordered: true },
  );
}
