// Splitting a link's two collections into `_id` ranges that can be compared one by one, and
// several at once.
//
// Split points come from both sides' `_id` index: every `every`-th `_id`, each found by an index
// scan that skips that many keys on the server (no document is read, nothing but the one `_id`
// is sent). Taking them from both sides bounds every range to about `every` documents on each,
// also where one side holds many documents the other lacks. The two lists are merged in the
// index's order by the server itself (`$documents`, `$group`, `$sort`, with the collection's
// collation), which is the only place that order is defined for every BSON type. (`$literal`:
// `$documents` takes expressions, where a string `_id` starting with `$` would be a field path.)

import { MaxKey, MinKey, type CollationOptions, type Document, type MongoClient } from 'mongodb';
import { EXACT_DECODE } from '../bson/raw.ts';
import type { Namespace } from '../namespace.ts';
import type { IdRange } from './read-range.ts';

/** Every `every`-th `_id` of `ns` in index order (not the first), as values that keep their BSON types. */
export async function splitPoints(client: MongoClient, ns: Namespace, every: number): Promise<unknown[]> {
  const collection = client.db(ns.db).collection<Document>(ns.coll);
  const points: unknown[] = [];
  let from: unknown = new MinKey();
  for (;;) {
    const [next] = await collection
      .find({}, { hint: { _id: 1 }, min: { _id: from }, skip: every, limit: 1, projection: { _id: 1 }, ...EXACT_DECODE } as never)
      .toArray();
    if (!next) return points;
    points.push(next._id);
    from = next._id;
  }
}

/**
 * Ranges that cover every `_id`, cut at the split points of both sides (merged and in index
 * order, by `client`'s server, under `collation`), from MinKey to MaxKey.
 */
export async function mergeRanges(client: MongoClient, db: string, points: readonly unknown[], collation: CollationOptions | undefined): Promise<IdRange[]> {
  let bounds: unknown[] = [];
  if (points.length > 0) {
    const sorted = await client
      .db(db)
      .aggregate([{ $documents: points.map((v) => ({ v: { $literal: v } })) }, { $group: { _id: '$v' } }, { $sort: { _id: 1 } }], { ...(collation && { collation }), ...EXACT_DECODE })
      .toArray();
    bounds = sorted.map((d) => d._id);
  }
  const edges = [new MinKey(), ...bounds, new MaxKey()];
  return edges.slice(1).map((max, k) => ({ min: edges[k], max }));
}
