// Parallel apply: each document's writes stay in order in one partition, writes are regrouped
// into one command per type, a refused write makes the batch go again in oplog order, and a
// write refused in that order too is kept in mmm.refused (or stops the apply).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Double, Int32, Long, Timestamp, type MongoClient } from 'mongodb';
import { applyInParallel, documentKey, partition, phases, type ParallelApplyOptions } from '../src/apply/parallel.ts';
import { RefusedWrites } from '../src/apply/refused.ts';
import { APPLY_DEFAULTS, planWrite, WHOLE_ATTEMPTS, type DestinationWrite } from '../src/apply/writer.ts';
import { RefusedWriteError } from '../src/errors.ts';
import { silentLogger } from '../src/log.ts';
import { makeTag } from '../src/replicate/tag.ts';
import type { Change } from '../src/oplog/entry.ts';
import { startReplicaSets, type ReplicaSet } from '../scripts/replica-sets.ts';

const ORIGIN = '2c88ae84-7cb9-40f7-835d-c05e981f564d';
const ts = new Timestamp({ t: 1_700_000_000, i: 1 });
const tag = makeTag(ORIGIN, ts);
let seq = 0;
const plan = (change: Omit<Change, 'ts' | 'seq'>, ns: string) => planWrite({ ...change, ts, seq: seq++ }, ns, tag, ORIGIN);
const ins = (id: unknown, doc: object = {}, ns = 'db.c') => plan({ op: 'i', ns, o: { _id: id, ...doc } }, ns);
const upd = (id: unknown, set: object, ns = 'db.c') => plan({ op: 'u', ns, o: { $v: 2, diff: { u: set } }, o2: { _id: id } }, ns);
const del = (id: unknown, ns = 'db.c') => plan({ op: 'd', ns, o: { _id: id } }, ns);
const describe = (w: DestinationWrite) => `${w.kind[0]}${String(w.id)}`;

test('a document keeps its writes in order, in one partition, whatever the numeric type of its _id', () => {
  const writes = [ins(1), ins(2), upd(new Int32(1), { a: 1 }), del(new Double(1)), ins(new Long(1)), upd(2, { b: 1 }), ins('1')];
  assert.equal(documentKey(ins(1)), documentKey(ins(new Long(1))));
  assert.notEqual(documentKey(ins(1)), documentKey(ins('1')));
  assert.notEqual(documentKey(ins(1)), documentKey(ins(1, {}, 'db.other')));
  const parts = partition(writes, 8);
  const withOne = parts.filter((p) => p.some((w) => documentKey(w) === documentKey(ins(1))));
  assert.equal(withOne.length, 1);
  assert.deepEqual(withOne[0]!.filter((w) => documentKey(w) === documentKey(ins(1))).map((w) => w.kind), ['insert', 'update', 'delete', 'insert']);
  assert.equal(parts.flat().length, writes.length);
});

test('writes are regrouped by command type, each after its own document\'s previous write', () => {
  const writes = [ins(1), upd(2, { a: 1 }), del(3), ins(4), upd(1, { a: 2 }), del(1), ins(1), del(5), upd(6, { a: 1 }, 'db.d')];
  const out = phases(writes).map((phase) => [...phase.entries()].map(([ns, group]) => `${ns}:${group.map(describe).join(',')}`).join(' '));
  assert.deepEqual(out, [
    'db.c:i1,i4', // inserts, one command per namespace
    'db.c:u2,u1 db.d:u6', // updates
    'db.c:d3,d1,d5', // deletes
    'db.c:i1', // the re-insert of 1 must follow its delete
  ]);
});

let set: ReplicaSet;
let client: MongoClient;

function options(partitions: number, onRefused: 'keep' | 'stop' = 'keep'): ParallelApplyOptions {
  return {
    ...APPLY_DEFAULTS,
    writeConcern: { w: 'majority' },
    logger: silentLogger,
    partitions,
    sourceId: ORIGIN,
    refused: new RefusedWrites(client, ORIGIN, { w: 'majority' }),
    onRefused,
  };
}

before(async () => {
  [set] = (await startReplicaSets(1, { args: ['--setParameter', 'enableTestCommands=1'] })) as [ReplicaSet];
  client = set.client();
  await client.connect();
});

after(async () => {
  await client?.close();
  await set?.destroy();
});

test('a write refused after regrouping makes the batch go again in oplog order, which the source allowed', async () => {
  const coll = client.db('db').collection<{ _id: number; email: string }>('unique');
  await coll.createIndex({ email: 1 }, { unique: true });
  await coll.insertOne({ _id: 1, email: 'x@example.com' });
  // On the source: 1 gave up its address, then 2 took it. Regrouped, the insert of 2 would go
  // before the delete of 1 and hit the unique index.
  const writes = [del(1, 'db.unique'), ins(2, { email: 'x@example.com' }, 'db.unique'), ins(3, { email: 'y@example.com' }, 'db.unique')];
  const stats = await applyInParallel(client, writes, options(1));
  assert.deepEqual(stats, { inserted: 2, updated: 0, deleted: 1, missed: 0, failed: 0, conflicts: 0, lost: 0 });
  assert.deepEqual(await coll.find({}, { projection: { __mmm: 0 } }).sort({ _id: 1 }).toArray(), [
    { _id: 2, email: 'x@example.com' },
    { _id: 3, email: 'y@example.com' },
  ]);
});

