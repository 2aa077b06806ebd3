// Writes a destination refused for good (a unique index, a validator, a document too large once
// tagged), kept on that destination in `mmm.refused` so that none is lost without a trace: the
// record says what was refused, where it came from and why, and holds the source operation
// itself, so that an operator can mend the cause and apply it by hand. `mmm status` and the
// metrics count these records, so the count survives restarts.
//
// One record per refused write, keyed by where it came from (source server, oplog position,
// place in the entry, destination namespace): a replay that meets the same refusal again finds
// its record already there instead of adding a second.

import { Binary, BSON, type Collection, type MongoClient, type Timestamp, type WriteConcernSettings } from 'mongodb';
import { RefusedWriteError } from '../errors.ts';
import { MMM_DATABASE, REFUSED_COLLECTION } from '../replicate/tag.ts';
import { serverErrorCode } from './transient.ts';
import type { DestinationWrite } from './writer.ts';

/** The source operation is kept whole below this size; a larger one is kept as its position only. */
const KEEP_OPERATION_BYTES = 8 * 1024 * 1024;

export interface RefusedRecord {
  _id: { source: string; ts: Timestamp; seq: number; ns: string };
  /** Source server UUID, and the server the write was first made on. */
  source: string;
  origin: string;
  /** Namespace on the source, and on this destination. */
  sourceNs: string;
  ns: string;
  /** The document's `_id`. */
  docId: unknown;
  op: 'i' | 'u' | 'd';
  /** The source operation `{op, ns, o, o2}` as BSON; absent if larger than KEEP_OPERATION_BYTES. */
  operation?: Binary;
  /** Its size in bytes. */
  size: number;
  error: { code?: number; message: string };
  at: Date;
}

export class RefusedWrites {
  private readonly collection: Collection<RefusedRecord>;

  constructor(
    client: MongoClient,
    private readonly sourceId: string,
    writeConcern: WriteConcernSettings,
  ) {
    this.collection = client.db(MMM_DATABASE).collection<RefusedRecord>(REFUSED_COLLECTION, { writeConcern });
  }

  /** Keeps `write`, refused with `cause`; a second record of the same write changes nothing. */
  async record(write: DestinationWrite, cause: Error): Promise<void> {
    const { change } = write;
    const operation = BSON.serialize({ op: change.op, ns: change.ns, o: change.o, ...(change.o2 && { o2: change.o2 }) });
    const code = serverErrorCode(cause);
    const record: RefusedRecord = {
      _id: { source: this.sourceId, ts: change.ts, seq: change.seq, ns: write.ns },
      source: this.sourceId,
      origin: write.origin,
      sourceNs: change.ns,
      ns: write.ns,
      docId: write.id,
      op: change.op,
      ...(operation.byteLength <= KEEP_OPERATION_BYTES && { operation: new Binary(operation) }),
      size: operation.byteLength,
      error: { ...(code !== undefined && { code }), message: cause.message },
      at: new Date(),
    };
    const { _id, ...fields } = record;
    await this.collection.updateOne({ _id }, { $setOnInsert: fields }, { upsert: true });
  }

  /** How many writes from this source the destination has refused, ever (until cleared). */
  async count(): Promise<number> {
    return this.collection.countDocuments({ source: this.sourceId });
  }

  /** The error that stops a link on a refused write (`run --on-refused stop`). */
  stopError(write: DestinationWrite, cause: Error): RefusedWriteError {
    return new RefusedWriteError(
      `the destination refused a write to ${write.ns} (_id ${BSON.EJSON.stringify(write.id as never)}): ${cause.message}; ` +
        `it is kept in ${MMM_DATABASE}.${REFUSED_COLLECTION}. Mend the cause, then restart \`mmm run\` (or run it with --on-refused keep)`,
      write.ns,
      write.id,
    );
  }
}
