// Conflicts at the edges the review found (README, "Conflicts", limits): a user's transaction
// writing one document twice, relayed around a ring; `_id`s equal in value but not in BSON type;
// a link with no way back for its updates; an insert meeting a document its destination
// inserted and deleted meanwhile, and an update one it changed and changed back; in a mesh, a
// delete that reaches a server before the insert it was made after, or at the same moment; a
// document too large for a record to hold both versions; and
// a restart replaying writes the destination already holds (which must not read
// the destination's oplog once per write), or that a user deleted there since.
//
// One cluster of three servers, each case in its own namespace with its own links. The
// concurrent writes of a case are made while no `run` runs (so neither can have seen the other),
// after a first `run` has turned pre-images on and given every loop a checkpoint; then `run`
// starts, settles, and the servers' documents are compared as bytes, `__mmm` aside.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BSON, Double, Int32, UUID, type Collection, type Document, type MongoClient, type Timestamp } from 'mongodb';
import { pino } from 'pino';
import { ReplicationConfigStore } from '../src/config/store.ts';
import type { Logger } from '../src/log.ts';
import type { LoopReport } from '../src/replicate/runner.ts';
import type { ReplicationSettings } from '../src/replicate/settings.ts';
import {
  conflictRecords,
  differences,
  showRecord,
  showVersion,
  untagged,
  untaggedAll,
  untaggedDoc,
  type ConflictRecord,
  type Difference,
  type WriteVersion,
} from './support/conflict-load.ts';
import { splitTag } from './support/bson.ts';
import { addLink, eventually, settle, startCluster, startMmm, type Cluster, type RunningMmm } from './support/replication.ts';

const A = 'server_a';
const B = 'server_b';
const C = 'server_c';
const SERVERS = [A, B, C];

const RING_TXN = 'edges.ring_txn';
const NUMERIC_ID = 'edges.numeric_id';
const ONE_WAY_UPDATES = 'edges.one_way_updates';
const BIG = 'edges.big';
const REPLAY = 'edges.replay';
const DELETED = 'edges.deleted';
const BACK = 'edges.back';
const REPLAY_DELETED = 'edges.replay_deleted';
const SAME_SECOND = 'edges.same_second';
const UNREAD = 'edges.unread';
const PREFER_BACK = 'edges.prefer_back';
const MESH_DELETED = 'edges.mesh_deleted';

let cluster: Cluster;
let clients: Map<string, MongoClient>;
let mmm: RunningMmm | undefined;

before(async () => {
  // Test commands: a fail point makes a read of the destination's pre-images run out of time.
  cluster = await startCluster(3, { args: ['--setParameter', 'enableTestCommands=1'] });
  const { topology } = cluster;
  clients = cluster.clients;
  const link = (src: string, dst: string, ns: string, ops = 'iud') => addLink(topology, clients, `${src}/${ns}`, `${dst}/${ns}`, ops);
  await link(A, B, RING_TXN);
  await link(B, C, RING_TXN);
  await link(C, A, RING_TXN);
  for (const ns of [NUMERIC_ID, BIG, REPLAY, DELETED, BACK, REPLAY_DELETED, SAME_SECOND, UNREAD, PREFER_BACK]) {
    await link(A, B, ns);
    await link(B, A, ns);
  }
  for (const [src, dst] of [[A, B], [B, A], [B, C], [C, B], [A, C], [C, A]] as const) await link(src, dst, MESH_DELETED);
  // B -> A carries inserts only: no way back for A's updates, so A -> B is a replica's link.
  await link(A, B, ONE_WAY_UPDATES, 'iud');
  await link(B, A, ONE_WAY_UPDATES, 'i');
  // The first run turns pre-images on and starts every loop at its source's newest entry: a run
  // started later applies all that was written meanwhile, checked against those pre-images.
  await startRun();
  await settle(topology, clients);
});

after(async () => {
  await mmm?.stop();
  await cluster?.close();
});

const idOf = (server: string) => cluster.topology.byName(server)!.id;
const client = (server: string) => clients.get(server)!;
function collection(server: string, ns: string): Collection<Document> {
  const [db, name] = ns.split(/\.(.*)/s) as [string, string];
  return client(server).db(db).collection(name);
}

function startRun(logger?: Logger, settings?: Partial<ReplicationSettings>, only?: string): void {
  assert.equal(mmm, undefined, 'no run is running');
  mmm = startMmm(cluster.topology, { ...(logger ? { logger } : {}), ...(settings ? { settings } : {}), ...(only ? { only } : {}) });
}

