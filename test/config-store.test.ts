// The replication config store against a real replica set: the exact shape of `local.mmm`,
// link order, ops updated in place, removal, clearing and checkpoints.
import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';
import { Binary, Timestamp, UUID, type Document, type MongoClient } from 'mongodb';
import { startReplicaSet, type ReplicaSet } from '../scripts/replica-sets.ts';
import { CONFIG_STORE_DEFAULTS, ReplicationConfigStore } from '../src/config/store.ts';
import { StoredConfigError, UsageError } from '../src/errors.ts';

const SOURCE_A = '2c88ae84-7cb9-40f7-835d-c05e981f564d';
const SOURCE_B = '0d9c284b-b47c-40b5-932c-547b8685edd0';

let set: ReplicaSet;
let client: MongoClient;
let store: ReplicationConfigStore;

before(async () => {
  set = await startReplicaSet();
  client = set.client();
  store = new ReplicationConfigStore(client);
});

after(async () => {
  await client?.close();
  await set?.destroy();
});

beforeEach(() => store.clear());

/** local.mmm as stored, read without the store. */
const raw = () =>
  client.db('local').collection<{ _id: Binary; replication: Document[]; checkpoint?: unknown }>('mmm').find({}).toArray();

test('the defaults are local.mmm', () => {
  assert.deepEqual(CONFIG_STORE_DEFAULTS, { database: 'local', collection: 'mmm' });
});

test('one document per source: a subtype 4 UUID _id and {dst, src, ops, created} links, no checkpoint yet', async () => {
  const before = new Date();
  assert.equal(await store.addLink(SOURCE_A, { src: 'test.foo', dst: 'test.foo', ops: 'iud' }), 'added');
  assert.equal(await store.addLink(SOURCE_A, { src: 'test.bar', dst: 'other.bar', ops: 'du' }), 'added');
  assert.equal(await store.addLink(SOURCE_B, { src: 'test.foo', dst: 'test.foo', ops: 'i' }), 'added');

  const docs = await raw();
  assert.equal(docs.length, 2);
  const docA = docs.find((d) => d._id.toUUID().toHexString() === SOURCE_A)!;
  assert.ok(docA._id instanceof Binary);
  assert.equal(docA._id.sub_type, 4);
  assert.deepEqual(Buffer.from(docA._id.buffer), Buffer.from(SOURCE_A.replaceAll('-', ''), 'hex'));
  assert.deepEqual(Object.keys(docA), ['_id', 'replication']);
  assert.equal(docA.replication.length, 2);
  for (const link of docA.replication) {
    assert.deepEqual(Object.keys(link), ['dst', 'src', 'ops', 'created']);
    assert.ok(link.created instanceof Date && link.created >= before && link.created <= new Date());
  }
  assert.deepEqual(
    docA.replication.map(({ dst, src, ops }) => ({ dst, src, ops })),
    [
      { dst: 'test.foo', src: 'test.foo', ops: 'iud' },
      { dst: 'other.bar', src: 'test.bar', ops: 'ud' },
    ],
  );
});

test('sources() reads back every source with its links in order', async () => {
  await store.addLink(SOURCE_A, { src: 'test.foo', dst: 'test.foo', ops: 'iud' });
  await store.addLink(SOURCE_B, { src: 'test.x', dst: 'test.y', ops: 'iu' });
  await store.addLink(SOURCE_A, { src: 'test.bar', dst: 'test.bar', ops: 'iud' });

  const sources = await store.sources();
  const byId = new Map(sources.map((s) => [s.sourceId, s]));
  assert.deepEqual([...byId.keys()].sort(), [SOURCE_B, SOURCE_A].sort());
  assert.deepEqual(
    byId.get(SOURCE_A)!.links.map((l) => `${l.src}>${l.dst}:${l.ops}`),
    ['test.foo>test.foo:iud', 'test.bar>test.bar:iud'],
  );
  assert.deepEqual(byId.get(SOURCE_B)!.links.map((l) => `${l.src}>${l.dst}:${l.ops}`), ['test.x>test.y:iu']);
  assert.equal(byId.get(SOURCE_A)!.checkpoint, undefined);
  assert.ok(byId.get(SOURCE_A)!.links.every((l) => l.created instanceof Date));
});

test('adding an existing link updates its ops in place, keeping its position and creation date', async () => {
  await store.addLink(SOURCE_A, { src: 'test.a', dst: 'test.a', ops: 'iud' });
  await store.addLink(SOURCE_A, { src: 'test.b', dst: 'test.b', ops: 'iud' });
  await store.addLink(SOURCE_A, { src: 'test.c', dst: 'test.c', ops: 'iud' });
  const [before] = await store.sources();

  assert.equal(await store.addLink(SOURCE_A, { src: 'test.b', dst: 'test.b', ops: 'ui' }), 'updated');
  const [after] = await store.sources();
  assert.deepEqual(
    after!.links.map((l) => `${l.src}:${l.ops}`),
    ['test.a:iud', 'test.b:iu', 'test.c:iud'],
  );
  assert.deepEqual(after!.links[1]!.created, before!.links[1]!.created);
  // The same src to another dst is another link.
  assert.equal(await store.addLink(SOURCE_A, { src: 'test.b', dst: 'test.b2', ops: 'd' }), 'added');
  assert.equal((await store.sources())[0]!.links.length, 4);
});

