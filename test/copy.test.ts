// `replicate --copy`, through the real CLI on two replica sets: a collection that already holds
// 200,000 documents is copied while its source takes inserts, updates and deletes of documents
// copied and not yet copied, with `run` already running; again with the copy SIGKILLed twice and
// resumed and `run` started after (both checked directly and by `mmm verify`); then indexes, a destination that holds documents, and a copy
// whose start the source's oplog no longer holds.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BSON, Int32, Timestamp, type Collection, type Document, type Filter, type MongoClient } from 'mongodb';
import { startReplicaSets, type ReplicaSet } from '../scripts/replica-sets.ts';
import { ReplicationConfigStore } from '../src/config/store.ts';
import { ID_A, ID_B, MMM, runCli, writeTopology } from './support/cli.ts';
import { show, splitTag, storedAll } from './support/bson.ts';
import { seededRandom } from './support/random-updates.ts';
import { eventually, loggedOperations } from './support/replication.ts';
import { RunProcess } from './support/run-process.ts';

let sets: ReplicaSet[] = [];
let a: MongoClient;
let b: MongoClient;
let dir: string;
let config: string;
const DOCUMENTS = 200_000;

before(async () => {
  sets = await startReplicaSets(2);
  [a, b] = sets.map((s) => s.client()) as [MongoClient, MongoClient];
  dir = mkdtempSync(path.join(os.tmpdir(), 'mmm-copy-'));
  config = writeTopology(path.join(dir, 'test.yml'), { server_a: { id: ID_A, uri: sets[0]!.uri }, server_b: { id: ID_B, uri: sets[1]!.uri } });
  // `_id`s of three BSON types, which the copy's ranges must cover in index order.
  const source = coll(a, 'big');
  for (let start = 0; start < DOCUMENTS; start += 10_000) {
    await source.insertMany(
      Array.from({ length: 10_000 }, (_, j) => {
        const k = start + j;
        const _id = k % 5 === 0 ? `s${k}` : k % 5 === 1 ? new Int32(k) : k;
        return { _id, n: new Int32(k), pad: 'x'.repeat(200 + (k % 300)), nested: { k, at: new Date(k) } };
      }),
    );
  }
});

after(async () => {
  await Promise.all([a, b].map((c) => c?.close()));
  await Promise.all(sets.map((s) => s.destroy()));
  rmSync(dir, { recursive: true, force: true });
});

/** Documents of any `_id` type (the driver's default types `_id` as an ObjectId). */
type AnyDoc = { _id: unknown } & Document;
const coll = (client: MongoClient, name: string): Collection<AnyDoc> => client.db('test').collection<AnyDoc>(name);

async function cli(...args: string[]) {
  return runCli(['-c', config, ...args]);
}

/** Each document as BSON without `__mmm`, in `_id` order. */
async function contents(client: MongoClient, name: string): Promise<string[]> {
  const docs = await coll(client, name).find({}, { promoteValues: false }).sort({ _id: 1 }).toArray();
  return docs.map(({ __mmm, ...rest }) => Buffer.from(BSON.serialize(rest)).toString('base64'));
}

async function assertSame(srcName: string, dstName: string): Promise<void> {
  const [x, y] = await Promise.all([contents(a, srcName), contents(b, dstName)]);
  assert.equal(y.length, x.length, 'document counts');
  const differing = x.filter((doc, k) => doc !== y[k]).length;
  assert.equal(differing, 0, `${differing} documents differ`);
}

async function newest(client: MongoClient): Promise<Timestamp> {
  return (await client.db('local').collection('oplog.rs').find().sort({ $natural: -1 }).limit(1).next())!.ts as Timestamp;
}

/**
 * Waits until B has applied everything A logged so far into `dst`: the link follows the oplog
 * (its copy over, its `since` passed by a checkpoint it was applied to) and the checkpoint has
 * reached A's newest entry.
 */
async function caughtUp(dst: string): Promise<void> {
  const ts = await newest(a);
  const store = new ReplicationConfigStore(b);
  await eventually(
    `${dst} to follow the oplog past the writes`,
    async () => {
      const source = await store.source(ID_A);
      const link = source?.links.find((l) => l.dst === `test.${dst}`);
      return link !== undefined && !link.copying && link.since === undefined && (source?.checkpoint?.greaterThanOrEqual(ts) ?? false);
    },
    60_000,
  );
}

