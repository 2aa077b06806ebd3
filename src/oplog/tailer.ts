// Reading: follows a source's `local.oplog.rs` like `tail -f`, with a tailable, awaitData cursor,
// from just after a checkpoint. Natural order is `ts` order (OPLOG.md), and a forward oplog
// cursor only returns entries once every earlier one is visible, so no entry is passed over.
//
// Memory: the server fills a reply up to 16 MB, and the driver holds each reply whole, with
// copies of it, while it is read (and keeps the newest `$clusterTime`, a slice of the reply, for
// a while after). Of small entries a reply holds `batchSize`; of large ones far fewer would do,
// so the cursor asks for as many entries as the last ones say fit in `batchBytes`: when replies
// come out much larger or fuller than that, it is reopened where it was, asking for fewer (or
// more) entries per batch.

import { BSON, type FindCursor, type MongoClient, type Timestamp } from 'mongodb';
import { OplogRolledOverError } from '../errors.ts';
import { formatTs } from './decode.ts';
import type { OplogEntry } from './entry.ts';

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
}

/**
 * As the driver decodes for us otherwise: numeric BSON types kept as they are, so a double is
 * written back as a double, and no UTF-8 check (the server only stores valid UTF-8; checking it
 * again costs a good part of decoding).
 */
const DECODE: BSON.DeserializeOptions = { promoteValues: false, validation: { utf8: false } };

export class OplogTailer {
  constructor(
    private readonly client: MongoClient,
    private readonly options: TailOptions,
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
    // One entry first, then more as long as they fit in `batchBytes`: a first reply of
    // `batchSize` large entries would be 16 MB, and so would be the batch applied from it.
    let batchSize = 1;
    /** Set when the cursor is reopened: the last entry read, which the new cursor starts with. */
    let resumeAt: Timestamp | undefined;
    while (!signal.aborted) {
      const cursor = this.tail(resumeAt === undefined ? { $gt: after } : { $gte: resumeAt }, batchSize);
      try {
        while (!signal.aborted) {
          const batch = await this.nextBatch(cursor, resumeAt);
          if (batch === null) {
            yield { entries: [], bytes: 0 };
            continue;
          }
          const replied = batch.entries.length + (resumeAt === undefined ? 0 : 1);
          resumeAt = undefined;
          yield batch;
          const resized = this.resized(batch, replied, batchSize);
          if (resized !== batchSize) {
            batchSize = resized;
            resumeAt = batch.entries[batch.entries.length - 1]!.ts;
            break;
          }
        }
      } finally {
        await cursor.close().catch(() => undefined);
      }
    }
  }

  private tail(ts: { $gt: Timestamp } | { $gte: Timestamp }, batchSize: number): FindCursor<Uint8Array> {
    // `raw`: the cursor hands over each entry's BSON bytes, decoded here, so that the size of
    // every entry is known without serializing it again. The driver does not change the
    // cursor's type for `raw`, hence the cast.
    return this.client
      .db('local')
      .collection('oplog.rs')
      .find({ ts }, { tailable: true, awaitData: true, maxAwaitTimeMS: this.options.maxAwaitTimeMS, batchSize, raw: true }) as unknown as FindCursor<Uint8Array>;
  }

  /**
   * The entries of the cursor's next reply, or null when the server waited without news. The
   * first reply of a reopened cursor starts with `resumeAt`, the entry read last before: it is
   * left out, and were it gone, the oplog would have overwritten it, and maybe entries after it,
   * before they were read.
   */
  private async nextBatch(cursor: FindCursor<Uint8Array>, resumeAt: Timestamp | undefined): Promise<OplogBatch | null> {
    const first = await cursor.tryNext();
    if (first === null) {
      if (cursor.closed) throw new Error('the oplog cursor was closed by the server');
      return null;
    }
    const raw = [first, ...cursor.readBufferedDocuments()];
    let bytes = 0;
    const entries = raw.map((buf) => {
      bytes += buf.byteLength;
      return BSON.deserialize(buf, DECODE) as OplogEntry;
    });
    if (resumeAt === undefined) return { entries, bytes };
    if (!entries[0]!.ts.equals(resumeAt)) {
      throw new OplogRolledOverError(
        `the oplog no longer holds ${formatTs(resumeAt)}, the last entry read (its oldest entry is now ${formatTs(entries[0]!.ts)}): entries after it may be lost`,
      );
    }
    return { entries: entries.slice(1), bytes: bytes - first.byteLength };
  }

  /**
   * The batch size for the replies after `batch` (a reply of `replied` entries, one of them
   * left out if it was the one resumed from): as many entries of its average size as fit
   * in `batchBytes` when it was more than twice that; when it was full and twice as many (or
   * `batchSize`) would fit, up to four times as many, in a few steps in case larger entries come
   * next. In between it stays, so that entries of mixed sizes do not reopen the cursor batch
   * after batch.
   */
  private resized(batch: OplogBatch, replied: number, current: number): number {
    const { entries, bytes } = batch;
    if (entries.length === 0) return current;
    const fitting = Math.max(1, Math.min(this.options.batchSize, Math.floor((this.options.batchBytes * entries.length) / bytes)));
    if (bytes > 2 * this.options.batchBytes) return fitting;
    const grown = Math.min(fitting, 4 * current);
    if (replied >= current && grown > current && (grown >= 2 * current || grown === this.options.batchSize)) return grown;
    return current;
  }
}