test('inserts are written as inserts; a replay meeting their documents writes its transaction again with upserts', async () => {
  const coll = client.db('db').collection<{ _id: number; v?: number; w?: number }>('replay');
  await coll.insertOne({ _id: 0 });
  const counters = async () => (await client.db('admin').command({ serverStatus: 1 })).opcounters as { insert: number; update: number };
  const before = await counters();
  const writes = [ins(1, { v: 0 }, 'db.replay'), ins(2, { v: 0 }, 'db.replay'), upd(1, { v: 1 }, 'db.replay'), ins(3, { v: 0 }, 'db.replay')];
  assert.deepEqual(await applyInParallel(client, writes, options(1)), { inserted: 3, updated: 1, deleted: 0, missed: 0, failed: 0, conflicts: 0, lost: 0 });
  // Three inserts; the marker and the update of 1 are the updates (an upsert counts as one).
  const first = await counters();
  assert.deepEqual([first.insert - before.insert, first.update - before.update], [3, 2]);
  // Later writes of the first run; then a restart replays the whole batch: 1, 2 and 3 exist.
  await coll.updateOne({ _id: 2 }, { $set: { w: 1 } });
  await coll.deleteOne({ _id: 3 });
  const replay = [...writes, upd(2, { w: 1 }, 'db.replay'), del(3, 'db.replay')];
  const stats = await applyInParallel(client, replay, options(1));
  assert.deepEqual(stats, { inserted: 3, updated: 2, deleted: 1, missed: 0, failed: 0, conflicts: 0, lost: 0 });
  assert.deepEqual(await coll.find({}, { projection: { __mmm: 0 } }).sort({ _id: 1 }).toArray(), [{ _id: 0 }, { _id: 1, v: 1 }, { _id: 2, v: 0, w: 1 }]);
  assert.equal(await client.db('mmm').collection('refused').countDocuments({ ns: 'db.replay' }), 0);
});

test('an insert whose _id is taken and a unique index refused in the same transaction: the insert converges, the other is kept', async () => {
  const coll = client.db('db').collection<{ _id: number; k: string }>('both');
  await coll.createIndex({ k: 1 }, { unique: true });
  await coll.insertMany([{ _id: 1, k: 'old' }, { _id: 9, k: 'taken' }]);
  const writes = [ins(1, { k: 'new' }, 'db.both'), ins(2, { k: 'taken' }, 'db.both'), ins(3, { k: 'c' }, 'db.both')];
  const stats = await applyInParallel(client, writes, options(1));
  assert.deepEqual(stats, { inserted: 2, updated: 0, deleted: 0, missed: 0, failed: 1, conflicts: 0, lost: 0 });
  assert.deepEqual(await coll.find({}, { projection: { __mmm: 0 } }).sort({ _id: 1 }).toArray(), [
    { _id: 1, k: 'new' },
    { _id: 3, k: 'c' },
    { _id: 9, k: 'taken' },
  ]);
  const kept = await client.db('mmm').collection('refused').find({ ns: 'db.both' }).toArray();
  assert.deepEqual(kept.map((r) => [r.docId, r.error.code]), [[2, 11000]]);
  await client.db('mmm').collection('refused').deleteMany({ ns: 'db.both' }); // the tests below count theirs
});

test('many writes in parallel partitions end as the same documents as in order', async () => {
  const coll = client.db('db').collection<{ _id: number; v?: number }>('many');
  const writes: DestinationWrite[] = [];
  for (let i = 0; i < 2_000; i++) writes.push(ins(i, { v: 0 }, 'db.many'));
  for (let i = 0; i < 2_000; i += 3) writes.push(upd(i, { v: 1 }, 'db.many'));
  for (let i = 0; i < 2_000; i += 5) writes.push(del(i, 'db.many'));
  for (let i = 0; i < 2_000; i += 10) writes.push(ins(i, { v: 2 }, 'db.many'));
  const stats = await applyInParallel(client, writes, options(4));
  assert.equal(stats.failed, 0);
  const docs = await coll.find({}, { projection: { __mmm: 0 } }).sort({ _id: 1 }).toArray();
  const expected = [];
  for (let i = 0; i < 2_000; i++) {
    if (i % 10 === 0) expected.push({ _id: i, v: 2 });
    else if (i % 5 !== 0) expected.push({ _id: i, v: i % 3 === 0 ? 1 : 0 });
  }
  assert.deepEqual(docs, expected);
});

