// Scanning: both collections of a link read whole, range by range, several ranges at a time,
// and compared document by document (./match.ts). Finds the documents that look different,
// missing or extra, for ./recheck.ts to confirm.
//
// Why the documents themselves, read to this machine, rather than hashes computed by the
// servers: comparing hashes would be exact only if the hash told every BSON type apart. MongoDB
// 6.0 has `$toHashedIndexKey`, which hashes a whole document, field order included, but like a
// hashed index it takes numbers for their value: 1 as an Int32, a Double and a Long hash the
// same (checked on 6.0.5), so an Int32 turned Double would pass. No other aggregation
// expression sees types below the top level. So the bytes travel, and the cost is kept down
// instead: raw batches the driver does not decode (./read-range.ts), a fast path for the common
// case of two equal documents in the same place (two scans of top-level elements and one byte
// comparison), and both servers reading at the same time as this machine compares. On this
// 2-core machine, shared with other work, 70,000 to 130,000 documents of 1 KB a second per
// link, for about 2.3 CPU-seconds per 200,000 (bench/verify.ts; README, "Verifying that two
// sides agree").

import type { CollationOptions, MongoClient } from 'mongodb';
import type { Namespace } from '../namespace.ts';
import { RangeMatcher, type Candidate } from './match.ts';
import { mergeRanges, splitPoints } from './ranges.ts';
import { readRange, type IdRange } from './read-range.ts';

export interface ScanOptions {
  /** Ranges compared at the same time. */
  parallel: number;
  /** Documents per range, on each side (about: ranges are cut at every that-many-th `_id` of each). */
  rangeDocuments: number;
  /** Documents per batch read (fewer when the server's 16 MB reply is full). */
  batchSize: number;
}

// Measured on 200,000 documents of 1 KB (bench/verify.ts, and trials of other values): one,
// two or four ranges at a time came out alike within the machine's noise (two keeps both
// servers reading while this process compares); ranges of 20,000 make the per-range cost (two
// finds, the split points) small, where ranges of 1,000 halved the rate; batches of 2,000
// documents are 2 MB replies, and smaller ones cost more round trips.
export const SCAN_DEFAULTS: ScanOptions = { parallel: 2, rangeDocuments: 20_000, batchSize: 2_000 };

export interface Endpoint {
  client: MongoClient;
  ns: Namespace;
}

export interface ScanResult {
  /** Documents read on each side. */
  counts: { source: number; destination: number };
  /** In `_id` index order within each kind. */
  candidates: Candidate[];
}

/** Compares the two collections; `collation` is theirs (the `_id` index's order). */
export async function scan(source: Endpoint, destination: Endpoint, collation: CollationOptions | undefined, options: ScanOptions = SCAN_DEFAULTS): Promise<ScanResult> {
  const points = await Promise.all([source, destination].map((side) => splitPoints(side.client, side.ns, options.rangeDocuments)));
  const ranges = await mergeRanges(source.client, source.ns.db, points.flat(), collation);
  const result: ScanResult = { counts: { source: 0, destination: 0 }, candidates: [] };
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let r = next++; r < ranges.length; r = next++) {
      const matcher = new RangeMatcher(r, (candidate) => result.candidates.push(candidate));
      await compareRange(source, destination, ranges[r]!, matcher, options.batchSize);
      result.counts.source += matcher.counts.source;
      result.counts.destination += matcher.counts.destination;
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.parallel, ranges.length) }, worker));
  result.candidates.sort((a, b) => a.order - b.order);
  return result;
}

/** Reads one range of both sides, each a batch ahead, and feeds the matcher what it needs next. */
async function compareRange(source: Endpoint, destination: Endpoint, range: IdRange, matcher: RangeMatcher, batchSize: number): Promise<void> {
  const sides = {
    source: readRange(source.client, source.ns, range, batchSize),
    destination: readRange(destination.client, destination.ns, range, batchSize),
  };
  const pending = { source: sides.source.next(), destination: sides.destination.next() };
  try {
    for (;;) {
      const side = matcher.needs('source') ? 'source' : matcher.needs('destination') ? 'destination' : undefined;
      if (!side) break;
      const batch = await pending[side];
      if (!batch.done) pending[side] = sides[side].next();
      matcher.push(side, batch.done ? [] : batch.value);
    }
    matcher.finish();
  } finally {
    // On an error, the reads still in flight end quietly and their cursors are closed.
    for (const side of ['source', 'destination'] as const) {
      pending[side].catch(() => undefined);
      await sides[side].return(undefined).catch(() => undefined);
    }
  }
}