/** Waits until the checkpoint of `server`'s loop from `source` is at `ts` or past it. */
async function appliedUpTo(server: string, source: string, ts: Timestamp): Promise<void> {
  const configs = client(server).db('local').collection<{ _id: UUID; checkpoint?: Timestamp }>('mmm');
  await eventually(`${server} has applied ${source}'s oplog up to ${ts.toString()}`, async () => {
    const checkpoint = (await configs.findOne({ _id: new UUID(idOf(source)) }))?.checkpoint;
    return checkpoint !== undefined && !checkpoint.lessThan(ts);
  }, 60_000);
}

/** Stops `run`, and fails unless every loop ran until stopped. */
async function stopRun(): Promise<LoopReport[]> {
  const reports = await mmm!.stop();
  mmm = undefined;
  const failed = reports.flatMap((r) => (r.outcome.state === 'failed' ? [`loop ${r.source} -> ${r.destination} failed: ${r.outcome.error.message}`] : []));
  assert.deepEqual(failed, [], 'every loop of run ran until stopped');
  return reports;
}

/** Runs `setup` (writes on the servers) with `run` running and settles it, then stops `run`: what is written next is concurrent. */
async function prepare(setup: () => Promise<unknown>): Promise<void> {
  if (!mmm) startRun();
  await setup();
  await settle(cluster.topology, clients);
  await stopRun();
}

/**
 * Starts `run` and waits until it has applied everything, and `servers` hold the same bytes of
 * `ns`. If not, stops it and fails with what differs and how each loop that failed failed (a
 * loop carries every namespace of its source: the next case starts a new run).
 */
async function replicate(ns: string, servers: string[], logger?: Logger, settings?: Partial<ReplicationSettings>): Promise<void> {
  startRun(logger, settings);
  let diff: Difference[] = [];
  try {
    await settle(cluster.topology, clients);
    await eventually(`${ns} the same on ${servers.join(', ')}`, async () => (diff = await sameEverywhere(servers, ns)).length === 0, 10_000);
  } catch (err) {
    const reports = await mmm!.stop();
    mmm = undefined;
    const failed = reports.flatMap((r) => (r.outcome.state === 'failed' ? [`loop ${r.source} -> ${r.destination} failed: ${r.outcome.error.message}`] : []));
    assert.fail([`${ns}: ${(err as Error).message}`, ...diff.map((d) => d.text), ...failed].join('\n'));
  }
}

async function sameEverywhere(servers: string[], ns: string): Promise<Difference[]> {
  const copies = new Map<string, Map<string, Buffer>>();
  for (const s of servers) copies.set(s, await untaggedAll(collection(s, ns)));
  return differences(copies);
}

/** A user's write as its server logged it: its version, and the document it left, without `__mmm`. */
interface Written {
  version: WriteVersion;
  doc: Buffer | null;
}

/**
 * Makes `write` on `server`, no `run` running, and reads its time from that server's oplog: the
 * newest entry on `ns`, plain or inside a transaction's `applyOps`.
 */
async function write(server: string, ns: string, id: unknown, write: (c: Collection<Document>) => Promise<unknown>): Promise<Written> {
  const oplog = client(server).db('local').collection('oplog.rs');
  const newestBefore = (await oplog.find().sort({ $natural: -1 }).limit(1).next())!.ts as Timestamp;
  await write(collection(server, ns));
  const entry = await oplog.find({ ts: { $gt: newestBefore }, $or: [{ ns }, { 'o.applyOps.ns': ns }] }).sort({ $natural: -1 }).limit(1).next();
  assert.ok(entry, `the write on ${server} to ${ns} was logged`);
  return { version: { ts: entry.ts as Timestamp, origin: idOf(server) }, doc: await untagged(collection(server, ns), id) };
}

/** Waits until this machine's clock (every server's oplog clock here) is past the second of `ts`: a write made next has a later time. */
async function nextSecondAfter(ts: Timestamp | null): Promise<void> {
  while (Date.now() < (ts!.t + 1) * 1000) await sleep(10);
}

/** Bytes as canonical Extended JSON: numeric types shown (`$numberInt`, `$numberDouble`). */
const typed = (bytes: Buffer | null) => (bytes ? BSON.EJSON.stringify(BSON.deserialize(bytes, { promoteValues: false }), { relaxed: false }) : 'absent');

/** Every record each server keeps of `ns`, by server. */
async function recordsByServer(ns: string): Promise<Map<string, ConflictRecord[]>> {
  return new Map(await Promise.all(SERVERS.map(async (s) => [s, await conflictRecords(client(s), ns)] as const)));
}

const shownRecords = (records: Map<string, ConflictRecord[]>) => [...records].flatMap(([s, rs]) => rs.map((r) => `${s}: ${showRecord(r)}`));

