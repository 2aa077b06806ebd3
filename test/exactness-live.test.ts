// What a user does to a running replication, with the real CLI and `mmm run` as a process: add
// and remove links while it runs (or while it is stopped), make the destination refuse writes
// (a unique index, a document too large once tagged), and kill a run while the destination is
// still executing one of its writes.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { BSON, type Document, type MongoClient, type Timestamp } from 'mongodb';
import { startReplicaSets, type ReplicaSet } from '../scripts/replica-sets.ts';
import { ReplicationConfigStore } from '../src/config/store.ts';
import { ID_A, ID_B, runCli, writeTopology } from './support/cli.ts';
import { eventually, type TestDoc } from './support/replication.ts';
import { RunProcess } from './support/run-process.ts';

let sets: ReplicaSet[] = [];
let a: MongoClient;
let b: MongoClient;
let dir: string;
let config: string;

before(async () => {
  // Test commands: the fail point of the last test.
  sets = await startReplicaSets(2, { args: ['--setParameter', 'enableTestCommands=1'] });
  [a, b] = sets.map((s) => s.client()) as [MongoClient, MongoClient];
  dir = mkdtempSync(path.join(os.tmpdir(), 'mmm-live-'));
  config = writeTopology(path.join(dir, 'test.yml'), { server_a: { id: ID_A, uri: sets[0]!.uri }, server_b: { id: ID_B, uri: sets[1]!.uri } });
});

after(async () => {
  await Promise.all([a, b].map((c) => c?.close()));
  await Promise.all(sets.map((s) => s.destroy()));
  rmSync(dir, { recursive: true, force: true });
});

const coll = (client: MongoClient, name: string) => client.db('test').collection<TestDoc>(name);

async function cli(...args: string[]) {
  const result = await runCli(['-c', config, ...args]);
  assert.equal(result.code, 0, result.stderr);
  return result;
}

async function newest(client: MongoClient): Promise<Timestamp> {
  return (await client.db('local').collection('oplog.rs').find().sort({ $natural: -1 }).limit(1).next())!.ts as Timestamp;
}

/** Waits until B's checkpoint for A has passed `ts`: everything A logged up to it is applied. */
async function appliedUpTo(ts: Timestamp): Promise<void> {
  const store = new ReplicationConfigStore(b);
  await eventually('the checkpoint to pass the write', async () => (await store.checkpoint(ID_A))?.greaterThanOrEqual(ts) ?? false);
}

const withoutTag = (docs: Document[]) => docs.map(({ __mmm, ...rest }) => Buffer.from(BSON.serialize(rest)).toString('hex'));

async function sameOnBoth(name: string): Promise<void> {
  const read = (client: MongoClient) => coll(client, name).find({}, { promoteValues: false }).sort({ _id: 1 }).toArray();
  await eventually(`test.${name} equal on both servers`, async () => JSON.stringify(withoutTag(await read(a))) === JSON.stringify(withoutTag(await read(b))));
}

