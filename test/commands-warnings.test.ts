// Which changes on a replicated namespace are warned about, and with which namespace: each case
// runs the DDL on a real replica set, reads what it logged from `local.oplog.rs` (as the tailer
// reads it, numbers unpromoted), decodes it with OplogDecoder, and feeds it to linkWarnings. So
// the oplog shapes the warnings depend on are the server's, not ours.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Binary, type Document, type MongoClient, type Timestamp } from 'mongodb';
import { startReplicaSet, type ReplicaSet } from '../scripts/replica-sets.ts';
import { OplogDecoder, type DecodedBatch } from '../src/oplog/decode.ts';
import type { OplogEntry } from '../src/oplog/entry.ts';
import { linkWarnings } from '../src/replicate/commands.ts';
import type { TestDoc } from './support/replication.ts';

let set: ReplicaSet | undefined;
let client: MongoClient;

before(async () => {
  set = await startReplicaSet(1);
  client = set.client();
});

after(async () => {
  await client?.close();
  await set?.destroy();
});

const db = (name = 'test') => client.db(name);
const coll = (name: string, dbName = 'test') => db(dbName).collection<TestDoc>(name);

/** What `act` logged, decoded: the entries after the newest one before it. */
async function logged(act: () => Promise<unknown>): Promise<DecodedBatch> {
  const oplog = client.db('local').collection<OplogEntry>('oplog.rs');
  const start = (await oplog.find().sort({ $natural: -1 }).limit(1).next())!.ts;
  await act();
  const entries = await oplog.find({ ts: { $gt: start } }, { promoteValues: false }).toArray();
  return new OplogDecoder(start).decode(entries);
}

/** The warnings for `batch`, with `linked` replicated from server_a, without their positions. */
function warnings(batch: DecodedBatch, linked: string[]) {
  return linkWarnings({ commands: batch.commands, changes: batch.changes, linked: new Set(linked), source: 'server_a' }).map(
    ({ command, ns, message }) => ({ command, ns, message }),
  );
}

/** The command entries of `batch` named `name`, as logged. */
function commands(batch: DecodedBatch, name: string): Array<{ db: string; o: Document; ts: Timestamp }> {
  return batch.commands.filter((c) => c.name === name);
}

async function fresh(...names: string[]): Promise<void> {
  for (const name of names) await coll(name).drop().catch(() => undefined);
}

test('drop: {drop: coll} under db.$cmd, warned only for a replicated namespace', async () => {
  await coll('foo').insertOne({ _id: 1 });
  await coll('other').insertOne({ _id: 1 });
  const batch = await logged(async () => {
    await coll('foo').drop();
    await coll('other').drop();
  });
  assert.deepEqual(commands(batch, 'drop').map((c) => [c.db, c.o]), [['test', { drop: 'foo' }], ['test', { drop: 'other' }]]);
  const all = linkWarnings({ commands: batch.commands, changes: batch.changes, linked: new Set(['test.foo']), source: 'server_a' });
  assert.deepEqual(
    all.map(({ command, ns, message }) => ({ command, ns, message })),
    [
      {
        command: 'drop',
        ns: 'test.foo',
        message: 'drop of test.foo is not replicated: the collection and its documents are gone on server_a only; drop it on every server, or copy it back to server_a',
      },
    ],
  );
  assert.ok(all[0]!.ts.equals(commands(batch, 'drop')[0]!.ts), 'the warning carries the entry position');
});

