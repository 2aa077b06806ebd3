// The benchmark's workloads: deterministic streams of operations, generated in chunks so that a
// million of them never sit in memory at once. The same seed gives the same operations, so the
// ceiling (written straight to the destination) and mmm (written to the source) see the same load.
//
// Updates and deletes only touch documents of a pre-populated range that exists on both servers
// before the measurement starts; inserts create new `_id`s. So no operation depends on another
// one of the same run, and a few writers can send chunks in parallel.

import type { AnyBulkWriteOperation, Document } from 'mongodb';

export type WorkloadName = 'insert' | 'update' | 'mixed' | 'txn';
export const WORKLOADS: readonly WorkloadName[] = ['insert', 'update', 'mixed', 'txn'];

export const WORKLOAD_TITLES: Record<WorkloadName, string> = {
  insert: 'insert-only (1 KB docs)',
  update: 'update-heavy ($set+$inc)',
  mixed: 'mixed 60/30/10 i/u/d',
  txn: 'transactions of 10 ops',
};

export type BenchDoc = { _id: number } & Document;

/** One operation of a workload, as a bulk-write model on the bench collection. */
export type Op = AnyBulkWriteOperation<BenchDoc>;

/** A unit the source writes in one go: a chunk of independent operations, or one transaction. */
export interface Unit {
  ops: Op[];
  transaction: boolean;
}

/** Mulberry32: small, fast, seeded. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const POOL = (() => {
  const rnd = random(7);
  let s = '';
  for (let i = 0; i < 65_536; i++) s += ALPHABET[Math.floor(rnd() * ALPHABET.length)];
  return s;
})();

/** About 1 KB of BSON: a 960-character payload and a few small fields. */
export function document(id: number, rnd: () => number): BenchDoc {
  const at = Math.floor(rnd() * (POOL.length - 960));
  return { _id: id, n: 0, k: Math.floor(rnd() * 1000), s: 'x', payload: POOL.slice(at, at + 960) };
}

/** First `_id` of documents a workload inserts (pre-populated ones are below it). */
export const INSERT_BASE = 100_000_000;

export interface WorkloadPlan {
  name: WorkloadName;
  /** Operations in the workload (a transaction counts its 10). */
  ops: number;
  /** Documents `_id` 0 .. prepopulate-1 that must exist on both servers beforehand. */
  prepopulate: number;
}

export function plan(name: WorkloadName, ops: number): WorkloadPlan {
  // Deletes remove pre-populated documents in ascending order, updates pick among those not
  // deleted yet, so no update ever misses (a missed update leaves no oplog entry).
  const deletes = name === 'mixed' || name === 'txn' ? Math.ceil(ops * 0.1) : 0;
  const prepopulate = name === 'insert' ? 0 : Math.max(1_000, Math.min(50_000, ops)) + deletes;
  return { name, ops, prepopulate };
}

/** Yields the workload's units; `chunk` operations per non-transaction unit. */
export function* units(p: WorkloadPlan, seed: number, chunk = 1_000): Generator<Unit> {
  const rnd = random(seed);
  let inserted = 0;
  let deleted = 0;
  const deletes = p.name === 'mixed' || p.name === 'txn' ? Math.ceil(p.ops * 0.1) : 0;
  const insert = (): Op => ({ insertOne: { document: document(INSERT_BASE + inserted++, rnd) } });
  const update = (): Op => {
    // Keep clear of the next few hundred deletes: writers run a few chunks in parallel.
    const low = Math.min(deleted + 5_000, deletes);
    const id = low + Math.floor(rnd() * (p.prepopulate - low));
    return { updateOne: { filter: { _id: id }, update: { $set: { s: POOL.slice(id % 60_000, (id % 60_000) + 12) }, $inc: { n: 1 } } } };
  };
  const remove = (): Op => ({ deleteOne: { filter: { _id: deleted++ } } });
  const mixed = (): Op => {
    const r = rnd();
    if (r < 0.6) return insert();
    if (r < 0.9 || deleted >= deletes) return update();
    return remove();
  };
  let left = p.ops;
  while (left > 0) {
    if (p.name === 'txn') {
      // Six inserts, three updates, one delete, shuffled by nothing: a fixed shape per transaction.
      const ops = [insert(), update(), insert(), insert(), update(), remove(), insert(), update(), insert(), insert()].slice(0, left);
      left -= ops.length;
      yield { ops, transaction: true };
      continue;
    }
    const n = Math.min(chunk, left);
    const ops: Op[] = [];
    for (let i = 0; i < n; i++) ops.push(p.name === 'insert' ? insert() : p.name === 'update' ? update() : mixed());
    left -= n;
    yield { ops, transaction: false };
  }
}
