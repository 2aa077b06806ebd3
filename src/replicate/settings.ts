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
}

export const DEFAULT_SETTINGS: ReplicationSettings = {
  batchSize: 1000,
  maxAwaitTimeMS: 1000,
  // Majority, so that a destination failover cannot roll back what a checkpoint says is applied.
  writeConcern: { w: 'majority' },
  retryInitialMs: 500,
  retryMaxMs: 30_000,
};
