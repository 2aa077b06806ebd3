// Outages: a server of a running two-way link goes away for 30 seconds, first one side, then
// the other. Each outage takes a source from one link and a destination from the other. `mmm
// run` (the real bin/mmm) does not exit: each link logs one warning when it loses its server and
// one line when it works again, retries with capped exponential backoff in between, and the
// writes made on the side that stayed up arrive once the other is back.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { MongoClient, type Document } from 'mongodb';
import { pino } from 'pino';
import { startReplicaSets, type ReplicaSet } from '../scripts/replica-sets.ts';
import { runReplication } from '../src/replicate/runner.ts';
import { DEFAULT_SETTINGS } from '../src/replicate/settings.ts';
import { runCli, writeTopology } from './support/cli.ts';
import { differences, WriteLoad } from './support/load.ts';
import { addLink, eventually, startCluster, type Cluster } from './support/replication.ts';
import { RunProcess } from './support/run-process.ts';

/** Every `run` a test started: killed at the end, so that a failed test leaves none behind. */
const runs: RunProcess[] = [];
function startRun(...args: ConstructorParameters<typeof RunProcess>): RunProcess {
  const run = new RunProcess(...args);
  runs.push(run);
  return run;
}
after(() => Promise.all(runs.map((r) => r.stop('SIGKILL'))));

const OUTAGE_MS = 30_000;
const SEED = Number(process.env.MMM_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));

let sets: ReplicaSet[] = [];
let clients: MongoClient[] = [];
let dir: string;
let config: string;