/**
 * Writes on A's `big` until stopped: updates and deletes of random documents (the copy may have
 * passed them or not yet), and inserts of new ones.
 */
function writeDuring(seed: number): { stop: () => Promise<number> } {
  console.log(`copy writer seed ${seed}`);
  const random = seededRandom(seed);
  const source = coll(a, 'big');
  let stopped = false;
  let writes = 0;
  const running = (async () => {
    let next = 0;
    while (!stopped) {
      const k = Math.floor(random() * DOCUMENTS);
      const filter = { _id: k % 5 === 0 ? `s${k}` : k } as unknown as Filter<AnyDoc>;
      const roll = random();
      if (roll < 0.5) await source.updateOne(filter, { $set: { n: new Int32(-k), touched: seed }, $inc: { count: 1 } });
      else if (roll < 0.7) await source.deleteOne(filter);
      else if (roll < 0.8) await source.replaceOne(filter, { replaced: true, k }, { upsert: true });
      else await source.insertOne({ _id: `new-${seed}-${next++}`, at: new Date() });
      writes++;
      // A steady trickle: enough to touch copied and uncopied documents, not so much that the
      // catch-up after the copy dominates the test.
      if (writes % 10 === 0) await sleep(5);
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await running;
      return writes;
    },
  };
}

test('a copy made while the source takes writes, with run running, leaves both sides identical once the link catches up', async () => {
  // A link that keeps `run` running and checkpointing while the copy goes on.
  assert.equal((await cli('replicate', '--src=server_a/test.other', '--dst=server_b/test.other')).code, 0);
  const run = new RunProcess(config);
  try {
    await run.waitForLog('link started');
    const writer = writeDuring(Date.now() % 100_000);
    const copied = await cli('replicate', '--src=server_a/test.big', '--dst=server_b/test.live', '--copy');
    const writes = await writer.stop();
    assert.equal(copied.code, 0, copied.stderr);
    assert.match(copied.stderr, /a running `mmm run`.*follows this change/);
    assert.ok(writes > 50, `only ${writes} writes during the copy`);
    await coll(a, 'other').insertOne({ _id: 'last' });
    await caughtUp('live');
    await assertSame('big', 'live');
    const verified = await cli('verify', '--src=server_a/test.big', '--dst=server_b/test.live');
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);
    assert.match(verified.stdout, /^server_b\/test\.live <= server_a\/test\.big: equal \([\d,]+ documents\)\n$/);
  } finally {
    await run.stop();
  }
});

/** Starts `replicate --copy` of big into `dst` and SIGKILLs it once its progress has grown past `atLeast` documents. */
async function copyKilledAfter(dst: string, atLeast: number): Promise<number> {
  const child = spawn(MMM, ['-c', config, 'replicate', '--src=server_a/test.big', `--dst=server_b/test.${dst}`, '--copy'], { stdio: 'ignore' });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const progress = async () => {
    const ranges = await b.db('mmm').collection('copies').find({ '_id.dst': `test.${dst}`, '_id.range': { $exists: true } }).toArray();
    return ranges.reduce((n, r) => n + Number(r.copied), 0);
  };
  await eventually(`the copy to pass ${atLeast} documents`, async () => (await progress()) >= atLeast, 60_000);
  child.kill('SIGKILL');
  await exited;
  return progress();
}

