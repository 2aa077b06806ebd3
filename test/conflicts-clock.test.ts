// The source's time carried to the destination (src/apply/carried-clock.ts): a write made on a
// server after it received another bears a later oplog time than that one, whatever the two
// servers' clocks say, so the last writer is the one that came last.
//
// A server's clock ahead is made real: a client shows server_a a cluster time 30 s ahead of
// this machine's (as a client of a sharded cluster does), and from then on server_a's oplog
// times run 30 s ahead, as they would on a machine whose clock is.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { BSON, Int32, MongoClient, Timestamp, type Collection, type Document } from 'mongodb';
import { pino } from 'pino';
import { CarriedClock } from '../src/apply/carried-clock.ts';
import { ReplicationConfigStore } from '../src/config/store.ts';
import { silentLogger, type Logger } from '../src/log.ts';
import { Topology } from '../src/topology.ts';
import type { ReplicaSet } from '../scripts/replica-sets.ts';
import { conflictRecords, lastWriteTs, showRecord, untagged } from './support/conflict-load.ts';
import { addLink, eventually, settle, startCluster, startMmm, type Cluster, type RunningMmm } from './support/replication.ts';
import { startSecuredSet } from './support/secured-set.ts';

const A = 'server_a';
const B = 'server_b';
const C = 'server_c';
const PAIR = 'clock.pair';
const RING = 'clock.ring';
const AHEAD_SECONDS = 30;

let cluster: Cluster;
let mmm: RunningMmm | undefined;

before(async () => {
  cluster = await startCluster(3);
  const { topology, clients } = cluster;
  const link = (src: string, dst: string, ns: string) => addLink(topology, clients, `${src}/${ns}`, `${dst}/${ns}`);
  await link(A, B, PAIR);
  await link(B, A, PAIR);
  await link(A, B, RING);
  await link(B, C, RING);
  await link(C, A, RING);
});

after(async () => {
  await mmm?.stop();
  await cluster?.close();
});

const client = (server: string) => cluster.clients.get(server)!;
function collection(server: string, ns: string): Collection<Document> {
  const [db, name] = ns.split(/\.(.*)/s) as [string, string];
  return client(server).db(db).collection(name);
}

/** The time of the destination transaction that wrote `id` into `ns`. */
async function appliedAt(target: MongoClient, ns: string, id: string): Promise<Timestamp> {
  const entry = await target.db('local').collection('oplog.rs').findOne({ 'o.applyOps': { $elemMatch: { ns, 'o._id': id } } });
  assert.ok(entry, `a transaction wrote ${id} into ${ns}`);
  return entry.ts as Timestamp;
}

/** Shows `target`'s server a cluster time `seconds` ahead of this machine's clock: its oplog times run that far ahead from then on. */
async function advanceClock(target: MongoClient, seconds: number): Promise<Timestamp> {
  const ahead = new Timestamp({ t: Math.floor(Date.now() / 1000) + seconds, i: 1 });
  const session = target.startSession();
  try {
    new CarriedClock(silentLogger).carry(session, ahead);
    await target.db('admin').command({ ping: 1 }, { session });
  } finally {
    await session.endSession();
  }
  return ahead;
}

const typed = (bytes: Uint8Array | null) => (bytes ? BSON.EJSON.stringify(BSON.deserialize(bytes, { promoteValues: false }), { relaxed: false }) : 'absent');