/** The one conflict record of `ns` over every server, which `server` must keep; `all` shows every record, for messages. */
async function onlyRecord(ns: string, server: string): Promise<{ record: ConflictRecord; all: string }> {
  const records = await recordsByServer(ns);
  const shown = shownRecords(records);
  const all = shown.join(' ');
  assert.equal(shown.length, 1, `one record in all: ${all}`);
  const [record] = records.get(server)!;
  assert.ok(record, `${server} keeps the record: ${all}`);
  return { record, all };
}

test('ring A -> B -> C -> A: a transaction on A writing one document twice loses to a later write on C, on all three, and A keeps it with its own time', async () => {
  const id = 'txn';
  await prepare(() => collection(A, RING_TXN).insertOne({ _id: id as never, f: new Int32(0), g: new Int32(0) }));
  const onA = await write(A, RING_TXN, id, async (c) => {
    const session = client(A).startSession();
    try {
      await session.withTransaction(async () => {
        await c.updateOne({ _id: id as never }, { $set: { f: new Int32(1) } }, { session });
        await c.updateOne({ _id: id as never }, { $set: { g: new Int32(1) } }, { session });
      });
    } finally {
      await session.endSession();
    }
  });
  await nextSecondAfter(onA.version.ts);
  const onC = await write(C, RING_TXN, id, (c) => c.updateOne({ _id: id as never }, { $set: { h: new Int32(1) } }));
  // B relays A's writes once `run` starts, in a later second than C's write: a relayed version
  // made of B's clock, not A's, would win over C's.
  await nextSecondAfter(onC.version.ts);
  await replicate(RING_TXN, SERVERS);

  for (const s of SERVERS) {
    const final = await untagged(collection(s, RING_TXN), id);
    assert.equal(typed(final), typed(onC.doc), `${s} holds C's whole document`);
  }
  const { record, all } = await onlyRecord(RING_TXN, A);
  assert.deepEqual(
    { id: record.id, source: record.source, won: showVersion(record.won), lost: showVersion(record.lost) },
    { id, source: idOf(C), won: showVersion(onC.version), lost: showVersion(onA.version) },
    `C's write won over A's transaction, at the transaction's time on A: ${all}`,
  );
  assert.equal(typed(untaggedDoc(record.won.doc)), typed(onC.doc), "the record's winning document");
  assert.equal(typed(untaggedDoc(record.lost.doc)), typed(onA.doc), "the record's losing document: A's after its transaction");
});

test('_id 1 as an int32 on A and 1.0 as a double on B, inserted concurrently: one document on each, the same bytes, the loser kept on its side', async () => {
  await prepare(async () => undefined);
  const onA = await write(A, NUMERIC_ID, new Int32(1), (c) => c.insertOne({ _id: new Int32(1) as never, from: 'a' }));
  await nextSecondAfter(onA.version.ts);
  const onB = await write(B, NUMERIC_ID, new Double(1), (c) => c.insertOne({ _id: new Double(1) as never, from: 'b' }));
  await replicate(NUMERIC_ID, [A, B]);

  for (const s of [A, B]) {
    const docs = (await collection(s, NUMERIC_ID).find({}, { raw: true }).toArray()) as unknown as Buffer[];
    assert.deepEqual(docs.map((d) => typed(splitTag(d).rest)), [typed(onB.doc)], `${s} holds B's later document alone, its _id a double`);
  }
  // A, whose insert lost, keeps the record.
  const { record } = await onlyRecord(NUMERIC_ID, A);
  assert.deepEqual(
    { source: record.source, won: showVersion(record.won), lost: showVersion(record.lost) },
    { source: idOf(B), won: showVersion(onB.version), lost: showVersion(onA.version) },
  );
  assert.equal(typed(untaggedDoc(record.lost.doc)), typed(onA.doc), "the record's losing document: A's, its _id an int32");
  assert.equal(typed(untaggedDoc(record.won.doc)), typed(onB.doc), "the record's winning document");
});

