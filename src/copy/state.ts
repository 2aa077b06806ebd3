// Where a copy (`replicate --copy`) stands, kept on the destination in `mmm.copies` so that an
// interrupted copy resumes and `status` can tell how far it is:
//
//   {_id: {source, src, dst}, at: <snapshot Timestamp>, mode, total, totalBytes, started: Date,
//    bounds: [<_id>, ...]}                                   the copy, one document
//   {_id: {source, src, dst, range: k}, last: <_id>, done: bool, copied: n, bytes: n, updated: Date}
//                                                            one per range it has written
//
// A range's document is written in the same transaction as the documents it counts
// (./write.ts), so it says exactly which were written: a resumed copy starts after `last`, and
// never writes a document twice. Each range has its own document so that concurrent ranges'
// transactions never write the same one (they would conflict, and one retry).

import type { Collection, MongoClient, Timestamp } from 'mongodb';
import { MMM_DATABASE } from '../replicate/tag.ts';

export const COPIES_COLLECTION = 'copies';

/** What the destination does with documents it already holds: ./write.ts. */
export type CopyMode = 'empty' | 'replace' | 'keep';

export interface CopyKey {
  /** The source server's UUID. */
  source: string;
  /** Namespaces on the source and on the destination. */
  src: string;
  dst: string;
}

export interface CopyHeader {
  /** The source's snapshot the documents are read at; the link follows the oplog after it. */
  at: Timestamp;
  mode: CopyMode;
  /** The source collection's documents and bytes when the copy began (the server's estimate). */
  total: number;
  totalBytes: number;
  started: Date;
  /** `_id`s that split the collection into ranges, in index order: range k runs from bound k-1 to bound k. */
  bounds: unknown[];
}

export interface RangeProgress {
  range: number;
  /** The `_id` of the last document written, if any. */
  last?: unknown;
  done: boolean;
  copied: number;
  bytes: number;
  /** When its last batch was written (by the copying machine's clock). */
  updated?: Date;
}

type HeaderDocument = { _id: CopyKey } & CopyHeader;
type RangeDocument = { _id: CopyKey & { range: number } } & Omit<RangeProgress, 'range'>;

/** The key's fields in one order: `_id`s that are documents only match field for field. */
function keyOf({ source, src, dst }: CopyKey): CopyKey {
  return { source, src, dst };
}

export function rangeId(key: CopyKey, range: number): RangeDocument['_id'] {
  return { ...keyOf(key), range };
}

export function rangesCollection(client: MongoClient): Collection<RangeDocument> {
  return client.db(MMM_DATABASE).collection<RangeDocument>(COPIES_COLLECTION);
}

function headers(client: MongoClient): Collection<HeaderDocument> {
  return client.db(MMM_DATABASE).collection<HeaderDocument>(COPIES_COLLECTION);
}

export interface CopyState {
  header: CopyHeader;
  ranges: RangeProgress[];
}

/** The copy of `key` the destination holds, started and not finished; undefined if none. */
export async function readCopy(client: MongoClient, key: CopyKey): Promise<CopyState | undefined> {
  const header = await headers(client).findOne({ _id: keyOf(key) }, { promoteValues: false, promoteLongs: false });
  if (!header) return undefined;
  const { _id, ...rest } = header;
  const found = await rangesCollection(client)
    .find({ '_id.source': key.source, '_id.src': key.src, '_id.dst': key.dst, '_id.range': { $exists: true } }, { promoteValues: false })
    .toArray();
  const ranges = found.map(({ _id: id, last, done, copied, bytes, updated }) => ({
    range: Number(id.range),
    ...(last !== undefined && { last }),
    done,
    copied: Number(copied),
    bytes: Number(bytes),
    ...(updated instanceof Date && { updated }),
  }));
  return { header: { ...rest, total: Number(rest.total), totalBytes: Number(rest.totalBytes) }, ranges };
}

/** Every copy the destination holds in progress, for `status`. */
export async function copiesInProgress(client: MongoClient): Promise<Array<CopyKey & CopyState>> {
  const found = await headers(client).find({ '_id.range': { $exists: false } }).toArray();
  const copies: Array<CopyKey & CopyState> = [];
  for (const { _id } of found) {
    const state = await readCopy(client, _id);
    if (state) copies.push({ ...keyOf(_id), ...state });
  }
  return copies;
}

export async function saveHeader(client: MongoClient, key: CopyKey, header: CopyHeader): Promise<void> {
  await headers(client).replaceOne({ _id: keyOf(key) }, header, { upsert: true, writeConcern: { w: 'majority' } });
}

/** Forgets the copy of `key`: once its link follows the oplog, or the link is removed. */
export async function removeCopy(client: MongoClient, key: CopyKey): Promise<void> {
  await client
    .db(MMM_DATABASE)
    .collection(COPIES_COLLECTION)
    .deleteMany({ '_id.source': key.source, '_id.src': key.src, '_id.dst': key.dst }, { writeConcern: { w: 'majority' } });
}