test('concurrent adds of one link leave exactly one', async () => {
  const results = await Promise.all(
    Array.from({ length: 8 }, () => store.addLink(SOURCE_A, { src: 'test.race', dst: 'test.race', ops: 'iud' })),
  );
  assert.equal(results.filter((r) => r === 'added').length, 1);
  const docs = await raw();
  assert.equal(docs.length, 1);
  assert.equal(docs[0]!.replication.length, 1);
});

test('removeLink removes one link, and the document with the last one', async () => {
  await store.addLink(SOURCE_A, { src: 'test.foo', dst: 'test.foo', ops: 'iud' });
  await store.addLink(SOURCE_A, { src: 'test.bar', dst: 'test.bar', ops: 'iud' });
  await store.saveCheckpoint(SOURCE_A, new Timestamp({ t: 100, i: 1 }));

  assert.equal(await store.removeLink(SOURCE_A, 'test.foo', 'test.bar'), false);
  assert.equal(await store.removeLink(SOURCE_B, 'test.foo', 'test.foo'), false);
  assert.equal(await store.removeLink(SOURCE_A, 'test.foo', 'test.foo'), true);
  assert.deepEqual((await store.sources())[0]!.links.map((l) => l.src), ['test.bar']);
  assert.deepEqual(await store.checkpoint(SOURCE_A), new Timestamp({ t: 100, i: 1 }));

  assert.equal(await store.removeLink(SOURCE_A, 'test.bar', 'test.bar'), true);
  assert.deepEqual(await raw(), []);
  assert.equal(await store.removeLink(SOURCE_A, 'test.bar', 'test.bar'), false);
});

test('clear removes every source', async () => {
  await store.addLink(SOURCE_A, { src: 'test.foo', dst: 'test.foo', ops: 'iud' });
  await store.addLink(SOURCE_B, { src: 'test.foo', dst: 'test.foo', ops: 'iud' });
  await store.clear();
  assert.deepEqual(await store.sources(), []);
  assert.deepEqual(await raw(), []);
});

test('checkpoints: absent until saved, stored as a BSON Timestamp, never creating a source', async () => {
  await store.addLink(SOURCE_A, { src: 'test.foo', dst: 'test.foo', ops: 'iud' });
  assert.equal(await store.checkpoint(SOURCE_A), undefined);

  const ts = new Timestamp({ t: 1_700_000_000, i: 7 });
  await store.saveCheckpoint(SOURCE_A, ts);
  assert.deepEqual(await store.checkpoint(SOURCE_A), ts);
  const [doc] = await raw();
  assert.ok(doc!.checkpoint instanceof Timestamp);
  assert.deepEqual(Object.keys(doc!), ['_id', 'replication', 'checkpoint']);
  assert.deepEqual((await store.sources())[0]!.checkpoint, ts);

  // Saving again moves it; links are untouched.
  const later = new Timestamp({ t: 1_700_000_001, i: 1 });
  await store.saveCheckpoint(SOURCE_A, later);
  assert.deepEqual(await store.checkpoint(SOURCE_A), later);
  assert.equal((await store.sources())[0]!.links.length, 1);

  await store.saveCheckpoint(SOURCE_B, ts);
  assert.equal(await store.checkpoint(SOURCE_B), undefined);
  assert.equal((await raw()).length, 1);
});

test('bad ops, namespaces or source ids are UsageErrors and write nothing', async () => {
  const bad: Array<[string, { src: string; dst: string; ops: string }]> = [
    [SOURCE_A, { src: 'test.foo', dst: 'test.foo', ops: '' }],
    [SOURCE_A, { src: 'test.foo', dst: 'test.foo', ops: 'iux' }],
    [SOURCE_A, { src: 'test', dst: 'test.foo', ops: 'iud' }],
    [SOURCE_A, { src: 'test.foo', dst: 'local.foo', ops: 'iud' }],
    [SOURCE_A, { src: 'te\0st.foo', dst: 'test.foo', ops: 'iud' }],
    [SOURCE_A, { src: 'test.foo', dst: 'test.f\0oo', ops: 'iud' }],
    ['not-a-uuid', { src: 'test.foo', dst: 'test.foo', ops: 'iud' }],
  ];
  for (const [sourceId, link] of bad) {
    await assert.rejects(store.addLink(sourceId, link), UsageError);
  }
  assert.deepEqual(await raw(), []);
  // Ops are stored in canonical order, without repeats.
  await store.addLink(SOURCE_A, { src: 'test.foo', dst: 'test.foo', ops: 'ddi' });
  assert.equal((await store.sources())[0]!.links[0]!.ops, 'id');
});

test('a document mmm did not write is reported, not misread', async () => {
  // A plain insert command: the driver's insertMany is a retryable write, which `local` refuses.
  const insert = (doc: Document) => client.db('local').command({ insert: 'mmm', documents: [doc] });
  await insert({ _id: 'server_a', replication: [] });
  await assert.rejects(store.sources(), (err) => err instanceof StoredConfigError && /_id is not a UUID/.test(err.message));
  await store.clear();
  await insert({ _id: new UUID(SOURCE_A), replication: [{ src: 'test.foo', dst: 'test.foo' }] });
  await assert.rejects(store.sources(), StoredConfigError);
});

test('the database and collection can be chosen', async () => {
  const other = new ReplicationConfigStore(client, { database: 'local', collection: 'mmm_other' });
  await other.addLink(SOURCE_A, { src: 'test.foo', dst: 'test.foo', ops: 'iud' });
  assert.equal((await other.sources()).length, 1);
  assert.deepEqual(await store.sources(), []);
  await other.clear();
});
