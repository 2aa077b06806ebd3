// Bad input, the rest of it (test/cli-errors.test.ts has the command line, namespaces, ops and
// unreachable servers; test/cli-session.test.ts has clear-config's question): a broken topology
// file, the metadata options, a real replica set with authentication (--auth and a key file)
// given a wrong password, a server that is no replica set, the default connect timeout, and
// passwords kept out of every output and log line, `run`'s included. Each refusal is one line
// on stderr, exit code 2 for usage and configuration, 1 at run time, and writes nothing.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MongoClient } from 'mongodb';
import { freePort, startReplicaSet, startReplicaSets, startStandalone, type ReplicaSet, type Standalone } from '../scripts/replica-sets.ts';
import { ReplicationConfigStore } from '../src/config/store.ts';
import { runCli, writeTopology } from './support/cli.ts';
import { eventually } from './support/replication.ts';
import { RunProcess } from './support/run-process.ts';
import { startSecuredSet } from './support/secured-set.ts';

/** Every `run` a test started: killed at the end, so that a failed test leaves none behind. */
const runs: RunProcess[] = [];
function startRun(...args: ConstructorParameters<typeof RunProcess>): RunProcess {
  const run = new RunProcess(...args);
  runs.push(run);
  return run;
}
after(() => Promise.all(runs.map((r) => r.stop('SIGKILL'))));

const ID_A = '2c88ae84-7cb9-40f7-835d-c05e981f564d';
const ID_B = '0d9c284b-b47c-40b5-932c-547b8685edd0';
const PASSWORD = 'Pa55-w0rd-never-shown';
const WRONG = 'wr0ng-pa55-never-shown';

let sets: ReplicaSet[] = [];
let secured: ReplicaSet | undefined;
let standalone: Standalone | undefined;
/** A replica set with no metadata, for `run` with the secured one. */
let spare: ReplicaSet | undefined;
let clients: MongoClient[] = [];
let dir: string;
let seeded: string;

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'mmm-input-'));
  [sets, secured, standalone, spare] = await Promise.all([
    startReplicaSets(2),
    startSecuredSet(dir, { user: 'mmm', pwd: PASSWORD }),
    startStandalone(),
    startReplicaSet(1),
  ]);
  clients = sets.map((s) => s.client());
  writeTopology(path.join(dir, 'test.yml'), { server_a: { id: ID_A, uri: sets[0]!.uri }, server_b: { id: ID_B, uri: sets[1]!.uri } });
  // A config on both servers, so that a command that wrongly went ahead would show.
  await new ReplicationConfigStore(clients[0]!).addLink(ID_B, { src: 'test.foo', dst: 'test.foo', ops: 'iud' });
  await new ReplicationConfigStore(clients[1]!).addLink(ID_A, { src: 'test.foo', dst: 'test.foo', ops: 'iu' });
  seeded = await snapshot();
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all([...sets, ...(secured ? [secured] : []), ...(spare ? [spare] : [])].map((s) => s.destroy()));
  await standalone?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The metadata on both servers (local.mmm, and mmm.mmm should a command use it), as text. */
async function snapshot(): Promise<string> {
  const docs = await Promise.all(
    clients.flatMap((c) => ['local', 'mmm'].map((db) => c.db(db).collection('mmm').find({}).sort({ _id: 1 }).toArray())),
  );
  return JSON.stringify(docs);
}

const mmm = (args: string[], input = 'y\n') => runCli(args, { cwd: dir, input });

async function assertFails(args: string[], code: number, message: string): Promise<void> {
  const result = await mmm(args);
  assert.deepEqual(result, { code, stdout: '', stderr: `mmm: ${message}\n` }, args.join(' '));
  assert.equal(await snapshot(), seeded, 'the metadata changed');
}

/** A topology file in `dir` from YAML text whose servers are the two real ones. */
function topologyFile(name: string, yaml: string): string {
  writeFileSync(path.join(dir, name), yaml.replaceAll('URI_A', sets[0]!.uri).replaceAll('URI_B', sets[1]!.uri));
  return name;
}