before(async () => {
  sets = await startReplicaSets(2);
  // The load's clients give up on a server quickly, so that they notice it is back quickly.
  clients = sets.map((s) => new MongoClient(s.uri, { serverSelectionTimeoutMS: 1000 }));
  dir = mkdtempSync(path.join(os.tmpdir(), 'mmm-outage-'));
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

const LINKS = ['server_a -> server_b', 'server_b -> server_a'];
const linkOf = (line: Document) => `${line.source} -> ${line.destination}`;

/** The waits before each retry: from retryInitialMs, doubled each time, up to retryMaxMs. */
function backoff(count: number, initial: number, max: number): number[] {
  return Array.from({ length: count }, (_, k) => Math.min(initial * 2 ** k, max));
}

// The two run at once, on servers of their own.
describe('outages', { concurrency: 2 }, () => {
  test(`each server down for ${OUTAGE_MS / 1000} s in turn: run stays up, warns once and recovers once per link, and both sides converge`, async (t) => {
    t.diagnostic(`seed ${SEED} (rerun with MMM_TEST_SEED=${SEED})`);
    const foo = (k: number) => clients[k]!.db('test').collection<Document>('foo');
    for (const [src, dst] of [['server_a', 'server_b'], ['server_b', 'server_a']]) {
      const linked = await runCli(['-c', config, 'replicate', `--src=${src}/test.foo`, `--dst=${dst}/test.foo`]);
      assert.equal(linked.code, 0, linked.stderr);
    }
    const run = startRun(config, [], ['--log-level', 'debug']);
    await run.waitForLog('link started', 2);
    const loads = [new WriteLoad(foo(0), 'a', SEED + 1, { pauseMs: 10 }), new WriteLoad(foo(1), 'b', SEED + 2, { pauseMs: 10 })];
    loads.forEach((l) => l.start());

    try {
      for (const [k, name] of [[0, 'server_a'], [1, 'server_b']] as const) {
        await sleep(3000); // mid-stream
        const logged = run.logs().length;
        // The load on the server going down pauses (its writes could not be made); the other goes on.
        await loads[k]!.stop();
        const writesBefore = loads[1 - k]!.writes;
        await sets[k]!.members[0]!.stop();
        const stoppedAt = Date.now();
        await sleep(OUTAGE_MS);
        assert.equal(run.child.exitCode, null, `run exited while ${name} was down:\n${run.stderr}`);
        await sets[k]!.members[0]!.start();
        const restartedAt = Date.now();
        await sets[k]!.waitForPrimary();
        const primaryAt = Date.now();
        loads[k]!.start();

        const since = () => run.logs().slice(logged);
        await eventually('both links recovered', async () => since().filter((l) => l.msg === 'link recovered').length >= 2, 60_000);
        const recoveredAt = Math.max(...since().filter((l) => l.msg === 'link recovered').map((l) => Number(l.time)));
        // Compared with the writers paused: with both writing, the two sides are equal only at an
        // instant when neither link has a batch in flight, which a busy machine can make rare.
        await Promise.all(loads.map((l) => l.stop()));
        await eventually('both sides equal', async () => (await differences(foo(0), foo(1))) === undefined, 60_000);
        const convergedAt = Date.now();
        loads.forEach((l) => l.start());
        await sleep(2000); // a second recovery line, had there been one, would show by now

        const lines = since();
        for (const link of LINKS) {
          const mine = lines.filter((l) => linkOf(l) === link);
          assert.equal(mine.filter((l) => l.msg === 'link lost its server; retrying').length, 1, `${link}: one warning when ${name} went away`);
          assert.equal(mine.filter((l) => l.msg === 'link recovered').length, 1, `${link}: one line when ${name} was back`);
          const waits = mine.filter((l) => l.msg === 'retrying').map((l) => Number(l.retryInMs));
          assert.ok(waits.length >= 2, `${link}: retried ${waits.length} times in ${OUTAGE_MS / 1000} s`);
          assert.deepEqual(waits, backoff(waits.length, DEFAULT_SETTINGS.retryInitialMs, DEFAULT_SETTINGS.retryMaxMs), `${link}: exponential backoff`);
          t.diagnostic(`${name} down: ${link} retried ${waits.length} times, waiting ${waits.join(', ')} ms between attempts`);
        }
        assert.deepEqual(lines.filter((l) => Number(l.level) >= 40 && l.msg !== 'link lost its server; retrying'), [], 'no other warning or error');
        assert.ok(loads[1 - k]!.writes > writesBefore, `writes went on on the other side while ${name} was down`);
        t.diagnostic(
          `${name} down ${((restartedAt - stoppedAt) / 1000).toFixed(1)} s (${loads[1 - k]!.writes - writesBefore} writes on the other side meanwhile); ` +
            `primary again ${((primaryAt - restartedAt) / 1000).toFixed(1)} s after its restart; ` +
            `both links recovered ${((recoveredAt - restartedAt) / 1000).toFixed(1)} s after it; sides equal ${((convergedAt - restartedAt) / 1000).toFixed(1)} s after it`,
        );
      }
    } catch (err) {
      const log = run.logs().filter((l) => l.msg !== 'applied').map((l) => JSON.stringify(l)).join('\n');
      throw new Error(`${(err as Error).message}\nthe log, but for applied writes:\n${log}`, { cause: err });
    } finally {
      await Promise.all(loads.map((l) => l.stop()));
    }
    await eventually('both sides equal at the end', async () => (await differences(foo(0), foo(1))) === undefined, 30_000);
    const expected = [...loads[0]!.live, ...loads[1]!.live].sort();
    for (const k of [0, 1]) {
      const ids = (await foo(k).find({}, { projection: { _id: 1 } }).sort({ _id: 1 }).toArray()).map((d) => String(d._id));
      assert.deepEqual(ids, expected, `server ${k} holds other documents than its writers left`);
    }
    assert.equal(run.child.exitCode, null, 'run is still running');
    assert.equal(await run.stop('SIGINT'), 0, run.stderr);
    t.diagnostic(`writes: ${loads[0]!.writes} on server_a, ${loads[1]!.writes} on server_b (failed and retried by the load: ${loads[0]!.failures + loads[1]!.failures}); documents at the end: ${expected.length}`);
  });

  test('the wait between retries doubles up to retryMaxMs, and a long outage still gives one warning and one recovery', async (t) => {
    const cluster: Cluster = await startCluster(2);
    try {
      const { topology, clients: byName } = cluster;
      await addLink(topology, byName, 'server_a/test.cap', 'server_b/test.cap');
      const lines: Document[] = [];
      const logger = pino({ level: 'debug' }, new Writable({ write: (chunk, _enc, done) => (lines.push(JSON.parse(String(chunk)) as Document), done()) }));
      const controller = new AbortController();
      const settings = { retryInitialMs: 100, retryMaxMs: 800 };
      const done = runReplication(
        {
          topology,
          logger,
          settings,
          // Each attempt waits this long for the server: short, for many attempts in a short outage.
          connect: (server) => new MongoClient(server.uri, { serverSelectionTimeoutMS: 300 }).connect(),
        },
        controller.signal,
      );
      await eventually('the link started', async () => lines.some((l) => l.msg === 'link started'));
      const destination = cluster.sets[1]!.members[0]!;
      await destination.stop();
      // The loop finds out when it next writes: its checkpoint, at the source's next no-op at the latest.
      await byName.get('server_a')!.db('test').collection('cap').insertOne({ _id: 1 as never });
      await eventually('six retries', async () => lines.filter((l) => l.msg === 'retrying').length >= 6, 30_000);
      await destination.start();
      await cluster.sets[1]!.waitForPrimary();
      await eventually('the recovery', async () => lines.some((l) => l.msg === 'link recovered'), 30_000);
      await eventually('the insert on b', async () => (await byName.get('server_b')!.db('test').collection('cap').countDocuments()) === 1, 30_000);
      controller.abort();
      const reports = await done;
      assert.deepEqual(reports.map((r) => r.outcome.state), ['stopped']);

      const waits = lines.filter((l) => l.msg === 'retrying').map((l) => Number(l.retryInMs));
      assert.deepEqual(waits, backoff(waits.length, settings.retryInitialMs, settings.retryMaxMs));
      assert.equal(lines.filter((l) => l.msg === 'link lost its server; retrying').length, 1);
      assert.equal(lines.filter((l) => l.msg === 'link recovered').length, 1);
      t.diagnostic(`${waits.length} retries, waiting ${waits.join(', ')} ms`);
    } finally {
      await cluster.close();
    }
  });
});
