// Documents read again by `_id`, and the two ways verify compares copies: as verify reports
// them (without `__mmm`) and exactly (any change at all).

import type { ClientSession, Document, MongoClient } from 'mongodb';
import { elementKey, equalWithout, keyElements } from '../bson/raw.ts';
import type { Namespace } from '../namespace.ts';

/**
 * The documents of `ids` in `ns`, as raw BSON, by `_id` key (../bson/raw.ts elementKey): `$in`
 * also finds an `_id` of another type and the same value (1.0 for 1), which the key tells apart.
 */
export async function readDocuments(
  client: MongoClient,
  ns: Namespace,
  ids: readonly unknown[],
  options: { session?: ClientSession; maxTimeMS?: number } = {},
): Promise<Map<string, Buffer>> {
  const found = (await client
    .db(ns.db)
    .collection<Document>(ns.coll)
    .find({ _id: { $in: ids } } as never, { raw: true, ...options })
    .toArray()) as unknown as Buffer[];
  const docs = new Map<string, Buffer>();
  for (const bytes of found) {
    const { id } = keyElements(bytes);
    if (id) docs.set(elementKey(bytes, id), bytes);
  }
  return docs;
}

/** Equal as verify compares: the same BSON without `__mmm`, or both absent. */
export function sameContent(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (!a || !b) return a === b;
  return equalWithout(a, keyElements(a).tag, b, keyElements(b).tag);
}

/** The same bytes, `__mmm` included, or both absent. */
export function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (!a || !b) return a === b;
  return Buffer.compare(a, b) === 0;
}
