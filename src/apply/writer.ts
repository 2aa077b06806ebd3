// Applying: planned writes in, one destination transaction out. The transaction starts with a
// marker naming the writes' origin (../replicate/tag.ts), so the destination's oplog says they
// are mmm's; consecutive writes to one collection go out as ordered write commands of
// statements encoded by ./statements.ts (or, with a driver that cannot send them so, as one
// ordered bulk write). A
// replication loop applies its batches through ./parallel.ts, which splits them by document
// and regroups them, and falls back on applyInOrder, in oplog order, when the destination
// refuses a write.
//
// Every write is idempotent, so a batch replayed after a crash converges instead of failing:
// an insert is written as a plain insert, and where one meets a duplicate key (a replay of what
// an earlier run applied already) its transaction, aborted by the error, is written again with
// every insert as an upsert of the whole document; an update's oplog form already holds
// resulting values (OPLOG.md), a delete of a missing document deletes nothing.
//
// With a resolver (../conflict/resolve.ts), a transaction first reads the documents its checked
// writes meet, and applies, drops or rewrites each of them as the conflict rule says; the
// conflicts it keeps, and the deletes that met no document it keeps (../conflict/tombstones.ts),
// are written in the same transaction, so they hold exactly when it commits.
//
// A process that dies in the middle of a batch cannot harm the replay that follows it: its
// writes only count once its transaction commits, which takes a command it can no longer
// send; a transaction that committed did so before the new process wrote (two transactions
// writing one document are serialised by the server: the later one waits or retries). So a
// write command of the old process that is still running on the server (the server does not
// stop a write when its client goes away, OPLOG.md) ends in a transaction that never commits.

import type { AnyBulkWriteOperation, ClientSession, Document, Filter, MongoClient, OptionalId, WriteConcernSettings, WriteError } from 'mongodb';
import { MongoBulkWriteError, MongoInvalidArgumentError, MongoServerError } from 'mongodb';
import type { Logger } from '../log.ts';
import type { Change } from '../oplog/entry.ts';
import type { ConflictCheck, ConflictResolver, Resolution } from '../conflict/resolve.ts';
import { conflictsCollection } from '../conflict/record.ts';
import { writeTombstones } from '../conflict/tombstones.ts';
import { markerDeletes } from '../replicate/marker-deletes.ts';
import { MARKER_COLLECTION, MMM_DATABASE, RUN_ID, type MarkerId } from '../replicate/tag.ts';
import { latest, type CarriedClock } from './carried-clock.ts';
import { sendGroup } from './statements.ts';
import { statementsAsBytes, StatementWriteError } from './write-commands.ts';
import type { RefusedWrites } from './refused.ts';
import { isTransient, NAMESPACE_EXISTS, serverErrorCode } from './transient.ts';
import { rebuildDocument, translateInsert, translateUpdate, type UpdateSpec } from './update.ts';
import { translateUpdateBytes } from './update-bytes.ts';

interface WriteBase {
  /** Namespace on the destination. */
  ns: string;
  id: unknown;
  /** The server a user first made the write on. */
  origin: string;
  /** The `__mmm` value the written document gets. */
  tag: string;
  /** The source operation it replays (for the record of a refused write). */
  change: Change;
  /** Checked for a conflict with the destination's version before it is applied (../conflict/resolve.ts). */
  check?: ConflictCheck;
}

/** One write for the destination, as planned from an oplog operation. */
export type DestinationWrite =
  | (WriteBase & {
      kind: 'insert' | 'update';
      spec: UpdateSpec;
      /** The spec holds the whole document: create it if the destination lacks it. */
      upsert: boolean;
    })
  | (WriteBase & { kind: 'delete'; spec?: undefined; upsert?: false });

