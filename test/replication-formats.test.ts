// Every oplog form MongoDB 6.0 writes for user changes, replicated end to end between two real
// replica sets: inserts, replacements, `$v: 2` diffs of every kind, deletes, transactions (one
// entry and several `partialTxn` entries), applyOps from multi-document deletes, and renaming.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { BSON, BSONRegExp, type Collection, type Document, type MongoClient } from 'mongodb';
import type { Topology } from '../src/topology.ts';
import { show, splitTag, stored } from './support/bson.ts';
import { addLink, settle, startCluster, startMmm, type Cluster, type RunningMmm, type TestDoc } from './support/replication.ts';

let cluster: Cluster;
let topology: Topology;
let clients: Map<string, MongoClient>;
let mmm: RunningMmm;

const coll = (server: string, ns = 'test.foo'): Collection<TestDoc> => {
  const [db, name] = ns.split(/\.(.*)/s) as [string, string];
  return clients.get(server)!.db(db).collection(name);
};

/** The destination's documents, without the tag, as BSON bytes (field order and types count). */
async function bytes(server: string, ns = 'test.foo'): Promise<string[]> {
  const docs = await coll(server, ns).find({}, { promoteValues: false, bsonRegExp: true }).sort({ _id: 1 }).toArray();
  return docs.map(({ __mmm, ...rest }) => Buffer.from(BSON.serialize(rest)).toString('hex'));
}

async function assertSame(ns = 'test.foo', dstNs = ns) {
  await settle(topology, clients);
  assert.deepEqual(await bytes('server_b', dstNs), await bytes('server_a', ns));
}

before(async () => {
  cluster = await startCluster(2);
  ({ topology, clients } = cluster);
  await addLink(topology, clients, 'server_a/test.foo', 'server_b/test.foo');
  await addLink(topology, clients, 'server_a/db1.x', 'server_b/db2.y');
  await addLink(topology, clients, 'server_a/test.fresh', 'server_b/test.fresh');
  mmm = startMmm(topology);
  await settle(topology, clients);
});

after(async () => {
  await mmm?.stop();
  await cluster?.close();
});

test('inserts arrive whole, with the tag naming their origin', async () => {
  await coll('server_a').insertMany([
    { _id: 1, name: 'one', nested: { a: [1, 2, { b: 3 }] }, n: 1.5 },
    { _id: 2, name: 'two' },
  ]);
  await assertSame();
  const tag = (await coll('server_b').findOne({ _id: 1 }))!.__mmm as string;
  assert.match(tag, new RegExp(`^${topology.byName('server_a')!.id}:\\d+:\\d+$`));
});

test('an insert keeps its field order byte for byte, names that are whole numbers included (its bytes are sent as the oplog holds them)', async () => {
  // A JavaScript object would list "0" and "12" first; the bytes do not.
  const document = new Map<string, unknown>([['_id', 'ordered'], ['a', 1], ['0', 'zero'], ['12', new Map<string, unknown>([['b', 2], ['3', 3]])]]);
  await coll('server_a').insertOne(document as unknown as TestDoc);
  await settle(topology, clients);
  const source = await stored(coll('server_a') as unknown as Collection<Document>, 'ordered');
  const { rest, tag } = splitTag(await stored(coll('server_b') as unknown as Collection<Document>, 'ordered'));
  assert.equal(show(rest), show(source));
  assert.deepEqual(rest, Buffer.from(source));
  assert.match(String(tag), new RegExp(`^${topology.byName('server_a')!.id}:\\d+:\\d+$`));
  await coll('server_a').deleteOne({ _id: 'ordered' });
});

test('an insert inside a transaction keeps its field order byte for byte too', async () => {
  const document = new Map<string, unknown>([['_id', 'ordered in a transaction'], ['a', 1], ['0', 'zero'], ['12', new Map<string, unknown>([['b', 2], ['3', 3]])]]);
  const session = clients.get('server_a')!.startSession();
  try {
    await session.withTransaction(async () => {
      await coll('server_a').insertOne(document as unknown as TestDoc, { session });
      await coll('server_a').insertOne({ _id: 'beside it' }, { session });
    });
  } finally {
    await session.endSession();
  }
  await settle(topology, clients);
  const id = 'ordered in a transaction';
  const source = await stored(coll('server_a') as unknown as Collection<Document>, id);
  const { rest, tag } = splitTag(await stored(coll('server_b') as unknown as Collection<Document>, id));
  assert.equal(show(rest), show(source));
  assert.deepEqual(rest, Buffer.from(source));
  assert.match(String(tag), new RegExp(`^${topology.byName('server_a')!.id}:\\d+:\\d+$`));
  await coll('server_a').deleteMany({ _id: { $in: [id, 'beside it'] } });
});

