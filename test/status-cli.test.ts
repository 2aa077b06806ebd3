// `mmm status` as an operator uses it, against real replica sets: before any run, during one,
// after it stopped or crashed, with a link in error, and with a server down.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Timestamp, type MongoClient } from 'mongodb';
import { freePort, type ReplicaSet } from '../scripts/replica-sets.ts';
import { ReplicationConfigStore } from '../src/config/store.ts';
import type { LoopView, StatusReport } from '../src/status/report.ts';
import { runCli, writeTopology, ID_A, ID_B, startTwoServers, type TwoServers } from './support/cli.ts';
import { RunProcess } from './support/run-process.ts';
import { eventually, type TestDoc } from './support/replication.ts';

const ID_C = '5a1a2f3e-65c9-4b0c-9d8e-3f0e1f2a4b5c';

let servers: TwoServers | undefined;
let sets: ReplicaSet[] = [];
let clients: MongoClient[] = [];
let dir: string;
let config: string;

before(async () => {
  servers = await startTwoServers();
  ({ sets, clients, dir, config } = servers);
  // Links into server_b from server_a; one back, into server_a.
  await store(1).addLink(ID_A, { src: 'test.foo', dst: 'test.foo', ops: 'iud' });
  await store(1).addLink(ID_A, { src: 'test.bar', dst: 'test.bar', ops: 'iu' });
  await store(0).addLink(ID_B, { src: 'test.foo', dst: 'test.foo', ops: 'iud' });
});

after(async () => {
  await servers?.close();
});

const store = (k: number) => new ReplicationConfigStore(clients[k]!);
const coll = (k: number, name: string) => clients[k]!.db('test').collection<TestDoc>(name);

async function status(...args: string[]): Promise<{ code: number | null; report: StatusReport; stderr: string }> {
  const result = await runCli(['-c', config, ...args, 'status', '--json']);
  assert.equal(result.stderr, '');
  return { code: result.code, report: JSON.parse(result.stdout) as StatusReport, stderr: result.stderr };
}

function loop(report: StatusReport, destination: string, source: string): LoopView {
  const found = report.loops.find((l) => l.destination === destination && l.source === source);
  assert.ok(found, `no loop ${destination} <= ${source} in ${JSON.stringify(report)}`);
  return found;
}

/** What the run recorded for the loop into `k` from `sourceId`, straight from the metadata. */
async function recorded(k: number, sourceId: string) {
  return (await store(k).sources()).find((s) => s.sourceId === sourceId)?.status;
}

test('before any run: every link never started, no checkpoint, and each oplog window', async () => {
  const [{ code, report }, table] = await Promise.all([status(), runCli(['-c', config, 'status'])]);
  assert.equal(code, 0);
  assert.deepEqual(
    report.loops.map((l) => [l.destination, l.source, l.state, l.checkpoint, l.lagSeconds, l.applied, l.run]),
    [
      ['server_a', 'server_b', 'never started', null, null, null, null],
      ['server_b', 'server_a', 'never started', null, null, null, null],
    ],
  );
  assert.deepEqual(loop(report, 'server_b', 'server_a').links, [
    { dst: 'test.foo', src: 'test.foo', ops: 'iud', state: 'never started' },
    { dst: 'test.bar', src: 'test.bar', ops: 'iu', state: 'never started' },
  ]);
  for (const server of report.servers) {
    assert.equal(server.reachable, true);
    assert.ok(server.oplog, `${server.name} has an oplog window`);
    assert.ok(server.oplog.newest.t >= server.oplog.oldest.t);
    assert.equal(server.oplog.sizeMB, 128, 'the suite starts mongod with a 128 MB oplog');
  }

  assert.equal(table.code, 0, table.stderr);
  const lines = table.stdout.split('\n');
  assert.match(lines[0]!, /^LINK +OPS +STATE +CHECKPOINT +LAG +APPLIED i\/u\/d$/);
  assert.match(table.stdout, /^server_b\/test\.bar <= server_a\/test\.bar +iu +never started$/m);
  assert.match(table.stdout, /^OPLOG +WINDOW +OLDEST +NEWEST +USED$/m);
});

