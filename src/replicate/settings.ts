// Tunables of a replication run, with their defaults in one place.

import type { WriteConcernSettings } from 'mongodb';
import { APPLY_DEFAULTS, type RefusedPolicy } from '../apply/writer.ts';
import type { ConflictPolicy } from '../conflict/version.ts';
import type { TailOptions } from '../oplog/tailer.ts';

export interface ReplicationSettings extends TailOptions {
  /** Write concern of every write on a destination, checkpoints included. */
  writeConcern: WriteConcernSettings;
  /** First wait before retrying after a server was lost; doubled on each failure. */
  retryInitialMs: number;
  /** The longest wait between retries. */
  retryMaxMs: number;
  /** How far reading may run ahead of applying, in oplog entries (backpressure beyond). */
  readAheadEntries: number;
  /**
   * How far reading may run ahead of applying, in bytes of oplog entries as BSON (backpressure
   * beyond); a batch larger than this on its own is still read, alone.
   */
  readAheadBytes: number;
  /** Most writes applied (then checkpointed) as one batch, merging read-ahead batches. */
  applyBatchWrites: number;
  /**
   * Most bytes of oplog entries (as BSON) applied as one batch: read-ahead batches are merged
   * up to this; a cursor batch larger than this on its own is applied alone.
   */
  applyBatchBytes: number;
  /** Partitions of a batch applied in parallel, by document `_id` (src/apply/parallel.ts). */
  applyPartitions: number;
  /** A write the destination refuses for good: kept and skipped, or kept and the link stopped. */
  onRefused: RefusedPolicy;
  /** The longest a write command or a commit of mmm's may run on a destination. */
  maxTimeMS: number;
  /** How often `run` reads each destination's links, to follow changes made while it runs. */
  linkPollMs: number;
  /** Which of two concurrent versions of a document every server keeps (../conflict/version.ts); off: none is checked. */
  conflicts: ConflictPolicy;
  /**
   * Whether each destination transaction shows the destination the source's time, so that what
   * is written there next bears a later time (../apply/carried-clock.ts); only where conflicts
   * are resolved. Off: each server's writes are timed by its own clock alone.
   */
  carryClock: boolean;
}

export const DEFAULT_SETTINGS: ReplicationSettings = {
  batchSize: 1000,
  // Replies of 1 MB entries then hold 4 of them rather than 15 (16 MB): measured with
  // `test/memory-backlog.test.ts`, as the byte bounds below.
  batchBytes: 4 * 1024 * 1024,
  maxAwaitTimeMS: 1000,
  // Majority, so that a destination failover cannot roll back what a checkpoint says is applied.
  writeConcern: { w: 'majority' },
  retryInitialMs: 500,
  retryMaxMs: 30_000,
  // Measured with `npm run bench` (README, "Performance"): larger batches and read-ahead gave no
  // more throughput but more memory; 2 to 8 partitions gave the same throughput on 2 cores.
  readAheadEntries: 4_000,
  applyBatchWrites: 4_000,
  // Entries weigh from a hundred bytes to 16 MB: bytes bound memory where counts cannot. Entries
  // of 1 KB reach the counts above first; of 1 MB entries, two replies (`batchBytes`) are read
  // ahead and two applied at a time. `test/memory-backlog.test.ts` measures the peak: 16 MB of
  // read-ahead took 20 MB more there, 64 and 32 MB (with 16 MB replies) 150 MB more.
  readAheadBytes: 8 * 1024 * 1024,
  applyBatchBytes: 8 * 1024 * 1024,
  applyPartitions: 4,
  ...APPLY_DEFAULTS,
  linkPollMs: 1000,
  conflicts: { kind: 'lww' },
  carryClock: true,
};