test('an insert meeting its _id on the destination (as a replay does) is upserted byte for byte too', async () => {
  // The duplicate key writes the transaction again with its inserts as upserts of the whole
  // document: the document's bytes go into the update statement as they came.
  const id = 'met on the destination';
  await coll('server_b').insertOne({ _id: id, old: true });
  const document = new Map<string, unknown>([['_id', id], ['a', 1], ['0', 'zero'], ['12', new Map<string, unknown>([['b', 2], ['3', 3]])]]);
  await coll('server_a').insertOne(document as unknown as TestDoc);
  await settle(topology, clients);
  const source = await stored(coll('server_a') as unknown as Collection<Document>, id);
  const { rest, tag } = splitTag(await stored(coll('server_b') as unknown as Collection<Document>, id));
  assert.equal(show(rest), show(source));
  assert.deepEqual(rest, Buffer.from(source));
  assert.match(String(tag), new RegExp(`^${topology.byName('server_a')!.id}:\\d+:\\d+$`));
  await coll('server_a').deleteOne({ _id: id });
});

test('a document whose _id is a sub-document with a whole-number name after another is updated and deleted on the destination too', async () => {
  // Decoded, {b, "1"} becomes {"1", b}, which the server takes for another _id: the insert must
  // be written in the form that the later writes' filters name.
  const id = new Map<string, unknown>([['b', 1], ['1', 2]]);
  await coll('server_a').insertOne({ _id: id, v: 1 } as unknown as TestDoc);
  await coll('server_a').updateOne({ _id: id } as never, { $set: { v: 2 } });
  await settle(topology, clients);
  assert.deepEqual((await coll('server_b').find({ v: { $exists: true } }).toArray()).map((d) => d.v), [2]);
  await coll('server_a').deleteOne({ _id: id } as never);
  await settle(topology, clients);
  assert.equal(await coll('server_b').countDocuments({ v: { $exists: true } }), 0);
});

test('updates as $v:2 diffs: new, changed and removed fields, nested sub-diffs', async () => {
  await coll('server_a').updateOne({ _id: 1 }, { $set: { z: 1, b: 2, 'nested.c': 'new' }, $unset: { n: '' } });
  await coll('server_a').updateOne({ _id: 1 }, { $inc: { z: 5 }, $set: { 'nested.a.2.b': 4 } });
  await coll('server_a').updateOne({ _id: 1 }, [{ $set: { q: 1, p: 2 } }, { $set: { aa: '$name' } }]);
  await assertSame();
});

test('an update of top-level fields keeps its values byte for byte, names that are whole numbers included (sent as the oplog holds them)', async () => {
  const id = 'updated in order';
  await coll('server_a').insertOne({ _id: id, x: 0, y: 0 });
  // A JavaScript object would list "3" before "b"; the diff's bytes do not.
  const value = new Map<string, unknown>([['b', 1], ['3', new Map<string, unknown>([['c', 2], ['0', 3]])]]);
  await coll('server_a').updateOne({ _id: id }, { $set: { x: value }, $unset: { y: '' } } as never);
  await settle(topology, clients);
  const source = await stored(coll('server_a') as unknown as Collection<Document>, id);
  const { rest } = splitTag(await stored(coll('server_b') as unknown as Collection<Document>, id));
  assert.equal(show(rest), show(source));
  assert.deepEqual(rest, Buffer.from(source));
  await coll('server_a').deleteOne({ _id: id });
});

test('updates as $v:2 array diffs: append, resize, element updates together', async () => {
  await coll('server_a').insertOne({ _id: 3, arr: [1, 2, 3, 4, 5], objs: [{ k: 1 }, { k: 2 }] });
  await coll('server_a').updateOne({ _id: 3 }, { $push: { arr: 6 } } as Document);
  await coll('server_a').updateOne({ _id: 3 }, { $pop: { arr: 1 }, $set: { 'objs.1.k': 9 } });
  await coll('server_a').updateOne({ _id: 3 }, [{ $set: { arr: { $concatArrays: [{ $slice: ['$arr', 2] }, [{ new: true }]] } } }]);
  await coll('server_a').updateOne({ _id: 3 }, { $set: { 'objs.$[].seen': true } });
  await assertSame();
});

test('regular expressions keep their options, s and x included: inserted, set by a diff, replaced', async () => {
  await coll('server_a').insertOne({ _id: 40, r: new BSONRegExp('a b # c', 'imsx') });
  await coll('server_a').updateOne({ _id: 40 }, { $set: { q: new BSONRegExp('^x', 'sx'), 'n.r': new BSONRegExp('y', 'u') } });
  await coll('server_a').insertOne({ _id: 41 });
  await coll('server_a').replaceOne({ _id: 41 }, { r: new BSONRegExp('z', 'ls') });
  await assertSame();
  const stored = await coll('server_b').findOne({ _id: 40 }, { bsonRegExp: true });
  assert.deepEqual([stored!.r, stored!.q], [new BSONRegExp('a b # c', 'imsx'), new BSONRegExp('^x', 'sx')]);
});

test('replacements, including a replacement of a document the destination lacks', async () => {
  await coll('server_a').replaceOne({ _id: 2 }, { other: 'shape', list: [1] });
  await coll('server_b').deleteOne({ _id: 2 });
  await coll('server_a').replaceOne({ _id: 2 }, { other: 'again' });
  await assertSame();
});

