// A lost oplog window: mmm stopped while its source wrote more than its oplog holds, so the
// checkpoint points at entries that no longer exist. `run` stops the links from that source
// with an error that names source, destination, checkpoint and the oldest entry left, and says
// how to recover; it never skips silently. Links from other sources keep running; `run` exits
// non-zero only when no link is left. `mmm reset-checkpoint` is the way back.
//
// The source's oplog is the smallest mongod 6.0.5 accepts, 1 MB (`--oplogSize` takes whole MB
// above 0). WiredTiger truncates it in steps of at least 16 MB ("oplog stones"), and only behind
// its last checkpoint, so the test writes some 40 MB and has checkpoints every second
// (`--syncdelay 1`) instead of every minute.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Timestamp, type Document, type MongoClient } from 'mongodb';
import { startReplicaSet, startReplicaSets, type ReplicaSet } from '../scripts/replica-sets.ts';
import { ReplicationConfigStore } from '../src/config/store.ts';
import { formatTs } from '../src/oplog/decode.ts';
import { runCli, writeTopology } from './support/cli.ts';
import { eventually } from './support/replication.ts';
import { RunProcess } from './support/run-process.ts';

/** Every `run` a test started: killed at the end, so that a failed test leaves none behind. */
const runs: RunProcess[] = [];
function startRun(...args: ConstructorParameters<typeof RunProcess>): RunProcess {
  const run = new RunProcess(...args);
  runs.push(run);
  return run;
}
after(() => Promise.all(runs.map((r) => r.stop('SIGKILL'))));

const ID = {
  server_a: '2c88ae84-7cb9-40f7-835d-c05e981f564d',
  server_b: '0d9c284b-b47c-40b5-932c-547b8685edd0',
  server_c: 'a2a6ef4c-2a55-4a8f-9b5e-3f4c1d0e9b71',
};

let sets: ReplicaSet[] = [];
let clients: Record<'server_a' | 'server_b' | 'server_c', MongoClient>;
let dir: string;
let config: string;

before(async () => {
  const [tiny, others] = await Promise.all([
    startReplicaSet(1, { oplogSizeMB: 1, args: ['--syncdelay', '1'] }),
    startReplicaSets(2),
  ]);
  sets = [tiny, ...others];
  clients = { server_a: sets[0]!.client(), server_b: sets[1]!.client(), server_c: sets[2]!.client() };
  dir = mkdtempSync(path.join(os.tmpdir(), 'mmm-oplog-window-'));
  config = writeTopology(path.join(dir, 'test.yml'), {
    server_a: { id: ID.server_a, uri: sets[0]!.uri },
    server_b: { id: ID.server_b, uri: sets[1]!.uri },
    server_c: { id: ID.server_c, uri: sets[2]!.uri },
  });
});