test('a link added while run runs replicates what is written from the moment replicate returned, with no restart; a removed one stops', async () => {
  await cli('replicate', '--src=server_a/test.foo', '--dst=server_b/test.foo');
  const run = new RunProcess(config, ['--status-interval', '1']);
  try {
    await run.waitForLog('link started');
    // Writes keep the loop's checkpoint moving past the moment the new link is made, before
    // the run can see it: the run must go back for the new link's writes.
    let writing = true;
    const load = (async () => {
      for (let k = 0; writing; k++) await coll(a, 'foo').insertOne({ _id: `load${k}` });
    })();
    await coll(a, 'bar').insertOne({ _id: 'before', note: 'written before the link existed' });
    await eventually('a status heartbeat', async () => (await new ReplicationConfigStore(b).source(ID_A))?.status?.state === 'running');
    const made = await cli('replicate', '--src=server_a/test.bar', '--dst=server_b/test.bar');
    await coll(a, 'bar').insertOne({ _id: 'after', note: 'written right after replicate returned' });
    assert.equal(made.stderr, `mmm: a running \`mmm run\` (pid ${run.child.pid} on ${os.hostname()}): it follows this change within a few seconds\n`);
    await eventually('the write on the new link', async () => (await coll(b, 'bar').countDocuments({ _id: 'after' })) === 1);
    writing = false;
    await load;
    await appliedUpTo(await newest(a));
    assert.equal(await coll(b, 'bar').countDocuments({ _id: 'before' }), 0, 'the link counts from when it was made');
    await sameOnBoth('foo');

    const removed = await cli('unreplicate', '--src=server_a/test.bar', '--dst=server_b/test.bar');
    assert.match(removed.stderr, /it stops this link within a few seconds\n$/);
    // Started once, then again with test.bar, then again without it.
    await run.waitForLog('link started', 4);
    await coll(a, 'bar').insertOne({ _id: 'unlinked' });
    await appliedUpTo(await newest(a));
    assert.equal(await coll(b, 'bar').countDocuments({ _id: 'unlinked' }), 0, run.stderr);
    assert.equal(run.logs('link failed').length, 0, run.stderr);
  } finally {
    assert.equal(await run.stop(), 0, run.stderr);
  }

  // Made while no run runs: the next run starts it from when it was made.
  await coll(a, 'baz').insertOne({ _id: 'before' });
  await cli('replicate', '--src=server_a/test.baz', '--dst=server_b/test.baz');
  await coll(a, 'baz').insertOne({ _id: 'after' });
  const again = new RunProcess(config);
  try {
    await eventually('the write made while run was stopped', async () => (await coll(b, 'baz').countDocuments({ _id: 'after' })) === 1);
    await appliedUpTo(await newest(a));
    assert.equal(await coll(b, 'baz').countDocuments({ _id: 'before' }), 0);
  } finally {
    assert.equal(await again.stop(), 0, again.stderr);
  }
  await cli('unreplicate', '--src=server_a/test.foo', '--dst=server_b/test.foo');
  await cli('unreplicate', '--src=server_a/test.baz', '--dst=server_b/test.baz');
});

/** Runs `mmm status --json` and returns the loop from A into B. */
async function statusOfLoop(): Promise<Document> {
  const result = await runCli(['-c', config, 'status', '--json']);
  const loops = (JSON.parse(result.stdout) as Document).loops as Document[];
  return loops.find((l) => l.source === 'server_a' && l.destination === 'server_b')!;
}

test('a document too large once tagged, and a unique index conflict, are kept in mmm.refused; the direction goes on; the count survives a restart', async () => {
  await cli('replicate', '--src=server_a/test.big', '--dst=server_b/test.big');
  await cli('replicate', '--src=server_a/test.uniq', '--dst=server_b/test.uniq');
  await coll(b, 'uniq').createIndex({ k: 1 }, { unique: true });
  await coll(b, 'uniq').insertOne({ _id: 'on b', k: 1 });
  const run = new RunProcess(config, ['--status-interval', '1']);
  try {
    await run.waitForLog('link started', 2);
    // The source takes 16,777,208 bytes, 8 under the 16 MiB limit; with `__mmm` (about 60
    // bytes) added the document passes it.
    const filler = 16_777_208 - BSON.calculateObjectSize({ _id: 'huge', s: '' });
    await coll(a, 'big').insertOne({ _id: 'huge', s: 'x'.repeat(filler) });
    assert.equal(BSON.calculateObjectSize((await coll(a, 'big').findOne({ _id: 'huge' }))!), 16_777_208);
    await coll(a, 'uniq').insertOne({ _id: 'on a', k: 1 });
    await coll(a, 'big').insertOne({ _id: 'small', after: true });
    await coll(a, 'uniq').insertOne({ _id: 'other', k: 2 });
    await eventually('the writes after the refused ones', async () => (await coll(b, 'big').countDocuments({ _id: 'small' })) === 1 && (await coll(b, 'uniq').countDocuments({ _id: 'other' })) === 1);
    const kept = await b.db('mmm').collection('refused').find({}, { projection: { operation: 0 } }).sort({ ns: 1 }).toArray();
    assert.deepEqual(kept.map((r) => [r.ns, r.docId, r.op, r.source, r.origin]), [
      ['test.big', 'huge', 'i', ID_A, ID_A],
      ['test.uniq', 'on a', 'i', ID_A, ID_A],
    ]);
    assert.equal(kept[1]!.error.code, 11000);
    const logged = run.logs('destination refused a write; it is kept in mmm.refused');
    assert.deepEqual(logged.map((l) => [l.ns, l._id]).sort(), [['test.big', 'huge'], ['test.uniq', 'on a']]);
    await eventually('status to count them', async () => (await statusOfLoop()).refused === 2);
  } finally {
    assert.equal(await run.stop(), 0, run.stderr);
  }
  const again = new RunProcess(config);
  try {
    await again.waitForLog('link started', 2);
    await eventually('status to count them after the restart', async () => (await statusOfLoop()).refused === 2);
  } finally {
    assert.equal(await again.stop(), 0, again.stderr);
  }
  const text = await runCli(['-c', config, 'status']);
  assert.match(text.stdout, /0 updates found no document, 2 writes refused by server_b \(kept in its mmm\.refused\)/);
});