test('deletes, one by one and many at once', async () => {
  await coll('server_a').insertMany([{ _id: 10 }, { _id: 11 }, { _id: 12 }]);
  await coll('server_a').deleteOne({ _id: 10 });
  await coll('server_a').deleteMany({ _id: { $in: [11, 12] } });
  await assertSame();
});

test('a transaction is applied when it commits, an aborted one never', async () => {
  const client = clients.get('server_a')!;
  const session = client.startSession();
  try {
    await session.withTransaction(async () => {
      await coll('server_a').insertOne({ _id: 20, t: 1 }, { session });
      await coll('server_a').updateOne({ _id: 1 }, { $set: { inTxn: true } }, { session });
      await coll('server_a').deleteOne({ _id: 3 }, { session });
    });
    session.startTransaction();
    await coll('server_a').insertOne({ _id: 21 }, { session });
    await session.abortTransaction();
  } finally {
    await session.endSession();
  }
  await assertSame();
  assert.equal(await coll('server_b').countDocuments({ _id: 21 }), 0);
});

test('a transaction too large for one oplog entry (partialTxn) arrives whole', async () => {
  const client = clients.get('server_a')!;
  const session = client.startSession();
  const big = 'x'.repeat(4 * 1024 * 1024);
  try {
    await session.withTransaction(async () => {
      for (let i = 0; i < 5; i++) await coll('server_a').insertOne({ _id: 100 + i, big }, { session });
      await coll('server_a').deleteOne({ _id: 20 }, { session });
    });
  } finally {
    await session.endSession();
  }
  const entries = await client.db('local').collection('oplog.rs').find({ 'o.partialTxn': true }).toArray();
  assert.ok(entries.length > 0, 'the transaction was logged in several entries');
  await assertSame();
});

test('a transaction that creates its collection replicates its writes', async () => {
  const session = clients.get('server_a')!.startSession();
  try {
    await session.withTransaction(async () => {
      await coll('server_a', 'test.fresh').insertOne({ _id: 'created-in-txn' }, { session });
    });
  } finally {
    await session.endSession();
  }
  const created = await clients.get('server_a')!.db('local').collection('oplog.rs').countDocuments({ 'o.applyOps.o.create': 'fresh' });
  assert.equal(created, 1, 'the create is inside the applyOps entry');
  await assertSame('test.fresh');
  assert.equal(await coll('server_b', 'test.fresh').countDocuments(), 1);
});

test('a renamed link writes to its own namespace on the destination', async () => {
  await coll('server_a', 'db1.x').insertOne({ _id: 'r', v: 1 });
  await coll('server_a', 'db1.x').updateOne({ _id: 'r' }, { $set: { v: 2 } });
  await assertSame('db1.x', 'db2.y');
  assert.equal(await coll('server_b', 'db1.x').countDocuments(), 0);
});

test('collections without a link are left alone', async () => {
  await coll('server_a', 'test.unlinked').insertOne({ _id: 1 });
  await settle(topology, clients);
  assert.equal(await coll('server_b', 'test.unlinked').countDocuments(), 0);
});

test('a diff nested 60 levels deep is replayed exactly, and the link goes on', async () => {
  let deep: Document = { leaf: 0, list: [1] };
  for (let level = 0; level < 60; level++) deep = { [`l${level}`]: deep };
  await coll('server_a').insertOne({ _id: 'deep', deep });
  const path = ['deep', ...Array.from({ length: 60 }, (_, k) => `l${59 - k}`)].join('.');
  await coll('server_a').updateOne({ _id: 'deep' }, { $set: { [`${path}.leaf`]: 1, [`${path}.added`]: 'x' }, $push: { [`${path}.list`]: 2 } } as Document);
  const entry = await clients.get('server_a')!.db('local').collection('oplog.rs').find({ ns: 'test.foo', 'o2._id': 'deep' }).sort({ $natural: -1 }).limit(1).next();
  assert.equal(entry?.o.$v, 2, 'the server logged a diff');
  await coll('server_a').insertOne({ _id: 'after deep' });
  await assertSame();
});

test('an applyOps inside an applyOps crosses whole', async () => {
  await clients.get('server_a')!.db('admin').command({
    applyOps: [
      { op: 'i', ns: 'test.foo', o: { _id: 'outer' } },
      { op: 'c', ns: 'admin.$cmd', o: { applyOps: [{ op: 'i', ns: 'test.foo', o: { _id: 'inner' } }, { op: 'u', ns: 'test.foo', o: { $v: 2, diff: { i: { touched: true } } }, o2: { _id: 'outer' } }] } },
    ],
  });
  // MongoDB 6.0.5 logs the inner applyOps as an entry of its own (the outer one, holding a
  // command, is not applied atomically); an entry holding one inside another is decoded too
  // (test/oplog-decode.test.ts).
  const inner = await clients.get('server_a')!.db('local').collection('oplog.rs').countDocuments({ op: 'c', 'o.applyOps.o._id': 'inner' });
  assert.equal(inner, 1);
  await assertSame();
  assert.deepEqual(await coll('server_b').findOne({ _id: 'outer' }, { projection: { __mmm: 0 } }), { _id: 'outer', touched: true });
  assert.equal(await coll('server_b').countDocuments({ _id: 'inner' }), 1);
});