test('a write refused in oplog order too is kept in mmm.refused, and the writes around it are applied', async () => {
  const coll = client.db('db').collection<{ _id: number; k: string }>('refused');
  await coll.createIndex({ k: 1 }, { unique: true });
  await coll.insertOne({ _id: 1, k: 'taken' });
  const writes = [ins(2, { k: 'a' }, 'db.refused'), ins(3, { k: 'taken' }, 'db.refused'), ins(4, { k: 'b' }, 'db.refused')];
  const stats = await applyInParallel(client, writes, options(2));
  assert.equal(stats.failed, 1);
  assert.deepEqual(await coll.find({}, { projection: { __mmm: 0 } }).sort({ _id: 1 }).toArray(), [
    { _id: 1, k: 'taken' },
    { _id: 2, k: 'a' },
    { _id: 4, k: 'b' },
  ]);
  const kept = await client.db('mmm').collection('refused').find({ ns: 'db.refused' }).toArray();
  assert.equal(kept.length, 1);
  assert.equal(kept[0]!.docId, 3);
  assert.equal(kept[0]!.op, 'i');
  assert.equal(kept[0]!.error.code, 11000);
  // The same refusal met again (a replay) keeps one record.
  await applyInParallel(client, writes, options(1));
  assert.equal(await client.db('mmm').collection('refused').countDocuments({ ns: 'db.refused' }), 1);
  assert.equal(await new RefusedWrites(client, ORIGIN, { w: 'majority' }).count(), 1);
});

test('with onRefused stop, the writes before the refused one are applied, then the apply stops naming it', async () => {
  const coll = client.db('db').collection<{ _id: number; k: string }>('stop');
  await coll.createIndex({ k: 1 }, { unique: true });
  await coll.insertOne({ _id: 1, k: 'taken' });
  const writes = [ins(2, { k: 'a' }, 'db.stop'), ins(3, { k: 'taken' }, 'db.stop'), ins(4, { k: 'b' }, 'db.stop')];
  await assert.rejects(applyInParallel(client, writes, options(1, 'stop')), (err: unknown) => {
    assert.ok(err instanceof RefusedWriteError);
    assert.equal(err.ns, 'db.stop');
    assert.equal(err.id, 3);
    return true;
  });
  assert.deepEqual((await coll.find().sort({ _id: 1 }).toArray()).map((d) => d._id), [1, 2]);
  assert.equal(await client.db('mmm').collection('refused').countDocuments({ ns: 'db.stop' }), 1);
});

test("a transaction too large for the destination's cache is applied in smaller ones, in order", async () => {
  // 40 documents of 4 MB: 160 MB in one transaction, more than these servers' 0.25 GB cache takes.
  const since = (await client.db('local').collection('oplog.rs').find().sort({ $natural: -1 }).limit(1).next())!.ts;
  const big = 'x'.repeat(4 * 1024 * 1024);
  const writes = Array.from({ length: 40 }, (_, k) => ins(k, { big, k }, 'db.big'));
  writes.push(upd(0, { last: true }, 'db.big'));
  const stats = await applyInParallel(client, writes, options(1));
  assert.deepEqual(stats, { inserted: 40, updated: 1, deleted: 0, missed: 0, failed: 0, conflicts: 0, lost: 0 });
  assert.equal(await client.db('db').collection('big').countDocuments(), 40);
  assert.equal((await client.db('db').collection('big').findOne({ _id: 0 as never }))?.last, true);
  const commits = await client.db('local').collection('oplog.rs').countDocuments({ ts: { $gt: since }, 'o.applyOps.ns': 'mmm.writes' });
  assert.ok(commits > 1, `${commits} transaction(s)`);
});

test('a transaction that keeps meeting write conflicts is applied in halves, in order, instead of retried whole for minutes', async () => {
  // A large transaction under cache pressure fails its commit with WriteConflict, again and
  // again: here the commit fails so exactly as often as a transaction is tried whole.
  const since = (await client.db('local').collection('oplog.rs').find().sort({ $natural: -1 }).limit(1).next())!.ts;
  const writes = Array.from({ length: 10 }, (_, k) => ins(k, { k }, 'db.contended'));
  writes.push(upd(9, { last: true }, 'db.contended'));
  const data = { failCommands: ['commitTransaction'], errorCode: 112, errorLabels: ['TransientTransactionError'] };
  await client.db('admin').command({ configureFailPoint: 'failCommand', mode: { times: WHOLE_ATTEMPTS }, data });
  try {
    const stats = await applyInParallel(client, writes, options(1));
    assert.equal(stats.inserted, 10);
    assert.equal(stats.updated, 1);
  } finally {
    await client.db('admin').command({ configureFailPoint: 'failCommand', mode: 'off' });
  }
  assert.deepEqual(
    await client.db('db').collection('contended').find().sort({ _id: 1 }).toArray(),
    Array.from({ length: 10 }, (_, k) => ({ _id: k, k, __mmm: tag, ...(k === 9 ? { last: true } : {}) })),
  );
  // Tried whole WHOLE_ATTEMPTS times, then as two halves, each committed at its first try.
  const commits = await client.db('local').collection('oplog.rs').countDocuments({ ts: { $gt: since }, 'o.applyOps.ns': 'mmm.writes' });
  assert.equal(commits, 2);
});
