// How much a loop applies (and reads ahead) at a time, grown over a long link to the destination.
//
// Each batch is one transaction per partition, and each transaction waits for at least three
// round trips to the destination whatever its size: its marker, its writes, its commit
// (../apply/writer.ts). On this machine's loopback they are a fraction of a millisecond; with
// 25 ms each way they are 150 ms, against about 200 ms of work for a batch of 4,000 inserts, so
// a third of the time went to waiting. A batch large enough to make them a small part hides
// them, at the cost of holding more: so the bounds grow only as far as the measured round trip
// asks, the counts no more than MOST_FACTOR times, the bytes no more than MOST_BYTES_FACTOR
// (entries of 1 MB read ahead and applied 32 MB at a time took mmm from 158 to 332 MB).
//
// The round trip is a marker's time (a one-document upsert: the server's part is negligible),
// the fastest of the last few, since a busy event loop sees a reply late. While a backlog is
// applied every marker may be late: on a loaded machine (CI's two cores running two suites) the
// fastest of 32 loopback markers took 12 ms, and the bounds grew near the destination. So a
// `ping` timed before the work starts, and again every minute, counts too: the round trip is the
// fastest of both, the ping's held until the next one. The work of a batch is
// its apply time less those round trips, measured on batches that the bounds cut short (a
// backlog), and scaled to what a batch as large as the bounds would do: a batch that the source
// ended says the source is the limit, and one far smaller than the bounds (a read-ahead full of
// entries that make few writes) says little of a full one; neither changes anything.

/** The bounds that follow() and the read-ahead queue use (../replicate/settings.ts). */
export interface Bounds {
  applyBatchWrites: number;
  applyBatchBytes: number;
  readAheadEntries: number;
  readAheadBytes: number;
}

/** Round trips a transaction waits for at least: its marker, its writes, its commit. */
const ROUND_TRIPS = 3;
/** Work wanted per unit of waiting: then the round trips are at most a fifth of a batch. */
const WORK_PER_WAIT = 4;
/** Grown back down only past twice that, so that a factor does not swing from batch to batch. */
const SHRINK_AT = 2 * WORK_PER_WAIT;
/** How far the counts grow: 16,000 writes applied at a time, with the defaults. */
export const MOST_FACTOR = 4;
/** How far the byte bounds grow: 16 MB, with the defaults (about 14,000 entries of 1 KB). */
export const MOST_BYTES_FACTOR = 2;
/** The least part of the bounds a batch must fill for its time to count. */
const MIN_FILL = 0.5;
/** How many markers' times the round trip is the fastest of. */
const ROUND_TRIP_SAMPLES = 32;
/** How long a ping's time is held, in ms: a link's latency may change (a failover to a far member). */
export const PROBE_HOLDS_MS = 60_000;

export class BatchBounds {
  private factor = 1;
  private readonly trips: number[] = [];
  private probe: { ms: number; at: number } | undefined;

  constructor(
    private readonly base: Bounds,
    private readonly most = MOST_FACTOR,
  ) {}

  /** The bounds now: the base ones times a factor from 1 to the most (for bytes, to MOST_BYTES_FACTOR). */
  get current(): Bounds {
    const f = this.factor;
    const fb = Math.min(f, MOST_BYTES_FACTOR);
    const { applyBatchWrites, applyBatchBytes, readAheadEntries, readAheadBytes } = this.base;
    return {
      applyBatchWrites: Math.round(applyBatchWrites * f),
      applyBatchBytes: Math.round(applyBatchBytes * fb),
      readAheadEntries: Math.round(readAheadEntries * f),
      readAheadBytes: Math.round(readAheadBytes * fb),
    };
  }

  /** The round trip to the destination, in ms, as the markers and the last ping tell it; undefined before the first. */
  get roundTripMs(): number | undefined {
    if (this.trips.length === 0) return this.probe?.ms;
    return Math.min(this.probe?.ms ?? Infinity, ...this.trips);
  }

  /** Whether a ping is due (none yet, or the last one is older than PROBE_HOLDS_MS at `now`). */
  probeDue(now: number): boolean {
    return this.probe === undefined || now - this.probe.at >= PROBE_HOLDS_MS;
  }

  /** A ping's time, in ms, measured at `at`: it replaces the one before. */
  probed(ms: number, at: number): void {
    this.probe = { ms, at };
  }

  /** A marker's time, in ms: about one round trip to the destination. */
  roundTrip(ms: number): void {
    this.trips.push(ms);
    if (this.trips.length > ROUND_TRIP_SAMPLES) this.trips.shift();
  }

  /**
   * A batch applied in `ms`. `fill`: when the bounds, not the read-ahead running dry, ended it,
   * how much of them it took (its writes or its bytes over theirs, whichever is more; over 1 for
   * one read batch larger than the bounds, applied alone); undefined otherwise. Returns whether
   * the bounds changed.
   */
  applied(ms: number, fill: number | undefined): boolean {
    const trip = this.roundTripMs;
    if (fill === undefined || fill < MIN_FILL || trip === undefined) return false;
    const wait = ROUND_TRIPS * trip;
    // At least a tenth of the batch's time counts as work: the round trip seen may be late.
    // Scaled to a batch as large as the bounds.
    const work = Math.max(ms - wait, ms / 10) / fill;
    const ratio = work / wait;
    let wanted = this.factor;
    if (ratio < WORK_PER_WAIT || ratio > SHRINK_AT) wanted = (this.factor * WORK_PER_WAIT) / ratio;
    wanted = Math.min(this.most, Math.max(1, wanted));
    // Steps under a tenth are noise.
    if (Math.abs(wanted - this.factor) < 0.1 * this.factor) return false;
    this.factor = wanted;
    return true;
  }
}
