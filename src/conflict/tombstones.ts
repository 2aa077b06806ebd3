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
// still than that, by another path, than the delete made after it, is not caught.
//
// Nor would a write applied at the same moment as the delete, by another loop into the same
// server, be caught by reading alone: neither transaction sees what the other writes, and a
// delete that meets nothing writes no document, so nothing would make either wait (the seeded
// mesh test of test/conflicts.test.ts, whose commits are held a second, met this with seed
// 1332528018). So a write that meets no document, in such a namespace, also writes its
// tombstone's key and removes it again (a guard): two transactions writing one key conflict,
// the server aborts one, and it runs again on what the other committed. An obsolete tombstone
// that the write beat goes with it: the document's tag is the later version now.

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

/** A document written where none was: its tombstone's key, written and removed in the same transaction. */
export interface Guard {
  ns: string;
  id: unknown;
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

/**
 * Keeps `deletes` in `session`'s transaction, each in place of any kept before for its
 * document, and writes and removes the key of each of `guards`. In two commands: the upserts,
 * then the removals.
 */
export async function writeTombstones(
  client: MongoClient,
  session: ClientSession,
  deletes: readonly Tombstone[],
  guards: readonly Guard[],
  maxTimeMS: number,
): Promise<void> {
  const at = new Date();
  const keep = (key: { ns: string; id: unknown }, tag: string) => ({
    replaceOne: { filter: { _id: { ns: key.ns, id: key.id } }, replacement: { _id: { ns: key.ns, id: key.id }, tag, at }, upsert: true },
  });
  await tombstones(client).bulkWrite(
    [
      ...deletes.map((t) => keep(t, t.tag)),
      ...guards.map((g) => keep(g, GUARD_TAG)),
      ...guards.map((g) => ({ deleteOne: { filter: { _id: { ns: g.ns, id: g.id } } } })),
    ],
    { session, maxTimeMS, ordered: true },
  );
}

/** What a guard's key holds for the moment it is there: no version (parseTag reads none in it), never committed. */
const GUARD_TAG = 'guard';