/** Plans the write that replays `change` on collection `ns` of the destination, carrying `tag`. */
export function planWrite(change: Change, ns: string, tag: string, origin: string): DestinationWrite {
  // Every write is made as one literal of the same fields in the same order (`check` included,
  // set later for some): thousands go through the same few functions per batch, which V8 runs
  // faster when all the objects they see have one shape.
  switch (change.op) {
    case 'i': {
      // The whole document, tagged: a plain insert where it can be (isPlainInsert), else, or on
      // a replay, an upsert. One that came as bytes (alone or in a transaction) stays bytes
      // (translateInsert); one with `$`-prefixed field names, or an `_id` whose decoded form
      // does not give its bytes back, is tagged by translateUpdate.
      const fromBytes = change.raw && translateInsert(change.raw.bytes, tag);
      const id = fromBytes ? fromBytes.id : change.o._id;
      const spec = fromBytes ? fromBytes.spec : translateUpdate(change.o, tag);
      return { ns, origin, tag, change, check: undefined, kind: 'insert', id, spec, upsert: true };
    }
    case 'u': {
      // A replacement (it has `_id`) holds the whole document too; a diff needs the old one.
      // One that came as bytes stays bytes where it can (translateUpdateBytes).
      const fromBytes = change.rawUpdate && translateUpdateBytes(change.rawUpdate.bytes, tag);
      const spec = fromBytes ? fromBytes.spec : translateUpdate(change.o, tag);
      const upsert = fromBytes ? fromBytes.upsert : '_id' in change.o;
      return { ns, origin, tag, change, check: undefined, kind: 'update', id: change.o2?._id, spec, upsert };
    }
    case 'd':
      return { ns, origin, tag, change, check: undefined, kind: 'delete', id: change.o._id, spec: undefined, upsert: false };
  }
}

export interface ApplyStats {
  inserted: number;
  updated: number;
  deleted: number;
  /** Updates whose document the destination does not have. */
  missed: number;
  /** Writes the destination refused (each kept in `mmm.refused`). */
  failed: number;
  /** Versions of the destination's that a concurrent write won over (each kept in `mmm.conflicts`). */
  conflicts: number;
  /** Writes not applied because a concurrent version of the destination's won over them (its origin keeps the conflict). */
  lost: number;
}

export function emptyStats(): ApplyStats {
  return { inserted: 0, updated: 0, deleted: 0, missed: 0, failed: 0, conflicts: 0, lost: 0 };
}

export function addStats(a: ApplyStats, b: ApplyStats): ApplyStats {
  return {
    inserted: a.inserted + b.inserted,
    updated: a.updated + b.updated,
    deleted: a.deleted + b.deleted,
    missed: a.missed + b.missed,
    failed: a.failed + b.failed,
    conflicts: a.conflicts + b.conflicts,
    lost: a.lost + b.lost,
  };
}

/** What to do with a write the destination refuses for good (`run --on-refused`). */
export type RefusedPolicy = 'keep' | 'stop';

export interface ApplyOptions {
  writeConcern: WriteConcernSettings;
  logger: Logger;
  /** The source server the loop reads: its markers' `_id`s name it. */
  sourceId: string;
  /** Where refused writes are kept. */
  refused: RefusedWrites;
  /** keep: record the refused write and go on; stop: record it and fail the link. */
  onRefused: RefusedPolicy;
  /** The longest a write command or a commit may run on the server. */
  maxTimeMS: number;
  /** Decides the checked writes (those with `check`) in each transaction; without it they go in as they are. */
  resolver?: ConflictResolver;
  /** Markers list the tags of their deletes (../replicate/marker-deletes.ts): when conflicts are resolved anywhere. */
  listDeletes?: boolean;
  /** Shows the destination the source's time with each transaction (./carried-clock.ts): when conflicts are resolved anywhere. */
  clock?: CarriedClock;
  /** Told each marker's time in ms, about one round trip to the destination (../replicate/batch-bounds.ts). */
  roundTrip?: (ms: number) => void;
}

