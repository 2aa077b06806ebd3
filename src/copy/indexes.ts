// `replicate --copy --indexes`: the source collection's indexes, built on the destination before
// any document is copied (a unique one then refuses, at the copy, what the source would refuse).

import type { Document, MongoClient } from 'mongodb';
import { CopyError } from '../errors.ts';
import { parseNamespace } from '../namespace.ts';

/** Fields of an index's description that describe the server's copy of it, not the index. */
const NOT_OPTIONS = new Set(['v', 'ns', 'key', 'name']);

/** Creates on `dst` each index of `src` but `_id`'s, with its name and options; returns their names. */
export async function copyIndexes(source: MongoClient, src: string, destination: MongoClient, dst: string): Promise<string[]> {
  const from = parseNamespace(src);
  const to = parseNamespace(dst);
  const indexes = (await source.db(from.db).collection(from.coll).listIndexes().toArray().catch(() => [])) as Document[];
  const specs = indexes
    .filter((index) => index.name !== '_id_')
    .map((index) => ({ key: index.key as Document, name: index.name as string, ...Object.fromEntries(Object.entries(index).filter(([k]) => !NOT_OPTIONS.has(k))) }));
  if (specs.length === 0) return [];
  try {
    await destination.db(to.db).command({ createIndexes: to.coll, indexes: specs });
  } catch (err) {
    throw new CopyError(`the indexes of ${src} could not be built on ${dst}: ${(err as Error).message}`, { cause: err });
  }
  return specs.map((s) => s.name);
}