test('a copy SIGKILLed twice resumes where it stopped, and run started after it catches up exactly', async () => {
  const start = await newest(b);
  const writer = writeDuring(Date.now() % 100_000);
  let resumedInserts: number;
  try {
    const first = await copyKilledAfter('resumed', 30_000);
    // Status tells the copy and how far it got.
    const status = await cli('status');
    assert.match(status.stdout, /copying \d+% \([\d,]+ of [\d,]+\)/);
    const second = await copyKilledAfter('resumed', first + 30_000);
    assert.ok(second > first, `progress ${first} then ${second}`);
    const beforeResume = await newest(b);
    const resumed = await cli('replicate', '--src=server_a/test.big', '--dst=server_b/test.resumed', '--copy');
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stderr, /resuming a copy/);
    resumedInserts = await loggedOperations(b, beforeResume, (op) => op.ns === 'test.resumed' && op.op === 'i');
  } finally {
    await writer.stop();
  }
  // Each document was written once over the three processes, and the last wrote only the rest.
  const inserts = await loggedOperations(b, start, (op) => op.ns === 'test.resumed' && op.op === 'i');
  assert.equal(inserts, await coll(b, 'resumed').countDocuments());
  assert.ok(resumedInserts <= inserts - 60_000, `the resumed copy wrote ${resumedInserts} of ${inserts}`);
  await coll(a, 'big').insertOne({ _id: 'after-copy' });
  const run = new RunProcess(config);
  try {
    await caughtUp('resumed');
    await assertSame('big', 'resumed');
    const verified = await cli('verify', '--src=server_a/test.big', '--dst=server_b/test.resumed');
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);
    assert.match(verified.stdout, /^server_b\/test\.resumed <= server_a\/test\.big: equal \([\d,]+ documents\)\n$/);
  } finally {
    await run.stop();
  }
  assert.equal(await b.db('mmm').collection('copies').countDocuments(), 0, 'finished copies are forgotten');
});

test('--indexes builds the source collection\'s indexes, a unique one included, before the documents', async () => {
  await coll(a, 'indexed').insertMany(Array.from({ length: 100 }, (_, k) => ({ _id: k, email: `u${k}@x`, score: k % 7 })));
  await coll(a, 'indexed').createIndex({ email: 1 }, { unique: true, name: 'email_unique' });
  await coll(a, 'indexed').createIndex({ score: -1, _id: 1 });
  const result = await cli('replicate', '--src=server_a/test.indexed', '--dst=server_b/test.indexed', '--copy', '--indexes');
  assert.equal(result.code, 0, result.stderr);
  const indexes = await coll(b, 'indexed').listIndexes().toArray();
  const email = indexes.find((i) => i.name === 'email_unique');
  assert.deepEqual(email?.key, { email: 1 });
  assert.equal(email?.unique, true);
  assert.ok(indexes.some((i) => i.name === 'score_-1__id_1'));
  await assertSame('indexed', 'indexed');
});

test('documents whose field names are whole numbers are copied byte for byte, field order included', async () => {
  // Maps: a JavaScript object would list "0" and "7" first, which is what the copy must not do.
  const docs = [
    new Map<string, unknown>([['_id', 1], ['b', 1], ['0', 'x'], ['nested', new Map<string, unknown>([['z', 1], ['7', 2]])]]),
    new Map<string, unknown>([['_id', 2], ['arr', [new Map<string, unknown>([['q', 1], ['3', new Int32(4)]])]], ['12', true]]),
    { _id: 3, plain: 'document' },
  ];
  await coll(a, 'numbered').insertMany(docs as unknown as AnyDoc[]);
  const result = await cli('replicate', '--src=server_a/test.numbered', '--dst=server_b/test.numbered', '--copy');
  assert.equal(result.code, 0, result.stderr);
  const [source, copied] = (await Promise.all([a, b].map((client) => storedAll(client.db('test').collection('numbered'))))) as [Uint8Array[], Uint8Array[]];
  assert.equal(copied.length, 3);
  copied.forEach((bytes, k) => assert.equal(show(splitTag(bytes).rest), show(source[k]!)));
  copied.forEach((bytes, k) => assert.ok(splitTag(bytes).rest.equals(source[k]!), `document ${k + 1}: ${show(bytes)}`));
});