test('$out into an existing collection: a temporary collection renamed onto it with dropTarget', async () => {
  await fresh('foo', 'src');
  await coll('foo').insertOne({ _id: 'old' });
  await coll('src').insertMany([{ _id: 1 }, { _id: 2 }]);
  const batch = await logged(() => coll('src').aggregate([{ $match: {} }, { $out: 'foo' }]).toArray());
  const [rename, ...more] = commands(batch, 'renameCollection');
  assert.equal(more.length, 0);
  assert.equal(rename!.db, 'test', 'a rename within a database is logged under it, not admin');
  assert.match(String(rename!.o.renameCollection), /^test\.tmp\.agg_out\.[0-9a-f-]{36}$/);
  assert.equal(rename!.o.to, 'test.foo');
  assert.ok(rename!.o.dropTarget instanceof Binary, 'dropTarget is the UUID of the replaced collection');
  // The documents reach test.foo only through the rename: their inserts are on the temporary one.
  assert.deepEqual([...new Set(batch.changes.map((c) => c.ns))], [rename!.o.renameCollection]);
  assert.deepEqual(warnings(batch, ['test.foo', 'test.src']), [
    {
      command: 'renameCollection',
      ns: 'test.foo',
      message:
        '$out into test.foo is not replicated: it replaced the collection on server_a only (the other servers keep the documents they had); ' +
        'do it on every server, or copy the collection from server_a',
    },
  ]);
});

test('$out into a new collection: renamed without dropTarget', async () => {
  await fresh('fresh');
  const batch = await logged(() => coll('src').aggregate([{ $match: {} }, { $out: 'fresh' }]).toArray());
  assert.equal(commands(batch, 'renameCollection')[0]!.o.dropTarget, undefined);
  assert.deepEqual(warnings(batch, ['test.fresh']), [
    {
      command: 'renameCollection',
      ns: 'test.fresh',
      message: '$out into test.fresh is not replicated: it created the collection on server_a only; do it on every server, or copy the collection from server_a',
    },
  ]);
});

test('renameCollection from and into a replicated namespace, within a database', async () => {
  await fresh('foo', 'moved', 'a');
  await coll('foo').insertOne({ _id: 1 });
  await coll('a').insertOne({ _id: 1 });
  const away = await logged(() => coll('foo').rename('moved'));
  assert.deepEqual(commands(away, 'renameCollection').map((c) => [c.db, c.o]), [['test', { renameCollection: 'test.foo', to: 'test.moved', stayTemp: false }]]);
  assert.deepEqual(warnings(away, ['test.foo']), [
    {
      command: 'renameCollection',
      ns: 'test.foo',
      message:
        'renameCollection of test.foo to test.moved is not replicated: test.foo is gone on server_a only, and writes to test.moved are not replicated; ' +
        'rename it on every server, or rename it back',
    },
  ]);
  const onto = await logged(() => coll('a').rename('moved', { dropTarget: true }));
  assert.deepEqual(warnings(onto, ['test.moved']), [
    {
      command: 'renameCollection',
      ns: 'test.moved',
      message: 'renameCollection of test.a to test.moved (dropTarget) is not replicated: it replaced the collection on server_a only; do it on every server, or copy the collection from server_a',
    },
  ]);
});

test('renameCollection across databases: a copy renamed onto the target, then a drop of the source', async () => {
  await fresh('foo');
  await coll('foo').insertOne({ _id: 1 });
  const batch = await logged(() => client.db('admin').command({ renameCollection: 'test.foo', to: 'other.foo' }));
  assert.deepEqual(commands(batch, 'drop').map((c) => [c.db, c.o]), [['test', { drop: 'foo' }]]);
  assert.match(String(commands(batch, 'renameCollection')[0]!.o.renameCollection), /^other\.tmp.{5}\.renameCollection$/);
  assert.deepEqual(warnings(batch, ['test.foo', 'other.foo']), [
    {
      command: 'renameCollection',
      ns: 'other.foo',
      message: "renameCollection into other.foo is not replicated: the collection's documents are on server_a only; do it on every server, or copy the collection from server_a",
    },
    {
      command: 'drop',
      ns: 'test.foo',
      message: 'drop of test.foo is not replicated: the collection and its documents are gone on server_a only; drop it on every server, or copy it back to server_a',
    },
  ]);
  await db('other').dropDatabase();
});

