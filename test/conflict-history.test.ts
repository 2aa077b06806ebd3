// The destination's history as the conflict check reads it (src/conflict/history.ts), on a real
// server: each pre-image read once and kept, and every question still answered in full, whether
// it asks from before what is kept, from a clock ahead of the server's, after the collection
// was dropped and created again, or past the most kept. The check that uses it is in
// test/conflicts-edges.test.ts.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Int32, MongoClient, Timestamp, type Collection, type Document } from 'mongodb';
import { DestinationHistory } from '../src/conflict/history.ts';
import type { EarlierState } from '../src/conflict/preimages.ts';
import { startReplicaSet, type ReplicaSet } from '../scripts/replica-sets.ts';

const DB = 'history';
let set: ReplicaSet;
let client: MongoClient;

before(async () => {
  set = await startReplicaSet(1);
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
const ids = (...list: number[]) => list.map((id) => new Int32(id));
const seconds = (ts: Timestamp, s: number) => new Timestamp({ t: ts.t + s, i: 0 });

test('writes read once are kept: a later question gets them with the new ones, each document in order, only its own', async () => {
  const c = await collection('kept');
  const history = new DestinationHistory(c.namespace, key);
  const first = await update(c, 1);
  await update(c, 2);
  assert.deepEqual(shown(await history.writtenSince(client, ids(1, 3), first, 2_000)), [at(1, first)]);
  const second = await update(c, 1);
  const third = await update(c, 3);
  assert.deepEqual(shown(await history.writtenSince(client, ids(1, 3), first, 2_000)).sort(), [at(1, first), at(1, second), at(3, third)].sort());
  assert.deepEqual(
    shown(await history.writtenSince(client, ids(1), first, 2_000)),
    [at(1, first), at(1, second)],
    "one document's writes in the order made",
  );
  assert.deepEqual(shown(await history.writtenSince(client, ids(1, 3), second, 2_000)).sort(), [at(1, second), at(3, third)].sort(), 'none before `since`');
});

test('a question from before what is kept reads that stretch itself; one from a clock ahead of the server misses nothing after', async () => {
  const c = await collection('stretch');
  const early = await update(c, 1);
  // Asked first from 20 s ahead: nothing kept yet from before then.
  const history = new DestinationHistory(c.namespace, key);
  assert.deepEqual(shown(await history.writtenSince(client, ids(1, 2), seconds(early, 20), 2_000)), []);
  const late = await update(c, 2);
  assert.deepEqual(shown(await history.writtenSince(client, ids(1, 2), early, 2_000)).sort(), [at(1, early), at(2, late)].sort());
  assert.deepEqual(shown(await history.writtenSince(client, ids(1, 2), seconds(early, 20), 2_000)), [], 'both made before that clock says');
});

test('a collection dropped and created again is read under its new UUID: the old one\'s writes are gone with it', async () => {
  let c = await collection('again');
  const history = new DestinationHistory(c.namespace, key);
  const old = await update(c, 1);
  assert.deepEqual(shown(await history.writtenSince(client, ids(1), old, 2_000)), [at(1, old)]);
  c = await collection('again');
  const fresh = await update(c, 1);
  assert.deepEqual(shown(await history.writtenSince(client, ids(1), old, 2_000)), [at(1, fresh)]);
});

test('past the most kept, what is kept is let go and the answers stay whole', async () => {
  const c = await collection('most');
  const history = new DestinationHistory(c.namespace, key, 2);
  const made: Array<[number, Timestamp]> = [];
  const since = await update(c, 4);
  for (let round = 0; round < 3; round++) {
    for (const id of [1, 2, 3]) made.push([id, await update(c, id)]);
    const expected = made.map(([id, ts]) => at(id, ts)).sort();
    assert.deepEqual(shown(await history.writtenSince(client, ids(1, 2, 3), since, 2_000)).sort(), expected, `round ${round}`);
  }
});
