// The oplog tailer on a real replica set: each batch's entries and their size in bytes, fewer
// entries per batch when they are large, none lost or read twice, a cursor whose place has been
// overwritten stops, and a filtered cursor says how far it has read past the entries it skips.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { BSON, type FindCursor, type MongoClient, type Timestamp } from 'mongodb';
import { startReplicaSet, type ReplicaSet } from '../scripts/replica-sets.ts';
import { serverErrorCode } from '../src/apply/transient.ts';
import type { OplogEntry } from '../src/oplog/entry.ts';
import { OplogTailer, type OplogBatch } from '../src/oplog/tailer.ts';

const MB = 1024 * 1024;
const big = (n: number) => ({ _id: n, payload: String(n % 10).repeat(MB - 64) });

let sets: ReplicaSet[] = [];
let clients: MongoClient[] = [];

before(async () => {
  // The second set has the smallest oplog (see reliability-oplog-window.test.ts), to overwrite it.
  sets = await Promise.all([startReplicaSet(1), startReplicaSet(1, { oplogSizeMB: 1, args: ['--syncdelay', '1'] })]);
  clients = sets.map((s) => s.client());
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(sets.map((s) => s.destroy()));
});

async function edge(client: MongoClient, direction: 1 | -1): Promise<Timestamp> {
  const entry = await client.db('local').collection('oplog.rs').find().sort({ $natural: direction }).limit(1).next();
  return entry!.ts as Timestamp;
}

/** The oplog after `start` as the server holds it: each entry's `ts` and size in bytes. */
async function oplogAfter(client: MongoClient, start: Timestamp): Promise<{ ts: Timestamp; bytes: number }[]> {
  const cursor = client.db('local').collection('oplog.rs').find({ ts: { $gt: start } }, { raw: true }) as unknown as FindCursor<Uint8Array>;
  const out = [];
  for await (const buf of cursor) out.push({ ts: (BSON.deserialize(buf) as OplogEntry).ts, bytes: buf.byteLength });
  return out;
}

test('batches hold fewer entries when entries are large, more again when small, and none is lost or read twice', async () => {
  const client = clients[0]!;
  const coll = client.db('test').collection<{ _id: number; payload?: string }>('sizes');
  const start = await edge(client, -1);
  for (let n = 0; n < 20; n++) await coll.insertOne(big(n));
  await coll.insertMany(Array.from({ length: 300 }, (_, i) => ({ _id: 1_000 + i })));
  for (let n = 20; n < 40; n++) await coll.insertOne(big(n));
  const expected = await oplogAfter(client, start);
  const last = expected[expected.length - 1]!.ts;

  const options = { batchSize: 100, batchBytes: 2 * MB, maxAwaitTimeMS: 100 };
  const abort = new AbortController();
  const batches: OplogBatch[] = [];
  for await (const batch of new OplogTailer(client, options).batches(start, abort.signal)) {
    if (batch.entries.length > 0) batches.push(batch);
    if (batch.entries.at(-1)?.ts.equals(last)) abort.abort();
  }

  console.log(`batches: ${batches.map((b) => `${b.entries.length}/${(b.bytes / MB).toFixed(1)}MB`).join(' ')}`);
  const read = batches.flatMap((b) => b.entries.map((e) => e.ts.toString()));
  assert.deepEqual(read, expected.map((e) => e.ts.toString()), 'every entry once, in order');
  let i = 0;
  for (const batch of batches) {
    const sizes = expected.slice(i, (i += batch.entries.length)).map((e) => e.bytes);
    assert.equal(batch.bytes, sizes.reduce((a, b) => a + b, 0), 'a batch counts the bytes of its entries as the server sent them');
  }
  // Twice `batchBytes` is tolerated, and an entry more. Each reply asks for as many entries as
  // the last ones say fit, so a reply goes past that only where entries grew: one asked for at
  // the size of small entries ends with large ones (the server fills it up to 16 MB). Where
  // that happens depends on what the oplog held before the test's writes (small entries of the
  // server's own among them), so it is checked at each such reply, not counted.
  const average = (b: OplogBatch) => b.bytes / b.entries.length;
  const oversize = batches.flatMap((b, k) => (b.bytes > 2 * options.batchBytes + MB ? [k] : []));
  assert.ok(oversize.length > 0, 'large entries after small ones overfill a reply');
  for (const k of oversize) {
    assert.ok(k > 0 && average(batches[k - 1]!) < average(batches[k]!) / 2, `batch ${k} is over the bound only because its entries grew`);
  }
  assert.ok(batches.some((b) => b.entries.length === options.batchSize), 'small entries come batchSize at a time again');
});

test('a cursor whose last entry read has been overwritten stops (CappedPositionLost)', async () => {
  const client = clients[1]!;
  const coll = client.db('test').collection<{ _id: number; payload: string }>('wrap');
  const start = await edge(client, -1);
  await coll.insertMany(Array.from({ length: 8 }, (_, n) => big(n)));
  const abort = new AbortController();
  const batches = new OplogTailer(client, { batchSize: 100, batchBytes: 8 * MB, maxAwaitTimeMS: 100 }).batches(start, abort.signal);
  try {
    let first: OplogBatch;
    do first = (await batches.next()).value as OplogBatch;
    while (first.entries.length === 0);
    // A cursor asks for one entry first, then for more of them.
    assert.equal(first.entries.length, 1);
    const lastRead = first.entries.at(-1)!.ts;
    // The tailer waits at its `yield`: overwrite the oplog past the last entry it read.
    let megabytes = 0;
    while (!(await edge(client, 1)).greaterThan(lastRead)) {
      await coll.insertOne(big(8 + megabytes++));
      assert.ok(megabytes < 400, 'the oplog never wrapped');
    }
    // The server, on the next getMore (CappedPositionLost, 136): the loop reports it as a lost
    // oplog window.
    await assert.rejects(batches.next(), (err: unknown) => serverErrorCode(err) === 136);
  } finally {
    abort.abort();
    await batches.return(undefined);
  }
});

test('a filtered cursor sends only the entries it asks for, and says it has read past the others', async () => {
  const client = clients[0]!;
  const start = await edge(client, -1);
  await client.db('test').collection<{ _id: number }>('other').insertMany(Array.from({ length: 50 }, (_, i) => ({ _id: i })), { ordered: true });
  const skipped = await edge(client, -1);
  const abort = new AbortController();
  const batches = new OplogTailer(client, { batchSize: 100, batchBytes: 8 * MB, maxAwaitTimeMS: 100 }, { ns: 'test.linked' }).batches(start, abort.signal);
  try {
    let batch = (await batches.next()).value as OplogBatch;
    assert.deepEqual(batch.entries, []);
    assert.ok(batch.scanned?.equals(skipped), `read up to ${String(batch.scanned)}, the last entry skipped being ${String(skipped)}`);
    await client.db('test').collection<{ _id: string }>('linked').insertOne({ _id: 'wanted' });
    do batch = (await batches.next()).value as OplogBatch;
    while (batch.entries.length === 0);
    assert.deepEqual(batch.entries.map((e) => [e.ns, e.o._id]), [['test.linked', 'wanted']]);
    assert.ok(batch.scanned?.equals(batch.entries[0]!.ts));
  } finally {
    abort.abort();
    await batches.return(undefined);
  }
});
