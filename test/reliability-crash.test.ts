// Crashes: `mmm run` (the real bin/mmm) killed with SIGKILL at random moments while both sides
// of a two-way link take a steady load of inserts, updates of every kind and deletes, and
// restarted each time. Each restart replays from its checkpoint; the replays must converge. At
// the end both sides hold the same documents, byte for byte apart from `__mmm`, and exactly
// those their writers left: nothing lost, nothing duplicated or brought back.
//
// The seed is printed; rerun a failure with MMM_TEST_SEED=<seed>.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { MongoClient, type Document } from 'mongodb';
import { pino } from 'pino';
import { startReplicaSets, type ReplicaSet } from '../scripts/replica-sets.ts';
import { abortAbandonedTransactions } from '../src/apply/abandoned.ts';
import { ReplicationConfigStore } from '../src/config/store.ts';
import { APP_NAME } from '../src/connect-settings.ts';
import { runCli, writeTopology } from './support/cli.ts';
import { differences, WriteLoad } from './support/load.ts';
import { seededRandom } from './support/random-updates.ts';
import { addLink, eventually, settle, startCluster, startMmm } from './support/replication.ts';
import { RunProcess } from './support/run-process.ts';

/** Every `run` a test started: killed at the end, so that a failed test leaves none behind. */
const runs: RunProcess[] = [];
function startRun(...args: ConstructorParameters<typeof RunProcess>): RunProcess {
  const run = new RunProcess(...args);
  runs.push(run);
  return run;
}
after(() => Promise.all(runs.map((r) => r.stop('SIGKILL'))));