test('during a run: running, lag near 0, writes counted by kind; a link added meanwhile is followed, counts kept', async () => {
  const run = new RunProcess(config, ['--status-interval', '0.5']);
  try {
    await run.waitForLog('link started', 3);
    await coll(0, 'foo').insertMany([{ _id: 1 }, { _id: 2 }, { _id: 3 }]);
    await coll(0, 'foo').updateOne({ _id: 1 }, { $set: { v: 1 } });
    await coll(0, 'foo').deleteOne({ _id: 2 });
    await coll(0, 'bar').insertOne({ _id: 'bar' });
    await coll(1, 'foo').insertOne({ _id: 'from-b' });
    await eventually('the counts recorded', async () => {
      const a = await recorded(1, ID_A);
      const b = await recorded(0, ID_B);
      return a?.applied.i === 4 && a.applied.u === 1 && a.applied.d === 1 && b?.applied.i === 1;
    });
    await store(1).addLink(ID_A, { src: 'test.new', dst: 'test.new', ops: 'iud' });
    // The run picks it up within a few seconds, restarting that loop: its counters carry over.
    await eventually('the new link followed', async () => {
      const { report } = await status();
      return loop(report, 'server_b', 'server_a').links.some((l) => l.src === 'test.new' && l.state === 'running');
    });

    const { code, report } = await status();
    assert.equal(code, 0);
    const intoB = loop(report, 'server_b', 'server_a');
    assert.equal(intoB.state, 'running');
    assert.equal(intoB.error, null);
    assert.deepEqual(intoB.applied, { i: 4, u: 1, d: 1 });
    assert.equal(intoB.missed, 0);
    assert.equal(intoB.refused, 0);
    assert.ok(intoB.lagSeconds !== null && intoB.lagSeconds <= 2, `lag ${intoB.lagSeconds} s`);
    assert.ok(intoB.checkpoint && intoB.checkpoint.t > 0);
    assert.equal(intoB.checkpoint.time, new Date(intoB.checkpoint.t * 1000).toISOString().replace('.000Z', 'Z'));
    assert.equal(intoB.run?.pid, run.child.pid);
    assert.equal(intoB.run?.recordedState, 'running');
    assert.ok(intoB.run.heartbeatAgeSeconds < 3, `heartbeat ${intoB.run.heartbeatAgeSeconds} s old`);
    assert.deepEqual(
      intoB.links.map((l) => `${l.src} ${l.state}`),
      ['test.foo running', 'test.bar running', 'test.new running'],
    );
    assert.deepEqual(loop(report, 'server_a', 'server_b').applied, { i: 1, u: 0, d: 0 });
    assert.deepEqual(intoB.warnings, []);
  } finally {
    assert.equal(await run.stop('SIGINT'), 0, run.stderr);
    await store(1).removeLink(ID_A, 'test.new', 'test.new');
  }

  // After a clean stop: stopped, with the run's counts kept.
  const [{ report }, table] = await Promise.all([status(), runCli(['-c', config, 'status'])]);
  const intoB = loop(report, 'server_b', 'server_a');
  assert.equal(intoB.state, 'stopped');
  assert.equal(intoB.run?.recordedState, 'stopped');
  assert.deepEqual(intoB.applied, { i: 4, u: 1, d: 1 });
  assert.equal(loop(report, 'server_a', 'server_b').state, 'stopped');
  assert.match(table.stdout, /^server_b\/test\.foo <= server_a\/test\.foo +iud +stopped +Timestamp\(\d+, \d+\) \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ +\d+ s +4\/1\/1$/m);
  assert.match(table.stdout, new RegExp(`^server_b <= server_a: stopped \\(last run on .+, pid ${run.child.pid}, from .+ to .+\\)$`, 'm'));
});

test('a run that dies without stopping shows as stopped once its heartbeat is old', async () => {
  const run = new RunProcess(config, ['--status-interval', '0.5', '-s', 'server_a']);
  try {
    await eventually('the run recorded', async () => (await recorded(0, ID_B))?.pid === run.child.pid);
    assert.equal(loop((await status()).report, 'server_a', 'server_b').state, 'running');
  } finally {
    await run.stop('SIGKILL');
  }
  assert.equal((await recorded(0, ID_B))?.state, 'running', 'the killed run could not record its end');
  // Stale after three heartbeat intervals and 2 s of slack.
  await new Promise((resolve) => setTimeout(resolve, 3_600));
  const intoA = loop((await status()).report, 'server_a', 'server_b');
  assert.equal(intoA.state, 'stopped');
  assert.equal(intoA.run?.recordedState, 'running');
  assert.match(intoA.warnings.join('\n'), /recorded running but nothing since \d+ s: it ended without stopping cleanly/);
});