test('an insert on A, and on B a later insert and delete of that _id: gone from both, as B\'s delete is the last write; a later insert on A is on both', async () => {
  await prepare(async () => undefined);
  // Before, B took A's insert for one made on the "none" B ended with, and kept it: A had none.
  const onA = await write(A, DELETED, 'gone', (c) => c.insertOne({ _id: 'gone' as never, from: 'a' }));
  await nextSecondAfter(onA.version.ts);
  const onB = await write(B, DELETED, 'gone', (c) => c.insertOne({ _id: 'gone' as never, from: 'b' }));
  await write(B, DELETED, 'gone', (c) => c.deleteOne({ _id: 'gone' as never }));
  // The other order: B's insert and delete first, then A's insert, which wins over both.
  await write(B, DELETED, 'back', (c) => c.insertOne({ _id: 'back' as never, from: 'b' }));
  const deleted = await write(B, DELETED, 'back', (c) => c.deleteOne({ _id: 'back' as never }));
  await nextSecondAfter(deleted.version.ts);
  const back = await write(A, DELETED, 'back', (c) => c.insertOne({ _id: 'back' as never, from: 'a' }));
  await replicate(DELETED, [A, B]);

  for (const s of [A, B]) {
    assert.equal(await collection(s, DELETED).countDocuments({ _id: 'gone' as never }), 0, `${s} holds no 'gone'`);
    assert.equal(typed(await untagged(collection(s, DELETED), 'back')), typed(back.doc), `${s} holds A's 'back'`);
  }
  // A's first insert lost to B's (which B then deleted): A keeps it. B's delete beat A's insert where they met, on B: nothing of B's lost.
  const { record } = await onlyRecord(DELETED, A);
  assert.deepEqual(
    { id: record.id, won: showVersion(record.won), lost: showVersion(record.lost) },
    { id: 'gone', won: showVersion(onB.version), lost: showVersion(onA.version) },
  );
});

test("on B a $set, a delete and an insert of one document, then on A a later delete of it: gone from both, B keeping its insert", async () => {
  const apart = 'deleted on both';
  const together = 'deleted on both, B in one transaction';
  await prepare(() => collection(A, DELETED).insertMany([{ _id: apart as never }, { _id: together as never }]));
  // B's three writes reach A after A's delete: the $set loses to it, the delete meets nothing,
  // and the insert, older than A's delete, must lose to it too. Written apart, then in one
  // transaction of B's, which A applies in one batch (a $set that lost, then the rest).
  const onB = new Map<string, Written>();
  await write(B, DELETED, apart, (c) => c.updateOne({ _id: apart as never }, { $set: { own_b: 1 } }));
  await write(B, DELETED, apart, (c) => c.deleteOne({ _id: apart as never }));
  onB.set(apart, await write(B, DELETED, apart, (c) => c.insertOne({ _id: apart as never, from: 'b' })));
  const inOneTransaction = async (c: Collection<Document>) => {
    const session = client(B).startSession();
    try {
      await session.withTransaction(async () => {
        await c.updateOne({ _id: together as never }, { $set: { own_b: 1 } }, { session });
        await c.deleteOne({ _id: together as never }, { session });
        await c.insertOne({ _id: together as never, from: 'b' }, { session });
      });
    } finally {
      await session.endSession();
    }
  };
  onB.set(together, await write(B, DELETED, together, inOneTransaction));
  await nextSecondAfter(onB.get(together)!.version.ts);
  const onA = new Map<string, Written>();
  for (const id of [apart, together]) onA.set(id, await write(A, DELETED, id, (c) => c.deleteOne({ _id: id as never })));
  await replicate(DELETED, [A, B]);
  for (const id of [apart, together]) {
    for (const s of [A, B]) assert.equal(await collection(s, DELETED).countDocuments({ _id: id as never }), 0, `${s} holds no '${id}'`);
    const records = [...(await recordsByServer(DELETED))].flatMap(([s, rs]) => rs.filter((r) => r.id === id).map((r) => ({ s, won: showVersion(r.won), lost: showVersion(r.lost) })));
    assert.deepEqual(records, [{ s: B, won: showVersion(onA.get(id)!.version), lost: showVersion(onB.get(id)!.version) }], id);
  }
});

