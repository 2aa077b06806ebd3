// The destination's history as the conflict check reads it (src/conflict/history.ts), on a real
// server: each pre-image read once and kept, and every question still answered in full, whether
// it asks from before what is kept, from a clock ahead of the server's, after the collection
// was dropped and created again, or past the most kept; and mmm's own writes told from a
// user's in it, also where a transaction of mmm's spans oplog entries. The check on whole
// replication is in test/conflicts-edges.test.ts.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Int32, MongoClient, Timestamp, type Collection, type Document } from 'mongodb';
import { planWrite, writeMarker } from '../src/apply/writer.ts';
import { DestinationHistory } from '../src/conflict/history.ts';
import type { EarlierState } from '../src/conflict/preimages.ts';
import { ConflictResolver, type Resolution } from '../src/conflict/resolve.ts';
import { makeTag, MARKER_COLLECTION, MMM_DATABASE } from '../src/replicate/tag.ts';
import { startReplicaSet, type ReplicaSet } from '../scripts/replica-sets.ts';

const DB = 'history';
let set: ReplicaSet;
let client: MongoClient;

before(async () => {
  // A cache room for the transactions over 16 MB below, on a busy machine.
  set = await startReplicaSet(1, { cacheSizeGB: 1 });
  client = await new MongoClient(set.uri).connect();
});

after(async () => {
  await client?.close();
  await set?.destroy();
});

const key = (id: unknown) => String((id as Int32).value);

/** A new collection keeping pre-images, holding documents 1 to 4, each tagged `t<id>`. */
async function collection(name: string): Promise<Collection<Document>> {
  await client.db(DB).collection(name).drop().catch(() => undefined);
  await client.db(DB).createCollection(name, { changeStreamPreAndPostImages: { enabled: true } });
  const c = client.db(DB).collection(name);
  await c.insertMany([1, 2, 3, 4].map((id) => ({ _id: new Int32(id) as never, __mmm: `t${id}`, v: 0 })));
  return c;
}

/** Updates document `id` (keeping its tag, as a user's write does) and gives the update's time. */
async function update(c: Collection<Document>, id: number): Promise<Timestamp> {
  await c.updateOne({ _id: new Int32(id) as never }, { $inc: { v: 1 } });
  const entry = await client.db('local').collection('oplog.rs').findOne({ ns: c.namespace, op: 'u', 'o2._id': id }, { sort: { $natural: -1 } });
  return entry!.ts as Timestamp;
}

/** What the server holds, asked directly: the pre-images of `ids` from `since` on, one list. */
function shown(states: EarlierState[] | undefined): string[] {
  assert.ok(states, 'read in time');
  return states.map((s) => `${key(s.id)}@${s.ts.t}:${s.ts.i}:${String(s.tag)}`);
}

const at = (id: number, ts: Timestamp) => `${id}@${ts.t}:${ts.i}:t${id}`;

/** What a batch asks: the kept ones refreshed, then those of `list` from `since` on. */
function ask(history: DestinationHistory, list: Int32[], since: Timestamp): Promise<EarlierState[] | undefined> {
  return history.writtenSince(client, list, since, 2_000, history.refresh(client, since, 2_000));
}

const ids = (...list: number[]) => list.map((id) => new Int32(id));
const seconds = (ts: Timestamp, s: number) => new Timestamp({ t: ts.t + s, i: 0 });

test('writes read once are kept: a later question gets them with the new ones, each document in order, only its own', async () => {
  const c = await collection('kept');
  const history = new DestinationHistory(c.namespace, key);
  const first = await update(c, 1);
  await update(c, 2);
  assert.deepEqual(shown(await ask(history, ids(1, 3), first)), [at(1, first)]);
  const second = await update(c, 1);
  const third = await update(c, 3);
  assert.deepEqual(shown(await ask(history, ids(1, 3), first)).sort(), [at(1, first), at(1, second), at(3, third)].sort());
  assert.deepEqual(
    shown(await ask(history, ids(1), first)),
    [at(1, first), at(1, second)],
    "one document's writes in the order made",
  );
  assert.deepEqual(shown(await ask(history, ids(1, 3), second)).sort(), [at(1, second), at(3, third)].sort(), 'none before `since`');
});

