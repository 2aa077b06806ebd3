// Tunables of a replication run, with their defaults in one place.

import type { WriteConcernSettings } from 'mongodb';
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
  /** Most writes applied (then checkpointed) as one batch, merging read-ahead batches. */
  applyBatchWrites: number;
  /** Partitions of a batch applied in parallel, by document `_id` (src/apply/parallel.ts). */
  applyPartitions: number;
}

export const DEFAULT_SETTINGS: ReplicationSettings = {
  batchSize: 1000,
  maxAwaitTimeMS: 1000,
  // Majority, so that a destination failover cannot roll back what a checkpoint says is applied.
  writeConcern: { w: 'majority' },
  retryInitialMs: 500,
  retryMaxMs: 30_000,
  // Measured with `npm run bench` (README, "Performance"): larger batches and read-ahead gave no
  // more throughput but more memory; 2 to 8 partitions gave the same throughput on 2 cores.
  readAheadEntries: 4_000,
  applyBatchWrites: 4_000,
  applyPartitions: 4,
};
