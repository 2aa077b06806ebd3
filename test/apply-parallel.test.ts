// Parallel apply: each document's writes stay in order in one partition, writes are regrouped
// into one command per type, a refused write makes the batch go again in oplog order, and the
// read-ahead queue holds the reader back when it is full.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Double, Int32, Long, Timestamp, type MongoClient } from 'mongodb';
import { applyInParallel, documentKey, partition, phases } from '../src/apply/parallel.ts';
import { planWrite, type DestinationWrite } from '../src/apply/writer.ts';
import { silentLogger } from '../src/log.ts';
import { ReadAheadQueue } from '../src/replicate/read-ahead.ts';
import { attributeOrigins, makeTag } from '../src/replicate/tag.ts';
import type { Change } from '../src/oplog/entry.ts';
import { startReplicaSets, type ReplicaSet } from '../scripts/replica-sets.ts';

const ORIGIN = '2c88ae84-7cb9-40f7-835d-c05e981f564d';
const ts = new Timestamp({ t: 1_700_000_000, i: 1 });
const tag = makeTag(ORIGIN, ts);
const ins = (id: unknown, doc: object = {}, ns = 'db.c') => planWrite({ op: 'i', o: { _id: id, ...doc } }, ns, tag);
const upd = (id: unknown, set: object, ns = 'db.c') => planWrite({ op: 'u', o: { $v: 2, diff: { u: set } }, o2: { _id: id } }, ns, tag);
const del = (id: unknown, ns = 'db.c') => planWrite({ op: 'd', o: { _id: id } }, ns, tag);
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
    'db.c:i1,u2,i4,u1 db.d:u6', // upserts and updates, one command per namespace
    'db.c:d3,d1,d5', // deletes
    'db.c:i1', // the re-insert of 1 must follow its delete
  ]);
});

test("a delete's mark, written before a run of deletes, still gives each delete its origin", () => {
  const other = '0d9c284b-b47c-40b5-932c-547b8685edd0';
  const mark = (id: number): Change => ({ op: 'u', ns: 'db.c', o: { $v: 2, diff: { u: { __mmm: makeTag(other, ts) } } }, o2: { _id: id }, ts });
  const remove = (id: number): Change => ({ op: 'd', ns: 'db.c', o: { _id: id }, ts });
  const out = attributeOrigins([mark(1), mark(2), remove(1), remove(2), remove(3)]);
  assert.deepEqual(out.map((c) => [c.op, c.o._id, c.origin]), [
    ['d', 1, other],
    ['d', 2, other],
    ['d', 3, undefined],
  ]);
});

test('the read-ahead queue makes the reader wait when it is full, and hands over in order', async () => {
  const queue = new ReadAheadQueue<{ weight: number; n: number }>(10);
  await queue.push({ weight: 6, n: 1 });
  let pushed = false;
  const second = queue.push({ weight: 6, n: 2 }).then(() => (pushed = true));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(pushed, false, 'no room for the second batch yet');
  assert.deepEqual((await queue.take(() => true)).map((b) => b.n), [1]);
  await second;
  await queue.push({ weight: 1, n: 3 });
  assert.deepEqual((await queue.take(() => true)).map((b) => b.n), [2, 3]);
  queue.fail(new Error('cursor died'));
  await assert.rejects(queue.take(() => true), /cursor died/);
});

let set: ReplicaSet;
let client: MongoClient;

before(async () => {
  [set] = (await startReplicaSets(1)) as [ReplicaSet];
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
  const stats = await applyInParallel(client, writes, { writeConcern: { w: 'majority' }, logger: silentLogger, partitions: 1 });
  assert.deepEqual(stats, { inserted: 2, updated: 0, deleted: 1, missed: 0, failed: 0 });
  assert.deepEqual(await coll.find({}, { projection: { __mmm: 0 } }).sort({ _id: 1 }).toArray(), [
    { _id: 2, email: 'x@example.com' },
    { _id: 3, email: 'y@example.com' },
  ]);
});

test('many writes in parallel partitions end as the same documents as in order', async () => {
  const coll = client.db('db').collection<{ _id: number; v?: number }>('many');
  const writes: DestinationWrite[] = [];
  for (let i = 0; i < 2_000; i++) writes.push(ins(i, { v: 0 }, 'db.many'));
  for (let i = 0; i < 2_000; i += 3) writes.push(upd(i, { v: 1 }, 'db.many'));
  for (let i = 0; i < 2_000; i += 5) writes.push(del(i, 'db.many'));
  for (let i = 0; i < 2_000; i += 10) writes.push(ins(i, { v: 2 }, 'db.many'));
  const stats = await applyInParallel(client, writes, { writeConcern: { w: 'majority' }, logger: silentLogger, partitions: 4 });
  assert.equal(stats.failed, 0);
  const docs = await coll.find({}, { projection: { __mmm: 0 } }).sort({ _id: 1 }).toArray();
  const expected = [];
  for (let i = 0; i < 2_000; i++) {
    if (i % 10 === 0) expected.push({ _id: i, v: 2 });
    else if (i % 5 !== 0) expected.push({ _id: i, v: i % 3 === 0 ? 1 : 0 });
  }
  assert.deepEqual(docs, expected);
});