test('dropDatabase: {dropDatabase: 1} after a drop of each collection, warned with the database as namespace', async () => {
  await fresh('foo', 'bar');
  await coll('foo').insertOne({ _id: 1 });
  await coll('bar').insertOne({ _id: 1 });
  const batch = await logged(() => db().dropDatabase());
  const [drop] = commands(batch, 'dropDatabase');
  assert.equal(drop!.db, 'test');
  assert.equal(Number(drop!.o.dropDatabase), 1);
  const found = warnings(batch, ['test.foo', 'test.bar', 'elsewhere.foo']);
  assert.deepEqual(found.find((w) => w.command === 'dropDatabase'), {
    command: 'dropDatabase',
    ns: 'test',
    message:
      'dropDatabase of test is not replicated: its replicated collections (test.foo, test.bar) are gone on server_a only; ' +
      'drop them on every server, or copy them back to server_a',
  });
  assert.deepEqual(found.filter((w) => w.command === 'drop').map((w) => w.ns).sort(), ['test.bar', 'test.foo']);
  assert.equal(found.length, 3);
  assert.ok(!found.some((w) => w.ns === 'test.1'));
  // A database with no replicated collection is not warned about.
  await coll('x', 'quiet').insertOne({ _id: 1 });
  assert.deepEqual(warnings(await logged(() => db('quiet').dropDatabase()), ['test.foo']), []);
});

test('indexes and collMod: warned when they change a replicated collection; create and index builds in progress are not', async () => {
  await fresh('foo', 'empty', 'other');
  const created = await logged(() => coll('foo').insertMany([{ _id: 1, a: 1 }, { _id: 2, a: 2 }]));
  assert.deepEqual(commands(created, 'create').map((c) => c.o.create), ['foo']);
  assert.deepEqual(warnings(created, ['test.foo']), [], 'the create that comes with a first insert');

  const built = await logged(() => coll('foo').createIndex({ a: 1 }, { unique: true }));
  assert.deepEqual(built.commands.map((c) => c.name), ['startIndexBuild', 'commitIndexBuild']);
  assert.deepEqual(warnings(built, ['test.foo']), [
    {
      command: 'commitIndexBuild',
      ns: 'test.foo',
      message:
        'index a_1 on test.foo is not replicated: it exists on server_a only (unique: writes replicated into server_a that break it will be refused there); ' +
        'create it on every server',
    },
  ]);

  // On an empty collection the index is made at once, in one createIndexes entry.
  await db().createCollection('empty');
  const atOnce = await logged(() => coll('empty').createIndex({ b: 1 }));
  assert.deepEqual(commands(atOnce, 'createIndexes').map((c) => c.o.createIndexes), ['empty']);
  assert.deepEqual(warnings(atOnce, ['test.empty']), [
    { command: 'createIndexes', ns: 'test.empty', message: 'index b_1 on test.empty is not replicated: it exists on server_a only; create it on every server' },
  ]);

  const dropped = await logged(() => coll('foo').dropIndex('a_1'));
  assert.deepEqual(commands(dropped, 'dropIndexes').map((c) => c.o), [{ dropIndexes: 'foo', index: 'a_1' }]);
  assert.deepEqual(warnings(dropped, ['test.foo']), [
    { command: 'dropIndexes', ns: 'test.foo', message: 'dropIndexes of a_1 on test.foo is not replicated: the index is gone on server_a only; drop it on every server' },
  ]);

  const modded = await logged(() => db().command({ collMod: 'foo', validator: { a: { $type: 'number' } } }));
  assert.deepEqual(warnings(modded, ['test.foo']), [
    {
      command: 'collMod',
      ns: 'test.foo',
      message: "collMod of test.foo (validator) is not replicated: the collection's options changed on server_a only; run it on every server",
    },
  ]);

  // None of it on a collection no link replicates.
  const elsewhere = await logged(async () => {
    await coll('other').insertMany([{ _id: 1 }, { _id: 2 }]);
    await coll('other').createIndex({ c: 1 });
    await coll('other').dropIndex('c_1');
    await db().command({ collMod: 'other', validator: {} });
  });
  assert.deepEqual(warnings(elsewhere, ['test.foo']), []);
});