test('with --on-refused stop, a refused write stops its link, naming the namespace and _id', async () => {
  await coll(a, 'uniq').insertOne({ _id: 'stopper', k: 3 });
  await coll(b, 'uniq').insertOne({ _id: 'taken', k: 4 });
  await coll(a, 'uniq').updateOne({ _id: 'stopper' }, { $set: { k: 4 } });
  const run = new RunProcess(config, ['--on-refused', 'stop']);
  const [failed] = await run.waitForLog('link failed');
  assert.match(String(failed!.err), /^the destination refused a write to test\.uniq \(_id "stopper"\): .*E11000.*; it is kept in mmm\.refused/);
  // Both links share the loop from server_a, which is the only one: run has nothing left.
  assert.equal(await run.exited, 1);
  assert.equal(await b.db('mmm').collection('refused').countDocuments({ docId: 'stopper' }), 1);
  await coll(b, 'uniq').deleteOne({ _id: 'taken' });
  await b.db('mmm').collection('refused').deleteMany({});
  await cli('unreplicate', '--src=server_a/test.big', '--dst=server_b/test.big');
  await cli('unreplicate', '--src=server_a/test.uniq', '--dst=server_b/test.uniq');
});

test("a write of a killed run that the destination executes after the restart's replay changes nothing", async () => {
  await cli('replicate', '--src=server_a/test.zombie', '--dst=server_b/test.zombie');
  const first = new RunProcess(config);
  // mmm's connections are named `mmm <pid>@<host>`: the fail point holds the first run's first
  // insert command (the batch's writes, after the transaction's marker, an update) for 5 s.
  await b.db('admin').command({
    configureFailPoint: 'failCommand',
    mode: 'alwaysOn',
    data: { failCommands: ['insert'], blockConnection: true, blockTimeMS: 5000, appName: `mmm ${first.child.pid}@${os.hostname()}` },
  });
  try {
    await first.waitForLog('link started');
    await coll(a, 'zombie').insertOne({ _id: 1, list: [] });
    for (let k = 0; k < 20; k++) await coll(a, 'zombie').updateOne({ _id: 1 }, { $push: { list: k } } as Document);
    await eventually('the first run to be held', async () => {
      const ops = await b.db('admin').aggregate([{ $currentOp: { allUsers: true } }, { $match: { appName: `mmm ${first.child.pid}@${os.hostname()}`, 'command.insert': 'zombie' } }]).toArray();
      return ops.length > 0;
    });
    await first.stop('SIGKILL');
    await coll(a, 'zombie').updateOne({ _id: 1 }, { $push: { list: 'after the kill' } } as Document);
    const second = new RunProcess(config);
    try {
      await appliedUpTo(await newest(a));
      // The held command runs once its 5 s are over, in a transaction that can never commit.
      await eventually('the held command to end', async () => {
        const ops = await b.db('admin').aggregate([{ $currentOp: { allUsers: true, idleSessions: false } }, { $match: { 'command.insert': 'zombie', appName: `mmm ${first.child.pid}@${os.hostname()}` } }]).toArray();
        return ops.length === 0;
      });
      await coll(a, 'zombie').updateOne({ _id: 1 }, { $push: { list: 'last' } } as Document);
      await sameOnBoth('zombie');
      assert.deepEqual((await coll(b, 'zombie').findOne({ _id: 1 }))!.list.slice(-2), ['after the kill', 'last']);
    } finally {
      assert.equal(await second.stop(), 0, second.stderr);
    }
  } finally {
    await b.db('admin').command({ configureFailPoint: 'failCommand', mode: 'off' });
    await first.stop('SIGKILL');
  }
});
