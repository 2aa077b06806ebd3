// Stopping and starting mmm loses nothing and repeats nothing; a replay after a crash converges;
// the checkpoint follows the oplog even while the replicated collections are idle.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Timestamp, type Document, type MongoClient } from 'mongodb';
import { ReplicationConfigStore } from '../src/config/store.ts';
import type { Topology } from '../src/topology.ts';
import { addLink, eventually, loggedOperations, settle, startCluster, startMmm, type Cluster, type TestDoc } from './support/replication.ts';

let cluster: Cluster;
let topology: Topology;
let clients: Map<string, MongoClient>;

const on = (server: string, name = 'restart') => clients.get(server)!.db('test').collection<TestDoc>(name);
const store = (server: string) => new ReplicationConfigStore(clients.get(server)!);
const idOf = (server: string) => topology.byName(server)!.id;

/** Writes to `ns` logged after `since`, also inside mmm's transactions. */
function oplogWrites(server: string, ns: string, since: Timestamp): Promise<number> {
  return loggedOperations(clients.get(server)!, since, (op) => op.ns === ns);
}

before(async () => {
  // A no-op every second instead of every ten, so the idle test need not wait long.
  cluster = await startCluster(2, { noopIntervalSecs: 1 });
  ({ topology, clients } = cluster);
  await addLink(topology, clients, 'server_a/test.restart', 'server_b/test.restart');
  await addLink(topology, clients, 'server_b/test.restart', 'server_a/test.restart');
  await addLink(topology, clients, 'server_a/test.idle', 'server_b/test.idle');
});

after(async () => {
  await cluster?.close();
});

test('the first run starts at the end of the oplog and records that position', async () => {
  await on('server_a').insertOne({ _id: 'before-any-run' });
  const mmm = startMmm(topology);
  await settle(topology, clients);
  const reports = await mmm.stop();
  assert.deepEqual(reports.map((r) => r.outcome.state), ['stopped', 'stopped']);
  assert.equal(await on('server_b').countDocuments({ _id: 'before-any-run' }), 0, 'history before the first run is not replayed');
  assert.ok(await store('server_b').checkpoint(idOf('server_a')));
});

test('writes made while mmm is stopped are replicated after the restart, each once', async () => {
  const since = await clients.get('server_b')!.db('local').collection('oplog.rs').find().sort({ $natural: -1 }).limit(1).next();
  await on('server_a').insertMany([{ _id: 1, v: 1 }, { _id: 2, v: 1 }, { _id: 3, v: 1 }]);
  await on('server_a').updateOne({ _id: 1 }, { $set: { v: 2 } });
  await on('server_a').deleteOne({ _id: 2 });
  await on('server_b').insertOne({ _id: 'from-b' });

  const mmm = startMmm(topology);
  await settle(topology, clients);
  await mmm.stop();
  assert.deepEqual(await on('server_b').find({ _id: { $in: [1, 2, 3] } }, { projection: { __mmm: 0 } }).sort({ _id: 1 }).toArray(), [
    { _id: 1, v: 2 },
    { _id: 3, v: 1 },
  ]);
  assert.equal(await on('server_a').countDocuments({ _id: 'from-b' }), 1);
  // Five writes on A: three inserts, an update and a delete reach B once each, and nothing of
  // them returns.
  assert.equal(await oplogWrites('server_b', 'test.restart', since!.ts), 5 + 1 /* B's own insert */);
});

test('a replay after a crash converges: replayed inserts, updates and deletes do not fail', async () => {
  const mmm = startMmm(topology);
  const before = (await store('server_b').checkpoint(idOf('server_a')))!;
  await on('server_a').insertMany([{ _id: 10, n: 1 }, { _id: 11, n: 1 }]);
  await on('server_a').updateOne({ _id: 10 }, { $inc: { n: 1 } });
  await on('server_a').deleteOne({ _id: 11 });
  await settle(topology, clients);
  await mmm.stop();

  // As if mmm had crashed after applying these writes but before recording the checkpoint.
  await store('server_b').saveCheckpoint(idOf('server_a'), before);
  const again = startMmm(topology);
  await settle(topology, clients);
  const reports = await again.stop();
  assert.ok(reports.every((r) => r.outcome.state === 'stopped'), JSON.stringify(reports));
  const bDocs = await on('server_b').find({ _id: { $in: [10, 11] } }, { projection: { __mmm: 0 } }).toArray();
  assert.deepEqual(bDocs, [{ _id: 10, n: 2 }]);
  assert.ok((await store('server_b').checkpoint(idOf('server_a')))!.greaterThan(before));
});

test('the checkpoint advances while the replicated collections are idle', async () => {
  const mmm = startMmm(topology);
  await settle(topology, clients);
  const checkpoint = async () => (await store('server_b').checkpoint(idOf('server_a')))!;
  const first = await checkpoint();
  // Nobody writes: only the primary's periodic no-ops move the oplog on.
  await eventually('a newer checkpoint from no-op entries', async () => (await checkpoint()).greaterThan(first));
  const second = await checkpoint();
  await on('server_a', 'unrelated').insertOne({ _id: 'busy', busy: true });
  await eventually('a newer checkpoint from an unrelated write', async () => (await checkpoint()).greaterThan(second));
  await mmm.stop();
  assert.equal(await on('server_b', 'unrelated').countDocuments(), 0);
});