export const APPLY_DEFAULTS = {
  onRefused: 'keep',
  // Bounds how long any write of mmm's runs on a destination, also one whose process is gone.
  // A batch command of 4,000 writes takes well under a second here; a minute leaves room for a
  // slow destination, and matches the server's own limit on a transaction's life
  // (transactionLifetimeLimitSeconds, 60 by default).
  maxTimeMS: 60_000,
} as const satisfies Partial<ApplyOptions>;

/**
 * The destination refused write `index` of a transaction for good (a unique index, a validator,
 * a document too large): the transaction was aborted, nothing of it was applied. Index -1: one
 * of several writes of a command, not told which.
 */
export class WriteRefusal extends Error {
  constructor(
    readonly index: number,
    override readonly cause: Error,
  ) {
    super(cause.message, { cause });
  }
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

/**
 * Before a loop from `sourceId` writes: creates mmm's marker collection (a transaction
 * creating it would conflict with a concurrent one), and removes the markers earlier runs of
 * this loop left (../replicate/tag.ts). Returns how many; one still locked by a dead run's
 * open transaction is left for the next time.
 */
export async function prepareDestination(client: MongoClient, sourceId: string): Promise<number> {
  const markers = client.db(MMM_DATABASE).collection<{ _id: MarkerId }>(MARKER_COLLECTION);
  await client
    .db(MMM_DATABASE)
    .createCollection(MARKER_COLLECTION)
    .catch((err: unknown) => {
      if (serverErrorCode(err) !== NAMESPACE_EXISTS) throw err;
    });
  const removed = await markers
    .deleteMany({ '_id.source': sourceId, '_id.run': { $ne: RUN_ID } }, { maxTimeMS: 2000 })
    .catch(() => ({ deletedCount: 0 }));
  return removed.deletedCount;
}


/**
 * Applies `writes`, in the order given, as one transaction on `lane` (a lane per concurrent
 * transaction of a loop). Throws WriteRefusal if the destination refuses one of them for good,
 * and any other error as it comes (transient ones are the caller's to retry). With
 * `oneByOne`, each write is a command of its own, so that any refusal names its write.
 */
export async function applyTransaction(
  client: MongoClient,
  writes: readonly DestinationWrite[],
  options: ApplyOptions,
  lane: number,
  oneByOne = false,
): Promise<ApplyStats> {
  try {
    return await insertsThenUpserts(client, writes, options, lane, oneByOne);
  } catch (err) {
    // A transaction's writes must fit the destination's cache until it commits: halves, in
    // order, each its own transaction, until they do. So too for one that keeps meeting write
    // conflicts: a 160 MB transaction under cache pressure was seen to fail its commit with
    // WriteConflict for the driver's whole two minutes of retries, never TooLargeForCache.
    const conflicted = err instanceof KeepsConflicting;
    if (!conflicted && serverErrorCode(err) !== TRANSACTION_TOO_LARGE_FOR_CACHE) throw err;
    // One write alone that does not fit can never be applied in a transaction: refused.
    if (writes.length === 1) throw new WriteRefusal(0, err as Error);
    const half = Math.ceil(writes.length / 2);
    options.logger.debug(
      { writes: writes.length },
      conflicted
        ? 'a transaction kept meeting write conflicts; applying it in halves'
        : "a transaction was too large for the destination's cache; applying it in halves",
    );
    const first = await applyTransaction(client, writes.slice(0, half), options, lane, oneByOne);
    const second = await applyTransaction(client, writes.slice(half), options, lane, oneByOne).catch((refusal: unknown) => {
      // Named among all of `writes` (the first half is committed: a caller re-applying it converges).
      if (refusal instanceof WriteRefusal && refusal.index >= 0) throw new WriteRefusal(refusal.index + half, refusal.cause);
      throw refusal;
    });
    return addStats(first, second);
  }
}

/** TransactionTooLargeForCache: the server aborted a transaction whose writes outgrew its cache. */
const TRANSACTION_TOO_LARGE_FOR_CACHE = 388;

/**
 * How many times a transaction of several writes is tried whole before it is split. A write
 * conflict with a user's write goes away on the next attempt or two; the driver would retry for
 * two minutes.
 */
export const WHOLE_ATTEMPTS = 4;

/** A transaction of several writes met a transient error WHOLE_ATTEMPTS times: applyTransaction splits it. */
class KeepsConflicting extends Error {
  constructor() {
    super(`a transaction was aborted ${WHOLE_ATTEMPTS} times in a row`);
  }
}

/**
 * The transaction with its inserts as plain inserts, which cost the destination a fraction of
 * an upsert (no lookup by `_id` first, no update machinery); and if the destination holds a
 * document with the `_id` of one of them already, as when a restart replays what the previous
 * run applied, the same transaction again with every insert as an upsert of its whole document:
 * what an upsert-only writer would have written, so the outcome is the same. The duplicate key
 * aborted the whole transaction, so nothing of the first attempt remains. A duplicate key on
 * another unique index fails the upsert too, and is refused as any upsert's would be (the
 * driver keeps neither `keyPattern` nor `keyValue` of a bulk write's errors, so the two are
 * told apart by the second attempt, which only a refused write pays for).
 */
async function insertsThenUpserts(
  client: MongoClient,
  writes: readonly DestinationWrite[],
  options: ApplyOptions,
  lane: number,
  oneByOne: boolean,
): Promise<ApplyStats> {
  if (writes.length === 0) return emptyStats();
  if (!writes.some(isPlainInsert)) return oneTransaction(client, writes, options, lane, oneByOne, true);
  try {
    return await oneTransaction(client, writes, options, lane, oneByOne, false);
  } catch (err) {
    const cause = err instanceof WriteRefusal ? err.cause : err;
    if (serverErrorCode(cause) !== DUPLICATE_KEY && !isWriteErrorCode(cause, DUPLICATE_KEY)) throw err;
    options.logger.debug({ writes: writes.length }, 'an insert met a document already there (a replay); writing its transaction again with upserts');
    return oneTransaction(client, writes, options, lane, oneByOne, true);
  }
}

const DUPLICATE_KEY = 11000;

function isWriteErrorCode(err: unknown, code: number): boolean {
  return err instanceof MongoBulkWriteError && ([] as WriteError[]).concat(err.writeErrors).some((e) => e.code === code);
}

/**
 * An insert written as an insert command when inserts are not upserted: one whose document a
 * replacement can hold (a document with a top-level `$` field name goes through a pipeline).
 */
export function isPlainInsert(w: DestinationWrite): boolean {
  return w.kind === 'insert' && w.spec.kind === 'replacement';
}

async function oneTransaction(
  client: MongoClient,
  writes: readonly DestinationWrite[],
  options: ApplyOptions,
  lane: number,
  oneByOne: boolean,
  upsertInserts: boolean,
): Promise<ApplyStats> {
  const session = client.startSession();
  const carried = options.clock?.carry(session, latest(writes.map((w) => w.change.ts))) ?? false;
  try {
    let stats = emptyStats();
    let resolution: Resolution | undefined;
    let attempts = 0;
    // The callback runs again when the server says the transaction may succeed if retried
    // (TransientTransactionError, such as a write conflict): count the last attempt only.
    await session.withTransaction(
      async () => {
        // Not a MongoError, so withTransaction stops retrying and throws it.
        if (++attempts > WHOLE_ATTEMPTS && writes.length > 1) throw new KeepsConflicting();
        resolution = options.resolver && writes.some((w) => w.check) ? await options.resolver.resolve(client, session, writes, options.maxTimeMS) : undefined;
        const resolved = resolution;
        stats = await statements(client, session, resolved?.writes ?? writes, options, lane, oneByOne, upsertInserts).catch((err: unknown) => {
          throw resolved ? namedAmong(err, resolved) : err;
        });
        if (resolved) stats.lost = resolved.rejected;
        if (resolved && resolved.records.length > 0) {
          await conflictsCollection(client).insertMany(resolved.records, { session, maxTimeMS: options.maxTimeMS });
          stats.conflicts = resolved.records.length;
        }
        if (resolved && (resolved.tombstones.length > 0 || resolved.guards.length > 0)) {
          await writeTombstones(client, session, resolved.tombstones, resolved.guards, options.maxTimeMS);
        }
      },
      { writeConcern: options.writeConcern, maxCommitTimeMS: options.maxTimeMS },
    );
    logEach(writes, options.logger);
    // Once committed: what the resolver decided is now so.
    if (resolution) options.resolver!.committed(resolution, options.logger);
    return stats;
  } catch (err) {
    // Refused before anything was written: the same transaction, without the time.
    if (carried && options.clock!.refused(err)) return oneTransaction(client, writes, options, lane, oneByOne, upsertInserts);
    throw err;
  } finally {
    await session.endSession();
  }
}

/** A refusal of a resolved write, named by its index among the writes given. */
function namedAmong(err: unknown, resolution: Resolution): unknown {
  if (!(err instanceof WriteRefusal) || err.index < 0) return err;
  return new WriteRefusal(resolution.from[err.index]!, err.cause);
}

/** The transaction's statements: a marker before each run of one origin, then its writes. */
async function statements(
  client: MongoClient,
  session: ClientSession,
  writes: readonly DestinationWrite[],
  options: ApplyOptions,
  lane: number,
  oneByOne: boolean,
  upsertInserts: boolean,
): Promise<ApplyStats> {
  const stats = emptyStats();
  const { maxTimeMS } = options;
  let origin: string | undefined;
  let start = 0;
  while (start < writes.length) {
    const first = writes[start]!;
    if (first.origin !== origin) {
      origin = first.origin;
      const deletes = options.listDeletes ? deletesOfRun(writes, start) : undefined;
      // Timed without making the list: its time grows with the batch, a round trip does not.
      const sent = performance.now();
      await writeMarker(client, session, { origin, source: options.sourceId, lane, run: RUN_ID }, maxTimeMS, deletes);
      options.roundTrip?.(performance.now() - sent);
    }
    let end = start + 1;
    if (!oneByOne && !isRebuild(first)) {
      while (end < writes.length && sameStatement(first, writes[end]!)) end++;
    }
    try {
      if (isRebuild(first)) await rebuild(client, session, first, maxTimeMS, stats);
      else if (statementsAsBytes) await sendGroup(client, session, writes.slice(start, end), maxTimeMS, stats, upsertInserts);
      else await bulk(client, session, writes.slice(start, end), maxTimeMS, stats, upsertInserts);
    } catch (err) {
      const index = refusedIndex(err, end - start);
      if (index === undefined) throw err;
      throw new WriteRefusal(index < 0 ? -1 : start + index, err as Error);
    }
    start = end;
  }
  return stats;
}

/**
 * The statement that makes what follows it in `session`'s transaction mmm's writes from
 * `_id.origin` (../replicate/tag.ts). Anything that writes for mmm (a loop, a copy, a repair)
 * starts its transaction with it.
 */
export async function writeMarker(client: MongoClient, session: ClientSession, _id: MarkerId, maxTimeMS: number, deletes?: string): Promise<void> {
  const markers = client.db(MMM_DATABASE).collection<{ _id: MarkerId; n: number; d?: string }>(MARKER_COLLECTION);
  const update = deletes === undefined ? { $inc: { n: 1 } } : { $inc: { n: 1 }, $set: { d: deletes } };
  await markers.updateOne({ _id }, update, { upsert: true, session, maxTimeMS });
}

/** The tags of the deletes in the run of one origin that starts at `start`, for its marker (../replicate/marker-deletes.ts). */
function deletesOfRun(writes: readonly DestinationWrite[], start: number): string | undefined {
  const origin = writes[start]!.origin;
  const deletes: Array<[unknown, string]> = [];
  for (let k = start; k < writes.length && writes[k]!.origin === origin; k++) {
    const w = writes[k]!;
    if (w.kind === 'delete') deletes.push([w.id, w.tag]);
  }
  return deletes.length === 0 ? undefined : markerDeletes(++markerLists, deletes);
}

/** Makes each marker's list differ from the one before, so that the oplog always logs it. */
let markerLists = 0;

/** Whether `b` goes out with `a`, the first write of a statement: the same collection and origin, and not a rebuild. */
function sameStatement(a: DestinationWrite, b: DestinationWrite): boolean {
  return b.ns === a.ns && b.origin === a.origin && !isRebuild(b);
}

type RebuildWrite = Exclude<DestinationWrite, { kind: 'delete' }> & { spec: Extract<UpdateSpec, { kind: 'rebuild' }> };

function isRebuild(w: DestinationWrite): w is RebuildWrite {
  return w.kind !== 'delete' && w.spec.kind === 'rebuild';
}

function bulkOperation(w: DestinationWrite, upsertInserts: boolean): AnyBulkWriteOperation<AnyDocument> {
  const filter = byId(w.id);
  if (w.kind === 'delete') return { deleteOne: { filter } };
  const { spec, upsert } = w;
  if (!upsertInserts && w.kind === 'insert' && spec.kind === 'replacement') return { insertOne: { document: spec.document as OptionalId<AnyDocument> } };
  switch (spec.kind) {
    case 'replacement':
      return { replaceOne: { filter, replacement: spec.document, upsert } };
    case 'modifier':
      return { updateOne: { filter, update: spec.update, upsert } };
    case 'pipeline':
      return { updateOne: { filter, update: spec.pipeline, upsert } };
    case 'rebuild':
      throw new Error('a rebuild is its own statement');
  }
}

/** `group` as one ordered bulkWrite: for a driver that cannot send statements as bytes (./write-commands.ts). */
async function bulk(
  client: MongoClient,
  session: ClientSession,
  group: readonly DestinationWrite[],
  maxTimeMS: number,
  stats: ApplyStats,
  upsertInserts: boolean,
): Promise<void> {
  const operations = group.map((w) => bulkOperation(w, upsertInserts));
  // forceServerObjectId: the driver would otherwise replace an `_id` of null with an ObjectId.
  const result = await collectionOf(client, group[0]!.ns).bulkWrite(operations, { ordered: true, session, maxTimeMS, forceServerObjectId: true });
  let updates = 0;
  for (const w of group) {
    if (w.kind === 'delete') continue;
    if (w.kind === 'insert') stats.inserted++;
    else stats.updated++;
    if (upsertInserts || !isPlainInsert(w)) updates++;
  }
  stats.deleted += result.deletedCount;
  // An insert (or an upsert) always finds or creates its document; an update may find none.
  stats.missed += Math.max(0, updates - result.matchedCount - result.upsertedCount);
}

/**
 * A diff too deep for a pipeline (./update.ts): the document is read and rewritten within the
 * transaction, so no other write can come between the read and the write.
 */
async function rebuild(client: MongoClient, session: ClientSession, w: RebuildWrite, maxTimeMS: number, stats: ApplyStats): Promise<void> {
  const collection = collectionOf(client, w.ns);
  const current = await collection.findOne(byId(w.id), { session, maxTimeMS, promoteValues: false, bsonRegExp: true });
  stats.updated++;
  if (!current) {
    stats.missed++;
    return;
  }
  const document = rebuildDocument(current, w.spec, w.tag);
  // replaceOne refuses a top-level `$` field name; a pipeline's output may hold one.
  const replacement = Object.keys(document).some((name) => name.startsWith('$'))
    ? collection.updateOne(byId(w.id), [{ $replaceWith: { $literal: document } }], { session, maxTimeMS })
    : collection.replaceOne(byId(w.id), document, { session, maxTimeMS });
  await replacement;
}

function logEach(writes: readonly DestinationWrite[], logger: Logger): void {
  if (!logger.isLevelEnabled('debug')) return;
  for (const w of writes) logger.debug({ ns: w.ns, _id: w.id, write: w.kind }, 'applied');
}

/** Server codes that refuse one document's write, not the command or the link. */
const DOCUMENT_REFUSED = new Set([
  2, // BadValue
  9, // FailedToParse
  14, // TypeMismatch
  28, // PathNotViable
  52, // DollarPrefixedFieldName
  66, // ImmutableField
  121, // DocumentValidationFailure
  10334, // BSONObjectTooLarge
  11000, // DuplicateKey
  17419, // the document after an update is too large
  17420, // ditto
]);

/**
 * Which write of a statement of `count` writes the destination refused for good, or undefined
 * if the error is not a refusal (transient, or about the command or the link as a whole).
 */
function refusedIndex(err: unknown, count: number): number | undefined {
  if (isTransient(err)) return undefined;
  if (err instanceof StatementWriteError) return err.code === TRANSACTION_TOO_LARGE_FOR_CACHE ? undefined : err.index;
  if (err instanceof MongoBulkWriteError) {
    // Ordered: everything before the failed index ran, nothing after it was tried.
    const first = ([] as WriteError[]).concat(err.writeErrors)[0];
    // The whole transaction outgrew the cache, not this write: applyTransaction splits it.
    if (first?.code === TRANSACTION_TOO_LARGE_FOR_CACHE) return undefined;
    if (first !== undefined) return first.index;
  }
  // The driver refuses to send a document over the size limit; the server refuses a statement
  // of one write with the write's own error. Either names its write only in a statement of one.
  const refused =
    err instanceof MongoInvalidArgumentError ||
    (err instanceof MongoServerError && DOCUMENT_REFUSED.has(serverErrorCode(err) ?? -1));
  if (!refused) return undefined;
  return count === 1 ? 0 : -1;
}

/**
 * Applies `writes` in the given (oplog) order, in transactions, keeping aside what the
 * destination refuses: each refused write is recorded durably (./refused.ts) and logged, then
 * with `onRefused: 'stop'` thrown as a RefusedWriteError, with 'keep' skipped. Nothing is
 * applied out of order: the writes before a refused one commit first, then the record, then
 * the rest.
 */
export async function applyInOrder(client: MongoClient, writes: readonly DestinationWrite[], options: ApplyOptions): Promise<ApplyStats> {
  let stats = emptyStats();
  let rest = writes;
  let oneByOne = false;
  while (rest.length > 0) {
    try {
      stats = addStats(stats, await applyTransaction(client, rest, options, 0, oneByOne));
      return stats;
    } catch (err) {
      if (!(err instanceof WriteRefusal)) throw err;
      if (err.index < 0) {
        // A refusal that does not say which write: again, one write per command.
        oneByOne = true;
        continue;
      }
      if (err.index > 0) stats = addStats(stats, await applyInOrder(client, rest.slice(0, err.index), options));
      const refused = rest[err.index]!;
      await options.refused.record(refused, err.cause);
      stats.failed++;
      options.logger.error(
        { ns: refused.ns, _id: refused.id, write: refused.kind, code: serverErrorCode(err.cause), err: err.cause.message },
        options.onRefused === 'stop' ? 'destination refused a write; it is kept in mmm.refused, and the link stops' : 'destination refused a write; it is kept in mmm.refused',
      );
      if (options.onRefused === 'stop') throw options.refused.stopError(refused, err.cause);
      rest = rest.slice(err.index + 1);
    }
  }
  return stats;
}