test("a mesh of three: B deletes what C inserted, and the delete reaches A before the insert (C away meanwhile): gone from all three, no conflict", async () => {
  await prepare(async () => undefined);
  const id = 'deleted before it arrived';
  // C's insert reaches B alone; B deletes it, having it.
  await write(C, MESH_DELETED, id, (c) => c.insertOne({ _id: id as never, from: 'c' }));
  startRun(undefined, undefined, B);
  await eventually('B holds C\'s insert', async () => (await collection(B, MESH_DELETED).countDocuments({ _id: id as never })) === 1);
  await stopRun();
  const deleted = await write(B, MESH_DELETED, id, (c) => c.deleteOne({ _id: id as never }));
  // A hears of B's delete while C's oplog cannot be read (a fail point), then of C's insert:
  // the delete met nothing there, and the insert must not bring the document back.
  const newestOnC = (await client(C).db('local').collection('oplog.rs').find().sort({ $natural: -1 }).limit(1).next())!.ts as Timestamp;
  const away = { failCommands: ['find', 'getMore', 'aggregate'], errorCode: 6 };
  await client(C).db('admin').command({ configureFailPoint: 'failCommand', mode: 'alwaysOn', data: away });
  try {
    startRun(undefined, { retryInitialMs: 100, retryMaxMs: 500 }, A);
    await appliedUpTo(A, B, deleted.version.ts!);
  } finally {
    await client(C).db('admin').command({ configureFailPoint: 'failCommand', mode: 'off' });
  }
  await appliedUpTo(A, C, newestOnC);
  await stopRun();
  assert.equal(await collection(A, MESH_DELETED).countDocuments({ _id: id as never }), 0, "A does not hold C's insert, which B's later delete removed");
  await replicate(MESH_DELETED, SERVERS);
  for (const s of SERVERS) assert.equal(await collection(s, MESH_DELETED).countDocuments({ _id: id as never }), 0, `${s} holds none`);
  // B had C's insert when it deleted it: nothing was concurrent, nothing lost.
  assert.deepEqual(shownRecords(await recordsByServer(MESH_DELETED)), []);
});

test("a mesh of three: B's delete of what C inserted, and C's insert, applied on A at once (A's commits held): gone from all three", async () => {
  await prepare(async () => undefined);
  const id = 'deleted as it arrived';
  // Each commit on A is held 3 s (a fail point): A's loop from C applies C's insert and waits to
  // commit; meanwhile B receives the insert, deletes it, and A's loop from B applies the delete.
  // Each meets no document, neither can see what the other writes, and both commit, unless
  // they meet on something both write; then A would keep C's insert.
  const hold = (on: boolean) =>
    client(A)
      .db('admin')
      .command(
        on
          ? { configureFailPoint: 'failCommand', mode: 'alwaysOn', data: { failCommands: ['commitTransaction'], blockConnection: true, blockTimeMS: 3000 } }
          : { configureFailPoint: 'failCommand', mode: 'off' },
      );
  // A's loops from B and C running first (a loop's start waits for transactions open on its
  // servers): a write from each has reached A.
  startRun();
  for (const s of [B, C]) await collection(s, MESH_DELETED).insertOne({ _id: `started from ${s}` as never });
  await eventually("A holds B's and C's first writes", async () => (await collection(A, MESH_DELETED).countDocuments({ _id: { $in: [`started from ${B}`, `started from ${C}`] } } as never)) === 2);
  await hold(true);
  try {
    const inserted = await write(C, MESH_DELETED, id, (c) => c.insertOne({ _id: id as never, from: 'c' }));
    await eventually('B holds C\'s insert', async () => (await collection(B, MESH_DELETED).countDocuments({ _id: id as never })) === 1);
    const deleted = await write(B, MESH_DELETED, id, (c) => c.deleteOne({ _id: id as never }));
    await appliedUpTo(A, C, inserted.version.ts!);
    await appliedUpTo(A, B, deleted.version.ts!);
  } finally {
    await hold(false);
  }
  await stopRun();
  assert.equal(await collection(A, MESH_DELETED).countDocuments({ _id: id as never }), 0, "A does not hold C's insert, which B's later delete removed");
  await replicate(MESH_DELETED, SERVERS);
  for (const s of SERVERS) assert.equal(await collection(s, MESH_DELETED).countDocuments({ _id: id as never }), 0, `${s} holds none`);
  // B had C's insert when it deleted it: nothing was concurrent, nothing lost.
  assert.deepEqual(shownRecords(await recordsByServer(MESH_DELETED)), []);
});

test('a $set on A, and on B two later ones that bring the document back to the same bytes: both end on B\'s, and A keeps its own', async () => {
  const id = 'aba';
  await prepare(() => collection(A, BACK).insertOne({ _id: id as never, f: new Int32(0), g: new Int32(0) }));
  const onA = await write(A, BACK, id, (c) => c.updateOne({ _id: id as never }, { $set: { g: 'a' } }));
  await nextSecondAfter(onA.version.ts);
  const first = await write(B, BACK, id, (c) => c.updateOne({ _id: id as never }, { $set: { f: new Int32(1) } }));
  const last = await write(B, BACK, id, (c) => c.updateOne({ _id: id as never }, { $set: { f: new Int32(0) } }));
  await replicate(BACK, [A, B]);

  // Before, B took A's write for one made on what it held (the same bytes) and applied it; A took B's.
  for (const s of [A, B]) assert.equal(typed(await untagged(collection(s, BACK), id)), typed(last.doc), `${s} holds B's last document`);
  const { record } = await onlyRecord(BACK, A);
  assert.deepEqual({ won: showVersion(record.won), lost: showVersion(record.lost) }, { won: showVersion(first.version), lost: showVersion(onA.version) });
  assert.equal(typed(untaggedDoc(record.lost.doc)), typed(onA.doc), "the record's losing document: A's");
});

