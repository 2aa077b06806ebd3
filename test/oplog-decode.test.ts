// Unit tests of the decoder: oplog entries shaped as MongoDB 6.0 writes them (seen on a real
// server, see test/replication-formats.test.ts) in, changes and a safe checkpoint out.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Binary, Int32, Long, Timestamp, type Document } from 'mongodb';
import { UnsupportedOplogEntryError } from '../src/errors.ts';
import { OplogDecoder } from '../src/oplog/decode.ts';
import type { OplogEntry } from '../src/oplog/entry.ts';

const ts = (i: number) => new Timestamp({ t: 100, i });
const lsid = { id: new Binary(Buffer.alloc(16, 7), 4) };

function entry(i: number, fields: Partial<OplogEntry> & { op: OplogEntry['op'] }): OplogEntry {
  return { ts: ts(i), ns: 'db.c', o: {}, ...fields };
}

const insert = (i: number, id: number): OplogEntry => entry(i, { op: 'i', o: { _id: id } });
const txnEntry = (i: number, ops: Document[], extra: Document): OplogEntry =>
  entry(i, { op: 'c', ns: 'admin.$cmd', o: { applyOps: ops, ...extra }, lsid, txnNumber: Long.fromNumber(3) });

test('inserts, updates and deletes come out in order with their own positions; no-ops do not', () => {
  const decoder = new OplogDecoder(ts(0));
  const { changes } = decoder.decode([
    insert(1, 1),
    entry(2, { op: 'n', ns: '', o: { msg: 'periodic noop' } }),
    entry(3, { op: 'u', o: { $v: new Int32(2), diff: { u: { a: 1 } } }, o2: { _id: 1 } }),
    entry(4, { op: 'd', o: { _id: 1 } }),
  ]);
  assert.deepEqual(
    changes.map((c) => [c.op, c.ts.i]),
    [['i', 1], ['u', 3], ['d', 4]],
  );
  assert.equal(decoder.safePosition.i, 4);
});

test('chunk migration entries are skipped, alone or inside applyOps', () => {
  const decoder = new OplogDecoder(ts(0));
  const { changes } = decoder.decode([
    entry(1, { op: 'i', o: { _id: 1 }, fromMigrate: true }),
    entry(2, { op: 'c', ns: 'admin.$cmd', o: { applyOps: [{ op: 'd', ns: 'db.c', o: { _id: 2 }, fromMigrate: true }, { op: 'd', ns: 'db.c', o: { _id: 3 } }] } }),
  ]);
  assert.deepEqual(changes.map((c) => c.o._id), [3]);
});

test('applyOps outside a transaction is unrolled at once', () => {
  const decoder = new OplogDecoder(ts(0));
  const { changes } = decoder.decode([
    entry(5, { op: 'c', ns: 'admin.$cmd', o: { applyOps: [{ op: 'd', ns: 'db.c', o: { _id: 1 } }, { op: 'd', ns: 'db.c', o: { _id: 2 } }] } }),
  ]);
  assert.deepEqual(changes.map((c) => [c.op, c.o._id, c.ts.i]), [['d', 1, 5], ['d', 2, 5]]);
});

test('a transaction split over partialTxn entries is applied only when its last entry arrives', () => {
  const decoder = new OplogDecoder(ts(0));
  const first = decoder.decode([insert(1, 1), txnEntry(2, [{ op: 'i', ns: 'db.c', o: { _id: 10 } }], { partialTxn: true })]);
  assert.deepEqual(first.changes.map((c) => c.o._id), [1]);
  assert.equal(decoder.openTransactions, 1);
  // A restart must re-read the transaction's first entry: the safe position stays before it.
  assert.equal(decoder.safePosition.i, 1);

  const second = decoder.decode([
    insert(3, 2),
    txnEntry(4, [{ op: 'i', ns: 'db.c', o: { _id: 11 } }, { op: 'd', ns: 'db.c', o: { _id: 10 } }], { count: 3 }),
  ]);
  assert.deepEqual(second.changes.map((c) => [c.op, c.o._id, c.ts.i]), [
    ['i', 2, 3],
    ['i', 10, 4],
    ['i', 11, 4],
    ['d', 10, 4],
  ]);
  assert.equal(decoder.openTransactions, 0);
  assert.equal(decoder.safePosition.i, 4);
});

test('a single-entry transaction is applied at once', () => {
  const decoder = new OplogDecoder(ts(0));
  const { changes } = decoder.decode([txnEntry(1, [{ op: 'u', ns: 'db.c', o: { $v: 2, diff: {} }, o2: { _id: 4 } }], {})]);
  assert.deepEqual(changes.map((c) => [c.op, c.o2?._id]), [['u', 4]]);
});