after(async () => {
  await Promise.all(Object.values(clients ?? {}).map((c) => c.close()));
  await Promise.all(sets.map((s) => s.destroy()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const mmm = (...args: string[]) => runCli(['-c', config, ...args]);
const coll = (server: keyof typeof clients, name: string) => clients[server].db('test').collection<Document>(name);

async function oplogEdge(server: keyof typeof clients, direction: 1 | -1): Promise<Timestamp> {
  const entry = await clients[server].db('local').collection('oplog.rs').find().sort({ $natural: direction }).limit(1).next();
  return entry!.ts as Timestamp;
}

test('a lost oplog window stops the links from that source with an error saying how to recover; the others run on', async (t) => {
  for (const [src, dst] of [['server_a/test.foo', 'server_b/test.foo'], ['server_c/test.bar', 'server_b/test.bar'], ['server_a/test.foo', 'server_c/test.foo']]) {
    const linked = await mmm('replicate', `--src=${src}`, `--dst=${dst}`);
    assert.equal(linked.code, 0, linked.stderr);
  }
  // A first run records the checkpoints.
  let run = startRun(config);
  await run.waitForLog('link started', 3);
  await coll('server_a', 'foo').insertOne({ _id: 'before' as never });
  await eventually('the first insert on b', async () => (await coll('server_b', 'foo').countDocuments()) === 1);
  assert.equal(await run.stop('SIGINT'), 0, run.stderr);
  const checkpoint = (await new ReplicationConfigStore(clients.server_b).checkpoint(ID.server_a))!;

  // While mmm is stopped, server_a writes more than its oplog holds.
  const written = Date.now();
  const pad = 'x'.repeat(100_000);
  let megabytes = 0;
  while (!(await oplogEdge('server_a', 1)).greaterThan(checkpoint)) {
    await coll('server_a', 'filler').insertMany(Array.from({ length: 10 }, (_, i) => ({ i, pad })));
    megabytes++;
    assert.ok(megabytes < 400, 'the oplog never wrapped');
  }
  await coll('server_a', 'foo').insertOne({ _id: 'lost' as never });
  t.diagnostic(`the 1 MB oplog of server_a lost the checkpoint after ${megabytes} MB of writes (${Date.now() - written} ms)`);

  run = startRun(config);
  try {
    await run.waitForLog('link failed', 2);
    const failed = run.logs('link failed');
    assert.deepEqual(failed.map((l) => `${l.src} -> ${l.dst}`).sort(), ['server_a/test.foo -> server_b/test.foo', 'server_a/test.foo -> server_c/test.foo']);
    const toB = failed.find((l) => l.dst === 'server_b/test.foo')!;
    const oldest = /oldest entry (Timestamp\((\d+), (\d+)\))/.exec(String(toB.err));
    assert.ok(oldest, String(toB.err));
    const oldestTs = new Timestamp({ t: Number(oldest[2]), i: Number(oldest[3]) });
    assert.ok(oldestTs.greaterThan(checkpoint) && !oldestTs.greaterThan(await oplogEdge('server_a', -1)));
    assert.equal(
      toB.err,
      `the oplog of server_a no longer holds the checkpoint of server_b for it (checkpoint ${formatTs(checkpoint)}, oldest entry ${oldest[1]}): ` +
        'changes made on server_a in between are lost to mmm, so its links into server_b stop. ' +
        'To recover: run `mmm reset-checkpoint --src server_a --dst server_b`, copy the replicated collections from server_a to server_b again ' +
        '(e.g. mongodump/mongorestore), then restart `mmm run`',
    );
    t.diagnostic(`the error: ${String(toB.err)}`);

    // The link from server_c into server_b runs on, in the same process.
    assert.ok(run.logs('link started').some((l) => l.src === 'server_c/test.bar'));
    await coll('server_c', 'bar').insertOne({ _id: 'still-replicated' as never });
    await eventually('the insert from c on b', async () => (await coll('server_b', 'bar').countDocuments({ _id: 'still-replicated' as never })) === 1);
    assert.equal(run.child.exitCode, null, 'run goes on while a link is left');
  } finally {
    assert.equal(await run.stop('SIGINT'), 0, run.stderr);
  }
  assert.equal(await coll('server_b', 'foo').countDocuments({ _id: 'lost' as never }), 0, 'nothing from the lost window was applied');
  assert.equal((await new ReplicationConfigStore(clients.server_b).checkpoint(ID.server_a))!.toString(), checkpoint.toString(), 'the checkpoint stays');

  // Into server_c there is no other link: run ends by itself, exit code 1.
  const only = await mmm('run', '-s', 'server_c');
  assert.equal(only.code, 1, only.stderr);
  assert.match(only.stderr, /"msg":"link failed"/);
  assert.ok(only.stderr.endsWith('mmm: no link left running (1 failed; see the log above)\n'), only.stderr);

  // The way back.
  const reset = await mmm('reset-checkpoint', '--src', 'server_a', '--dst', 'server_b');
  const newest = await oplogEdge('server_a', -1);
  assert.deepEqual(reset, {
    code: 0,
    stdout: `Reset checkpoint of server_b for server_a to ${formatTs(newest)}, the newest entry of server_a's oplog (was ${formatTs(checkpoint)})\n`,
    stderr: '',
  });
  assert.equal((await new ReplicationConfigStore(clients.server_b).checkpoint(ID.server_a))!.toString(), newest.toString());
  run = startRun(config, ['-s', 'server_b']);
  try {
    await run.waitForLog('link started', 2);
    await coll('server_a', 'foo').insertOne({ _id: 'after-reset' as never });
    await eventually('the insert after the reset on b', async () => (await coll('server_b', 'foo').countDocuments({ _id: 'after-reset' as never })) === 1);
    assert.deepEqual(run.logs('link failed'), []);
  } finally {
    assert.equal(await run.stop('SIGINT'), 0, run.stderr);
  }
});

test('reset-checkpoint refuses what it cannot do: one line, exit 2, nothing written', async () => {
  const before = await clients.server_a.db('local').collection('mmm').find().toArray();
  const cases: Array<[string[], string]> = [
    [['--src', 'server_x', '--dst', 'server_b'], 'mmm: --src: unknown server "server_x" (the topology has server_a, server_b, server_c)\n'],
    [['--src', 'server_b', '--dst', 'server_b'], 'mmm: --src and --dst are the same server (server_b)\n'],
    [['--src', 'server_b', '--dst', 'server_a'], 'mmm: server_a has no links from server_b: nothing to reset\n'],
    [['--src', 'server_a'], "mmm: required option '-d, --dst <server>' not specified\n"],
  ];
  const results = await Promise.all(cases.map(([args]) => mmm('reset-checkpoint', ...args)));
  for (const [k, [args, stderr]] of cases.entries()) {
    assert.deepEqual(results[k], { code: 2, stdout: '', stderr }, args.join(' '));
  }
  assert.deepEqual(await clients.server_a.db('local').collection('mmm').find().toArray(), before);
});
