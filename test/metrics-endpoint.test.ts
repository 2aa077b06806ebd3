// `mmm run --metrics-port`: Prometheus metrics at /metrics while replication runs, scraped over
// HTTP as Prometheus would, against real replica sets.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, test } from 'node:test';
import { Timestamp, type MongoClient } from 'mongodb';
import { type ReplicaSet } from '../scripts/replica-sets.ts';
import { emptyStats } from '../src/apply/writer.ts';
import { ReplicationConfigStore } from '../src/config/store.ts';
import { ReplicationMetrics } from '../src/metrics/metrics.ts';
import type { BatchReport } from '../src/replicate/source-loop.ts';
import { LoopProgress } from '../src/status/progress.ts';
import { runCli, ID_A, ID_B, startTwoServers, type TwoServers } from './support/cli.ts';
import { RunProcess } from './support/run-process.ts';
import { eventually, type TestDoc } from './support/replication.ts';


let servers: TwoServers | undefined;
let sets: ReplicaSet[] = [];
let clients: MongoClient[] = [];
let config: string;

before(async () => {
  servers = await startTwoServers();
  ({ sets, clients, config } = servers);
  await new ReplicationConfigStore(clients[1]!).addLink(ID_A, { src: 'test.foo', dst: 'test.foo', ops: 'iud' });
});

after(async () => {
  await servers?.close();
});

const LOOP = 'destination="server_b",source="server_a"';

/** The samples of a Prometheus text exposition, by `name{labels}`. */
async function scrape(url: string): Promise<Map<string, number>> {
  const response = await fetch(url);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const samples = new Map<string, number>();
  for (const line of (await response.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

function sample(samples: Map<string, number>, key: string): number {
  const value = samples.get(key);
  assert.ok(value !== undefined, `no sample ${key}`);
  return value;
}

test('run --metrics-port 0 serves moving counters, lag and the process defaults at /metrics on 127.0.0.1', async () => {
  const run = new RunProcess(config, ['--metrics-port', '0']);
  try {
    const [serving] = await run.waitForLog('serving metrics');
    const url = serving!.url as string;
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    await run.waitForLog('link started');

    const before = await scrape(url);
    assert.equal(sample(before, `mmm_operations_applied_total{${LOOP},op="i"}`), 0);
    assert.equal(sample(before, `mmm_loop_state{${LOOP},state="running"}`), 1);
    assert.equal(sample(before, `mmm_loop_state{${LOOP},state="failed"}`), 0);
    assert.equal(sample(before, `mmm_retries_total{${LOOP}}`), 0);
    assert.equal(sample(before, `mmm_conflicts_total{${LOOP}}`), 0);
    assert.ok(sample(before, 'process_cpu_user_seconds_total') > 0);
    assert.ok(sample(before, 'nodejs_heap_size_used_bytes') > 0);

    const foo = clients[0]!.db('test').collection<TestDoc>('foo');
    await foo.insertMany([{ _id: 1 }, { _id: 2 }, { _id: 3 }, { _id: 4 }, { _id: 5 }]);
    await foo.updateMany({ _id: { $lte: 2 } }, { $set: { v: 1 } });
    await foo.deleteOne({ _id: 5 });
    let now = before;
    await eventually('the writes counted', async () => {
      now = await scrape(url);
      return now.get(`mmm_operations_applied_total{${LOOP},op="d"}`) === 1;
    });
    assert.equal(sample(now, `mmm_operations_applied_total{${LOOP},op="i"}`), 5);
    assert.equal(sample(now, `mmm_operations_applied_total{${LOOP},op="u"}`), 2);
    assert.equal(sample(now, `mmm_conflicts_total{${LOOP}}`), 0, 'writes on one side only: no conflict');
    const batches = sample(now, `mmm_batch_entries_count{${LOOP}}`);
    assert.ok(batches > sample(before, `mmm_batch_entries_count{${LOOP}}`), 'batches counted');
    assert.ok(sample(now, `mmm_batch_entries_sum{${LOOP}}`) >= 8, 'their entries summed');
    assert.ok(sample(now, `mmm_oplog_entries_read_total{${LOOP}}`) >= 8);
    assert.ok(Math.abs(sample(now, `mmm_checkpoint_timestamp_seconds{${LOOP}}`) - Date.now() / 1000) < 60, 'the checkpoint is recent');
    await eventually('the lag back to 0', async () => (await scrape(url)).get(`mmm_lag_seconds{${LOOP}}`) === 0);

    const other = await fetch(url.replace('/metrics', '/'));
    assert.equal(other.status, 404);
    await other.text();
  } finally {
    assert.equal(await run.stop('SIGINT'), 0, run.stderr);
  }
  await assert.rejects(fetch(run.logs('serving metrics')[0]!.url as string), 'the server closed with the run');
});

test("a batch's conflicts, and the writes that lost, are counted for its loop", async () => {
  const metrics = new ReplicationMetrics();
  const observer = metrics.observer({ destination: 'server_b', source: 'server_a' }, new LoopProgress());
  const batch = (conflicts: number, lost: number): BatchReport => ({ entries: 4, stats: { ...emptyStats(), updated: 4, conflicts, lost }, checkpoint: new Timestamp({ t: 1, i: 1 }) });
  observer.batch!(batch(3, 1));
  observer.batch!(batch(0, 0));
  observer.batch!(batch(2, 4));
  const counted = async (name: string) => (await metrics.registry.getSingleMetric(name)!.get()).values.map((v) => [v.labels, v.value]);
  assert.deepEqual(await counted('mmm_conflicts_total'), [[{ destination: 'server_b', source: 'server_a' }, 5]]);
  assert.deepEqual(await counted('mmm_writes_lost_total'), [[{ destination: 'server_b', source: 'server_a' }, 5]]);
});

test('losing the source is counted as an error and a retry', async () => {
  // A short connect timeout: the driver gives up on the lost server sooner.
  const run = new RunProcess(config, ['--metrics-port', '0'], ['--connect-timeout', '1']);
  try {
    const url = (await run.waitForLog('serving metrics'))[0]!.url as string;
    await run.waitForLog('link started');
    await sets[0]!.members[0]!.stop();
    await eventually('a retry counted', async () => (await scrape(url)).get(`mmm_retries_total{${LOOP}}`)! >= 1);
    const lost = await scrape(url);
    assert.ok(sample(lost, `mmm_errors_total{${LOOP},kind="transient"}`) >= 1);
    assert.equal(sample(lost, `mmm_loop_state{${LOOP},state="retrying"}`), 1);
    await sets[0]!.members[0]!.start();
    await eventually('the loop running again', async () => (await scrape(url)).get(`mmm_loop_state{${LOOP},state="running"}`) === 1, 30_000);
  } finally {
    await sets[0]!.members[0]!.start();
    assert.equal(await run.stop('SIGINT'), 0, run.stderr);
  }
});

test('a metrics port in use: one line, exit 1, nothing started', async () => {
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  const { port } = busy.address() as { port: number };
  try {
    const result = await runCli(['-c', config, 'run', '--metrics-port', String(port)]);
    assert.equal(result.code, 1);
    assert.equal(result.stderr, `mmm: cannot serve metrics on 127.0.0.1:${port}: EADDRINUSE\n`);
  } finally {
    busy.close();
  }
});