test('DDL commands are reported, not turned into changes', () => {
  const decoder = new OplogDecoder(ts(0));
  const { changes, commands } = decoder.decode([entry(1, { op: 'c', ns: 'db.$cmd', o: { drop: 'c' } })]);
  assert.equal(changes.length, 0);
  assert.deepEqual(commands.map((c) => [c.db, c.name]), [['db', 'drop']]);
});

test('a collection created inside a transaction is reported, and the transaction still applies', () => {
  const decoder = new OplogDecoder(ts(0));
  const { changes, commands } = decoder.decode([
    txnEntry(1, [{ op: 'c', ns: 'db.$cmd', o: { create: 'fresh' } }, { op: 'i', ns: 'db.fresh', o: { _id: 1 } }], {}),
  ]);
  assert.deepEqual(changes.map((c) => [c.op, c.ns]), [['i', 'db.fresh']]);
  assert.deepEqual(commands.map((c) => [c.db, c.name]), [['db', 'create']]);
});

test('prepared transactions are refused, not guessed at', () => {
  const decoder = new OplogDecoder(ts(0));
  assert.throws(() => decoder.decode([txnEntry(1, [], { prepare: true })]), UnsupportedOplogEntryError);
  assert.throws(
    () => decoder.decode([entry(2, { op: 'c', ns: 'admin.$cmd', o: { commitTransaction: 1 } })]),
    UnsupportedOplogEntryError,
  );
});

const marker = (origin: string, n = 1): Document =>
  n === 1
    ? { op: 'i', ns: 'mmm.writes', o: { _id: { origin, source: 'S', lane: 0 }, n: 1 } }
    : { op: 'u', ns: 'mmm.writes', o: { $v: 2, diff: { u: { n } } }, o2: { _id: { origin, source: 'S', lane: 0 } } };

test("a transaction's operations after a marker are mmm's, for the origin it names; the markers are no changes", () => {
  const decoder = new OplogDecoder(ts(0));
  const { changes } = decoder.decode([
    txnEntry(1, [
      marker('origin-a'),
      { op: 'i', ns: 'db.c', o: { _id: 1 } },
      { op: 'u', ns: 'db.c', o: { $v: 2, diff: { u: { a: 1 } } }, o2: { _id: 1 } },
      marker('origin-c', 4),
      { op: 'd', ns: 'db.c', o: { _id: 2 } },
    ], {}),
    // A user's transaction: no marker, no origin.
    txnEntry(2, [{ op: 'i', ns: 'db.c', o: { _id: 3 } }], {}),
    insert(3, 4),
  ]);
  assert.deepEqual(changes.map((c) => [c.op, c.ts.i, c.seq, c.origin]), [
    ['i', 1, 1, 'origin-a'],
    ['u', 1, 2, 'origin-a'],
    ['d', 1, 4, 'origin-c'],
    ['i', 2, 0, undefined],
    ['i', 3, 0, undefined],
  ]);
});

test('a marker in the first entry of a transaction split over partialTxn entries covers the later entries', () => {
  const decoder = new OplogDecoder(ts(0));
  decoder.decode([txnEntry(1, [marker('origin-a'), { op: 'i', ns: 'db.c', o: { _id: 1 } }], { partialTxn: true })]);
  const { changes } = decoder.decode([txnEntry(2, [{ op: 'i', ns: 'db.c', o: { _id: 2 } }], { count: 3 })]);
  assert.deepEqual(changes.map((c) => [c.o._id, c.origin, c.ts.i]), [[1, 'origin-a', 2], [2, 'origin-a', 2]]);
});

test('an applyOps inside an applyOps is unrolled in its place', () => {
  const decoder = new OplogDecoder(ts(0));
  const { changes } = decoder.decode([
    entry(1, {
      op: 'c',
      ns: 'admin.$cmd',
      o: {
        applyOps: [
          { op: 'i', ns: 'db.c', o: { _id: 1 } },
          { op: 'c', ns: 'admin.$cmd', o: { applyOps: [{ op: 'i', ns: 'db.c', o: { _id: 2 } }, { op: 'c', ns: 'admin.$cmd', o: { applyOps: [{ op: 'd', ns: 'db.c', o: { _id: 1 } }] } }] } },
          { op: 'i', ns: 'db.c', o: { _id: 3 } },
        ],
      },
    }),
  ]);
  assert.deepEqual(changes.map((c) => [c.op, c.o._id]), [['i', 1], ['i', 2], ['d', 1], ['i', 3]]);
});
