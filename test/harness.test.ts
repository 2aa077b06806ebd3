// The foundation's proof: real replica sets start, their oplogs can be tailed, and they are
// independent of each other.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Timestamp, type MongoClient } from 'mongodb';
import { startReplicaSets, type ReplicaSet } from '../scripts/replica-sets.ts';

let sets: ReplicaSet[] = [];
let clients: MongoClient[] = [];

before(async () => {
  sets = await startReplicaSets(2);
  clients = sets.map((s) => s.client());
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(sets.map((s) => s.destroy()));
});

test('an insert on one replica set is read back from its oplog by a tailable cursor, and not from the other', async () => {
  const [a, b] = clients as [MongoClient, MongoClient];
  const last = async (client: MongoClient) =>
    (await client.db('local').collection('oplog.rs').find({}).sort({ $natural: -1 }).limit(1).next())!.ts as Timestamp;
  const startA = await last(a);
  const startB = await last(b);

  const cursor = a
    .db('local')
    .collection('oplog.rs')
    .find({ ts: { $gt: startA }, ns: 'smoke.things' }, { tailable: true, awaitData: true, maxAwaitTimeMS: 200 });
  const wrote = Date.now();
  await a.db('smoke').collection('things').insertOne({ _id: 'x' as never, n: 1 });
  const entry = await cursor.next();
  const waited = Date.now() - wrote;
  await cursor.close();

  assert.equal(entry?.op, 'i');
  assert.deepEqual(entry?.o, { _id: 'x', n: 1 });
  assert.ok(waited < 1000, `the tailable cursor took ${waited} ms to see the insert`);
  const onB = await b.db('local').collection('oplog.rs').countDocuments({ ts: { $gt: startB }, ns: 'smoke.things' });
  assert.equal(onB, 0);
});

test('every replica set reports itself as a primary of its own set', async () => {
  const names = await Promise.all(clients.map(async (c) => (await c.db('admin').command({ hello: 1 })).setName));
  assert.deepEqual(names, sets.map((s) => s.name));
  assert.notEqual(names[0], names[1]);
});
