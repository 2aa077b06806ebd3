// Reading: follows a source's `local.oplog.rs` like `tail -f`, with a tailable, awaitData cursor,
// from just after a checkpoint. Natural order is `ts` order (OPLOG.md), and a forward oplog
// cursor only returns entries once every earlier one is visible, so no entry is passed over.
//
// Filtered on the server: a reader may ask for only the entries it needs (./filter.ts), so the
// rest is neither sent nor decoded. Then the entries returned no longer say how far the cursor
// has read: the server does, in each reply's `postBatchResumeToken` (`{ts}`: every entry up to
// it was scanned, those matching sent), which a find with `$_requestResumeToken` (and a
// `$natural` hint) gets on the oplog. The driver's cursors do not hand that field over, so the
// cursor is driven here with find and getMore commands, in one session (a getMore must come in
// the session of its find).
//
// Memory: the server fills a reply up to 16 MB, and the driver holds each reply whole, with
// copies of it, while it is read (and keeps the newest `$clusterTime`, a slice of the reply, for
// a while after). Of small entries a reply holds `batchSize`; of large ones far fewer would do,
// so each getMore asks for as many entries as the last ones say fit in `batchBytes`.

import { BSON, type ClientSession, type Document, type Long, type MongoClient, type Timestamp } from 'mongodb';
import type { OplogEntry } from './entry.ts';
import { decodeEntryBytes } from './entry-bytes.ts';

export interface TailOptions {
  /** Most entries per getMore. */
  batchSize: number;
  /**
   * About how many bytes of entries per getMore: the cursor asks for as many entries (at least
   * one, at most `batchSize`) as those it has read say fit; see `resized`.
   */
  batchBytes: number;
  /** How long the server waits for new entries before answering an empty batch. */
  maxAwaitTimeMS: number;
}

/** One cursor batch: its entries, and their size as BSON, which read-ahead and apply bound. */
export interface OplogBatch {
  entries: OplogEntry[];
  /** Bytes of BSON the entries took on the wire. */
  bytes: number;
  /**
   * How far the server has read the oplog for this batch: every entry up to here that the
   * filter takes is in this batch or an earlier one (at or after the last entry's `ts`).
   */
  scanned?: Timestamp;
}

/** The `cursor` of a find or getMore reply, its batch left as each entry's BSON. */
interface CursorReply {
  id: Long;
  firstBatch?: Uint8Array[];
  nextBatch?: Uint8Array[];
  postBatchResumeToken?: { ts?: Timestamp };
}

/** Entries stay BSON bytes in the reply: each is decoded below, its size known without encoding it again. */
const REPLY: BSON.DeserializeOptions = { fieldsAsRaw: { firstBatch: true, nextBatch: true }, promoteValues: false, validation: { utf8: false } };

export class OplogTailer {
  constructor(
    private readonly client: MongoClient,
    private readonly options: TailOptions,
    /** A query on the entries: only those it matches are read (all when empty). */
    private readonly filter: Document = {},
  ) {}

  private get oplog() {
    return this.client.db('local').collection<OplogEntry>('oplog.rs');
  }

  /** Position of the newest entry: where a link that was never run starts. */
  async newest(): Promise<Timestamp> {
    return this.edge(-1);
  }

  /** Position of the oldest entry still in the capped oplog. */
  async oldest(): Promise<Timestamp> {
    return this.edge(1);
  }

  private async edge(direction: 1 | -1): Promise<Timestamp> {
    const entry = await this.oplog.find({}, { projection: { ts: 1 } }).sort({ $natural: direction }).limit(1).next();
    if (!entry) throw new Error('the oplog is empty');
    return entry.ts;
  }

  /**
   * Yields the entries after `after`, a batch at a time, and an empty batch whenever the server
   * waited `maxAwaitTimeMS` without news (so the caller can notice a stop request). Ends when
   * `signal` is aborted; throws if the cursor dies.
   */
  async *batches(after: Timestamp, signal: AbortSignal): AsyncGenerator<OplogBatch> {
    if (signal.aborted) return;
    const local = this.client.db('local');
    const session = this.client.startSession();
    let id: Long | undefined;
    try {
      // One entry first, then more as long as they fit in `batchBytes`: a first reply of
      // `batchSize` large entries would be 16 MB, and so would be the batch applied from it.
      let batchSize = 1;
      let cursor = await this.command(session, {
        find: 'oplog.rs',
        filter: { ts: { $gt: after }, ...this.filter },
        tailable: true,
        awaitData: true,
        hint: { $natural: 1 },
        batchSize,
        $_requestResumeToken: true,
      });
      for (;;) {
        id = cursor.id;
        const batch = this.batchOf(cursor);
        yield batch;
        if (signal.aborted) return;
        if (id.isZero()) throw new Error('the oplog cursor was closed by the server');
        batchSize = this.resized(batch, batchSize);
        cursor = await this.command(session, { getMore: id, collection: 'oplog.rs', batchSize, maxTimeMS: this.options.maxAwaitTimeMS });
      }
    } finally {
      if (id !== undefined && !id.isZero()) await local.command({ killCursors: 'oplog.rs', cursors: [id] }, { session }).catch(() => undefined);
      await session.endSession().catch(() => undefined);
    }
  }

  private async command(session: ClientSession, command: Document): Promise<CursorReply> {
    const reply = await this.client.db('local').command(command, { session, ...REPLY });
    return reply.cursor as CursorReply;
  }

  private batchOf(cursor: CursorReply): OplogBatch {
    const raw = cursor.firstBatch ?? cursor.nextBatch ?? [];
    let bytes = 0;
    const entries = raw.map((buf) => {
      bytes += buf.byteLength;
      return decodeEntryBytes(buf);
    });
    const scanned = cursor.postBatchResumeToken?.ts;
    return scanned === undefined ? { entries, bytes } : { entries, bytes, scanned };
  }

  /**
   * The batch size for the reply after `batch`, asked for with `current`: as many entries of
   * its average size as fit in `batchBytes` when it was more than twice that; when it was full
   * and twice as many (or `batchSize`) would fit, up to four times as many, in a few steps in
   * case larger entries come next. In between it stays.
   */
  private resized(batch: OplogBatch, current: number): number {
    const replied = batch.entries.length;
    const { entries, bytes } = batch;
    if (entries.length === 0) return current;
    const fitting = Math.max(1, Math.min(this.options.batchSize, Math.floor((this.options.batchBytes * entries.length) / bytes)));
    if (bytes > 2 * this.options.batchBytes) return fitting;
    const grown = Math.min(fitting, 4 * current);
    if (replied >= current && grown > current && (grown >= 2 * current || grown === this.options.batchSize)) return grown;
    return current;
  }
}
