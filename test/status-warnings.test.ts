// DDL that mmm does not replicate, as a user meets it: test.foo linked both ways, `mmm run`
// running, then a `$out` into test.foo and a dropDatabase on server_a. Each is logged as a
// warning with the replicated namespace it affects, and `mmm status` shows it under its loop,
// also once the run has stopped.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Document } from 'mongodb';
import type { StatusReport } from '../src/status/report.ts';
import { ID_A, ID_B, runCli, startTwoServers, type TwoServers } from './support/cli.ts';
import { RunProcess } from './support/run-process.ts';
import { eventually, type TestDoc } from './support/replication.ts';
import { ReplicationConfigStore } from '../src/config/store.ts';

let servers: TwoServers | undefined;
let run: RunProcess | undefined;

before(async () => {
  servers = await startTwoServers();
  // As status-cli.test.ts: links without a `since`, so that the run does not restart its loops
  // (and their counts and warnings) once it has passed it.
  await new ReplicationConfigStore(servers.clients[1]!).addLink(ID_A, { src: 'test.foo', dst: 'test.foo', ops: 'iud' });
  await new ReplicationConfigStore(servers.clients[0]!).addLink(ID_B, { src: 'test.foo', dst: 'test.foo', ops: 'iud' });
});

after(async () => {
  await run?.stop('SIGKILL');
  await servers?.close();
});

const coll = (k: number, name: string) => servers!.clients[k]!.db('test').collection<TestDoc>(name);

const OUT =
  '$out into test.foo is not replicated: it replaced the collection on server_a only (the other servers keep the documents they had); ' +
  'do it on every server, or copy the collection from server_a';
const DROP =
  'drop of test.foo is not replicated: the collection and its documents are gone on server_a only; drop it on every server, or copy it back to server_a';
const DROP_DATABASE =
  'dropDatabase of test is not replicated: its replicated collections (test.foo) are gone on server_a only; ' +
  'drop them on every server, or copy them back to server_a';

async function status(): Promise<{ report: StatusReport; table: string }> {
  const [json, table] = await Promise.all([
    runCli(['-c', servers!.config, 'status', '--json']),
    runCli(['-c', servers!.config, 'status']),
  ]);
  assert.equal(json.code, 0, json.stderr);
  assert.equal(table.code, 0, table.stderr);
  return { report: JSON.parse(json.stdout) as StatusReport, table: table.stdout };
}

/** The warnings server_b's loop from server_a has recorded. */
async function recorded(): Promise<number> {
  const source = (await new ReplicationConfigStore(servers!.clients[1]!).sources()).find((s) => s.sourceId === ID_A);
  return source?.status?.warnings?.length ?? 0;
}

/** The time `status` shows for the warning logged at `line.ts`: the entry's seconds, UTC. */
function at(line: Document): string {
  const [, seconds] = /^Timestamp\((\d+), \d+\)$/.exec(String(line.ts)) ?? [];
  assert.ok(seconds, `a position in ${JSON.stringify(line)}`);
  return new Date(Number(seconds) * 1000).toISOString().replace('.000Z', 'Z');
}

test('$out into a replicated collection, then dropDatabase: a warning each, in the log and in status', async () => {
  const { config } = servers!;
  run = new RunProcess(config, ['--status-interval', '0.5']);
  await run.waitForLog('link started', 2);
  await coll(0, 'foo').insertOne({ _id: 'before' });
  await eventually('the insert on server_b', async () => (await coll(1, 'foo').countDocuments({ _id: 'before' })) === 1);

  await coll(0, 'src').insertMany([{ _id: 1 }, { _id: 2 }]);
  await coll(0, 'src').aggregate([{ $match: {} }, { $out: 'foo' }]).toArray();
  const [out] = await run.waitForLog(OUT);
  assert.deepEqual(
    { level: out!.level, source: out!.source, destination: out!.destination, command: out!.command, ns: out!.ns },
    { level: 40, source: 'server_a', destination: 'server_b', command: 'renameCollection', ns: 'test.foo' },
  );
  // What the warning is about: server_b still has the collection as it was.
  assert.deepEqual((await coll(1, 'foo').find().toArray()).map((d) => d._id), ['before']);

  await eventually('the warning recorded', async () => (await recorded()) === 1);
  {
    const { report, table } = await status();
    const intoB = report.loops.find((l) => l.destination === 'server_b')!;
    assert.deepEqual(intoB.notReplicated, [{ command: 'renameCollection', ns: 'test.foo', message: OUT, at: at(out!) }]);
    assert.deepEqual(report.loops.find((l) => l.destination === 'server_a')!.notReplicated, []);
    assert.match(table, new RegExp(`^server_b <= server_a: running .*\\n {2}warning at ${at(out!)}: \\$out into test\\.foo is not replicated: `, 'm'));
  }

  await servers!.clients[0]!.db('test').dropDatabase();
  const [dropped] = await run.waitForLog(DROP_DATABASE);
  assert.deepEqual({ command: dropped!.command, ns: dropped!.ns }, { command: 'dropDatabase', ns: 'test' });
  const [drop] = run.logs(DROP);
  assert.equal(drop?.ns, 'test.foo', 'the drop of the collection, logged before the database');
  assert.ok(!run.logs().some((l) => l.ns === 'test.1'), 'no warning names test.1');

  assert.equal(await run.stop('SIGINT'), 0, run.stderr);
  // Kept once the run has stopped, oldest first.
  const { report, table } = await status();
  const intoB = report.loops.find((l) => l.destination === 'server_b')!;
  assert.equal(intoB.state, 'stopped');
  assert.deepEqual(intoB.notReplicated, [
    { command: 'renameCollection', ns: 'test.foo', message: OUT, at: at(out!) },
    { command: 'drop', ns: 'test.foo', message: DROP, at: at(drop!) },
    { command: 'dropDatabase', ns: 'test', message: DROP_DATABASE, at: at(dropped!) },
  ]);
  assert.ok(table.includes(`\n  warning at ${at(dropped!)}: ${DROP_DATABASE}\n`), table);
});
