// Reading: follows a source's `local.oplog.rs` like `tail -f`, with a tailable, awaitData cursor,
// from just after a checkpoint. Natural order is `ts` order (OPLOG.md), and a forward oplog
// cursor only returns entries once every earlier one is visible, so no entry is passed over.

import type { FindCursor, MongoClient, Timestamp } from 'mongodb';
import type { OplogEntry } from './entry.ts';

export interface TailOptions {
  /** Entries per getMore. */
  batchSize: number;
  /** How long the server waits for new entries before answering an empty batch. */
  maxAwaitTimeMS: number;
}

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
  async *batches(after: Timestamp, signal: AbortSignal): AsyncGenerator<OplogEntry[]> {
    const cursor: FindCursor<OplogEntry> = this.oplog.find(
      { ts: { $gt: after } },
      {
        tailable: true,
        awaitData: true,
        maxAwaitTimeMS: this.options.maxAwaitTimeMS,
        batchSize: this.options.batchSize,
        // Keep numeric BSON types as they are, so a double is written back as a double.
        promoteValues: false,
        // The server only stores valid UTF-8; checking it again costs a good part of decoding.
        enableUtf8Validation: false,
      },
    );
    try {
      while (!signal.aborted) {
        const first = await cursor.tryNext();
        if (first === null) {
          if (cursor.closed) throw new Error('the oplog cursor was closed by the server');
          yield [];
          continue;
        }
        yield [first, ...cursor.readBufferedDocuments()];
      }
    } finally {
      await cursor.close().catch(() => undefined);
    }
  }
}