test('a question from before what is kept reads that stretch itself; one from a clock ahead of the server misses nothing after', async () => {
  const c = await collection('stretch');
  const early = await update(c, 1);
  // Asked first from 20 s ahead: nothing kept yet from before then.
  const history = new DestinationHistory(c.namespace, key);
  assert.deepEqual(shown(await ask(history, ids(1, 2), seconds(early, 20))), []);
  const late = await update(c, 2);
  assert.deepEqual(shown(await ask(history, ids(1, 2), early)).sort(), [at(1, early), at(2, late)].sort());
  assert.deepEqual(shown(await ask(history, ids(1, 2), seconds(early, 20))), [], 'both made before that clock says');
});

test('a collection dropped and created again is read under its new UUID: the old one\'s writes are gone with it', async () => {
  let c = await collection('again');
  const history = new DestinationHistory(c.namespace, key);
  const old = await update(c, 1);
  assert.deepEqual(shown(await ask(history, ids(1), old)), [at(1, old)]);
  c = await collection('again');
  const fresh = await update(c, 1);
  assert.deepEqual(shown(await ask(history, ids(1), old)), [at(1, fresh)]);
});

test('past the most kept, what is kept is let go and the answers stay whole', async () => {
  const c = await collection('most');
  const history = new DestinationHistory(c.namespace, key, 2);
  const made: Array<[number, Timestamp]> = [];
  const since = await update(c, 4);
  for (let round = 0; round < 3; round++) {
    for (const id of [1, 2, 3]) made.push([id, await update(c, id)]);
    const expected = made.map(([id, ts]) => at(id, ts)).sort();
    assert.deepEqual(shown(await ask(history, ids(1, 2, 3), since)).sort(), expected, `round ${round}`);
  }
});

/** mmm's transactions writing document 1 twice (the second write keeps the tag the first gave it), each a list of `$set`s. */
type Shape = { name: string; transactions: Array<Array<{ id: number; set: Document }>> };

const SHAPES: Shape[] = [
  {
    // Around 7 MB of document 2, so that the two writes land in two entries of one transaction.
    name: 'one transaction spanning oplog entries',
    transactions: [[{ id: 1, set: { a: 'a'.repeat(6 << 20) } }, { id: 2, set: { a: 'b'.repeat(7 << 20) } }, { id: 1, set: { b: 'c'.repeat(6 << 20) } }]],
  },
  // As mmm splits a transaction too large for the cache, or that keeps conflicting.
  { name: 'a transaction split in two', transactions: [[{ id: 1, set: { a: 'a' } }], [{ id: 1, set: { b: 'c' } }]] },
];

for (const shape of SHAPES) {
  test(`mmm's second write of a document in ${shape.name} is mmm's, though its time is not the first's`, async () => {
    const [A, B, C] = ['aaaaaaaa-0000-4000-8000-000000000000', 'bbbbbbbb-0000-4000-8000-000000000000', 'cccccccc-0000-4000-8000-000000000000'];
    const c = await collection(`shape${SHAPES.indexOf(shape)}`);
    const newest = await client.db('local').collection('oplog.rs').findOne({}, { sort: { $natural: -1 } });
    const since = newest!.ts as Timestamp;
    // mmm applying C's version on B. As a loop's start does (prepareDestination), the marker
    // collection exists before any transaction.
    const theirs = makeTag(C, new Timestamp({ t: since.t - 1, i: 1 }));
    await client.db(MMM_DATABASE).createCollection(MARKER_COLLECTION).catch(() => undefined);
    let tagged = false;
    for (const writes of shape.transactions) {
      const session = client.startSession();
      try {
        await session.withTransaction(async () => {
          await writeMarker(client, session, { origin: C, source: C, lane: 0, run: 'test' }, 10_000);
          for (const { id, set } of writes) {
            const tag = id === 1 && !tagged ? { __mmm: theirs } : {};
            if (id === 1) tagged = true;
            await c.updateOne({ _id: new Int32(id) as never }, { $set: { ...set, ...tag } }, { session });
          }
        });
      } finally {
        await session.endSession();
      }
    }
    const times = await client.db('config').collection('system.preimages').find({ '_id.ts': { $gt: since }, 'preImage._id': 1 }, { projection: { '_id.ts': 1 } }).toArray();
    assert.equal(new Set(times.map((image) => String((image._id as unknown as { ts: Timestamp }).ts))).size, 2, "document 1's two writes at two times");
    // A's update, made on what B holds now (A had received C's version), before B applied it.
    const base = (await c.findOne({ _id: new Int32(1) as never }, { raw: true })) as unknown as Buffer;
    const write = planWrite({ op: 'u', ns: c.namespace, o: { $v: 2, diff: { u: { v: new Int32(5) } } }, o2: { _id: new Int32(1) }, ts: since, seq: 0 }, c.namespace, makeTag(A, since), A);
    write.check = { version: { origin: A, ts: since }, base };
    // Under prefer:C, taking the second write for a user's would make C's version win and drop A's.
    const resolver = new ConflictResolver({ destinationId: B, sourceId: A, policy: { kind: 'prefer', server: C } });
    const applying = client.startSession();
    let resolution: Resolution | undefined;
    try {
      await applying.withTransaction(async () => {
        resolution = await resolver.resolve(client, applying, [write], 10_000);
      });
    } finally {
      await applying.endSession();
    }
    assert.deepEqual(resolution!.writes, [write], 'applied as it came');
    assert.deepEqual([resolution!.records.length, resolution!.rejected], [0, 0]);
  });
}

