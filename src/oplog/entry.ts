// The shape of `local.oplog.rs` entries as mmm reads them: with the driver's `promoteValues:
// false`, so numbers stay Int32/Double/Long wrappers and are written back with the same BSON
// type (a double must not come back as an int32).

import type { Binary, BSON, Document, Long, Timestamp } from 'mongodb';
import type { RawDocument } from '../bson/lazy-document.ts';

/**
 * How entries are decoded: numeric BSON types kept as they are, so a double is written back as
 * a double; regular expressions as BSON has them (a JavaScript RegExp would lose the `s` and `x`
 * options and gain `g`); and no UTF-8 check, which costs a good part of decoding (a string that
 * is not valid UTF-8 decodes with U+FFFD in place of what is not).
 */
export const ENTRY_DECODE: BSON.DeserializeOptions = { promoteValues: false, bsonRegExp: true, validation: { utf8: false } };

export type OplogOp = 'i' | 'u' | 'd' | 'c' | 'n';

export interface OplogEntry {
  /** Position in the oplog; entries are in `ts` order. */
  ts: Timestamp;
  op: OplogOp;
  /** `db.coll`, or `db.$cmd` for commands, or '' for some no-ops. */
  ns: string;
  o: Document;
  /**
   * An insert: its document as the oplog holds it, which the write path sends on;
   * `o` is then decoded from it when first read (./entry-bytes.ts).
   */
  raw?: RawDocument;
  /**
   * An update logged alone: its `o` as the oplog holds it, which the write path sends on where
   * it can; `o` is then decoded from it when first read (./entry-bytes.ts).
   */
  rawUpdate?: RawDocument;
  /** For updates: `{_id}` (plus any shard key). */
  o2?: Document;
  /** Wall-clock time of the write (MongoDB 4.2+). */
  wall?: Date;
  /** Set on entries written by a chunk migration, not by a user. */
  fromMigrate?: boolean;
  /** Session of a retryable write or transaction. */
  lsid?: { id: Binary };
  txnNumber?: Long;
  prevOpTime?: { ts: Timestamp };
  /** The collection's UUID, on CRUD entries. */
  ui?: Binary;
}

/** One insert, update or delete, whether logged alone or inside an `applyOps`. */
export interface CrudOp {
  op: 'i' | 'u' | 'd';
  ns: string;
  o: Document;
  /** See OplogEntry. */
  raw?: RawDocument;
  /** See OplogEntry. */
  rawUpdate?: RawDocument;
  o2?: Document;
  fromMigrate?: boolean;
  ui?: Binary;
}

/**
 * A change ready to replicate: a CRUD operation and the oplog position at which it became
 * visible (for an operation inside a transaction, the position of the commit entry).
 */
export interface Change extends CrudOp {
  ts: Timestamp;
  /** The operation's place in its entry (0 for a plain entry; in a transaction, its index). */
  seq: number;
  wall?: Date;
  /** The server a user first made this write on, when mmm made it (undefined: a user did). */
  origin?: string;
  /** Where the source keeps the document as it was before this update or delete, if it keeps it. */
  preImage?: PreImageKey;
  /**
   * A write of mmm's whose data carries no tag: a delete (the tag its marker lists,
   * ../replicate/marker-deletes.ts), or a transaction's second write of one document (the first's).
   */
  tag?: string;
}

/**
 * The `_id` of a pre-image in `config.system.preimages`, kept for updates and deletes of a
 * collection with `changeStreamPreAndPostImages` (checked on 6.0): the collection's UUID, the
 * oplog entry's `ts` (in a transaction of several entries, the entry holding the operation) and
 * the operation's index in that entry's `applyOps` (0 for a plain entry).
 */
export interface PreImageKey {
  nsUUID: Binary;
  ts: Timestamp;
  applyOpsIndex: number;
}

/** The `_id` of the document an operation touches (OPLOG.md: `o2._id` for updates, else `o._id`). */
export function documentId(op: CrudOp): unknown {
  return op.op === 'u' ? op.o2?._id : op.o._id;
}
