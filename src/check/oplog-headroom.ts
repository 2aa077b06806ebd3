// How long a source's oplog holds its writes at the current write rate: the time mmm may be
// stopped (or a link behind) before its checkpoint falls out of the oplog and changes are lost
// (README, "A lost oplog window"). The current rate is that of the last SAMPLE_ENTRIES entries,
// read backwards from the newest (cheap: a few thousand small documents), times the oplog's
// average entry size; a full oplog holds its configured size at that rate.

import type { MongoClient, Timestamp } from 'mongodb';

/** Entries back from the newest that measure the current write rate. */
const SAMPLE_ENTRIES = 2_000;
/** An oplog with fewer entries than the sample, over less time than this, tells no rate yet. */
const YOUNG_SECONDS = 60;

export interface OplogHeadroom {
  oldest: Timestamp;
  newest: Timestamp;
  /** Bytes of oplog written per second at the current rate; null when the server hides sizes. */
  bytesPerSecond: number | null;
  entriesPerSecond: number;
  /** The configured size; null without the privilege for $collStats. */
  maxBytes: number | null;
  /** How many seconds of writes a full oplog holds at the current rate. */
  fullWindowSeconds: number | null;
  /**
   * Too new to tell a rate: fewer entries than the sample, over less than a minute, such as the
   * burst a replica set writes when it starts.
   */
  young: boolean;
}

export async function measureOplog(client: MongoClient): Promise<OplogHeadroom> {
  const oplog = client.db('local').collection<{ ts: Timestamp }>('oplog.rs');
  const at = async (direction: 1 | -1, skip = 0) =>
    (await oplog.find({}, { projection: { _id: 0, ts: 1 } }).sort({ $natural: direction }).skip(skip).limit(1).next())?.ts;
  const [oldest, newest, sampled, stats] = await Promise.all([
    at(1),
    at(-1),
    at(-1, SAMPLE_ENTRIES),
    oplog
      .aggregate<{ storageStats: { size: number; maxSize: number; count: number } }>([{ $collStats: { storageStats: {} } }])
      .next()
      .catch(() => null),
  ]);
  if (!oldest || !newest) throw new Error('the oplog is empty');
  // Fewer entries than the sample: the whole oplog is the sample.
  const entries = sampled ? SAMPLE_ENTRIES : (stats?.storageStats.count ?? 0);
  const since = sampled ?? oldest;
  // Timestamps count whole seconds: a second at least, so a burst within one is not infinite.
  const entriesPerSecond = entries / Math.max(1, newest.t - since.t);
  const size = stats ? Number(stats.storageStats.size) : NaN;
  const count = stats ? Number(stats.storageStats.count) : NaN;
  const maxBytes = stats ? Number(stats.storageStats.maxSize) : NaN;
  const bytesPerSecond = count > 0 && Number.isFinite(size) ? entriesPerSecond * (size / count) : null;
  return {
    oldest,
    newest,
    bytesPerSecond,
    entriesPerSecond,
    maxBytes: Number.isFinite(maxBytes) ? maxBytes : null,
    fullWindowSeconds: bytesPerSecond && Number.isFinite(maxBytes) ? maxBytes / bytesPerSecond : null,
    young: !sampled && newest.t - oldest.t < YOUNG_SECONDS,
  };
}

/** Hours with one decimal, or minutes under an hour: `17.2 h`, `40 min`. */
export function hoursText(seconds: number): string {
  if (seconds < 3600) return `${Math.max(0, Math.round(seconds / 60))} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}
