// Waiting until a link has applied what its source held at a given moment: until the
// destination's checkpoint for that source (everything the source logged up to it is applied,
// ../config/store.ts) reaches the moment a document was read on the source.
//
// Only a run that is alive moves the checkpoint: its loop's status record (../status/record.ts)
// says `running` or `retrying` with a fresh heartbeat (the rule `mmm status` uses). Without one,
// waiting is pointless, and the documents are compared as they are.

import { setTimeout as sleep } from 'node:timers/promises';
import type { MongoClient, Timestamp } from 'mongodb';
import type { ReplicationConfigStore } from '../config/store.ts';
import { DEFAULT_SETTINGS } from '../replicate/settings.ts';
import { OplogTailer } from '../oplog/tailer.ts';
import { STALE_HEARTBEATS } from '../status/report.ts';
import type { LoopStatusRecord } from '../status/record.ts';

/** One direction of replication between the two collections: who applies what into where. */
export interface Follower {
  /** The server the changes come from. */
  source: MongoClient;
  sourceId: string;
  /** The server that applies them, and the store holding its checkpoint for `sourceId`. */
  destination: MongoClient;
  store: ReplicationConfigStore;
}

/**
 * applied: the checkpoint reached the moment; not followed: no run is alive to move it;
 * behind: a run is alive but did not get there in time.
 */
export type WaitOutcome = 'applied' | 'not followed' | 'behind';

export interface WaitOptions {
  timeoutMS: number;
  pollMS: number;
}

export const WAIT_DEFAULTS: WaitOptions = { timeoutMS: 15_000, pollMS: 25 };

/** As `mmm status`: slack, in seconds, for a heartbeat written late. */
const STALE_SLACK_SECONDS = 2;

/**
 * Waits until `follower` has applied everything its source logged up to `readAt` (a read's
 * cluster time on the source). The target is the source's newest oplog entry, if earlier:
 * a read's time can be past the last write, which no checkpoint would then ever reach.
 */
export async function waitForCheckpoint(follower: Follower, readAt: Timestamp, options: WaitOptions = WAIT_DEFAULTS): Promise<WaitOutcome> {
  const newest = await new OplogTailer(follower.source, DEFAULT_SETTINGS).newest();
  const target = newest.lessThan(readAt) ? newest : readAt;
  const hello = await follower.destination.db('admin').command({ hello: 1 });
  // The heartbeat is by the destination's clock: compared with that clock, read once.
  const offset = hello.localTime instanceof Date ? hello.localTime.getTime() - Date.now() : 0;
  const deadline = Date.now() + options.timeoutMS;
  for (;;) {
    const config = await follower.store.source(follower.sourceId);
    if (config?.checkpoint?.greaterThanOrEqual(target)) return 'applied';
    if (!alive(config?.status, Date.now() + offset)) return 'not followed';
    if (Date.now() >= deadline) return 'behind';
    await sleep(options.pollMS);
  }
}

function alive(status: LoopStatusRecord | undefined, now: number): boolean {
  if (!status || (status.state !== 'running' && status.state !== 'retrying')) return false;
  return now - status.heartbeat.getTime() <= (STALE_HEARTBEATS * status.every + STALE_SLACK_SECONDS) * 1000;
}