describe('a broken topology file: one line, exit 2, no server touched', { concurrency: 8 }, () => {
  const destructive = (file: string) => ['-c', file, 'clear-config', '--yes'];
  test('unreadable (a directory)', () => assertFails(['-c', '.', 'clear-config', '--yes'], 2, 'cannot read topology file .: illegal operation on a directory'));
  test('not a mapping', () =>
    assertFails(destructive(topologyFile('list.yml', '- server_a\n- server_b\n')), 2, 'list.yml: not a mapping: expected a mapping of server names to {id, uri}'));
  test('a server without an id', () =>
    assertFails(destructive(topologyFile('no-id.yml', "server_a:\n  uri: 'URI_A'\n")), 2, 'no-id.yml: server server_a: no id'));
  test('a server without a uri', () =>
    assertFails(destructive(topologyFile('no-uri.yml', `server_a:\n  id: '${ID_A}'\n`)), 2, 'no-uri.yml: server server_a: no uri'));
  test('an id that is not a UUID', () =>
    assertFails(
      destructive(topologyFile('bad-id.yml', "server_a:\n  id: 'server-a'\n  uri: 'URI_A'\n")),
      2,
      'bad-id.yml: server server_a: id "server-a" is not a UUID (like 2c88ae84-7cb9-40f7-835d-c05e981f564d)',
    ));
  test('two servers with one id', () =>
    assertFails(
      destructive(topologyFile('twins.yml', `server_a:\n  id: '${ID_A}'\n  uri: 'URI_A'\nserver_b:\n  id: '${ID_A}'\n  uri: 'URI_B'\n`)),
      2,
      `twins.yml: servers server_a and server_b have the same id ${ID_A}`,
    ));
  test('a metadata_db MongoDB would refuse, or keeps for itself', async () => {
    await assertFails(
      destructive(topologyFile('meta-dot.yml', `server_a:\n  id: '${ID_A}'\n  uri: 'URI_A'\n  metadata_db: 'a.b'\n`)),
      2,
      'meta-dot.yml: server server_a: metadata_db "a.b": database names cannot contain "."',
    );
    await assertFails(
      destructive(topologyFile('meta-config.yml', `server_a:\n  id: '${ID_A}'\n  uri: 'URI_A'\n  metadata_db: 'config'\n`)),
      2,
      'meta-config.yml: server server_a: metadata_db "config": the config database belongs to MongoDB itself',
    );
  });
});

describe('the metadata options: one line, exit 2, nothing written', { concurrency: 4 }, () => {
  test('--metadata-db with a name MongoDB would refuse, or keeps for itself', async () => {
    await assertFails(['-c', 'test.yml', '--metadata-db', 'admin', 'dump-config'], 2, "option '--metadata-db <name>' argument 'admin' is invalid. the admin database belongs to MongoDB itself.");
    await assertFails(['-c', 'test.yml', '--metadata-db', 'a$b', 'dump-config'], 2, `option '--metadata-db <name>' argument 'a$b' is invalid. database names cannot contain "$".`);
  });
  test('a link between two collections of one server, which could copy nothing (a write never goes back to its server)', () =>
    assertFails(['-c', 'test.yml', 'replicate', '--src=server_a/test.x', '--dst=server_a/test.y'], 2, '--src and --dst are on the same server (server_a): mmm replicates between servers'));
  test('a link from or into the metadata collection', async () => {
    const meta = ['-c', 'test.yml', '--metadata-db', 'mmm', 'replicate'];
    await assertFails([...meta, '--src=server_a/mmm.mmm', '--dst=server_b/test.x'], 2, '--src "server_a/mmm.mmm": mmm keeps its links and checkpoints there, so it cannot be replicated');
    await assertFails([...meta, '--src=server_a/test.x', '--dst=server_b/mmm.mmm'], 2, '--dst "server_b/mmm.mmm": mmm keeps its links and checkpoints there, so it cannot be replicated');
  });
  test("a link from or into mmm's own database, whose markers tell mmm's writes from users'", async () => {
    const replicate = ['-c', 'test.yml', 'replicate'];
    const why = "the database mmm is mmm's own (its write markers and refused writes), so it cannot be replicated";
    await assertFails([...replicate, '--src=server_a/mmm.writes', '--dst=server_b/test.x'], 2, `--src "server_a/mmm.writes": ${why}`);
    await assertFails([...replicate, '--src=server_a/test.x', '--dst=server_b/mmm.refused'], 2, `--dst "server_b/mmm.refused": ${why}`);
  });
});

