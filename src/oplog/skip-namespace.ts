// Reading without one namespace: the source's own mmm metadata, when it lives in a replicated
// database (`metadata_db`, `--metadata-db`).
//
// There, every checkpoint (and status) write is an oplog entry on the server that keeps it. A
// loop reading those entries would move its own checkpoint past them and record it on its
// destination: one more entry there, which the loop going the other way reads in turn. The two
// loops would write checkpoints to each other for ever, as fast as the servers allow. The
// entries are never replicated anyway (`replicate` refuses the namespace), so they are left out
// of the batches; the checkpoint then advances with the entries the loop reads, and the
// source's periodic no-op at the latest.

import type { Document, MongoClient, Timestamp } from 'mongodb';
import { OplogTailer, type OplogBatch, type TailOptions } from './tailer.ts';

export class OplogTailerSkipping extends OplogTailer {
  constructor(
    client: MongoClient,
    options: TailOptions,
    filter: Document,
    /** The namespace (`db.coll`) whose entries are left out. */
    private readonly skipped: string,
  ) {
    super(client, options, filter);
  }

  // `bytes` still counts the entries left out: they were read all the same. How far the server
  // read (`scanned`) is left out too: it moves with every checkpoint the loop going the other
  // way writes here, so following it would bring the endless exchange back, one checkpoint a
  // second; the filter takes no-ops (./filter.ts), which move the position instead, as before.
  override async *batches(after: Timestamp, signal: AbortSignal): AsyncGenerator<OplogBatch> {
    for await (const { entries, bytes } of super.batches(after, signal)) {
      yield { entries: entries.some((e) => e.ns === this.skipped) ? entries.filter((e) => e.ns !== this.skipped) : entries, bytes };
    }
  }
}
