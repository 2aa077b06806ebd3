// Reading one `_id` range of a collection, as raw documents, in batches.
//
// The range is given as index bounds (`min` inclusive, `max` exclusive, with a hint of the `_id`
// index): they follow the index's own order over every BSON type, where a query filter on
// `_id` would only match values of the bound's type. MinKey and MaxKey are the outer bounds.
//
// The find and getMore commands are sent as commands with their batch left raw
// (`fieldsAsRaw`): the driver then decodes the reply's few top-level fields and hands over each
// document as a slice of the reply, where a cursor with `raw: true` costs about twice the CPU
// per document (measured: 200,000 documents of 1 KB, 0.62 s against 1.49 s).

import { Long, type ClientSession, type Document, type MongoClient } from 'mongodb';
import type { Namespace } from '../namespace.ts';

export interface IdRange {
  /** Inclusive; MinKey for the first range. */
  min: unknown;
  /** Exclusive; MaxKey for the last range. */
  max: unknown;
}

const RAW_BATCH = { fieldsAsRaw: { firstBatch: true, nextBatch: true }, promoteValues: false } as const;

interface CursorReply {
  cursor: { id: Long; firstBatch?: Uint8Array[]; nextBatch?: Uint8Array[] };
}

/**
 * The documents of `range` in `ns`, in `_id` index order, a batch at a time (`batchSize`
 * documents, or fewer when the server's 16 MB reply is full); the next batch is asked for while
 * the caller works on the current one.
 */
export async function* readRange(client: MongoClient, ns: Namespace, range: IdRange, batchSize: number): AsyncGenerator<Uint8Array[]> {
  const db = client.db(ns.db);
  const session = client.startSession();
  const command = (body: Document) => db.command(body, { ...RAW_BATCH, session }) as Promise<unknown> as Promise<CursorReply>;
  let id = Long.ZERO;
  let next: Promise<CursorReply> | undefined = command({ find: ns.coll, filter: {}, hint: { _id: 1 }, min: { _id: range.min }, max: { _id: range.max }, batchSize });
  try {
    while (next) {
      const { cursor } = await next;
      next = undefined;
      id = cursor.id;
      const docs = cursor.firstBatch ?? cursor.nextBatch ?? [];
      if (!id.isZero()) next = command({ getMore: id, collection: ns.coll, batchSize });
      if (docs.length > 0) yield docs;
    }
  } finally {
    // Abandoned part way (an error elsewhere): the getMore in flight is waited for, so that its
    // failure is no unhandled rejection, and the cursor closed, which the server would keep
    // for 10 minutes.
    if (next) id = (await next.catch(() => undefined))?.cursor.id ?? id;
    if (!id.isZero()) await db.command({ killCursors: ns.coll, cursors: [id] }, { session }).catch(() => undefined);
    await session.endSession();
  }
}
