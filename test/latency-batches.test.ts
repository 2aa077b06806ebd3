// Over a long link to the destination, a loop applies (and reads ahead) larger batches, so that
// the round trips every batch waits for are a small part of it (src/replicate/batch-bounds.ts);
// near, it keeps the base bounds. Real servers, the real `mmm run`, B reached through a TCP proxy
// that delays each way (scripts/delay-proxy.ts). The delay is long enough that batches grow
// however busy the machine: 600 ms of round trips a batch, against the work of 4,000 inserts.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Document, MongoClient } from 'mongodb';
import { DelayProxy } from '../scripts/delay-proxy.ts';
import { ReplicationConfigStore } from '../src/config/store.ts';
import { ID_A, ID_B, runCli, startTwoServers, writeTopology, type TwoServers } from './support/cli.ts';
import { untaggedAll } from './support/conflict-load.ts';
import { eventually } from './support/replication.ts';
import { RunProcess } from './support/run-process.ts';

const DELAY_MS = 100;
const BACKLOG = 24_000;
const GROWN = 'batch bounds changed for the round trip to the destination';

let servers: TwoServers;
let proxy: DelayProxy;
/** The topology with B reached through the proxy. */
let far: string;

before(async () => {
  servers = await startTwoServers();
  const [host, port] = servers.sets[1]!.members[0]!.host.split(':') as [string, string];
  proxy = await DelayProxy.start({ host, port: Number(port) }, DELAY_MS);
  // directConnection: the driver would otherwise find B's own address in its set's configuration and go around the proxy.
  far = writeTopology(path.join(servers.dir, 'far.yml'), {
    server_a: { id: ID_A, uri: servers.sets[0]!.uri },
    server_b: { id: ID_B, uri: `mongodb://127.0.0.1:${proxy.port}/?directConnection=true` },
  });
});

after(async () => {
  await proxy?.stop();
  await servers?.close();
});

/** Links `name` from A to B, writes a backlog into it on A, catches it up with `config`; returns the log's bound changes. */
async function catchUp(name: string, config: string): Promise<Document[]> {
  const [a, b] = servers.clients as [MongoClient, MongoClient];
  const link = await runCli(['-c', servers.config, 'replicate', `--src=server_a/test.${name}`, `--dst=server_b/test.${name}`]);
  assert.equal(link.code, 0, link.stderr);
  const source = a.db('test').collection(name);
  for (let n = 0; n < BACKLOG; n += 1_000) {
    const docs: Document[] = Array.from({ length: 1_000 }, (_, k) => ({ _id: n + k, name: `document ${n + k}`, at: new Date(0), values: [n, k] }));
    await source.insertMany(docs);
  }
  const newest = (await a.db('local').collection('oplog.rs').find().sort({ $natural: -1 }).limit(1).next())!.ts;
  const run = new RunProcess(config);
  try {
    const store = new ReplicationConfigStore(b);
    await eventually(
      'the checkpoint at the backlog\'s end',
      async () => {
        if (run.child.exitCode !== null) throw new Error(`mmm run exited (${run.child.exitCode}):\n${run.stderr}`);
        const checkpoint = await store.checkpoint(ID_A);
        return checkpoint !== undefined && checkpoint.greaterThanOrEqual(newest);
      },
      120_000,
    );
  } finally {
    assert.equal(await run.stop('SIGINT'), 0, run.stderr);
  }
  const [want, got] = await Promise.all([untaggedAll(source), untaggedAll(b.db('test').collection(name))]);
  assert.equal(want.size, BACKLOG);
  assert.deepEqual(got, want, 'B holds the backlog, byte for byte');
  return run.logs(GROWN);
}

test(`${DELAY_MS} ms each way to the destination: batches grow past the base bounds, and the backlog arrives whole`, async () => {
  const changes = await catchUp('far', far);
  console.log('bounds changed:', JSON.stringify(changes.map(({ roundTripMs, writes, bytes }) => ({ roundTripMs, writes, bytes }))));
  assert.ok(changes.length > 0, 'the bounds changed');
  const grown = changes[0]!;
  assert.ok(grown.roundTripMs >= 2 * DELAY_MS, `a round trip of ${grown.roundTripMs} ms, at least the proxy's ${2 * DELAY_MS}`);
  assert.ok(grown.writes > 4_000 && grown.writes <= 16_000, `${grown.writes} writes a batch`);
  assert.ok(grown.bytes > 8 * 1024 * 1024 && grown.bytes <= 16 * 1024 * 1024, `${grown.bytes} bytes a batch`);
});

// Near, the bounds stay as they are on a quiet machine. On a loaded one a loopback reply can wait
// for a core (20 ms with two busy processes on these two): the loop then does wait, and growing
// is right. So what is asserted is what the loop measured: a loopback's round trip, never the
// proxy's. That the arithmetic keeps the base bounds for short round trips: batch-bounds.test.ts.
test('near the destination the round trip measured is the loopback\'s, far under the proxy\'s', async () => {
  const changes = await catchUp('near', servers.config);
  console.log('bounds changed:', JSON.stringify(changes.map(({ roundTripMs, writes, bytes }) => ({ roundTripMs, writes, bytes }))));
  for (const { roundTripMs } of changes) assert.ok(roundTripMs < DELAY_MS / 2, `a round trip of ${roundTripMs} ms near the destination`);
});