test("a transaction over 16 MB whose entries a snapshot falls between (a secondary behind): both its writes are found, then and once caught up", async () => {
  // Two members; the secondary stops fetching at the transaction's second entry, so the commit
  // point, and a snapshot read's time, rests on the first.
  const pair = await startReplicaSet(2, { cacheSizeGB: 1, args: ['--setParameter', 'enableTestCommands=1', '--setParameter', 'bgSyncOplogFetcherBatchSize=1'] });
  const primary = await new MongoClient(pair.uri).connect();
  try {
    const primaryHost = await pair.waitForPrimary();
    const secondary = await new MongoClient(`mongodb://${pair.members.map((m) => m.host).find((h) => h !== primaryHost)}/?directConnection=true`).connect();
    try {
      const db = primary.db(DB);
      await db.createCollection('split', { changeStreamPreAndPostImages: { enabled: true } });
      const c = db.collection('split');
      await c.insertMany([{ _id: new Int32(1) as never, __mmm: 't1' }, { _id: new Int32(2) as never, __mmm: 't2' }], { writeConcern: { w: 2 } });
      const failPoint = { configureFailPoint: 'stopReplProducerOnDocument', data: { document: { 'applyOps.o2._id': 2 } } };
      await secondary.db('admin').command({ ...failPoint, mode: 'alwaysOn' });
      const session = primary.startSession();
      try {
        await session.withTransaction(
          async () => {
            await c.updateOne({ _id: new Int32(1) as never }, { $set: { a: 'a'.repeat(9 << 20) } }, { session });
            await c.updateOne({ _id: new Int32(2) as never }, { $set: { b: 'b'.repeat(9 << 20) } }, { session });
          },
          { writeConcern: { w: 1 } },
        );
      } finally {
        await session.endSession();
      }
      const entries = await primary.db('local').collection('oplog.rs').find({ 'o.applyOps': { $exists: true } }, { projection: { ts: 1 } }).toArray();
      const [first, second] = entries.map((e) => e.ts as Timestamp);
      // What the history relies on: a transaction's entries take their times as one block, in one second.
      assert.equal(first!.t, second!.t);
      const committed = async () => (await primary.db('admin').command({ replSetGetStatus: 1 })).optimes.lastCommittedOpTime.ts as Timestamp;
      while (!(await committed()).equals(first!)) await new Promise((resolve) => setTimeout(resolve, 50));
      const history = new DestinationHistory(c.namespace, key);
      const asked = (since: Timestamp) => history.writtenSince(primary, ids(1, 2), since, 5_000, history.refresh(primary, since, 5_000));
      // The snapshot, at the first entry, shows neither pre-image: both come from the read after it.
      const whole = [`1@${first!.t}:${first!.i}:t1`, `2@${second!.t}:${second!.i}:t2`];
      assert.deepEqual(shown(await asked(first!)), whole, 'the first write, at the time the snapshot rests on, is not lost');
      await secondary.db('admin').command({ ...failPoint, mode: 'off' });
      await c.updateOne({ _id: new Int32(9) as never }, { $set: { z: 1 } }, { upsert: true, writeConcern: { w: 2 } });
      assert.deepEqual(shown(await asked(first!)), whole, 'nor once the secondary has caught up');
    } finally {
      await secondary.close();
    }
  } finally {
    await primary.close();
    await pair.destroy();
  }
});