test('a link in error: the run stops it, and status shows the error and the lost oplog window', async () => {
  // As if mmm had been stopped longer than server_a's oplog covers: the checkpoint is older
  // than its oldest entry.
  await store(1).saveCheckpoint(ID_A, new Timestamp({ t: 1_000_000, i: 1 }));
  const run = new RunProcess(config, ['-s', 'server_b']);
  assert.equal(await run.exited, 1, 'no link left running');
  assert.equal(run.logs('link failed').length, 2);

  const [{ report }, table] = await Promise.all([status(), runCli(['-c', config, 'status'])]);
  const intoB = loop(report, 'server_b', 'server_a');
  assert.equal(intoB.state, 'error');
  assert.match(intoB.error?.message ?? '', /the oplog of server_a no longer holds the checkpoint of server_b/);
  assert.deepEqual(intoB.links.map((l) => l.state), ['error', 'error']);
  assert.deepEqual(intoB.checkpoint, { t: 1_000_000, i: 1, time: '1970-01-12T13:46:40Z' });
  assert.match(intoB.warnings.join('\n'), /the checkpoint is older than server_a's oldest oplog entry: the changes in between are lost/);
  assert.equal(loop(report, 'server_a', 'server_b').state, 'stopped', 'the other loop is not touched');
  assert.match(table.stdout, /^server_b\/test\.foo <= server_a\/test\.foo +iud +error +Timestamp\(1000000, 1\) 1970-01-12T13:46:40Z/m);
  assert.match(table.stdout, /^server_b <= server_a: error \(last run on .+\)\n {2}error at \S+Z: the oplog of server_a no longer holds/m);
  assert.match(table.stdout, /^ {2}warning: the checkpoint is older than server_a's oldest oplog entry/m);
});

test('a server down: status reports the rest, marks it unreachable, and exits 1', async () => {
  const withC = writeTopology(path.join(dir, 'with-c.yml'), {
    server_a: { id: ID_A, uri: sets[0]!.uri },
    server_b: { id: ID_B, uri: sets[1]!.uri },
    server_c: { id: ID_C, uri: `mongodb://127.0.0.1:${await freePort()}/` },
  });
  await store(1).addLink(ID_C, { src: 'test.foo', dst: 'test.foo', ops: 'iud' });
  try {
    const [result, table] = await Promise.all([
      runCli(['-c', withC, '--connect-timeout', '1', 'status', '--json']),
      runCli(['-c', withC, '--connect-timeout', '1', 'status']),
    ]);
    assert.equal(result.code, 1);
    const report = JSON.parse(result.stdout) as StatusReport;
    const c = report.servers.find((s) => s.name === 'server_c')!;
    assert.equal(c.reachable, false);
    assert.equal(c.oplog, null);
    assert.match(c.error ?? '', /^server_c \(mongodb:\/\/127\.0\.0\.1:\d+\/\): unreachable/);
    assert.equal(report.servers.filter((s) => s.reachable).length, 2);
    const fromC = loop(report, 'server_b', 'server_c');
    assert.equal(fromC.state, 'never started');
    assert.deepEqual(fromC.warnings, ['server_c is unreachable: lag and oplog window unknown']);
    assert.equal(loop(report, 'server_a', 'server_b').state, 'stopped');
    assert.equal(table.code, 1);
    assert.match(table.stdout, /^server_c: unreachable: server_c \(mongodb:/m);
    assert.match(table.stdout, /^server_a\/test\.foo <= server_b\/test\.foo +iud +stopped/m);
  } finally {
    await store(1).removeLink(ID_C, 'test.foo', 'test.foo');
  }
});

test('a damaged status record is ignored: dump-config and status still read the links', async () => {
  await clients[0]!.db('local').collection('mmm').updateMany({}, { $set: { status: { state: 'dancing' } } });
  const [dump, { report }] = await Promise.all([runCli(['-c', config, 'dump-config']), status()]);
  assert.equal(dump.code, 0, dump.stderr);
  assert.match(dump.stdout, /- test\.foo <= server_b\/test\.foo/);
  const intoA = loop(report, 'server_a', 'server_b');
  assert.equal(intoA.state, 'stopped', 'a checkpoint without a readable record: it ran, and is not running');
  assert.equal(intoA.run, null);
});
