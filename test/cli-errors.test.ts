// Every bad input gives one line on stderr, `mmm: <message>`, exit code 2, and writes nothing;
// runtime failures (a server unreachable, refusing our credentials, not a replica set) give
// one line and exit code 1. Passwords never appear.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { MongoClient } from 'mongodb';
import { freePort, startReplicaSets, startStandalone, type ReplicaSet, type Standalone } from '../scripts/replica-sets.ts';
import { ReplicationConfigStore } from '../src/config/store.ts';
import { runCli, writeTopology } from './support/cli.ts';

const ID_A = '2c88ae84-7cb9-40f7-835d-c05e981f564d';
const ID_B = '0d9c284b-b47c-40b5-932c-547b8685edd0';
const ID_X = 'a2a6ef4c-2a55-4a8f-9b5e-3f4c1d0e9b71';

let sets: ReplicaSet[] = [];
let clients: MongoClient[] = [];
let dir: string;
let seeded: string;

before(async () => {
  sets = await startReplicaSets(2);
  clients = sets.map((s) => s.client());
  dir = mkdtempSync(path.join(os.tmpdir(), 'mmm-cli-errors-'));
  writeTopology(path.join(dir, 'test.yml'), {
    server_a: { id: ID_A, uri: sets[0]!.uri },
    server_b: { id: ID_B, uri: sets[1]!.uri },
  });
  // A config on both servers, so that a command that wrongly went ahead would show.
  await new ReplicationConfigStore(clients[0]!).addLink(ID_B, { src: 'test.foo', dst: 'test.foo', ops: 'iud' });
  await new ReplicationConfigStore(clients[1]!).addLink(ID_A, { src: 'test.foo', dst: 'test.foo', ops: 'iu' });
  seeded = await snapshot();
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(sets.map((s) => s.destroy()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** local.mmm on both servers, as text: what "nothing written" compares. */
async function snapshot(): Promise<string> {
  const docs = await Promise.all(clients.map((c) => c.db('local').collection('mmm').find({}).sort({ _id: 1 }).toArray()));
  return JSON.stringify(docs);
}

const mmm = (args: string[], input = 'y\n') => runCli(args, { cwd: dir, input });

async function assertFails(args: string[], code: number, message: string | RegExp): Promise<void> {
  const result = await mmm(args);
  assert.equal(result.code, code, `exit code; stderr: ${result.stderr}`);
  assert.equal(result.stdout, '');
  if (typeof message === 'string') assert.equal(result.stderr, `mmm: ${message}\n`);
  else assert.match(result.stderr, message);
  assert.equal(result.stderr.split('\n').length, 2, 'exactly one line');
  assert.equal(await snapshot(), seeded, 'local.mmm changed');
}

const rep = (src: string, dst: string, ...more: string[]) => ['-c', 'test.yml', 'replicate', `--src=${src}`, `--dst=${dst}`, ...more];

describe('bad input: one line, exit code 2, nothing written', { concurrency: 6 }, () => {
  const cases: Array<[string, string[], string]> = [
    // The command line itself.
    ['no -c', ['dump-config'], "required option '-c, --config <file>' not specified"],
    ['no command', ['-c', 'test.yml'], "no command given; see 'mmm --help'"],
    ['an unknown command', ['-c', 'test.yml', 'frobnicate'], "unknown command 'frobnicate'"],
    ['an unknown option', [...rep('server_a/test.foo', 'server_b/test.foo'), '--bogus'], "unknown option '--bogus'"],
    ['an extra argument', ['-c', 'test.yml', 'dump-config', 'extra'], "too many arguments for 'dump-config'. Expected 0 arguments but got 1."],
    ['no --src', ['-c', 'test.yml', 'replicate', '--dst=server_b/test.foo'], "required option '-s, --src <server/db.coll>' not specified"],
    ['no --dst', ['-c', 'test.yml', 'unreplicate', '--src=server_a/test.foo'], "required option '-d, --dst <server/db.coll>' not specified"],
    [
      'a bad --log-level',
      ['-c', 'test.yml', '--log-level', 'loud', 'dump-config'],
      "option '--log-level <level>' argument 'loud' is invalid. Allowed choices are fatal, error, warn, info, debug, trace, silent.",
    ],
    [
      'a bad --connect-timeout',
      ['-c', 'test.yml', '--connect-timeout', '0', 'dump-config'],
      "option '--connect-timeout <seconds>' argument '0' is invalid. expected a positive number of seconds.",
    ],
    // Namespaces.
    ['no server in --src', rep('test.foo', 'server_b/test.foo'), '--src "test.foo": expected server/db.collection'],
    ['an empty server name', rep('/test.foo', 'server_b/test.foo'), '--src "/test.foo": no server name before "/"'],
    ['an empty namespace', rep('server_a/', 'server_b/test.foo'), '--src "server_a/": no namespace: expected db.collection'],
    ['no collection', rep('server_a/test', 'server_b/test.foo'), '--src "server_a/test": no collection: expected db.collection'],
    ['an empty collection', rep('server_a/test.foo', 'server_b/test.'), '--dst "server_b/test.": no collection: expected db.collection'],
    ['no database', rep('server_a/.foo', 'server_b/test.foo'), '--src "server_a/.foo": no database name before "."'],
    ['a $ in a database name', rep('server_a/test.foo', 'server_b/te$t.foo'), '--dst "server_b/te$t.foo": database names cannot contain "$"'],
    ['a space in a database name', rep('server_a/te st.foo', 'server_b/test.foo'), '--src "server_a/te st.foo": database names cannot contain " "'],
    ['a quote in a database name', rep('server_a/te"st.foo', 'server_b/test.foo'), '--src "server_a/te\\"st.foo": database names cannot contain "\\""'],
    ['a backslash in a database name', rep('server_a/te\\st.foo', 'server_b/test.foo'), '--src "server_a/te\\\\st.foo": database names cannot contain "\\\\"'],
    [
      'a database name too long',
      rep(`server_a/${'d'.repeat(64)}.foo`, 'server_b/test.foo'),
      `--src "server_a/${'d'.repeat(64)}.foo": database names are at most 63 bytes long`,
    ],
    ['a $ in a collection name', rep('server_a/test.fo$o', 'server_b/test.foo'), '--src "server_a/test.fo$o": collection names cannot contain "$"'],
    [
      'a system collection',
      rep('server_a/test.system.users', 'server_b/test.foo'),
      '--src "server_a/test.system.users": system collections belong to MongoDB itself and cannot be replicated',
    ],
    [
      'a time-series buckets collection',
      rep('server_a/test.system.buckets.ts', 'server_b/test.ts'),
      '--src "server_a/test.system.buckets.ts": system collections belong to MongoDB itself and cannot be replicated',
    ],
    ['the local database', rep('server_a/test.foo', 'server_b/local.foo'), '--dst "server_b/local.foo": the local database belongs to MongoDB itself and cannot be replicated'],
    ['the config database', rep('server_a/config.foo', 'server_b/test.foo'), '--src "server_a/config.foo": the config database belongs to MongoDB itself and cannot be replicated'],
    ['the admin database', rep('server_a/Admin.foo', 'server_b/test.foo'), '--src "server_a/Admin.foo": the Admin database belongs to MongoDB itself and cannot be replicated'],
    [
      'a namespace too long',
      rep(`server_a/test.${'c'.repeat(251)}`, 'server_b/test.foo'),
      `--src "server_a/test.${'c'.repeat(251)}": namespaces are at most 255 bytes long`,
    ],
    ['a bad namespace to unreplicate', ['-c', 'test.yml', 'unreplicate', '-s', 'server_a/test', '-d', 'server_b/test.foo'], '--src "server_a/test": no collection: expected db.collection'],
    // Ops.
    ['empty ops', rep('server_a/test.foo', 'server_b/test.foo', '--ops='), 'ops "": expected one or more of i (insert), u (update), d (delete)'],
    ['unknown ops', rep('server_a/test.foo', 'server_b/test.foo', '-o', 'iudx'), 'ops "iudx": expected one or more of i (insert), u (update), d (delete)'],
    // Servers.
    ['an unknown source', rep('server_x/test.foo', 'server_b/test.foo'), '--src: unknown server "server_x" (the topology has server_a, server_b)'],
    ['an unknown destination', rep('server_a/test.foo', 'server_y/test.foo'), '--dst: unknown server "server_y" (the topology has server_a, server_b)'],
    ['an unknown server to clear', ['-c', 'test.yml', 'clear-config', '-s', 'server_z'], '--slave: unknown server "server_z" (the topology has server_a, server_b)'],
    ['a link to itself', rep('server_a/test.foo', 'server_a/test.foo'), '--src and --dst are the same collection (server_a/test.foo): a link needs two'],
  ];
  for (const [name, args, message] of cases) {
    test(name, () => assertFails(args, 2, message));
  }
});

describe('a time-series collection on either side: one line, exit code 2, nothing written', () => {
  before(async () => {
    await clients[0]!.db('test').createCollection('ts', { timeseries: { timeField: 't' } });
    await clients[1]!.db('test').createCollection('tsb', { timeseries: { timeField: 't', metaField: 'm' } });
  });

  after(async () => {
    await clients[0]!.db('test').collection('ts').drop();
    await clients[1]!.db('test').collection('tsb').drop();
  });

  const refused = async (args: string[], message: string) => {
    const before = await mmm(['-c', 'test.yml', 'dump-config']);
    await assertFails(args, 2, message);
    assert.deepEqual(await mmm(['-c', 'test.yml', 'dump-config']), before);
  };

  test('the source', () =>
    refused(
      rep('server_a/test.ts', 'server_b/test.ts'),
      '--src server_a/test.ts is a time-series collection: its writes are logged on test.system.buckets.ts, which mmm cannot replicate exactly',
    ));

  test('the destination', () =>
    refused(
      rep('server_a/test.plain', 'server_b/test.tsb', '-o', 'i'),
      '--dst server_b/test.tsb is a time-series collection: its writes are logged on test.system.buckets.tsb, which mmm cannot replicate exactly',
    ));
});

describe('a bad topology file: one line, exit code 2, no question asked', { concurrency: 4 }, () => {
  test('missing', () => assertFails(['-c', 'missing.yml', 'clear-config'], 2, 'cannot read topology file missing.yml: no such file or directory'));

  test('not YAML', () => {
    writeFileSync(path.join(dir, 'broken.yml'), 'server_a: {id: 1\n');
    return assertFails(
      ['-c', 'broken.yml', 'replicate', '--src=server_a/test.foo', '--dst=server_b/test.foo'],
      2,
      'broken.yml: not valid YAML: unexpected end of the stream within a flow collection (line 2, column 1)',
    );
  });

  test('a URI the driver rejects, its password hidden', async () => {
    writeTopology(path.join(dir, 'bad-uri.yml'), {
      server_a: { id: ID_A, uri: 'mongodb://admin:hunter2@127.0.0.1:27017/?replicaSet=rs0&nonsense=1' },
    });
    await assertFails(['-c', 'bad-uri.yml', 'dump-config'], 2, 'bad-uri.yml: server server_a: invalid uri: option nonsense is not supported');
  });
});

describe('runtime failures: one line naming the server, exit code 1', () => {
  let closedPort: number;
  let standalone: Standalone | undefined;

  before(async () => {
    closedPort = await freePort();
    standalone = await startStandalone();
    writeTopology(path.join(dir, 'down.yml'), {
      server_a: { id: ID_A, uri: sets[0]!.uri },
      server_x: { id: ID_X, uri: `mongodb://127.0.0.1:${closedPort}` },
    });
    writeTopology(path.join(dir, 'standalone.yml'), { lone: { id: ID_X, uri: standalone.uri } });
  });

  after(() => standalone?.destroy());

  const unreachable = () =>
    `server_x (mongodb://127.0.0.1:${closedPort}): unreachable (waited 0.5 s): connect ECONNREFUSED 127.0.0.1:${closedPort}`;

  test('an unreachable server', async () => {
    const started = Date.now();
    await assertFails(['-c', 'down.yml', '--connect-timeout', '0.5', 'dump-config'], 1, unreachable());
    assert.ok(Date.now() - started < 10_000);
  });

  test('an unreachable server among others: none is changed', async () => {
    await assertFails(['-c', 'down.yml', '--connect-timeout', '0.5', 'clear-config', '--yes'], 1, unreachable());
    await assertFails(
      ['-c', 'down.yml', '--connect-timeout', '0.5', 'replicate', '--src=server_a/test.x', '--dst=server_x/test.x'],
      1,
      unreachable(),
    );
  });

  test('credentials refused, the password hidden', async () => {
    await clients[0]!.db('admin').command({ createUser: 'mmm_user', pwd: 'right-pw', roles: ['root'] });
    const { port } = sets[0]!.members[0]!;
    const replicaSet = sets[0]!.name;
    writeTopology(path.join(dir, 'auth.yml'), {
      server_a: { id: ID_A, uri: `mongodb://mmm_user:wrong-pw@127.0.0.1:${port}/?replicaSet=${replicaSet}` },
    });
    await assertFails(
      ['-c', 'auth.yml', 'dump-config'],
      1,
      `server_a (mongodb://mmm_user:****@127.0.0.1:${port}/?replicaSet=${replicaSet}): authentication failed`,
    );
    // Not even in the stack trace and the driver's error that debug output adds.
    const debug = await mmm(['-c', 'auth.yml', '--log-level', 'debug', 'dump-config']);
    assert.equal(debug.code, 1);
    assert.ok(debug.stderr.includes('MongoServerError') && !debug.stderr.includes('wrong-pw'), debug.stderr);
  });

  test('a server that is not a replica set', () =>
    assertFails(
      ['-c', 'standalone.yml', 'dump-config'],
      1,
      `lone (${standalone!.uri}): not a replica set member; mmm needs the oplog, which only replica sets keep`,
    ));

  test('a stored config mmm cannot read names its server', async () => {
    // A plain insert command: the driver's insertOne is a retryable write, which `local` refuses.
    const local = clients[1]!.db('local');
    await local.command({ insert: 'mmm', documents: [{ _id: 'server_a', replication: [] }] });
    try {
      const result = await mmm(['-c', 'test.yml', 'dump-config']);
      assert.deepEqual(result, {
        code: 1,
        stdout: '',
        stderr:
          'mmm: server_b: local.mmm holds a document mmm cannot read ({"_id":"server_a","replication":[]}): ' +
          '_id is not a UUID (BSON binary subtype 4)\n',
      });
    } finally {
      await local.command({ delete: 'mmm', deletes: [{ q: { _id: 'server_a' }, limit: 1 }] });
    }
    assert.equal(await snapshot(), seeded);
  });

  test('--log-level debug adds the stack trace', async () => {
    const result = await mmm(['-c', 'down.yml', '--connect-timeout', '0.5', '--log-level', 'debug', 'dump-config']);
    assert.equal(result.code, 1);
    // Debug logs come first (JSON lines), then the error's line, then its stack.
    const lines = result.stderr.split('\n');
    const at = lines.indexOf(`mmm: ${unreachable()}`);
    assert.ok(at !== -1, result.stderr);
    assert.ok(lines.slice(at + 1).some((line) => /^\s+at /.test(line)), result.stderr);
  });
});
