// The run's log as an operator reads it: JSON lines for a collector, readable lines with
// --log-format pretty, and one summary line per loop at each interval (ops/s, lag), nothing
// per operation at info.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { MongoClient } from 'mongodb';
import { ReplicationConfigStore } from '../src/config/store.ts';
import { defaultLogFormat } from '../src/log.ts';
import { runCli, ID_A, ID_B, startTwoServers, type TwoServers } from './support/cli.ts';
import { RunProcess } from './support/run-process.ts';
import { eventually, type TestDoc } from './support/replication.ts';


let servers: TwoServers | undefined;
let clients: MongoClient[] = [];
let config: string;

before(async () => {
  servers = await startTwoServers();
  ({ clients, config } = servers);
  await new ReplicationConfigStore(clients[1]!).addLink(ID_A, { src: 'test.foo', dst: 'test.foo', ops: 'iud' });
  await new ReplicationConfigStore(clients[1]!).addLink(ID_A, { src: 'test.bar', dst: 'test.bar', ops: 'iud' });
  await new ReplicationConfigStore(clients[0]!).addLink(ID_B, { src: 'test.foo', dst: 'test.foo', ops: 'iud' });
});

after(async () => {
  await servers?.close();
});

test('one summary line per loop and interval, with ops/s and lag; no line per operation at info', async () => {
  const run = new RunProcess(config, ['--summary-interval', '1']);
  try {
    await run.waitForLog('link started', 3);
    const foo = clients[0]!.db('test').collection<TestDoc>('foo');
    await foo.insertMany([{ _id: 1 }, { _id: 2 }]);
    await foo.updateOne({ _id: 1 }, { $set: { v: 1 } });
    await clients[0]!.db('test').collection<TestDoc>('bar').deleteOne({ _id: 'none' });
    await eventually('the writes on server_b', async () => (await clients[1]!.db('test').collection('foo').countDocuments({ v: 1 })) === 1);
    // Two intervals after the writes: every write falls in some line.
    const seen = run.logs('summary').length;
    await run.waitForLog('summary', seen + 4);
  } finally {
    assert.equal(await run.stop('SIGINT'), 0, run.stderr);
  }
  const lines = run.logs('summary');
  for (const line of lines) {
    assert.equal(line.level, 30, 'info');
    assert.equal(line.state, 'running');
    assert.equal(typeof line.opsPerSec, 'number');
    assert.ok(line.lagSeconds === null || (typeof line.lagSeconds === 'number' && line.lagSeconds >= 0));
  }
  const intoB = lines.filter((l) => l.destination === 'server_b' && l.source === 'server_a');
  const intoA = lines.filter((l) => l.destination === 'server_a' && l.source === 'server_b');
  assert.deepEqual(intoB[0]!.links, ['test.foo <= test.foo', 'test.bar <= test.bar']);
  assert.ok(intoA.length >= 2 && intoB.length >= 2, 'each loop has its own lines');
  // Each line counts what was applied since the one before: together, every write once.
  const sum = (kind: 'i' | 'u' | 'd') => intoB.reduce((n, l) => n + (l.applied[kind] as number), 0);
  assert.deepEqual([sum('i'), sum('u'), sum('d')], [2, 1, 0]);
  assert.ok(intoB.some((l) => l.opsPerSec > 0), 'ops per second while writing');
  assert.equal(intoB.at(-1)!.opsPerSec, 0, 'and 0 once idle');
  // 0 when the last read found nothing new; the no-op the primary logs every 10 s can be
  // in flight at that moment.
  assert.ok(intoB.at(-1)!.lagSeconds < 2, 'caught up');
  assert.equal(run.logs('applied').length, 0, 'no line per operation at info');
});

test('--log-format pretty: readable lines, no JSON; --log-format json: JSON lines', async () => {
  // `status` logs each connection at debug: enough to see the format.
  const [pretty, json] = await Promise.all(
    ['pretty', 'json'].map((format) => runCli(['-c', config, '--log-level', 'debug', '--log-format', format, 'status'])),
  );
  assert.equal(pretty!.code, 0, pretty!.stderr);
  assert.match(pretty!.stderr, /^\[\d\d:\d\d:\d\d\.\d{3}\] DEBUG: connected\n {4}server: "server_a"$/m);
  assert.ok(pretty!.stderr.split('\n').every((l) => !l.startsWith('{')), 'no JSON line');
  assert.doesNotMatch(pretty!.stderr, /\x1b\[/, 'no colours when stderr is not a terminal');
  assert.equal(json!.code, 0, json!.stderr);
  const lines = json!.stderr.trimEnd().split('\n').map((l) => JSON.parse(l) as { msg: string; server: string });
  assert.deepEqual(lines.map((l) => `${l.msg} ${l.server}`).sort(), ['connected server_a', 'connected server_b']);
});

test('without --log-format: pretty on a terminal, JSON otherwise; a bad format is a usage error', async () => {
  assert.equal(defaultLogFormat({ isTTY: true }), 'pretty');
  assert.equal(defaultLogFormat({}), 'json');
  const bad = await runCli(['-c', config, '--log-format', 'xml', 'status']);
  assert.equal(bad.code, 2);
  assert.equal(bad.stderr, "mmm: option '--log-format <format>' argument 'xml' is invalid. Allowed choices are json, pretty.\n");
});
