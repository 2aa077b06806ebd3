// Applying: changes in, writes on the destination out, in order, with as few round trips as
// order allows. Consecutive writes to one collection go out as one ordered bulk write; a run of
// consecutive deletes goes out as one transaction that tags each document before deleting it
// (see ../replicate/tag.ts for why a delete needs that). A replication loop applies its batches
// through ./parallel.ts, which splits them by document and regroups them, and falls back on
// applyWrites, in oplog order, when the destination refuses a write.
//
// Every write is idempotent, so a batch replayed after a crash converges instead of failing:
// an insert is an upsert of the whole document (a replayed insert cannot hit a duplicate key),
// an update's oplog form already holds resulting values (OPLOG.md), a delete of a missing
// document deletes nothing.

import type { AnyBulkWriteOperation, Document, Filter, MongoClient, WriteConcernSettings, WriteError } from 'mongodb';
import { MongoBulkWriteError } from 'mongodb';
import type { Logger } from '../log.ts';
import { TAG_FIELD } from '../replicate/tag.ts';
import { isTransient } from './transient.ts';
import { translateUpdate, type UpdateSpec } from './update.ts';

/** One write for the destination, as planned from an oplog operation. */
export type DestinationWrite =
  | {
      kind: 'insert' | 'update';
      ns: string;
      id: unknown;
      spec: UpdateSpec;
      /** The spec holds the whole document: create it if the destination lacks it. */
      upsert: boolean;
    }
  | { kind: 'delete'; ns: string; id: unknown; tag: string };

/** Plans the write that replays `op` on collection `ns` of the destination, carrying `tag`. */
export function planWrite(op: { op: 'i' | 'u' | 'd'; o: Document; o2?: Document }, ns: string, tag: string): DestinationWrite {
  switch (op.op) {
    case 'i':
      // An insert is written as an upsert of the whole document, so a replay cannot fail on a
      // duplicate key; translateUpdate tags it (and copes with `$`-prefixed field names).
      return { kind: 'insert', ns, id: op.o._id, spec: translateUpdate(op.o, tag), upsert: true };
    case 'u':
      // A replacement (it has `_id`) holds the whole document too; a diff needs the old one.
      return { kind: 'update', ns, id: op.o2?._id, spec: translateUpdate(op.o, tag), upsert: '_id' in op.o };
    case 'd':
      return { kind: 'delete', ns, id: op.o._id, tag };
  }
}

export interface ApplyStats {
  inserted: number;
  updated: number;
  deleted: number;
  /** Updates whose document the destination does not have. */
  missed: number;
  /** Writes the destination refused (logged one by one). */
  failed: number;
}

export function emptyStats(): ApplyStats {
  return { inserted: 0, updated: 0, deleted: 0, missed: 0, failed: 0 };
}

export interface ApplyOptions {
  writeConcern: WriteConcernSettings;
  logger: Logger;
  /**
   * Throw on the first write the destination refuses instead of logging and skipping it: for
   * applyInParallel, which then applies the whole batch again, in order.
   */
  strict?: boolean;
}

/**
 * Applies the writes in order. Throws on a failure worth retrying (see isTransient); a write
 * the destination refuses for good (a unique index conflict, a document that no longer fits
 * the update) is logged as an error and counted, and the writes after it still go out.
 */
export async function applyWrites(client: MongoClient, writes: readonly DestinationWrite[], options: ApplyOptions): Promise<ApplyStats> {
  const stats = emptyStats();
  for (const group of consecutiveGroups(writes)) await applyGroup(client, group, options, stats);
  return stats;
}

/**
 * Applies, in order, writes on one namespace that are either all deletes (one transaction) or
 * none (one ordered bulk write), adding to `stats`.
 */
export async function applyGroup(client: MongoClient, group: DestinationWrite[], options: ApplyOptions, stats: ApplyStats): Promise<void> {
  if (group[0]!.kind === 'delete') await applyDeletes(client, group as DeleteWrite[], options, stats);
  else await applyBulk(client, group, options, stats);
}

type DeleteWrite = Extract<DestinationWrite, { kind: 'delete' }>;

/** Splits writes into runs on one namespace, deletes apart from the rest. */
function* consecutiveGroups(writes: readonly DestinationWrite[]): Generator<DestinationWrite[]> {
  let group: DestinationWrite[] = [];
  for (const w of writes) {
    const head = group[0];
    if (head && (head.ns !== w.ns || (head.kind === 'delete') !== (w.kind === 'delete'))) {
      yield group;
      group = [];
    }
    group.push(w);
  }
  if (group.length > 0) yield group;
}

/** Documents of any `_id` type: mmm copies `_id`s, it does not choose them. */
type AnyDocument = { _id: unknown } & Document;

/** The filter for one document; typed loosely because its `_id` may be of any BSON type. */
function byId(id: unknown): Filter<AnyDocument> {
  return { _id: id } as Filter<AnyDocument>;
}