test('a command inside a transaction: an index created on a new collection', async () => {
  await fresh('intxn');
  const batch = await logged(async () => {
    const session = client.startSession();
    try {
      await session.withTransaction(async () => {
        await coll('intxn').createIndex({ k: 1 }, { session });
        await coll('intxn').insertOne({ _id: 1, k: 1 }, { session });
      });
    } finally {
      await session.endSession();
    }
  });
  assert.deepEqual(batch.commands.map((c) => c.name), ['create', 'createIndexes']);
  assert.deepEqual(warnings(batch, ['test.intxn']), [
    { command: 'createIndexes', ns: 'test.intxn', message: 'index k_1 on test.intxn is not replicated: it exists on server_a only; create it on every server' },
  ]);
});

test('a replicated collection that becomes a time-series collection: its create, then each new bucket', async () => {
  await fresh('ts');
  await coll('ts').insertOne({ _id: 1 });
  const remade = await logged(async () => {
    await coll('ts').drop();
    await db().createCollection('ts', { timeseries: { timeField: 't', metaField: 'm' } });
    await db().collection('ts').insertOne({ t: new Date(), m: 1, v: 1 });
  });
  const create = commands(remade, 'create').find((c) => c.o.create === 'system.buckets.ts');
  assert.ok(create && typeof create.o.timeseries === 'object', 'a time-series create names its buckets collection');
  assert.deepEqual(remade.changes.filter((c) => c.ns !== 'test.system.views').map((c) => [c.op, c.ns]), [['i', 'test.system.buckets.ts']]);
  assert.deepEqual(warnings(remade, ['test.ts']), [
    {
      command: 'drop',
      ns: 'test.ts',
      message: 'drop of test.ts is not replicated: the collection and its documents are gone on server_a only; drop it on every server, or copy it back to server_a',
    },
    {
      command: 'create',
      ns: 'test.ts',
      message:
        'test.ts became a time-series collection on server_a: its writes are logged on test.system.buckets.ts, which mmm cannot replicate; ' +
        'unlink it (mmm unreplicate), or make it an ordinary collection again',
    },
  ]);

  // Later: a measurement of the same series updates its bucket, one of a new series opens one.
  const same = await logged(() => db().collection('ts').insertOne({ t: new Date(), m: 1, v: 2 }));
  assert.deepEqual(same.changes.map((c) => [c.op, c.ns]), [['u', 'test.system.buckets.ts']]);
  assert.deepEqual(warnings(same, ['test.ts']), []);
  const series = await logged(() => db().collection('ts').insertMany([{ t: new Date(), m: 2, v: 1 }, { t: new Date(), m: 3, v: 1 }]));
  assert.deepEqual(series.changes.map((c) => [c.op, c.ns]), [['i', 'test.system.buckets.ts'], ['i', 'test.system.buckets.ts']]);
  assert.deepEqual(warnings(series, ['test.ts']), [
    {
      command: 'insert',
      ns: 'test.ts',
      message:
        'writes on test.system.buckets.ts are not replicated: test.ts is a time-series collection on server_a, whose writes mmm cannot replicate; ' +
        'unlink it (mmm unreplicate), or make it an ordinary collection again',
    },
  ]);
  assert.deepEqual(warnings(series, ['test.other']), []);

  const dropped = await logged(() => coll('ts').drop());
  assert.deepEqual(commands(dropped, 'drop').map((c) => c.o), [{ drop: 'system.buckets.ts' }]);
  assert.deepEqual(warnings(dropped, ['test.ts']).map((w) => [w.command, w.ns]), [['drop', 'test.ts']]);
});