test("under prefer:server_b, two $sets on B that bring the document back, then one on A it had not seen: both end on B's, and A keeps its own", async () => {
  // The same bytes again on B, but B's writes came first: under lww A's later write wins, under
  // prefer B's, so the writes of B's its source had not seen are looked for before A's too.
  const id = 'bba';
  await prepare(() => collection(B, PREFER_BACK).insertOne({ _id: id as never, f: new Int32(0), g: new Int32(0) }));
  const first = await write(B, PREFER_BACK, id, (c) => c.updateOne({ _id: id as never }, { $set: { f: new Int32(1) } }));
  const last = await write(B, PREFER_BACK, id, (c) => c.updateOne({ _id: id as never }, { $set: { f: new Int32(0) } }));
  await nextSecondAfter(last.version.ts);
  const onA = await write(A, PREFER_BACK, id, (c) => c.updateOne({ _id: id as never }, { $set: { g: 'a' } }));
  assert.ok(onA.version.ts!.greaterThan(last.version.ts!), "A's write is the last");
  await replicate(PREFER_BACK, [A, B], undefined, { conflicts: { kind: 'prefer', server: idOf(B) } });
  await stopRun();

  // Before, B took A's write for one made on what it held and applied it; A took B's.
  for (const s of [A, B]) assert.equal(typed(await untagged(collection(s, PREFER_BACK), id)), typed(last.doc), `${s} holds B's last document`);
  const { record } = await onlyRecord(PREFER_BACK, A);
  assert.deepEqual({ won: showVersion(record.won), lost: showVersion(record.lost) }, { won: showVersion(first.version), lost: showVersion(onA.version) });
  assert.equal(record.policy, `prefer:${idOf(B)}`);
});

test("updates with no way back (B -> A carries inserts only): A -> B is a replica's link, and B takes A's update over its own later one, unrecorded", async () => {
  const id = 'one way';
  await prepare(() => collection(A, ONE_WAY_UPDATES).insertOne({ _id: id as never, f: new Int32(0) }));
  const onA = await write(A, ONE_WAY_UPDATES, id, (c) => c.updateOne({ _id: id as never }, { $set: { f: 'a' } }));
  await nextSecondAfter(onA.version.ts);
  await write(B, ONE_WAY_UPDATES, id, (c) => c.updateOne({ _id: id as never }, { $set: { f: 'b' } }));
  await replicate(ONE_WAY_UPDATES, [A, B]);

  for (const s of [A, B]) assert.equal(typed(await untagged(collection(s, ONE_WAY_UPDATES), id)), typed(onA.doc), `${s} holds A's value`);
  assert.deepEqual(shownRecords(await recordsByServer(ONE_WAY_UPDATES)), [], 'no conflict recorded anywhere');
});

test('a 9 MB document updated on both: the run goes on, both converge, and the loser keeps its version alone (the winner left out)', async () => {
  const id = 'big';
  const blob = 'x'.repeat(9 * 1024 * 1024);
  await prepare(() => collection(A, BIG).insertOne({ _id: id as never, blob, n: new Int32(0) }));
  const onA = await write(A, BIG, id, (c) => c.updateOne({ _id: id as never }, { $set: { n: 'a' } }));
  await nextSecondAfter(onA.version.ts);
  const onB = await write(B, BIG, id, (c) => c.updateOne({ _id: id as never }, { $set: { n: 'b' } }));
  await replicate(BIG, [A, B]);

  let ended: LoopReport[] | undefined;
  void mmm!.done.then((reports) => (ended = reports));
  await settle(cluster.topology, clients);
  assert.equal(ended, undefined, 'run is still running');
  const reports = await stopRun();
  assert.deepEqual(
    reports.map((r) => `${r.source} -> ${r.destination}: ${r.outcome.state}`),
    reports.map((r) => `${r.source} -> ${r.destination}: stopped`),
    'every loop ran until stopped',
  );
  for (const s of [A, B]) assert.ok((await untagged(collection(s, BIG), id))!.equals(onB.doc!), `${s} holds B's later document`);
  const records = await recordsByServer(BIG);
  const all = [...records].flatMap(([s, rs]) => rs.map((r) => `${s}: ${showVersion(r.lost)} lost to ${showVersion(r.won)}`));
  assert.equal(all.length, 1, `one record in all: ${all.join(' ')}`);
  const [record] = records.get(A)!;
  assert.ok(record, `A, whose update lost, keeps the record: ${all.join(' ')}`);
  assert.deepEqual(
    { omitted: record.omitted, wonDoc: record.won.doc, won: showVersion(record.won), lost: showVersion(record.lost) },
    { omitted: ['won'], wonDoc: null, won: showVersion(onB.version), lost: showVersion(onA.version) },
  );
  assert.ok(untaggedDoc(record.lost.doc)!.equals(onA.doc!), "the record's losing document is A's whole document");
});