describe('runtime failures: one line naming the server, exit 1, nothing written', { concurrency: 4 }, () => {
  test('authentication that fails, on a replica set with --auth: the password is never shown', async () => {
    const { host } = secured!.members[0]!;
    const uri = (password: string) => `mongodb://mmm:${password}@${host}/?replicaSet=${secured!.name}&authSource=admin`;
    writeTopology(path.join(dir, 'auth.yml'), { server_a: { id: ID_A, uri: uri(WRONG) }, server_b: { id: ID_B, uri: sets[1]!.uri } });
    const shown = `mongodb://mmm:****@${host}/?replicaSet=${secured!.name}&authSource=admin`;
    await assertFails(['-c', 'auth.yml', 'dump-config'], 1, `server_a (${shown}): authentication failed`);
    await assertFails(['-c', 'auth.yml', 'replicate', '--src=server_b/test.x', '--dst=server_a/test.x'], 1, `server_a (${shown}): authentication failed`);
    // Not even in the stack trace and the driver's error that --log-level debug adds.
    const debug = await mmm(['-c', 'auth.yml', '--log-level', 'debug', 'dump-config']);
    assert.equal(debug.code, 1);
    assert.ok(debug.stderr.includes('MongoServerError') && !debug.stderr.includes(WRONG), debug.stderr);

    // With the right password mmm works with it, and run's log never shows the password either.
    writeTopology(path.join(dir, 'auth-ok.yml'), { server_a: { id: ID_A, uri: uri(PASSWORD) }, server_c: { id: ID_B, uri: spare!.uri } });
    const dump = await mmm(['-c', 'auth-ok.yml', 'dump-config']);
    assert.equal(dump.code, 0, dump.stderr);
    assert.ok(dump.stdout.includes(`server_a (${ID_A}) => ${shown}\n`), dump.stdout);
    const linked = await mmm(['-c', 'auth-ok.yml', 'replicate', '--src=server_a/test.auth', '--dst=server_c/test.auth']);
    assert.equal(linked.code, 0, linked.stderr);
    const run = startRun(path.join(dir, 'auth-ok.yml'), [], ['--log-level', 'debug']);
    const client = new MongoClient(uri(PASSWORD));
    const copy = new MongoClient(spare!.uri);
    try {
      await run.waitForLog('link started');
      await client.db('test').collection('auth').insertOne({ _id: 1 as never });
      await eventually('the copy', async () => (await copy.db('test').collection('auth').countDocuments()) === 1);
    } finally {
      await Promise.all([client.close(), copy.close()]);
      assert.equal(await run.stop('SIGINT'), 0, run.stderr);
    }
    for (const output of [dump.stdout, dump.stderr, linked.stdout, linked.stderr, run.stdout, run.stderr]) {
      assert.ok(!output.includes(PASSWORD) && !output.includes(encodeURIComponent(PASSWORD)), output);
    }
  });

  test('a server that is not a replica set (a plain mongod, no oplog)', async () => {
    writeTopology(path.join(dir, 'standalone.yml'), { server_a: { id: ID_A, uri: sets[0]!.uri }, lone: { id: ID_B, uri: standalone!.uri } });
    const message = `lone (${standalone!.uri}): not a replica set member; mmm needs the oplog, which only replica sets keep`;
    await assertFails(['-c', 'standalone.yml', 'dump-config'], 1, message);
    await assertFails(['-c', 'standalone.yml', 'clear-config', '--yes'], 1, message);
    await assertFails(['-c', 'standalone.yml', 'replicate', '--src=lone/test.x', '--dst=server_a/test.x'], 1, message);
  });

  test('a server that cannot be reached: mmm waits 10 s by default (--connect-timeout)', async (t) => {
    const port = await freePort();
    writeTopology(path.join(dir, 'down.yml'), { server_a: { id: ID_A, uri: sets[0]!.uri }, server_x: { id: ID_B, uri: `mongodb://127.0.0.1:${port}` } });
    const started = Date.now();
    await assertFails(['-c', 'down.yml', 'clear-config', '--yes'], 1, `server_x (mongodb://127.0.0.1:${port}): unreachable (waited 10 s): connect ECONNREFUSED 127.0.0.1:${port}`);
    const waited = Date.now() - started;
    assert.ok(waited >= 10_000 && waited < 15_000, `waited ${waited} ms`);
    t.diagnostic(`gave up on an unreachable server after ${waited} ms`);
  });
});

test('--help states what each exit code means', async () => {
  const help = await mmm(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Exit status:\n {2}0 {2}success\n {2}1 {2}a runtime failure: [^]*\n {2}2 {2}a usage or configuration error: /);
  assert.match(help.stdout, /--connect-timeout <seconds> +how long to wait for each server \(default: 10\)/);
});