describe('with server_a 30 s ahead', { concurrency: false }, () => {
  before(async () => {
    mmm = startMmm(cluster.topology);
    // Every loop started (a loop without a checkpoint starts at its source's newest entry).
    await settle(cluster.topology, cluster.clients);
    const ahead = await advanceClock(client(A), AHEAD_SECONDS);
    await collection(A, 'clock.probe').insertOne({ _id: 'probe' as never });
    const ts = await lastWriteTs(client(A), 'clock.probe');
    assert.ok(!ts.lessThan(ahead), `server_a's oplog runs ahead: ${ts.t} against ${ahead.t}`);
  });

  for (const [ns, servers, last] of [
    [PAIR, [A, B], B],
    [RING, [A, B, C], C],
  ] as const) {
    test(`${ns}: an insert on ${last} made after it received server_a's delete wins everywhere`, async () => {
      const id = 'again';
      await collection(A, ns).insertOne({ _id: id as never, v: new Int32(0) });
      await settle(cluster.topology, cluster.clients);
      await collection(A, ns).deleteOne({ _id: id as never });
      const deleted = await lastWriteTs(client(A), ns);
      await eventually(`${last} to apply server_a's delete`, async () => (await collection(last, ns).countDocuments({ _id: id as never } as Document)) === 0);
      // Made after the delete reached it: without the carried time, it bears this machine's
      // time, 30 s before the delete's, and server_a keeps its delete while the others keep the insert.
      await collection(last, ns).insertOne({ _id: id as never, v: new Int32(1) });
      const inserted = await lastWriteTs(client(last), ns);
      assert.ok(inserted.greaterThan(deleted), `the insert's time ${inserted.t}:${inserted.i} is after the delete's ${deleted.t}:${deleted.i}`);
      await settle(cluster.topology, cluster.clients);
      const expected = typed(BSON.serialize({ _id: id, v: new Int32(1) }));
      for (const s of servers) assert.equal(typed(await untagged(collection(s, ns), id)), expected, `${s} holds the insert`);
      for (const s of servers) assert.deepEqual((await conflictRecords(client(s), ns)).map(showRecord), [], `no conflict recorded on ${s}`);
    });
  }

  test(`${PAIR}: a write on server_b made after it received server_a's, even in a second whose counter server_b had taken high, bears the later time`, async () => {
    const id = 'order';
    await collection(A, PAIR).insertOne({ _id: id as never, f: new Int32(0), g: new Int32(0) });
    await settle(cluster.topology, cluster.clients);
    for (let round = 1; round <= 3; round++) {
      // server_b's counter goes high, with writes to a collection no link carries.
      await client(B).db('clock_unlinked').collection('filler').insertMany(Array.from({ length: 3000 }, (_, k) => ({ k })));
      await collection(A, PAIR).updateOne({ _id: id as never }, { $set: { f: new Int32(round) } });
      const onA = await lastWriteTs(client(A), PAIR);
      await eventually("server_b to hold server_a's write", async () => (await collection(B, PAIR).countDocuments({ _id: id as never, f: new Int32(round) } as Document)) === 1);
      await collection(B, PAIR).updateOne({ _id: id as never }, { $set: { g: new Int32(round) } });
      const onB = await lastWriteTs(client(B), PAIR);
      assert.ok(onB.greaterThan(onA), `round ${round}: server_b's ${onB.t}:${onB.i} after server_a's ${onA.t}:${onA.i}`);
      await settle(cluster.topology, cluster.clients);
    }
    const expected = typed(BSON.serialize({ _id: id, f: new Int32(3), g: new Int32(3) }));
    for (const s of [A, B]) assert.equal(typed(await untagged(collection(s, PAIR), id)), expected, `${s} holds both writes`);
    assert.deepEqual((await conflictRecords(client(A), PAIR)).map(showRecord), [], 'no conflict recorded');
  });

  after(async () => {
    await mmm?.stop();
    mmm = undefined;
  });
});

