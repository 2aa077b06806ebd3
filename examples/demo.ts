// `npm run demo`: two throwaway replica sets, mmm replicating test.foo both ways, and a few
// writes on each side to watch them cross. Uses the same mongod as the tests; leaves nothing
// running and no files behind.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Document, MongoClient } from 'mongodb';
import { startReplicaSets } from '../scripts/replica-sets.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(root, 'bin', 'mmm');
const dir = mkdtempSync(path.join(os.tmpdir(), 'mmm-demo-'));
const config = path.join(dir, 'topology.yml');

function show(line: string) {
  console.log(`\n\x1b[1m${line}\x1b[0m`);
}

function mmm(...args: string[]) {
  show(`$ mmm -c topology.yml ${args.join(' ')}`);
  const result = spawnSync(bin, ['-c', config, ...args], { encoding: 'utf8', input: 'y\n' });
  // Show the answer to clear-config's question as a terminal would echo it.
  process.stdout.write(result.stdout.replace('(yN) ', '(yN) y\n'));
  process.stderr.write(result.stderr);
  if (result.status !== 0) throw new Error(`mmm ${args[0]} exited with ${result.status}`);
}

async function waitFor(what: string, check: () => Promise<boolean>) {
  const deadline = Date.now() + 15_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const strip = ({ __mmm, ...doc }: Document) => doc;

show('Starting two single-node replica sets with the test suite\'s mongod...');
const [a, b] = await startReplicaSets(2);
const clients: MongoClient[] = [];
let run: ReturnType<typeof spawn> | undefined;
try {
  writeFileSync(
    config,
    `server_a:\n  id: '2c88ae84-7cb9-40f7-835d-c05e981f564d'\n  uri: '${a!.uri}'\n` +
      `server_b:\n  id: '0d9c284b-b47c-40b5-932c-547b8685edd0'\n  uri: '${b!.uri}'\n`,
  );
  console.log(`server_a: ${a!.uri}\nserver_b: ${b!.uri}`);

  mmm('clear-config');
  mmm('replicate', '--src=server_a/test.foo', '--dst=server_b/test.foo');
  mmm('replicate', '--src=server_b/test.foo', '--dst=server_a/test.foo');
  mmm('dump-config');

  show('$ mmm -c topology.yml run   (in the background; its log goes to stderr)');
  run = spawn(bin, ['-c', config, 'run'], { stdio: ['ignore', 'inherit', 'inherit'] });
  const [ca, cb] = [a!.client(), b!.client()];
  clients.push(ca, cb);
  const fooA = ca.db('test').collection<{ _id: number; [field: string]: unknown }>('foo');
  const fooB = cb.db('test').collection<{ _id: number; [field: string]: unknown }>('foo');
  await sleep(1500);

  show('insert {_id: 1, greeting: "hello from a"} on server_a');
  await fooA.insertOne({ _id: 1, greeting: 'hello from a' });
  await waitFor('the insert on server_b', async () => (await fooB.countDocuments({ _id: 1 })) === 1);
  console.log('server_b has:', await fooB.findOne({ _id: 1 }));

  show('update it on server_b: $set {reply: "hi from b"}');
  await fooB.updateOne({ _id: 1 }, { $set: { reply: 'hi from b' } });
  await waitFor('the update on server_a', async () => (await fooA.findOne({ _id: 1 }))?.reply === 'hi from b');
  console.log('server_a has:', await fooA.findOne({ _id: 1 }));

  show('delete it on server_a');
  await fooA.deleteOne({ _id: 1 });
  await waitFor('the delete on server_b', async () => (await fooB.countDocuments({ _id: 1 })) === 0);
  console.log('server_b has:', await fooB.find().toArray());

  const same = JSON.stringify((await fooA.find().toArray()).map(strip)) === JSON.stringify((await fooB.find().toArray()).map(strip));
  show(same ? 'Both sides hold the same documents. Stopping mmm (SIGINT)...' : 'The two sides differ!');
} finally {
  if (run && run.exitCode === null) {
    run.kill('SIGINT');
    await new Promise((resolve) => run!.once('exit', resolve));
  }
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all([a!.destroy(), b!.destroy()]);
  rmSync(dir, { recursive: true, force: true });
}
