// The source's time carried to the destination with each transaction, so that a write made on
// the destination after it received another bears a later oplog time than that one.
//
// Conflicts are decided by the writes' times in their origins' oplogs (../conflict/resolve.ts).
// Two servers' clocks are never exactly together, and within one second the oplog's counter
// says nothing across servers: without this, a user's write on B made after B applied A's
// write could bear an earlier time than it, and lose to the very write it had seen. MongoDB
// keeps the same promise within one cluster with its cluster time: each server's oplog times
// never fall behind a `$clusterTime` a client shows it (a hybrid logical clock). mmm shows the
// destination the time of the last source entry a transaction applies; the source's own clock
// is past every version it holds, those it relayed included.
//
// A server with access control takes such a time only from a user allowed the
// `advanceClusterTime` action (a time the server already reached is taken from anyone), and
// any server refuses one more than a year (maxAcceptableLogicalClockDriftSecs) ahead of its
// own clock. Refused once, a destination is no longer shown times for the rest of the run:
// the transaction is written again without, and one warning says what that leaves.

import { Binary, Long, type ClientSession, type Timestamp } from 'mongodb';
import type { Logger } from '../log.ts';
import { serverErrorCode } from './transient.ts';

/** TimeProofMismatch, ClusterTimeFailsRateLimiter, KeyNotFound: the server would not take the time shown. */
const REFUSED_TIME_CODES: ReadonlySet<number> = new Set([204, 205, 211]);

/**
 * An unsigned time: a server without access control, or a user allowed to advance the clock,
 * is not asked for a signature (only its shape is read).
 */
const NO_SIGNATURE = { hash: new Binary(Buffer.alloc(20)), keyId: Long.fromNumber(0) };

export class CarriedClock {
  private refusal: string | undefined;

  constructor(private readonly logger: Logger) {}

  /** Shows the destination `ts` with the commands of `session`; false if none (or it refused a time before). */
  carry(session: ClientSession, ts: Timestamp | undefined): boolean {
    if (ts === undefined || this.refusal !== undefined) return false;
    session.advanceClusterTime({ clusterTime: ts, signature: NO_SIGNATURE });
    return true;
  }

  /** Whether `err` is the destination refusing the time carried: then none is carried again, and one warning says so. */
  refused(err: unknown): boolean {
    const code = serverErrorCode(err);
    if (code === undefined || !REFUSED_TIME_CODES.has(code)) return false;
    this.refusal = (err as Error).message;
    this.logger.warn(
      { reason: this.refusal },
      "the destination does not take the source's cluster time: its users' writes are ordered by its own clock, so one made after receiving a write can lose to it (README, Conflicts)",
    );
    return true;
  }
}

/** The latest source time among `times`. */
export function latest(times: Iterable<Timestamp>): Timestamp | undefined {
  let last: Timestamp | undefined;
  for (const ts of times) if (last === undefined || ts.greaterThan(last)) last = ts;
  return last;
}
