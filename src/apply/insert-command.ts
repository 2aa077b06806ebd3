// Inserts sent as the bytes they came in. An insert, logged alone or in a transaction, reaches the
// writer as its BSON (../oplog/entry-bytes.ts), tagged without being decoded (../bson/raw.ts, taggedBytes); written
// through the driver's bulkWrite it would be decoded and encoded again, which cost a catch-up
// of inserts a third of mmm's CPU. Here it goes out in an `insert` command whose documents are
// an OP_MSG document sequence, the form the driver gives its own bulk writes' documents: the
// driver's DocumentSequence takes documents already serialized. That class is not in the
// driver's public API, so it is looked up in its module: where a driver version lacks it,
// `insertsAsBytes` is false and the writer sends such inserts through bulkWrite, decoded.

import { MongoServerError, type ClientSession, type Document, type MongoClient } from 'mongodb';
// A namespace import: a driver whose module lacks the name gives undefined here, not a failed import.
import * as driverCommands from 'mongodb/lib/cmap/commands.js';

interface DocumentSequenceClass {
  new (field: string): { push(document: Document, buffer: Uint8Array): number };
}

const DocumentSequence = driverCommands.DocumentSequence as DocumentSequenceClass | undefined;

/** Whether this driver can send documents as bytes (insertDocuments). */
export const insertsAsBytes = typeof DocumentSequence === 'function' && typeof DocumentSequence.prototype.push === 'function';

/**
 * At most this many bytes of documents per command, well under the server's 48 MB message
 * (`maxMessageSizeBytes`) and the count under its 100,000 writes (`maxWriteBatchSize`); a
 * batch of mmm's holds at most 16 MB of entries and 16,000 writes (over a long link), so this
 * only splits a larger one.
 */
const COMMAND_BYTES = 16 * 1024 * 1024;
const COMMAND_DOCUMENTS = 100_000;

/**
 * The destination refused document `index` of an insertDocuments call, as a write error
 * (a duplicate key, a document too large): its code and message are the server's.
 */
export class InsertWriteError extends MongoServerError {
  constructor(
    readonly index: number,
    error: { code: number; errmsg: string },
  ) {
    super({ message: error.errmsg, errmsg: error.errmsg, code: error.code });
  }
}

/**
 * Inserts `documents` (BSON, in order) into `ns` within `session`'s transaction, as ordered
 * insert commands; throws InsertWriteError at the first refused one (the server stops there,
 * and the refusal aborts the transaction). Returns how many were inserted.
 */
export async function insertDocuments(client: MongoClient, session: ClientSession, ns: string, documents: readonly Uint8Array[], maxTimeMS: number): Promise<number> {
  if (!DocumentSequence) throw new Error('this driver cannot send documents as bytes');
  const dot = ns.indexOf('.');
  const db = client.db(ns.slice(0, dot));
  const collection = ns.slice(dot + 1);
  let inserted = 0;
  for (let start = 0; start < documents.length; ) {
    const sequence = new DocumentSequence('documents');
    let bytes = 0;
    let end = start;
    while (end < documents.length && end - start < COMMAND_DOCUMENTS && (end === start || bytes + documents[end]!.length <= COMMAND_BYTES)) {
      bytes += documents[end]!.length;
      // The document object is only for the driver's command monitoring, which mmm leaves off.
      sequence.push({}, documents[end]!);
      end++;
    }
    const reply = await db.command({ insert: collection, documents: sequence, ordered: true, maxTimeMS }, { session });
    const refused = (reply.writeErrors as Array<{ index: number; code: number; errmsg: string }> | undefined)?.[0];
    if (refused) throw new InsertWriteError(start + refused.index, refused);
    inserted += Number(reply.n);
    start = end;
  }
  return inserted;
}
