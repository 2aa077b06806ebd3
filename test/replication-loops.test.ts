// Exact loop breaking, counted in the oplogs: once replication settles, each user write has
// produced exactly one write on every other server that replicates its namespace, and none back
// on its own. Three shapes on three real replica sets, each on its own namespace: two servers
// both ways, three in a ring, three in a full mesh.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { BSON, type Document, type MongoClient, type Timestamp } from 'mongodb';
import type { Topology } from '../src/topology.ts';
import { addLink, settle, startCluster, startMmm, type Cluster, type RunningMmm, type TestDoc } from './support/replication.ts';

let cluster: Cluster;
let topology: Topology;
let clients: Map<string, MongoClient>;
let mmm: RunningMmm;

const SHAPES: Record<string, { servers: string[]; links: Array<[string, string]> }> = {
  'two servers both ways': {
    servers: ['server_a', 'server_b'],
    links: [['server_a', 'server_b'], ['server_b', 'server_a']],
  },
  'three in a ring': {
    servers: ['server_a', 'server_b', 'server_c'],
    links: [['server_a', 'server_b'], ['server_b', 'server_c'], ['server_c', 'server_a']],
  },
  'three in a full mesh': {
    servers: ['server_a', 'server_b', 'server_c'],
    links: [
      ['server_a', 'server_b'], ['server_a', 'server_c'],
      ['server_b', 'server_a'], ['server_b', 'server_c'],
      ['server_c', 'server_a'], ['server_c', 'server_b'],
    ],
  },
};
const nsOf = (shape: string) => `loops.${shape.replaceAll(' ', '_')}`;

before(async () => {
  cluster = await startCluster(3);
  ({ topology, clients } = cluster);
  for (const [shape, { links }] of Object.entries(SHAPES)) {
    for (const [src, dst] of links) await addLink(topology, clients, `${src}/${nsOf(shape)}`, `${dst}/${nsOf(shape)}`);
  }
  mmm = startMmm(topology);
  await settle(topology, clients);
});

after(async () => {
  await mmm?.stop();
  await cluster?.close();
});

/** Oplog entries writing to `ns` after `since`: CRUD entries, and transactions that hold one. */
async function writesTo(server: string, ns: string, since: Timestamp): Promise<number> {
  return clients
    .get(server)!
    .db('local')
    .collection('oplog.rs')
    .countDocuments({ ts: { $gt: since }, $or: [{ ns, op: { $in: ['i', 'u', 'd'] } }, { 'o.applyOps.ns': ns }] });
}

async function newest(server: string): Promise<Timestamp> {
  return (await clients.get(server)!.db('local').collection('oplog.rs').find().sort({ $natural: -1 }).limit(1).next())!.ts;
}

async function documents(server: string, ns: string): Promise<string> {
  const [db, coll] = ns.split('.') as [string, string];
  const docs = await clients.get(server)!.db(db).collection(coll).find({}, { promoteValues: false }).sort({ _id: 1 }).toArray();
  return docs.map(({ __mmm, ...rest }: Document) => Buffer.from(BSON.serialize(rest)).toString('hex')).join(',');
}

for (const [shape, { servers }] of Object.entries(SHAPES)) {
  describe(shape, () => {
    const ns = nsOf(shape);
    const [db, name] = ns.split('.') as [string, string];
    const on = (server: string) => clients.get(server)!.db(db).collection<TestDoc>(name);
    const writer = (k: number) => servers[k % servers.length]!;

    // Which server makes each write (by position in the shape, wrapping around).
    const steps: Array<[string, number, (server: string) => Promise<unknown>]> = [
      ['insert', 0, (s) => on(s).insertOne({ _id: 1, a: 1, nested: { list: [1, 2] } })],
      // The other servers now hold the document with the first writer's tag. An update by the
      // first writer makes mmm write that same origin there again: had the tag not changed, the
      // diff on those servers would not mention __mmm, pass for a user's write and echo back.
      ['update by the same server', 0, (s) => on(s).updateOne({ _id: 1 }, { $set: { b: 2 }, $push: { 'nested.list': 3 } } as Document)],
      // A user's update elsewhere leaves the tag as it was, so its diff does not mention __mmm
      // either: it must still count as that user's write, and travel.
      ['update on another server', 1, (s) => on(s).updateOne({ _id: 1 }, { $inc: { a: 10 } })],
      ['update on a third', 2, (s) => on(s).updateOne({ _id: 1 }, { $set: { c: 'x' } })],
      ['replace', 1, (s) => on(s).replaceOne({ _id: 1 }, { replaced: true })],
      ['delete', 2, (s) => on(s).deleteOne({ _id: 1 })],
    ];

    for (const [what, k, write] of steps) {
      test(`${what}: one write on every server`, async () => {
        const from = writer(k);
        const since = new Map<string, Timestamp>();
        for (const s of servers) since.set(s, await newest(s));
        await write(from);
        await settle(topology, clients);
        const counts = Object.fromEntries(await Promise.all(servers.map(async (s) => [s, await writesTo(s, ns, since.get(s)!)])));
        assert.deepEqual(counts, Object.fromEntries(servers.map((s) => [s, 1])), `written on ${from}`);
        const contents = await Promise.all(servers.map((s) => documents(s, ns)));
        for (const c of contents) assert.equal(c, contents[0]);
      });
    }
  });
}

test('a delete followed at once by a re-insert of the same _id survives the round trip', async () => {
  // The echo of the delete must not come back and delete the new document on its origin:
  // mmm's deletes carry its mark, so the other side knows not to send them back.
  const ns = nsOf('two servers both ways');
  const [db, name] = ns.split('.') as [string, string];
  const a = clients.get('server_a')!.db(db).collection<TestDoc>(name);
  const b = clients.get('server_b')!.db(db).collection<TestDoc>(name);
  await a.insertOne({ _id: 'again', v: 1 });
  await settle(topology, clients);
  await a.deleteOne({ _id: 'again' });
  await a.insertOne({ _id: 'again', v: 2 });
  await settle(topology, clients);
  assert.deepEqual(await a.findOne({ _id: 'again' }, { projection: { __mmm: 0 } }), { _id: 'again', v: 2 });
  assert.deepEqual(await b.findOne({ _id: 'again' }, { projection: { __mmm: 0 } }), { _id: 'again', v: 2 });
});