function collectionOf(client: MongoClient, ns: string) {
  const dot = ns.indexOf('.');
  return client.db(ns.slice(0, dot)).collection<AnyDocument>(ns.slice(dot + 1));
}

function bulkOperation(w: Exclude<DestinationWrite, DeleteWrite>): AnyBulkWriteOperation<AnyDocument> {
  const filter = byId(w.id);
  const { spec, upsert } = w;
  switch (spec.kind) {
    case 'replacement':
      return { replaceOne: { filter, replacement: spec.document, upsert } };
    case 'modifier':
      return { updateOne: { filter, update: spec.update, upsert } };
    case 'pipeline':
      return { updateOne: { filter, update: spec.pipeline, upsert } };
  }
}

async function applyBulk(client: MongoClient, group: DestinationWrite[], options: ApplyOptions, stats: ApplyStats): Promise<void> {
  const writes = group as Exclude<DestinationWrite, DeleteWrite>[];
  const collection = collectionOf(client, writes[0]!.ns);
  let start = 0;
  while (start < writes.length) {
    const slice = writes.slice(start);
    try {
      const result = await collection.bulkWrite(slice.map(bulkOperation), { ordered: true, writeConcern: options.writeConcern });
      count(slice, result.matchedCount + result.upsertedCount, stats);
      logEach(slice, options.logger);
      return;
    } catch (err) {
      if (!(err instanceof MongoBulkWriteError) || isTransient(err) || options.strict) throw err;
      // Ordered: everything before the failed index was applied, nothing after it was tried.
      const failedAt = ([] as WriteError[]).concat(err.writeErrors)[0]?.index;
      if (failedAt === undefined) throw err;
      const done = slice.slice(0, failedAt);
      count(done, err.result.matchedCount + err.result.upsertedCount, stats);
      logEach(done, options.logger);
      const failed = slice[failedAt]!;
      stats.failed++;
      options.logger.error(
        { ns: failed.ns, _id: failed.id, write: failed.kind, code: err.code, err: err.message },
        'destination refused a write; it is skipped',
      );
      start += failedAt + 1;
    }
  }
}

/** Counts applied writes by kind; `found` is how many updates or upserts found their target. */
function count(writes: Exclude<DestinationWrite, DeleteWrite>[], found: number, stats: ApplyStats): void {
  let expected = 0;
  for (const w of writes) {
    if (w.kind === 'insert') stats.inserted++;
    else stats.updated++;
    expected++;
  }
  stats.missed += Math.max(0, expected - found);
}

function logEach(writes: readonly DestinationWrite[], logger: Logger): void {
  if (!logger.isLevelEnabled('debug')) return;
  for (const w of writes) logger.debug({ ns: w.ns, _id: w.id, write: w.kind }, 'applied');
}

/**
 * Deletes in one transaction: for each document, set the tag, then delete. The transaction's
 * single oplog entry shows both, so whoever reads it knows mmm deleted the document and for
 * which origin. If the transaction fails for good, each delete is retried alone, to find and
 * report the one that cannot be applied.
 */
async function applyDeletes(client: MongoClient, group: DeleteWrite[], options: ApplyOptions, stats: ApplyStats): Promise<void> {
  try {
    stats.deleted += await deleteInTransaction(client, group, options);
    logEach(group, options.logger);
    return;
  } catch (err) {
    if (group.length === 1 || isTransient(err) || options.strict) throw err;
  }
  for (const w of group) {
    try {
      stats.deleted += await deleteInTransaction(client, [w], options);
      logEach([w], options.logger);
    } catch (err) {
      if (isTransient(err)) throw err;
      stats.failed++;
      options.logger.error({ ns: w.ns, _id: w.id, write: 'delete', err: (err as Error).message }, 'destination refused a delete; it is skipped');
    }
  }
}

async function deleteInTransaction(client: MongoClient, group: DeleteWrite[], options: ApplyOptions): Promise<number> {
  const collection = collectionOf(client, group[0]!.ns);
  // Every mark first, then every delete: an ordered bulk write sends a run of operations of one
  // type as one command, so this is two round trips whatever the number of documents (marks
  // interleaved with deletes would be one round trip each). The reader pairs them all the same
  // (attributeOrigins in ../replicate/tag.ts).
  const operations: AnyBulkWriteOperation<AnyDocument>[] = [
    ...group.map((w) => ({ updateOne: { filter: byId(w.id), update: { $set: { [TAG_FIELD]: w.tag } } } })),
    ...group.map((w) => ({ deleteOne: { filter: byId(w.id) } })),
  ];
  const session = client.startSession();
  try {
    let deleted = 0;
    await session.withTransaction(
      async () => {
        const result = await collection.bulkWrite(operations, { ordered: true, session });
        deleted = result.deletedCount;
      },
      { writeConcern: options.writeConcern },
    );
    return deleted;
  } finally {
    await session.endSession();
  }
}