test('a destination that holds documents: refused without --copy-mode; replace makes the source\'s win, keep leaves the destination\'s', async () => {
  const seed = async (name: string) => {
    await coll(a, name).insertMany([{ _id: 1, v: 'a1' }, { _id: 2, v: 'a2' }, { _id: 3, v: 'a3' }]);
    await coll(b, name).insertMany([{ _id: 2, v: 'b2', extra: true }, { _id: 9, v: 'b9' }]);
  };
  await seed('replace');
  const refused = await cli('replicate', '--src=server_a/test.replace', '--dst=server_b/test.replace', '--copy');
  assert.equal(refused.code, 2);
  assert.equal(
    refused.stderr,
    "mmm: server_b/test.replace holds documents already: give --copy-mode replace (the source's versions win) or --copy-mode keep (the destination's stay)\n",
  );
  assert.equal(((await new ReplicationConfigStore(b).source(ID_A))?.links ?? []).some((l) => l.dst === 'test.replace'), false, 'no link made');
  const replaced = await cli('replicate', '--src=server_a/test.replace', '--dst=server_b/test.replace', '--copy', '--copy-mode', 'replace');
  assert.equal(replaced.code, 0, replaced.stderr);
  const strip = (docs: Document[]) => docs.map(({ __mmm, ...d }) => d);
  assert.deepEqual(strip(await coll(b, 'replace').find().sort({ _id: 1 }).toArray()), [
    { _id: 1, v: 'a1' },
    { _id: 2, v: 'a2' },
    { _id: 3, v: 'a3' },
    { _id: 9, v: 'b9' },
  ]);
  await seed('keep');
  const kept = await cli('replicate', '--src=server_a/test.keep', '--dst=server_b/test.keep', '--copy', '--copy-mode=keep');
  assert.equal(kept.code, 0, kept.stderr);
  assert.deepEqual(strip(await coll(b, 'keep').find().sort({ _id: 1 }).toArray()), [
    { _id: 1, v: 'a1' },
    { _id: 2, v: 'b2', extra: true },
    { _id: 3, v: 'a3' },
    { _id: 9, v: 'b9' },
  ]);
  const bad = await cli('replicate', '--src=server_a/test.keep', '--dst=server_b/test.keep2', '--copy-mode=keep');
  assert.deepEqual([bad.code, bad.stderr], [2, 'mmm: --copy-mode goes with --copy\n']);
  const missing = await cli('replicate', '--src=server_a/test.none', '--dst=server_b/test.none', '--copy');
  assert.deepEqual([missing.code, missing.stderr], [2, 'mmm: server_a/test.none does not exist: there is nothing to copy (make the link without --copy)\n']);
  assert.equal(((await new ReplicationConfigStore(b).source(ID_A))?.links ?? []).some((l) => l.dst === 'test.none'), false, 'no link made');
});

test('a document written on the destination during a copy is kept, not overwritten, and the copy goes on', async () => {
  await copyKilledAfter('written', 1);
  // The collection's largest _id: in the last range, which four copiers out of 32 ranges have
  // not reached after one batch.
  const [last] = await coll(a, 'big').find({}, { projection: { _id: 1 } }).sort({ _id: -1 }).limit(1).toArray();
  await coll(b, 'written').insertOne({ _id: last!._id, written: 'on server_b' });
  const result = await cli('replicate', '--src=server_a/test.big', '--dst=server_b/test.written', '--copy');
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /"kept":1,.*"msg":"documents the destination held were kept"/);
  assert.deepEqual(await coll(b, 'written').findOne({ _id: last!._id }, { projection: { __mmm: 0 } }), { _id: last!._id, written: 'on server_b' });
  assert.equal(await coll(b, 'written').countDocuments(), await coll(a, 'big').countDocuments());
});

test('a copy whose start the source\'s oplog no longer holds stops with a clear error, and copies nothing more', async () => {
  const first = await copyKilledAfter('lost', 1);
  // As if the copy had been interrupted for longer than the oplog's window: its start is gone.
  await b.db('mmm').collection('copies').updateOne({ '_id.dst': 'test.lost', '_id.range': { $exists: false } }, { $set: { at: new Timestamp({ t: 1, i: 1 }) } });
  const result = await cli('replicate', '--src=server_a/test.big', '--dst=server_b/test.lost', '--copy');
  assert.equal(result.code, 1);
  assert.match(
    result.stderr,
    /\nmmm: the oplog of server_a no longer holds the copy's start \(Timestamp\(1, 1\); its oldest entry is Timestamp\(\d+, \d+\)\): the writes made since could not be replayed\. Remove the link \(mmm unreplicate\) and copy again, with a larger oplog\n$/,
  );
  assert.equal(await coll(b, 'lost').countDocuments(), first);
  // The link stays marked as being copied: no run follows it.
  assert.equal((await new ReplicationConfigStore(b).source(ID_A))?.links.find((l) => l.dst === 'test.lost')?.copying, true);
  assert.equal((await cli('unreplicate', '--src=server_a/test.big', '--dst=server_b/test.lost')).code, 0);
  assert.equal(await b.db('mmm').collection('copies').countDocuments({ '_id.dst': 'test.lost' }), 0);
});
