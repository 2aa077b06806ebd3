// Reading a source collection for a copy: one `_id` range at a time, every range at the same
// snapshot of the source, so that the copy is the collection exactly as it was at that moment
// and the oplog after it holds every later change (the link replays those, ./copy.ts).
//
// A range is given by index bounds on `_id` (`min` inclusive, `max` exclusive), which follow the
// index's own order across BSON types, where a query's `$gte`/`$lt` would only match one type.
// A snapshot read holds on to history the server keeps for minSnapshotHistoryWindowInSeconds
// (300 s by default): a copy that runs longer fails with SnapshotTooOld (./copy.ts says so).

import { BSON, type FindCursor, type MongoClient, type Timestamp } from 'mongodb';
import { mayReorderWhenDecoded, orderedDocument, type OrderedDocument } from '../bson/raw.ts';
import { parseNamespace } from '../namespace.ts';

/** As the tailer decodes: types as stored (an Int32 stays one), regular expressions as BSON has them. */
const DECODE: BSON.DeserializeOptions = { promoteValues: false, bsonRegExp: true, validation: { utf8: false } };

export interface ReadRange {
  /** The first `_id` of the range (inclusive); none: from the start of the collection. */
  min?: unknown;
  /** The `_id` the range stops before; none: to the end. */
  max?: unknown;
  /** Resuming: the range's documents up to and including this `_id` were copied already. */
  after?: unknown;
}

export interface ReadBatch {
  /** Each as a value the driver writes back as the same BSON (a Map where an object would not be). */
  documents: OrderedDocument[];
  /** Their size as BSON. */
  bytes: number;
  /** `_id`s of documents no decoded value writes back exactly (an `undefined` value): copied as decoded. */
  inexact: unknown[];
}

export function idOf(doc: OrderedDocument): unknown {
  return doc instanceof Map ? doc.get('_id') : doc._id;
}

export interface SnapshotReaderOptions {
  /** Documents per reply from the server. */
  batchSize: number;
}

/**
 * The snapshot time the source picks for a read now: the newest majority-committed point, which
 * is where a new copy's snapshot is taken.
 */
export async function currentSnapshot(client: MongoClient, ns: string): Promise<Timestamp> {
  const { db, coll } = parseNamespace(ns);
  const reply = await client.db(db).command({ find: coll, filter: {}, limit: 1, batchSize: 0, readConcern: { level: 'snapshot' } });
  const at = (reply.cursor as { atClusterTime?: Timestamp } | undefined)?.atClusterTime;
  if (!at) throw new Error(`the server did not say at which time it read ${ns}`);
  return at;
}

/** Yields the documents of `range` of `ns` as they were at `at`, in `_id` order, a reply at a time. */
export async function* readRange(
  client: MongoClient,
  ns: string,
  at: Timestamp,
  range: ReadRange,
  options: SnapshotReaderOptions,
): AsyncGenerator<ReadBatch> {
  const { db, coll } = parseNamespace(ns);
  const session = client.startSession({ snapshot: true });
  // The driver reads a snapshot session at the time it holds, which it otherwise takes from
  // the first reply: a copy's ranges (and a resumed copy) must all read the same time.
  (session as unknown as { snapshotTime?: Timestamp }).snapshotTime = at;
  const resumeFrom = range.after ?? range.min;
  const skipFirst = range.after === undefined ? undefined : idBytes(range.after);
  // `raw`: each document's bytes, which say its size; the driver does not change the cursor's
  // type for `raw`, hence the cast.
  const cursor = client
    .db(db)
    .collection(coll)
    .find(
      {},
      {
        session,
        raw: true,
        hint: { _id: 1 },
        ...(resumeFrom !== undefined && { min: { _id: resumeFrom } }),
        ...(range.max !== undefined && { max: { _id: range.max } }),
        batchSize: options.batchSize,
      },
    ) as unknown as FindCursor<Uint8Array>;
  try {
    let first = true;
    for (;;) {
      const head = await cursor.tryNext();
      if (head === null) return;
      const raw = [head, ...cursor.readBufferedDocuments()];
      let bytes = 0;
      const inexact: unknown[] = [];
      let documents = raw.map((buf): OrderedDocument => {
        bytes += buf.byteLength;
        // A JavaScript object puts whole-number field names first: such a document is checked,
        // and kept in order as a Map where needed.
        if (!mayReorderWhenDecoded(buf)) return BSON.deserialize(buf, DECODE);
        const ordered = orderedDocument(buf);
        if (ordered) return ordered;
        const decoded = BSON.deserialize(buf, DECODE);
        inexact.push(decoded._id);
        return decoded;
      });
      if (first && skipFirst !== undefined && documents.length > 0 && Buffer.from(idBytes(idOf(documents[0]!))).equals(skipFirst)) {
        bytes -= raw[0]!.byteLength;
        documents = documents.slice(1);
      }
      first = false;
      if (documents.length > 0) yield { documents, bytes, inexact };
    }
  } finally {
    await cursor.close().catch(() => undefined);
    await session.endSession().catch(() => undefined);
  }
}

/** An `_id` as BSON, to tell it from another of the same value but another type (1 and 1.0). */
function idBytes(id: unknown): Buffer {
  return Buffer.from(BSON.serialize({ _id: id }));
}

/**
 * `_id`s that split `ns` into about `ranges` ranges of similar size, in index order: a random
 * sample of the collection, sorted by the server (which knows BSON's order across types), every
 * so many of them. Any `_id`s would do as bounds; a sample makes the ranges even.
 */
export async function rangeBounds(client: MongoClient, ns: string, ranges: number, documents: number): Promise<unknown[]> {
  if (ranges <= 1 || documents < 2 * ranges) return [];
  const { db, coll } = parseNamespace(ns);
  const perRange = 8;
  const sampled = await client
    .db(db)
    .collection(coll)
    .aggregate<{ _id: unknown }>([{ $sample: { size: ranges * perRange } }, { $project: { _id: 1 } }, { $sort: { _id: 1 } }], { promoteValues: false, bsonRegExp: true })
    .toArray();
  const bounds: unknown[] = [];
  let previous: Buffer | undefined;
  for (let k = perRange; k < sampled.length; k += perRange) {
    const id = sampled[k]!._id;
    const bytes = idBytes(id);
    // A sample may hold one document twice: a range between equal bounds would be empty.
    if (previous?.equals(bytes)) continue;
    previous = bytes;
    bounds.push(id);
  }
  return bounds;
}
