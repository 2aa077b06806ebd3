// `mmm run` as a user runs it: the real bin/mmm as a child process, links made with the CLI,
// writes on both sides, then SIGINT or SIGTERM.
import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';
import type { Document, MongoClient } from 'mongodb';
import { ReplicationConfigStore } from '../src/config/store.ts';
import { runCli, ID_A, ID_B, startTwoServers, type TwoServers } from './support/cli.ts';
import { eventually, type TestDoc } from './support/replication.ts';
import { RunProcess } from './support/run-process.ts';


let servers: TwoServers | undefined;
let clients: MongoClient[] = [];
let config: string;

before(async () => {
  servers = await startTwoServers();
  ({ clients, config } = servers);
});

after(async () => {
  await servers?.close();
});

beforeEach(() => Promise.all(clients.map((c) => new ReplicationConfigStore(c).clear())));

const foo = (k: number) => clients[k]!.db('test').collection<TestDoc>('foo');

async function replicate(src: string, dst: string) {
  const result = await runCli(['-c', config, 'replicate', `--src=${src}`, `--dst=${dst}`]);
  assert.equal(result.code, 0, result.stderr);
}

test('run replicates both ways, logs each link once, and stops on SIGINT with exit 0', async () => {
  await replicate('server_a/test.foo', 'server_b/test.foo');
  await replicate('server_b/test.foo', 'server_a/test.foo');
  const run = new RunProcess(config);
  try {
    await eventually('two links started', async () => run.logs('link started').length === 2);
    assert.deepEqual(
      run.logs('link started').map((l) => `${l.src} -> ${l.dst} (${l.ops})`).sort(),
      ['server_a/test.foo -> server_b/test.foo (iud)', 'server_b/test.foo -> server_a/test.foo (iud)'],
    );

    await foo(0).insertOne({ _id: 1, from: 'a' });
    await eventually('the insert on b', async () => (await foo(1).countDocuments({ _id: 1 })) === 1);
    await foo(1).updateOne({ _id: 1 }, { $set: { seen: 'b' } });
    await eventually('the update on a', async () => (await foo(0).findOne({ _id: 1 }))?.seen === 'b');
    await foo(1).insertOne({ _id: 2, from: 'b' });
    await foo(0).deleteOne({ _id: 1 });
    await eventually('both sides equal', async () => {
      const strip = (docs: Document[]) => JSON.stringify(docs.map(({ __mmm, ...d }) => d));
      return strip(await foo(0).find().toArray()) === strip(await foo(1).find().toArray()) && (await foo(1).countDocuments()) === 1;
    });
    assert.deepEqual(await foo(1).find({}, { projection: { __mmm: 0 } }).toArray(), [{ _id: 2, from: 'b' }]);
  } finally {
    const code = await run.stop('SIGINT');
    assert.equal(code, 0, run.stderr);
  }
  assert.equal(run.logs('link stopped').length, 2);
  assert.equal(run.logs('applied').length, 0, 'no line per operation at info level');
  assert.equal(run.stdout, '');
  const checkpoint = await new ReplicationConfigStore(clients[1]!).checkpoint(ID_A);
  assert.ok(checkpoint, 'the checkpoint was recorded');
});

test('SIGTERM stops run just as cleanly; --log-level debug logs each applied operation', async () => {
  await replicate('server_a/test.foo', 'server_b/test.foo');
  const run = new RunProcess(config, ['--log-level', 'debug']);
  await eventually('the link started', async () => run.logs('link started').length === 1);
  await foo(0).insertOne({ _id: 'debug' });
  await eventually('the insert on b', async () => (await foo(1).countDocuments({ _id: 'debug' })) === 1);
  await eventually('its debug line', async () => run.logs('applied').length === 1);
  assert.equal(await run.stop('SIGTERM'), 0, run.stderr);
  assert.deepEqual(run.logs('applied').map((l) => [l.ns, l._id, l.write]), [['test.foo', 'debug', 'insert']]);
  // Each server connected once: the replication goes on with the start-up check's clients.
  assert.deepEqual(run.logs('connected').map((l) => l.server).sort(), ['server_a', 'server_b']);
});

test('run -s replicates into that server only', async () => {
  await replicate('server_a/test.foo', 'server_b/test.foo');
  await replicate('server_b/test.foo', 'server_a/test.foo');
  const run = new RunProcess(config, ['-s', 'server_a']);
  await eventually('one link started', async () => run.logs('link started').length === 1);
  await foo(1).insertOne({ _id: 'to-a' });
  await foo(0).insertOne({ _id: 'stays-on-a' });
  await eventually('the insert on a', async () => (await foo(0).countDocuments({ _id: 'to-a' })) === 1);
  assert.equal(await run.stop('SIGINT'), 0, run.stderr);
  assert.deepEqual(run.logs('link started').map((l) => l.dst), ['server_a/test.foo']);
  assert.equal(await foo(1).countDocuments({ _id: 'stays-on-a' }), 0);
});

test('run with no links says so on one line and exits 2', async () => {
  const result = await runCli(['-c', config, 'run']);
  assert.equal(result.code, 2);
  assert.equal(result.stderr, 'mmm: no replication links to run: add one with `mmm replicate`\n');
});
