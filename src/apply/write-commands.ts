// Writes sent as statements already in BSON. An insert reaches the writer as the bytes the
// oplog held (../oplog/entry-bytes.ts), tagged without being decoded (../bson/raw.ts,
// taggedBytes); an update or a delete is a small statement the writer encodes itself
// (./statements.ts). Through the driver's bulkWrite each would be sized, copied into the
// driver's own operation objects and encoded again, which cost a catch-up of inserts a third of
// mmm's CPU, and one of updates a fifth. Here a run of one kind goes out in an `insert`,
// `update` or `delete` command whose statements are an OP_MSG document sequence, the form the
// driver gives its own bulk writes: its DocumentSequence takes documents already serialized.
// That class is not in the driver's public API, so it is looked up in its module: where a
// driver version lacks it, `statementsAsBytes` is false and the writer goes through bulkWrite.

import { MongoServerError, type ClientSession, type Document, type MongoClient } from 'mongodb';
// A namespace import: a driver whose module lacks the name gives undefined here, not a failed import.
import * as driverCommands from 'mongodb/lib/cmap/commands.js';

interface DocumentSequenceClass {
  new (field: string): { push(document: Document, buffer: Uint8Array): number };
}

const DocumentSequence = driverCommands.DocumentSequence as DocumentSequenceClass | undefined;

/** Whether this driver can send statements as bytes (sendStatements). */
export const statementsAsBytes = typeof DocumentSequence === 'function' && typeof DocumentSequence.prototype.push === 'function';

/**
 * At most this many bytes of statements per command, well under the server's 48 MB message
 * (`maxMessageSizeBytes`) and the count under its 100,000 writes (`maxWriteBatchSize`); a
 * batch of mmm's holds at most 16 MB of entries and 16,000 writes (over a long link), so this
 * only splits a larger one.
 */
const COMMAND_BYTES = 16 * 1024 * 1024;
const COMMAND_STATEMENTS = 100_000;

/** The write commands, and the field of each that holds its statements. */
const STATEMENTS_FIELD = { insert: 'documents', update: 'updates', delete: 'deletes' } as const;
export type WriteCommand = keyof typeof STATEMENTS_FIELD;

/**
 * The destination refused statement `index` of a sendStatements call, as a write error (a
 * duplicate key, a document too large): its code and message are the server's.
 */
export class StatementWriteError extends MongoServerError {
  constructor(
    readonly index: number,
    private readonly error: { code: number; errmsg: string },
  ) {
    super({ message: error.errmsg, errmsg: error.errmsg, code: error.code });
  }

  /** The same refusal, its statement named `by` places further on (among the statements of several calls). */
  shifted(by: number): StatementWriteError {
    return by === 0 ? this : new StatementWriteError(this.index + by, this.error);
  }
}

/**
 * Sends `statements` (BSON, in order: documents for `insert`, `{q, u, upsert}` for `update`,
 * `{q, limit}` for `delete`) to collection `ns` within `session`'s transaction, as ordered
 * commands; throws StatementWriteError at the first refused one (the server stops there, and
 * the refusal aborts the transaction). Returns what the server counted: documents inserted,
 * matched or upserted, or deleted.
 */
export async function sendStatements(
  client: MongoClient,
  session: ClientSession,
  command: WriteCommand,
  ns: string,
  statements: readonly Uint8Array[],
  maxTimeMS: number,
): Promise<number> {
  if (!DocumentSequence) throw new Error('this driver cannot send statements as bytes');
  const dot = ns.indexOf('.');
  const db = client.db(ns.slice(0, dot));
  const collection = ns.slice(dot + 1);
  let n = 0;
  for (let start = 0; start < statements.length; ) {
    const sequence = new DocumentSequence(STATEMENTS_FIELD[command]);
    let bytes = 0;
    let end = start;
    while (end < statements.length && end - start < COMMAND_STATEMENTS && (end === start || bytes + statements[end]!.length <= COMMAND_BYTES)) {
      bytes += statements[end]!.length;
      // The document object is only for the driver's command monitoring, which mmm leaves off.
      sequence.push({}, statements[end]!);
      end++;
    }
    const reply = await db.command({ [command]: collection, [STATEMENTS_FIELD[command]]: sequence, ordered: true, maxTimeMS }, { session });
    const refused = (reply.writeErrors as Array<{ index: number; code: number; errmsg: string }> | undefined)?.[0];
    if (refused) throw new StatementWriteError(start + refused.index, refused);
    n += Number(reply.n);
    start = end;
  }
  return n;
}
