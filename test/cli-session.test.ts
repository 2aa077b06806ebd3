// The documented session, run with the real `bin/mmm` against two real replica sets, compared
// byte for byte with the original's output; then the rest of what a user does with links.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Document, MongoClient } from 'mongodb';
import { startReplicaSets, type ReplicaSet } from '../scripts/replica-sets.ts';
import { ReplicationConfigStore } from '../src/config/store.ts';
import { ID_A, ID_B, runCli, writeTopology } from './support/cli.ts';
import { DOCUMENTED_STEPS, documentedTranscript, recordSession, transcript, type SessionStep } from './support/session.ts';

let sets: ReplicaSet[] = [];
let clients: MongoClient[] = [];
let dir: string;
let uriA: string;
let uriB: string;

before(async () => {
  sets = await startReplicaSets(2);
  clients = sets.map((s) => s.client());
  [uriA, uriB] = sets.map((s) => s.uri) as [string, string];
  dir = mkdtempSync(path.join(os.tmpdir(), 'mmm-cli-session-'));
  writeTopology(path.join(dir, 'test.yml'), { server_a: { id: ID_A, uri: uriA }, server_b: { id: ID_B, uri: uriB } });
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(sets.map((s) => s.destroy()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => Promise.all(clients.map((c) => new ReplicationConfigStore(c).clear())));

/** Runs `mmm -c test.yml ...args` in the topology's directory. */
const mmm = (args: string[], input?: string) => runCli(['-c', 'test.yml', ...args], { cwd: dir, input });

/** Runs each command, checks it succeeded quietly, and returns the session's transcript. */
const session = (steps: readonly SessionStep[]) => recordSession(steps, mmm);

const rawConfig = () =>
  Promise.all(clients.map((c) => c.db('local').collection('mmm').find({}).sort({ _id: 1 }).toArray())) as Promise<
    Document[][]
  >;

test('the documented session, byte for byte', async () => {
  // Something to clear first, as in the original's session.
  await new ReplicationConfigStore(clients[1]!).addLink(ID_A, { src: 'old.stuff', dst: 'old.stuff', ops: 'iud' });

  assert.equal(await session(DOCUMENTED_STEPS), documentedTranscript(uriA, uriB));

  // What replicate stored: on each destination, one document for its source.
  const [onA, onB] = await rawConfig();
  assert.deepEqual(
    onA!.map((d) => d.replication.map((l: Document) => [l.dst, l.src, l.ops])),
    [[['test.foo', 'test.foo', 'iud'], ['test.bar', 'test.bar', 'iud']]],
  );
  assert.equal(onA![0]!._id.toUUID().toHexString(), ID_B);
  assert.equal(onB![0]!._id.toUUID().toHexString(), ID_A);
});

test('ops other than iud are shown, and replicating an existing link changes them in place', async () => {
  const actual = await session([
    { args: ['replicate', '-s', 'server_a/test.foo', '-d', 'server_b/test.foo', '-o', 'ui'] },
    { args: ['replicate', '--src', 'server_a/test.bar', '--dst', 'server_b/test.baz', '--ops', 'd'] },
    { args: ['replicate', '--src=server_a/test.qux', '--dst=server_b/test.qux'] },
    { args: ['dump-config'] },
    { args: ['replicate', '--src=server_a/test.foo', '--dst=server_b/test.foo', '--ops=iud'] },
    { args: ['replicate', '--src=server_a/test.qux', '--dst=server_b/test.qux', '--ops=id'] },
    { args: ['dump-config'] },
  ]);
  const dump = (lines: string) =>
    `=== Server Config ===
server_a (${ID_A}) => ${uriA}
server_b (${ID_B}) => ${uriB}

=== server_a Replication Config
=== server_b Replication Config
${lines}
`;
  assert.equal(
    actual,
    `$ mmm -c test.yml replicate -s server_a/test.foo -d server_b/test.foo -o ui
$ mmm -c test.yml replicate --src server_a/test.bar --dst server_b/test.baz --ops d
$ mmm -c test.yml replicate --src=server_a/test.qux --dst=server_b/test.qux
$ mmm -c test.yml dump-config
${dump(`     - test.foo <= server_a/test.foo (iu)
     - test.baz <= server_a/test.bar (d)
     - test.qux <= server_a/test.qux
`)}$ mmm -c test.yml replicate --src=server_a/test.foo --dst=server_b/test.foo --ops=iud
$ mmm -c test.yml replicate --src=server_a/test.qux --dst=server_b/test.qux --ops=id
$ mmm -c test.yml dump-config
${dump(`     - test.foo <= server_a/test.foo
     - test.baz <= server_a/test.bar (d)
     - test.qux <= server_a/test.qux (id)
`)}`,
  );
  const [, onB] = await rawConfig();
  assert.equal(onB!.length, 1);
  assert.equal(onB![0]!.replication.length, 3);
});

test('dump-config lists the links into a server from all its sources in creation order, by name or by UUID', async () => {
  const gone = '11111111-2222-3333-4444-555555555555'; // a source the topology no longer names
  const storeA = new ReplicationConfigStore(clients[0]!);
  for (const [source, ns] of [[ID_B, 'test.one'], [gone, 'test.two'], [ID_B, 'test.three']] as const) {
    await storeA.addLink(source, { src: ns, dst: ns, ops: 'iud' });
    await sleep(2); // distinct creation times
  }

  const result = await mmm(['dump-config']);
  assert.equal(result.code, 0);
  const expected = [
    '=== server_a Replication Config',
    '     - test.one <= server_b/test.one',
    `     - test.two <= ${gone}/test.two`,
    '     - test.three <= server_b/test.three',
    '=== server_b Replication Config',
  ];
  assert.ok(result.stdout.includes(`${expected.join('\n')}\n`), result.stdout);
});

test('unreplicate removes one link, and refuses a link that does not exist', async () => {
  await session([
    { args: ['replicate', '--src=server_a/test.foo', '--dst=server_b/test.foo'] },
    { args: ['replicate', '--src=server_a/test.bar', '--dst=server_b/test.bar'] },
    { args: ['unreplicate', '--src=server_a/test.foo', '--dst=server_b/test.foo'] },
  ]);
  const dumped = await mmm(['dump-config']);
  assert.ok(dumped.stdout.endsWith('=== server_b Replication Config\n     - test.bar <= server_a/test.bar\n\n'));

  const again = await mmm(['unreplicate', '-s', 'server_a/test.foo', '-d', 'server_b/test.foo']);
  assert.deepEqual(again, {
    code: 2,
    stdout: '',
    stderr: 'mmm: there is no link from server_a/test.foo to server_b/test.foo\n',
  });

  // The last link from a source takes its document (and checkpoint) with it.
  await session([{ args: ['unreplicate', '-s', 'server_a/test.bar', '-d', 'server_b/test.bar'] }]);
  assert.deepEqual(await rawConfig(), [[], []]);
});

test('clear-config stops at anything but y, including no answer, and touches nothing', async () => {
  await new ReplicationConfigStore(clients[0]!).addLink(ID_B, { src: 'test.foo', dst: 'test.foo', ops: 'iud' });
  await new ReplicationConfigStore(clients[1]!).addLink(ID_A, { src: 'test.foo', dst: 'test.foo', ops: 'iud' });
  const config = await rawConfig();
  const prompt = "About to clear config on servers: ['server_a', 'server_b'], are you sure? (yN) ";

  for (const typed of ['n\n', '\n', 'yes\n', ' y\n', 'N\n']) {
    const result = await mmm(['clear-config'], typed);
    assert.equal(transcript(['clear-config'], result, typed), `$ mmm -c test.yml clear-config\n${prompt}${typed}Aborted.\n`);
    assert.equal(result.code, 1);
    assert.equal(result.stderr, '');
  }
  // End of input without a line: the prompt's line is ended before the message.
  const eof = await mmm(['clear-config']);
  assert.deepEqual(eof, { code: 1, stdout: `${prompt}\nAborted.\n`, stderr: '' });
  assert.deepEqual(await rawConfig(), config);

  const upper = await mmm(['clear-config'], 'Y\n');
  assert.equal(upper.code, 0);
  assert.deepEqual(await rawConfig(), [[], []]);
});

test('clear-config --yes asks nothing; -s clears only that server', async () => {
  const link = { src: 'test.foo', dst: 'test.foo', ops: 'iud' };
  await new ReplicationConfigStore(clients[0]!).addLink(ID_B, link);
  await new ReplicationConfigStore(clients[1]!).addLink(ID_A, link);

  const one = await mmm(['clear-config', '-s', 'server_b'], 'y\n');
  assert.equal(
    transcript(['clear-config', '-s', 'server_b'], one, 'y\n'),
    `$ mmm -c test.yml clear-config -s server_b
About to clear config on servers: ['server_b'], are you sure? (yN) y
Clear config for server_b
`,
  );
  const [onA, onB] = await rawConfig();
  assert.equal(onA!.length, 1);
  assert.equal(onB!.length, 0);

  const slave = await mmm(['clear-config', '--slave=server_a', '--yes']);
  assert.deepEqual(slave, { code: 0, stdout: 'Clear config for server_a\n', stderr: '' });
  assert.deepEqual(await rawConfig(), [[], []]);

  await new ReplicationConfigStore(clients[1]!).addLink(ID_A, link);
  const all = await mmm(['clear-config', '--yes']);
  assert.deepEqual(all, { code: 0, stdout: 'Clear config for server_a\nClear config for server_b\n', stderr: '' });
  assert.deepEqual(await rawConfig(), [[], []]);
});

test('dump-config shows a password as ****, and only there is it needed', async () => {
  await clients[0]!.db('admin').command({ createUser: 'mmm_user', pwd: 'sekr3t-pw', roles: ['root'] });
  const port = sets[0]!.members[0]!.port;
  const withPassword = `mongodb://mmm_user:sekr3t-pw@127.0.0.1:${port}/?replicaSet=${sets[0]!.name}`;
  writeTopology(path.join(dir, 'auth.yml'), { server_a: { id: ID_A, uri: withPassword }, server_b: { id: ID_B, uri: uriB } });

  const result = await runCli(['-c', 'auth.yml', 'dump-config'], { cwd: dir });
  assert.equal(result.code, 0, result.stderr);
  assert.ok(
    result.stdout.includes(`server_a (${ID_A}) => mongodb://mmm_user:****@127.0.0.1:${port}/?replicaSet=${sets[0]!.name}\n`),
  );
  assert.ok(!result.stdout.includes('sekr3t') && !result.stderr.includes('sekr3t'));
});
