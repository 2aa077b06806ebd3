// Exact loop breaking, counted in the oplogs: once replication settles, each user write has
// produced exactly one write on every other server that replicates its namespace, and none back
// on its own. Three shapes on three real replica sets, each on its own namespace: two servers
// both ways, three in a ring, three in a full mesh.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { BSON, type ClientSession, type Collection, type Document, type MongoClient, type Timestamp } from 'mongodb';
import type { Topology } from '../src/topology.ts';
import { addLink, loggedOperations, settle, startCluster, startMmm, type Cluster, type RunningMmm, type TestDoc } from './support/replication.ts';

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
const txnNsOf = (shape: string) => `loops.${shape.replaceAll(' ', '_')}_txn`;

before(async () => {
  cluster = await startCluster(3);
  ({ topology, clients } = cluster);
  for (const [shape, { links }] of Object.entries(SHAPES)) {
    for (const ns of [nsOf(shape), txnNsOf(shape)]) {
      for (const [src, dst] of links) await addLink(topology, clients, `${src}/${ns}`, `${dst}/${ns}`);
    }
  }
  mmm = startMmm(topology);
  await settle(topology, clients);
});

after(async () => {
  await mmm?.stop();
  await cluster?.close();
});

/**
 * Writes to `ns` logged after `since`: CRUD entries, and each operation on `ns` inside an
 * `applyOps` (a user's transaction, or the transaction mmm applies a batch in). mmm's
 * bookkeeping is not counted here: its markers are on `mmm.writes` (one per origin per
 * transaction, counted by markersAfter), its checkpoints in `local`, which has no oplog.
 */
function writesTo(server: string, ns: string, since: Timestamp): Promise<number> {
  return loggedOperations(clients.get(server)!, since, (op) => op.ns === ns);
}

/** mmm's markers logged after `since`: one before each run of writes of one origin in a transaction. */
function markersAfter(server: string, since: Timestamp): Promise<number> {
  return loggedOperations(clients.get(server)!, since, (op) => op.ns === 'mmm.writes');
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
      ['update by the same server', 0, (s) => on(s).updateOne({ _id: 1 }, { $set: { b: 2 }, $push: { 'nested.list': 3 } } as Document)],
      // A user's update of a document mmm wrote last leaves `__mmm` as it was: it is still that
      // user's write, and travels.
      ['update on another server', 1, (s) => on(s).updateOne({ _id: 1 }, { $inc: { a: 10 } })],
      // The diff (three fields gone, `fresh` and then `__mmm` appended) would not be smaller than
      // the document: the server logs a whole replacement, mmm's `__mmm`, copied, included.
      ['a pipeline update logged as a replacement', 2, (s) => on(s).updateOne({ _id: 1 }, [{ $replaceWith: { _id: '$_id', a: '$a', fresh: 'x', __mmm: '$__mmm' } }])],
      // Reordering rebuilds the document: `__mmm` keeps its old value in what the server logs.
      ['a field-reordering pipeline', 0, (s) => on(s).updateOne({ _id: 1 }, [
        { $replaceWith: { $mergeObjects: [{ $arrayToObject: { $filter: { input: { $objectToArray: '$$ROOT' }, cond: { $ne: ['$$this.k', 'a'] } } } }, { a: '$a' }] } },
        { $set: { reordered: true } },
      ])],
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
        if (what.startsWith('a pipeline update logged as a replacement')) {
          // What makes this case: the user's entry is a whole document, with mmm's `__mmm` in it.
          const entry = await clients.get(from)!.db('local').collection('oplog.rs').find({ ns, op: 'u' }).sort({ $natural: -1 }).limit(1).next();
          assert.ok(entry?.o._id !== undefined && entry.o.__mmm !== undefined, `logged as ${JSON.stringify(entry?.o)}`);
        }
        await settle(topology, clients);
        const counts = Object.fromEntries(await Promise.all(servers.map(async (s) => [s, await writesTo(s, ns, since.get(s)!)])));
        assert.deepEqual(counts, Object.fromEntries(servers.map((s) => [s, 1])), `written on ${from}`);
        const contents = await Promise.all(servers.map((s) => documents(s, ns)));
        for (const c of contents) assert.equal(c, contents[0]);
      });
    }
  });
}

// Transactions that touch one document several times. mmm applies a batch as a transaction of
// its own, marked (src/replicate/tag.ts), so none of these writes may come back, whatever the
// diff of each one on the destination says; each server logs one operation per user write.
const TRANSACTIONS: Array<[string, number, (coll: Collection<TestDoc>, session: ClientSession) => Promise<unknown>]> = [
  ['insert + update of one document', 2, async (c, session) => {
    await c.insertOne({ _id: 'iu', n: 0 }, { session });
    await c.updateOne({ _id: 'iu' }, { $set: { n: 1 } }, { session });
  }],
  ['insert + delete of one document', 2, async (c, session) => {
    await c.insertOne({ _id: 'id', n: 0 }, { session });
    await c.deleteOne({ _id: 'id' }, { session });
  }],
  ['three updates of one document', 3, async (c, session) => {
    for (const n of [1, 2, 3]) await c.updateOne({ _id: 'iu' }, { $push: { list: n } } as Document, { session });
  }],
  ['delete + re-insert of one document', 2, async (c, session) => {
    await c.deleteOne({ _id: 'iu' }, { session });
    await c.insertOne({ _id: 'iu', again: true }, { session });
  }],
  ['50 documents x 5 writes', 250, async (c, session) => {
    for (let k = 0; k < 50; k++) {
      await c.insertOne({ _id: `many${k}`, n: 0 }, { session });
      await c.updateOne({ _id: `many${k}` }, { $inc: { n: 1 } }, { session });
      await c.replaceOne({ _id: `many${k}` }, { n: 10, replaced: true }, { session });
      await c.updateOne({ _id: `many${k}` }, { $inc: { n: 1 } }, { session });
      if (k % 2 === 0) await c.deleteOne({ _id: `many${k}` }, { session });
      else await c.updateOne({ _id: `many${k}` }, { $set: { last: k } }, { session });
    }
  }],
];

for (const [shape, { servers }] of Object.entries(SHAPES)) {
  describe(`${shape}, transactions`, () => {
    const ns = txnNsOf(shape);
    const [db, name] = ns.split('.') as [string, string];
    for (const [k, [what, writes, body]] of TRANSACTIONS.entries()) {
      test(`${what}: ${writes} writes on every server, none back`, async () => {
        const from = servers[k % servers.length]!;
        const since = new Map<string, Timestamp>();
        for (const s of servers) since.set(s, await newest(s));
        const session = clients.get(from)!.startSession();
        try {
          await session.withTransaction(() => body(clients.get(from)!.db(db).collection<TestDoc>(name), session));
        } finally {
          await session.endSession();
        }
        await settle(topology, clients);
        const counts = Object.fromEntries(await Promise.all(servers.map(async (s) => [s, await writesTo(s, ns, since.get(s)!)])));
        assert.deepEqual(counts, Object.fromEntries(servers.map((s) => [s, writes])), `written on ${from}`);
        // mmm's writes came with their markers; the origin took no write of mmm's, so none there.
        for (const s of servers) {
          const markers = await markersAfter(s, since.get(s)!);
          if (s === from) assert.equal(markers, 0);
          else assert.ok(markers >= 1, `no marker on ${s}`);
        }
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