describe('a destination with access control', { concurrency: false }, () => {
  const D = 'server_d';
  const NS = 'clock.secured';
  let dir: string;
  let secured: ReplicaSet;
  let root: MongoClient;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'mmm-clock-'));
    secured = await startSecuredSet(dir, { user: 'root', pwd: 'root-pw' });
    root = new MongoClient(uriAs('root', 'root-pw'));
    // The README's role, here only its privilege on the cluster, which no built-in role grants.
    await root.db('admin').command({ createRole: 'mmmClock', privileges: [{ resource: { cluster: true }, actions: ['advanceClusterTime'] }], roles: [] });
    const roles = [{ role: 'readWrite', db: 'local' }, { role: 'readWrite', db: 'mmm' }, { role: 'readWrite', db: 'clock' }];
    await root.db('admin').command({ createUser: 'plain', pwd: 'plain-pw', roles });
    await root.db('admin').command({ createUser: 'clocked', pwd: 'clocked-pw', roles: [...roles, { role: 'mmmClock', db: 'admin' }] });
    await new ReplicationConfigStore(root).addLink(cluster.topology.byName(A)!.id, { src: NS, dst: NS, ops: 'iud' });
    await advanceClock(client(A), AHEAD_SECONDS);
  });

  after(async () => {
    await root?.close();
    await secured?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function uriAs(user: string, password: string): string {
    return `mongodb://${user}:${password}@${secured.members[0]!.host}/?replicaSet=${secured.name}&authSource=admin`;
  }

  /** Runs server_a -> server_d as `user`, writes two documents on server_a, and returns their times on both sides and the run's warnings. */
  async function replicateAs(user: string, password: string, ids: [string, string]): Promise<{ onA: Timestamp[]; onD: Timestamp[]; warnings: Document[] }> {
    const a = cluster.topology.byName(A)!;
    const topology = new Topology([a, { name: D, id: '7d3c9a46-29a8-4f50-a8a5-6f2b7e1c0d44', uri: uriAs(user, password) }]);
    const lines: Document[] = [];
    const logger: Logger = pino({ level: 'warn' }, new Writable({ write: (chunk, _enc, done) => (lines.push(JSON.parse(String(chunk)) as Document), done()) }));
    const run = startMmm(topology, { logger, only: D });
    // Started: the first run's loop starts at server_a's newest entry, the second at that checkpoint.
    await eventually('the loop to start', async () => (await new ReplicationConfigStore(root).sources()).some((s) => s.checkpoint !== undefined));
    const onA: Timestamp[] = [];
    const onD: Timestamp[] = [];
    try {
      for (const id of ids) {
        await collection(A, NS).insertOne({ _id: id as never });
        onA.push(await lastWriteTs(client(A), NS));
        await eventually(`${id} on server_d`, async () => (await root.db('clock').collection('secured').countDocuments({ _id: id as never } as Document)) === 1);
        onD.push(await appliedAt(root, NS, id));
      }
    } finally {
      const reports = await run.stop();
      const failed = reports.filter((r) => r.outcome.state === 'failed');
      assert.deepEqual(failed, [], 'the loop ran until stopped');
    }
    return { onA, onD, warnings: lines };
  }

  test('a user that may not advance its clock: writes applied all the same, its own times kept, one warning', async () => {
    const { onA, onD, warnings } = await replicateAs('plain', 'plain-pw', ['p1', 'p2']);
    for (const [k, ts] of onD.entries()) assert.ok(ts.lessThan(onA[k]!), `server_d's time ${ts.t} is its own, before server_a's ${onA[k]!.t}`);
    const refused = warnings.filter((l) => String(l.msg).includes("does not take the source's cluster time"));
    assert.equal(refused.length, 1, JSON.stringify(warnings));
    assert.match(String(refused[0]!.reason), /HMAC|key/i);
    assert.equal(refused[0]!.destination, D);
  });

  test('a user with the advanceClusterTime privilege: the source time carried', async () => {
    // Once server_d's clock has met server_a's, a time it already reached is taken from anyone:
    // this ordering holds because the first test never advanced it.
    const { onA, onD, warnings } = await replicateAs('clocked', 'clocked-pw', ['c1', 'c2']);
    for (const [k, ts] of onD.entries()) assert.ok(ts.greaterThan(onA[k]!), `server_d's time ${ts.t}:${ts.i} after server_a's ${onA[k]!.t}:${onA[k]!.i}`);
    assert.deepEqual(warnings, []);
  });
});