const SEED = Number(process.env.MMM_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
const KILLS = 12;

let sets: ReplicaSet[] = [];
let clients: MongoClient[] = [];
let dir: string;
let config: string;

before(async () => {
  sets = await startReplicaSets(2);
  clients = sets.map((s) => s.client());
  dir = mkdtempSync(path.join(os.tmpdir(), 'mmm-crash-'));
  config = writeTopology(path.join(dir, 'test.yml'), {
    server_a: { id: '2c88ae84-7cb9-40f7-835d-c05e981f564d', uri: sets[0]!.uri },
    server_b: { id: '0d9c284b-b47c-40b5-932c-547b8685edd0', uri: sets[1]!.uri },
  });
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(sets.map((s) => s.destroy()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Complete stderr lines of a run that are not logs below `warn`: what went wrong, if anything. */
function problems(run: RunProcess): string[] {
  const lines = run.stderr.split('\n').slice(0, -1); // a SIGKILL may cut the last line short
  return lines.filter((line) => {
    try {
      return (JSON.parse(line) as { level: number }).level >= 40;
    } catch {
      return true;
    }
  });
}

test(`${KILLS} SIGKILLs of mmm run at random moments under load both ways: both sides end identical, nothing lost or duplicated`, async (t) => {
  t.diagnostic(`seed ${SEED} (rerun with MMM_TEST_SEED=${SEED})`);
  const random = seededRandom(SEED);
  const foo = (k: number) => clients[k]!.db('test').collection<Document>('foo');
  for (const [src, dst] of [['server_a', 'server_b'], ['server_b', 'server_a']]) {
    const linked = await runCli(['-c', config, 'replicate', `--src=${src}/test.foo`, `--dst=${dst}/test.foo`]);
    assert.equal(linked.code, 0, linked.stderr);
  }
  // The first run records where each link starts; the load begins after that.
  let run = startRun(config);
  await run.waitForLog('link started', 2);
  const loads = [new WriteLoad(foo(0), 'a', SEED + 1).start(), new WriteLoad(foo(1), 'b', SEED + 2).start()];

  const delays: number[] = [];
  let startedBeforeKill = 0;
  let abandoned = 0;
  try {
    for (let kill = 0; kill < KILLS; kill++) {
      // From the moment of spawning: some kills land while it connects, most while it applies.
      const delay = Math.round(300 + random() * 2200);
      delays.push(delay);
      await sleep(delay);
      if (run.logs('link started').length === 2) startedBeforeKill++;
      assert.equal(await run.stop('SIGKILL'), null, `run ${kill} ended before it was killed:\n${run.stderr}`);
      assert.deepEqual(problems(run), [], `run ${kill} logged a problem`);
      abandoned += run.logs('aborted transactions mmm had left open').reduce((n, l) => n + Number(l.transactions), 0);
      run = startRun(config);
    }
    await run.waitForLog('link started', 2);
    await sleep(1000);
  } finally {
    await Promise.all(loads.map((l) => l.stop()));
  }

  const caughtUp = Date.now();
  let diff: string | undefined;
  try {
    await eventually('both sides to hold the same documents', async () => (diff = await differences(foo(0), foo(1))) === undefined, 60_000);
  } catch (err) {
    throw new Error(`${(err as Error).message}: ${diff}\nthe last run's log:\n${run.stderr}`);
  }
  const convergedMs = Date.now() - caughtUp;
  assert.equal(await run.stop('SIGINT'), 0, run.stderr);
  assert.deepEqual(problems(run), [], 'the last run logged a problem');
  abandoned += run.logs('aborted transactions mmm had left open').reduce((n, l) => n + Number(l.transactions), 0);

  // Exactly what the writers left, on both sides.
  const expected = [...loads[0]!.live, ...loads[1]!.live].sort();
  for (const k of [0, 1]) {
    const ids = (await foo(k).find({}, { projection: { _id: 1 } }).sort({ _id: 1 }).toArray()).map((d) => String(d._id));
    assert.deepEqual(ids, expected, `server ${k} holds other documents than its writers left`);
  }
  for (const load of loads) {
    assert.equal(load.failures, 0, 'a write of the load failed');
    assert.equal(load.vanished, 0, 'a document vanished from its own side');
  }
  t.diagnostic(`kills: ${KILLS} (${startedBeforeKill} after the links had started), after ${delays.join(', ')} ms`);
  t.diagnostic(`writes: ${loads[0]!.writes} on server_a, ${loads[1]!.writes} on server_b; documents at the end: ${expected.length}`);
  t.diagnostic(`converged ${convergedMs} ms after the load stopped`);
  t.diagnostic(`transactions a killed run left open, aborted by the next: ${abandoned}`);
});

test('a replay over writes that later changed a field type converges (no write skipped)', async () => {
  // A crash replays entries the destination had applied already, onto a document that is past
  // them. Here: x is set to 1, then x to 5 together with an element of `arr`, then `arr`
  // becomes a scalar. Replayed on the final document, the middle update cannot set `arr.1` on a
  // scalar; it must still set x to 5, or the replay leaves x at 1.
  const cluster = await startCluster(2);
  try {
    const { topology, clients: byName } = cluster;
    await addLink(topology, byName, 'server_a/test.replay', 'server_b/test.replay');
    const [a, b] = ['server_a', 'server_b'].map((s) => byName.get(s)!.db('test').collection<Document>('replay'));
    const store = new ReplicationConfigStore(byName.get('server_b')!);
    const sourceId = topology.byName('server_a')!.id;
    let mmm = startMmm(topology);
    await settle(topology, byName);
    await a!.insertOne({ _id: 1 as never, x: 0, arr: [1], other: 'kept' });
    await settle(topology, byName);
    const before = await store.checkpoint(sourceId);
    await a!.updateOne({ _id: 1 as never }, { $set: { x: 1 } });
    await a!.updateOne({ _id: 1 as never }, { $set: { x: 5, 'arr.1': 2 } });
    await a!.updateOne({ _id: 1 as never }, { $set: { arr: true } });
    await settle(topology, byName);
    await mmm.stop();
    assert.equal(await differences(a!, b!), undefined);

    // The crash: the checkpoint back where it was before these writes, then a restart.
    await store.saveCheckpoint(sourceId, before!);
    const lines: Document[] = [];
    const logger = pino({ level: 'debug' }, new Writable({ write: (chunk, _enc, done) => (lines.push(JSON.parse(String(chunk)) as Document), done()) }));
    mmm = startMmm(topology, { logger });
    await settle(topology, byName);
    await mmm.stop();
    assert.equal(await differences(a!, b!), undefined);
    assert.deepEqual(lines.filter((l) => Number(l.level) >= 40), [], 'no write refused or skipped');
  } finally {
    await cluster.close();
  }
});

test('a transaction a killed mmm left open is aborted, not waited on for a minute; a live one is left alone', async (t) => {
  const [set] = await startReplicaSets(1);
  const client = new MongoClient(set!.uri, { appName: APP_NAME });
  const live = client.startSession();
  try {
    const docs = client.db('test').collection<Document>('locked');
    await docs.insertMany([{ _id: 1 as never }, { _id: 2 as never }]);
    // Another mmm process, killed inside its delete transaction (tag written, not committed).
    const mongodb = fileURLToPath(new URL('../node_modules/mongodb/lib/index.js', import.meta.url));
    const child = spawn(process.execPath, ['--input-type=module', '-e', `
      import { MongoClient } from ${JSON.stringify(mongodb)};
      const client = new MongoClient(${JSON.stringify(set!.uri)}, { appName: ${JSON.stringify(APP_NAME)} });
      const session = client.startSession();
      session.startTransaction();
      await client.db('test').collection('locked').updateOne({ _id: 1 }, { $set: { __mmm: 'x' } }, { session });
      console.log('in the transaction');
      setInterval(() => {}, 1000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((resolve) => child.stdout.once('data', resolve));
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    // This process's own transaction, open and alive, on another document.
    live.startTransaction();
    await docs.updateOne({ _id: 2 as never }, { $set: { __mmm: 'y' } }, { session: live });

    assert.equal(await abortAbandonedTransactions(client), 1);
    const started = Date.now();
    const session = client.startSession();
    try {
      await session.withTransaction(() => docs.deleteOne({ _id: 1 as never }, { session }));
    } finally {
      await session.endSession();
    }
    const tookMs = Date.now() - started;
    assert.ok(tookMs < 5000, `the delete waited ${tookMs} ms`);
    await live.commitTransaction();
    assert.deepEqual(await docs.find().toArray(), [{ _id: 2, __mmm: 'y' }]);
    t.diagnostic(`the delete behind the aborted transaction took ${tookMs} ms (the server would have held it for 60 s)`);
  } finally {
    await live.endSession();
    await client.close();
    await set!.destroy();
  }
});
