// Reading without one namespace: the source's own mmm metadata, when it lives in a replicated
// database (`metadata_db`, `--metadata-db`).
//
// There, every checkpoint (and status) write is an oplog entry on the server that keeps it. A
// loop reading those entries would move its own checkpoint past them and record it on its
// destination: one more entry there, which the loop going the other way reads in turn. The two
// loops would write checkpoints to each other for ever, as fast as the servers allow. The
// entries are never replicated anyway (`replicate` refuses the namespace), so they are left out
// of the batches; the checkpoint then advances with the source's other entries, and its
// periodic no-op at the latest.

import type { MongoClient, Timestamp } from 'mongodb';
import { OplogTailer, type OplogBatch, type TailOptions } from './tailer.ts';

export class OplogTailerSkipping extends OplogTailer {
  constructor(
    client: MongoClient,
    options: TailOptions,
    /** The namespace (`db.coll`) whose entries are left out. */
    private readonly skipped: string,
  ) {
    super(client, options);
  }

  // `bytes` still counts the entries left out: they were read all the same.
  override async *batches(after: Timestamp, signal: AbortSignal): AsyncGenerator<OplogBatch> {
    for await (const batch of super.batches(after, signal)) {
      const { entries } = batch;
      yield entries.some((e) => e.ns === this.skipped) ? { ...batch, entries: entries.filter((e) => e.ns !== this.skipped) } : batch;
    }
  }
}
