// Applying a batch in parallel: writes to different documents commute, writes to one document
// do not. So the batch is split into partitions by a hash of (namespace, `_id`), every write of
// a document landing in the same partition in oplog order, and the partitions are applied at
// the same time, each as one destination transaction on its own connection (writer.ts).
//
// Within a partition, writes are also regrouped into as few commands as order allows. A write
// only has to come after the previous write of its own document, so each goes into the
// earliest "phase" that follows that write: phases cycle through inserts (one insert command
// per namespace), updates (one update command per namespace) and deletes (one delete command
// per namespace). A batch of inserts, updates and deletes of distinct documents becomes, per
// partition, a transaction of a marker, one insert, one update and one delete command per
// namespace, and the commit.
//
// Reordering writes of different documents can make a unique secondary index refuse a write
// that the source's order allowed (a document taking a value another one gives up in the same
// batch). So a partition's transaction is aborted at its first refused write, and the whole
// batch is then applied again in oplog order (applyInOrder), where a refusal is one for good:
// every write converges when replayed (writer.ts), so the replay ends where an in-order apply
// would have.
//
// The caller records the checkpoint only after this returns, that is after every partition's
// transaction has committed: the checkpoint never passes an unapplied write.

import { Binary, Decimal128, Double, Int32, Long, ObjectId, type MongoClient } from 'mongodb';
import { isTransient } from './transient.ts';
import { addStats, applyInOrder, applyTransaction, emptyStats, isPlainInsert, WriteRefusal, type ApplyOptions, type ApplyStats, type DestinationWrite } from './writer.ts';

export interface ParallelApplyOptions extends ApplyOptions {
  /** Partitions applied at the same time (1: regrouping only, no parallelism). */
  partitions: number;
  /** Fewest writes per partition worth a parallel round trip of its own. */
  minWritesPerPartition?: number;
}

export async function applyInParallel(client: MongoClient, writes: readonly DestinationWrite[], options: ParallelApplyOptions): Promise<ApplyStats> {
  const wanted = Math.ceil(writes.length / (options.minWritesPerPartition ?? 100));
  const count = Math.max(1, Math.min(options.partitions, wanted));
  const partitions = partition(writes, count);
  // Each partition is one transaction on a lane of its own (its markers never conflict).
  const results = await Promise.allSettled(
    partitions.map((part, lane) => applyTransaction(client, phases(part).flatMap((phase) => [...phase.values()].flat()), options, lane)),
  );
  const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  const transient = failures.find((err) => isTransient(err));
  if (transient !== undefined) throw transient;
  const other = failures.find((err) => !(err instanceof WriteRefusal));
  if (other !== undefined) throw other;
  if (failures.length > 0) {
    options.logger.info(
      { writes: writes.length, err: (failures[0] as Error).message },
      'a write was refused in a parallel apply; applying the batch again in oplog order',
    );
    return applyInOrder(client, writes, options);
  }
  return results.reduce((sum, r) => (r.status === 'fulfilled' ? addStats(sum, r.value) : sum), emptyStats());
}

/** Splits writes by document, keeping the order of each document's writes. */
export function partition(writes: readonly DestinationWrite[], count: number): DestinationWrite[][] {
  const parts: DestinationWrite[][] = Array.from({ length: count }, () => []);
  if (count === 1) {
    parts[0]!.push(...writes);
    return parts;
  }
  for (const w of writes) parts[hash(documentKey(w)) % count]!.push(w);
  return parts.filter((p) => p.length > 0);
}

/**
 * Regroups one partition's writes into phases, each a map from namespace to writes that go out
 * as one command type: inserts, updates (upserts included) or deletes, cycling in that order,
 * in the order they were given. An ordered bulk write sends each run of one operation type as a command of
 * its own, so mixing types in one bulk would cost a round trip per run; a write only has to
 * come after its own document's previous write, so it goes into the earliest phase of its type
 * that is not before that write's phase.
 */
export function phases(writes: readonly DestinationWrite[]): Array<Map<string, DestinationWrite[]>> {
  const out: Array<Map<string, DestinationWrite[]>> = [];
  const lastPhase = new Map<string, number>();
  for (const w of writes) {
    const key = documentKey(w);
    const type = commandType(w);
    const after = lastPhase.get(key) ?? 0;
    const phase = after + ((type - (after % COMMAND_TYPES) + COMMAND_TYPES) % COMMAND_TYPES);
    lastPhase.set(key, phase);
    while (out.length <= phase) out.push(new Map());
    const byNs = out[phase]!;
    let group = byNs.get(w.ns);
    if (!group) byNs.set(w.ns, (group = []));
    group.push(w);
  }
  return out.filter((phase) => phase.size > 0);
}

const COMMAND_TYPES = 3;

/**
 * 0: sent in an insert command, 1: in an update command (updates, and inserts written as
 * upserts), 2: in a delete command. When writer.ts writes a transaction again with its inserts
 * as upserts (a replay met a duplicate key), phases 0 and 1 go out as one update command.
 */
function commandType(w: DestinationWrite): 0 | 1 | 2 {
  if (w.kind === 'delete') return 2;
  return isPlainInsert(w) ? 0 : 1;
}

/**
 * A key equal for two writes whenever the server takes their `_id`s for the same document. `_id`
 * values compare like the server does for the common types: numbers by value whatever their BSON
 * type (1, 1.0 and NumberLong(1) are one document), strings, ObjectIds, binaries and dates by
 * value. Any other `_id` (a sub-document, an array, null...) maps to one shared key per
 * namespace: such documents stay in one partition, in order, without comparing them.
 */
export function documentKey(w: DestinationWrite): string {
  return `${w.ns}\u0000${idKey(w.id)}`;
}

function idKey(id: unknown): string {
  if (typeof id === 'number') return `n${id}`;
  if (typeof id === 'string') return `s${id}`;
  if (id instanceof Int32 || id instanceof Double) return `n${id.value}`;
  if (id instanceof Long) return `n${Number(id.toString())}`;
  if (id instanceof Decimal128) return `n${Number(id.toString())}`;
  if (id instanceof ObjectId) return `o${id.toHexString()}`;
  if (id instanceof Date) return `d${id.getTime()}`;
  if (id instanceof Binary) return `b${id.sub_type}:${Buffer.from(id.buffer).toString('base64')}`;
  return 'other';
}

/** FNV-1a over the string's UTF-16 code units. */
function hash(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
