// Writing a copy's documents on the destination, a batch per transaction: the marker first, so
// that the destination's oplog says these are mmm's writes from the source (and no link sends
// them back, ../replicate/tag.ts), then the documents, then the range's progress (./state.ts).
// The three commit together or not at all, so the progress never says more or less than what
// was written, and a resumed copy writes each document once.
//
// What a document meets on the destination depends on the mode:
// - empty: the destination had none when the copy began; plain inserts.
// - replace: the source's version replaces the destination's (deleted, then inserted, so the
//   document is the source's byte for byte, field order included).
// - keep: a document the destination holds is left as it is; the others are inserted.
// A document that appears on the destination during an `empty` copy (a user's write, another
// link) is kept, as in `keep`, and counted: overwriting it would lose that write.

import type { ClientSession, Collection, Document, Filter, MongoClient, Timestamp, WriteConcernSettings } from 'mongodb';
import { MongoServerError } from 'mongodb';
import { serverErrorCode } from '../apply/transient.ts';
import { writeMarker } from '../apply/writer.ts';
import { parseNamespace } from '../namespace.ts';
import { makeTag, RUN_ID, TAG_FIELD } from '../replicate/tag.ts';
import type { OrderedDocument } from '../bson/raw.ts';
import { idOf } from './read.ts';
import { rangeId, rangesCollection, type CopyKey, type CopyMode } from './state.ts';

export interface CopyWriteOptions {
  writeConcern: WriteConcernSettings;
  maxTimeMS: number;
}

export interface CopyBatch {
  key: CopyKey;
  range: number;
  /** The copy's snapshot: the documents' `__mmm` names it. */
  at: Timestamp;
  documents: OrderedDocument[];
  bytes: number;
}

export interface BatchOutcome {
  /** Documents inserted (replacing any the destination held, in `replace`). */
  written: number;
  /** Documents the destination held already and kept. */
  kept: number;
}

const DUPLICATE_KEY = 11000;

/** Records that every document of `range` is written (an empty range gets its record here). */
export async function finishRange(client: MongoClient, key: CopyKey, range: number, options: CopyWriteOptions): Promise<void> {
  await rangesCollection(client).updateOne(
    { _id: rangeId(key, range) },
    { $set: { done: true }, $setOnInsert: { copied: 0, bytes: 0 } },
    { upsert: true, writeConcern: options.writeConcern, maxTimeMS: options.maxTimeMS },
  );
}

/** Writes `batch` on the destination in `mode`, with its range's progress, as one transaction. */
export async function writeBatch(client: MongoClient, batch: CopyBatch, mode: CopyMode, lane: number, options: CopyWriteOptions): Promise<BatchOutcome> {
  const tag = makeTag(batch.key.source, batch.at);
  for (const doc of batch.documents) {
    if (doc instanceof Map) doc.set(TAG_FIELD, tag);
    else doc[TAG_FIELD] = tag;
  }
  try {
    return await transaction(client, batch, mode, lane, options);
  } catch (err) {
    // Someone wrote one of these documents since the copy began: theirs is kept.
    if (mode === 'empty' && isDuplicateId(err)) return transaction(client, batch, 'keep', lane, options);
    throw err;
  }
}

async function transaction(client: MongoClient, batch: CopyBatch, mode: CopyMode, lane: number, options: CopyWriteOptions): Promise<BatchOutcome> {
  const { db, coll } = parseNamespace(batch.key.dst);
  const collection = client.db(db).collection(coll);
  const { maxTimeMS } = options;
  const session = client.startSession();
  try {
    let outcome: BatchOutcome = { written: 0, kept: 0 };
    await session.withTransaction(
      async () => {
        await writeMarker(client, session, { origin: batch.key.source, source: batch.key.source, lane, run: RUN_ID }, maxTimeMS);
        const held = mode === 'empty' ? [] : await heldIds(collection, batch.documents, session, maxTimeMS);
        let documents = batch.documents;
        if (mode === 'replace' && held.length > 0) {
          await collection.deleteMany({ _id: { $in: held } } as Filter<Document>, { session, maxTimeMS });
        } else if (mode === 'keep' && held.length > 0) {
          const keep = new Set(held.map(idKey));
          documents = documents.filter((doc) => !keep.has(idKey(idOf(doc))));
        }
        if (documents.length > 0) await insert(client, batch.key.dst, documents, session, maxTimeMS);
        await rangesCollection(client).updateOne(
          { _id: rangeId(batch.key, batch.range) },
          {
            $set: { last: idOf(batch.documents[batch.documents.length - 1]!), done: false, updated: new Date() },
            $inc: { copied: batch.documents.length, bytes: batch.bytes },
          },
          { upsert: true, session, maxTimeMS },
        );
        outcome = { written: documents.length, kept: batch.documents.length - documents.length };
      },
      { writeConcern: options.writeConcern, maxCommitTimeMS: maxTimeMS },
    );
    return outcome;
  } finally {
    await session.endSession();
  }
}

/**
 * `documents` inserted by an `insert` command: the driver's insertMany goes through its bulk
 * write machinery, which took a third more of this process's CPU for the same documents. The
 * command answers a refused write with `writeErrors`, not an error: thrown here, as insertMany
 * would (the server has aborted the transaction).
 */
async function insert(client: MongoClient, ns: string, documents: OrderedDocument[], session: ClientSession, maxTimeMS: number): Promise<void> {
  const { db, coll } = parseNamespace(ns);
  const reply = await client.db(db).command({ insert: coll, documents, ordered: true, maxTimeMS }, { session });
  const [first] = (reply.writeErrors as Document[] | undefined) ?? [];
  if (first) throw new MongoServerError({ ...first, message: String(first.errmsg) });
}

/** The `_id`s of `documents` that the destination holds. */
async function heldIds(collection: Collection, documents: OrderedDocument[], session: ClientSession, maxTimeMS: number): Promise<unknown[]> {
  const found = await collection
    .find({ _id: { $in: documents.map(idOf) } } as Filter<Document>, { projection: { _id: 1 }, session, maxTimeMS, promoteValues: false, bsonRegExp: true })
    .toArray();
  return found.map((d) => d._id);
}

/** Equal for `_id`s the server takes as equal (1 and 1.0), as `$in` finds them. */
function idKey(id: unknown): string {
  return JSON.stringify(id, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) + typeName(id);
}

function typeName(id: unknown): string {
  if (id === null || typeof id !== 'object') return typeof id;
  const bsontype = (id as { _bsontype?: string })._bsontype;
  // The numeric types compare as numbers on the server: one class for all of them.
  return bsontype === 'Int32' || bsontype === 'Double' || bsontype === 'Long' || bsontype === 'Decimal128' ? 'number' : (bsontype ?? 'object');
}

function isDuplicateId(err: unknown): boolean {
  const { keyPattern } = err as { keyPattern?: Document };
  return serverErrorCode(err) === DUPLICATE_KEY && keyPattern !== undefined && Object.keys(keyPattern).join() === '_id';
}