test('a restart replaying 500 updates B already holds: both the same, no conflict recorded or logged, no oplog scan per write', async () => {
  const store = new ReplicationConfigStore(client(B));
  const ids = Array.from({ length: 500 }, (_, k) => k);
  if (!mmm) startRun();
  await collection(A, REPLAY).insertMany(ids.map((k) => ({ _id: k as never, v: new Int32(0) })));
  await settle(cluster.topology, clients);
  const beforeUpdates = (await store.checkpoint(idOf(A)))!;
  const updated = await collection(A, REPLAY).updateMany({}, { $set: { v: new Int32(1) } });
  assert.equal(updated.modifiedCount, ids.length);
  await settle(cluster.topology, clients);
  const afterUpdates = (await store.checkpoint(idOf(A)))!;
  await stopRun();
  assert.deepEqual((await sameEverywhere([A, B], REPLAY)).map((d) => d.text), [], 'B has applied the updates');

  // As if B had committed the updates but not the checkpoint after them.
  await store.saveCheckpoint(idOf(A), beforeUpdates);
  const lines: Document[] = [];
  const logger = pino({ level: 'debug' }, new Writable({ write: (chunk, _enc, done) => (lines.push(JSON.parse(String(chunk)) as Document), done()) }));
  // A document's last write is looked for in B's oplog by a collection scan (not tailable); a
  // replay the documents' tags settle needs none per write. Waited for on B's checkpoint (read
  // by _id), not with settle, which scans the oplogs itself.
  const scans = async () => Number((await client(B).db('admin').command({ serverStatus: 1 })).metrics.queryExecutor.collectionScans.nonTailable);
  const scansBefore = await scans();
  startRun(logger);
  await eventually('B to replay the updates', async () => !(await store.checkpoint(idOf(A)))!.lessThan(afterUpdates));
  const scansMade = (await scans()) - scansBefore;
  await settle(cluster.topology, clients);
  await stopRun();

  assert.deepEqual((await sameEverywhere([A, B], REPLAY)).map((d) => d.text), [], 'A and B the same');
  assert.equal(await collection(B, REPLAY).countDocuments({ v: new Int32(1) }), ids.length, 'B holds every update');
  assert.deepEqual(shownRecords(await recordsByServer(REPLAY)), [], 'no conflict recorded');
  assert.deepEqual(lines.filter((l) => String(l.msg).startsWith('conflict:')), [], 'no conflict logged');
  assert.deepEqual(lines.filter((l) => Number(l.level) >= 40), [], 'no warning at all (no oplog scan given up, no write unchecked)');
  // A run's start makes a few scans of B whatever it replays; one per replayed write is 500 more.
  assert.ok(scansMade < ids.length / 10, `B was scanned ${scansMade} times while ${ids.length} updates were replayed`);
});

test('a restart replaying an insert and a replacement that a user on B deleted since: they stay deleted, on both', async () => {
  const store = new ReplicationConfigStore(client(B));
  if (!mmm) startRun();
  await collection(A, REPLAY_DELETED).insertOne({ _id: 'replaced' as never, v: new Int32(0) });
  await settle(cluster.topology, clients);
  const before = (await store.checkpoint(idOf(A)))!;
  await collection(A, REPLAY_DELETED).insertOne({ _id: 'inserted' as never, v: new Int32(1) });
  await collection(A, REPLAY_DELETED).replaceOne({ _id: 'replaced' as never }, { v: new Int32(2) });
  await settle(cluster.topology, clients);
  await stopRun();
  assert.equal(await collection(B, REPLAY_DELETED).countDocuments(), 2, 'B has applied both');

  // A user on B deletes both; then a restart replays what B had applied, as if its checkpoint had not been saved.
  await collection(B, REPLAY_DELETED).deleteMany({});
  await store.saveCheckpoint(idOf(A), before);
  startRun();
  await settle(cluster.topology, clients);
  await stopRun();

  // Before, B wrote both again (an insert and a replacement are upserts), while A applied B's deletes.
  for (const s of [A, B]) assert.equal(await collection(s, REPLAY_DELETED).countDocuments(), 0, `${s} holds neither`);
  assert.deepEqual(shownRecords(await recordsByServer(REPLAY_DELETED)), [], 'no conflict recorded: the replayed writes were older than the deletes');
});

test("a write on A made after B's reached it, in the same second with a smaller counter: applied on B, no conflict", async () => {
  // Counters of one second say nothing of order across servers: the later write can bear the
  // smaller time. The destination's own write must not pass for one its source had not seen.
  // Without the source's time carried to A (a destination whose user may not advance its
  // clock), which would give A's write the later time (test/conflicts-clock.test.ts).
  const id = 'after';
  if (mmm) await stopRun();
  startRun(undefined, { carryClock: false });
  await collection(A, SAME_SECOND).insertOne({ _id: id as never, f: new Int32(0), g: new Int32(0) });
  await settle(cluster.topology, clients);
  const oplogTime = async (server: string) =>
    (await client(server).db('local').collection('oplog.rs').find({ ns: SAME_SECOND }).sort({ $natural: -1 }).limit(1).next())!.ts as Timestamp;
  let made = 0;
  for (let round = 1; round <= 5 && made === 0; round++) {
    while (Date.now() % 1000 > 50) await sleep(2);
    // B's counter for this second goes high, with writes to a collection no link carries.
    await client(B).db('edges_unlinked').collection('filler').insertMany(Array.from({ length: 3000 }, (_, k) => ({ k })));
    await collection(B, SAME_SECOND).updateOne({ _id: id as never }, { $set: { f: new Int32(round) } });
    const onB = await oplogTime(B);
    await eventually("A to hold B's write", async () => (await collection(A, SAME_SECOND).countDocuments({ _id: id as never, f: new Int32(round) } as Document)) === 1);
    await collection(A, SAME_SECOND).updateOne({ _id: id as never }, { $set: { g: new Int32(round) } });
    const onA = await oplogTime(A);
    if (onA.t === onB.t && onA.i < onB.i) made = round;
    await settle(cluster.topology, clients);
    assert.deepEqual((await sameEverywhere([A, B], SAME_SECOND)).map((d) => d.text), [], `round ${round}: A and B the same`);
  }
  await stopRun();
  assert.ok(made > 0, "in 5 tries, A's write never came in the same second as B's with a smaller counter");
  assert.equal(typed(await untagged(collection(B, SAME_SECOND), id)), typed(await untagged(collection(A, SAME_SECOND), id)));
  assert.deepEqual(shownRecords(await recordsByServer(SAME_SECOND)), [], 'no conflict recorded');
});

test("a batch whose read of the destination's pre-images runs out of time is checked by its bytes alone, as are the next for 30 s, and says so once", async () => {
  const id = 'unread';
  if (mmm) await stopRun();
  const lines: Document[] = [];
  startRun(pino({ level: 'info' }, new Writable({ write: (chunk, _enc, done) => (lines.push(JSON.parse(String(chunk)) as Document), done()) })));
  await collection(A, UNREAD).insertOne({ _id: id as never, v: new Int32(0) });
  await settle(cluster.topology, clients);
  // The next read of B's pre-images (A's update, checked on B) fails as a read past its maxTimeMS does.
  const data = { failCommands: ['find'], namespace: 'config.system.preimages', errorCode: 50 };
  const failPoint = async (mode: unknown) => Number((await client(B).db('admin').command({ configureFailPoint: 'failCommand', mode, data })).count);
  // The fail point counts the reads it failed, over all its settings since it was first set.
  const before = await failPoint('off');
  let tried: number;
  try {
    await failPoint({ times: 1 });
    await collection(A, UNREAD).updateOne({ _id: id as never }, { $set: { v: new Int32(1) } });
    await settle(cluster.topology, clients);
    // The next batch, within 30 s, does not try again (each would wait out the bound).
    assert.equal(await failPoint('alwaysOn'), before + 1, 'the first batch tried to read');
    await collection(A, UNREAD).updateOne({ _id: id as never }, { $set: { v: new Int32(2) } });
    await settle(cluster.topology, clients);
  } finally {
    tried = await failPoint('off');
  }
  await stopRun();
  assert.equal(tried, before + 1, 'the next batch did not try to read');
  assert.equal(typed(await untagged(collection(B, UNREAD), id)), typed(await untagged(collection(A, UNREAD), id)), "B holds A's updates");
  const unread = lines.filter((l) => String(l.msg).includes('checked by their bytes alone'));
  assert.equal(unread.length, 1, `one warning, for both batches: ${JSON.stringify(unread)}`);
  assert.equal(unread[0]!.level, 40);
  assert.equal(unread[0]!.writes, 1);
});
