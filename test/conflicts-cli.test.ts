// `mmm conflicts` and the conflict counts of `mmm status`, as an operator reads them, against
// real replica sets. The conflicts are written into each server's mmm.conflicts as `run` keeps
// them (the shape in the README): what is under test is how they are read back.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Int32, Long, ObjectId, Timestamp, type Document, type MongoClient } from 'mongodb';
import { freePort, type ReplicaSet } from '../scripts/replica-sets.ts';
import { ReplicationConfigStore } from '../src/config/store.ts';
import type { ConflictView } from '../src/status/conflicts.ts';
import type { StatusReport } from '../src/status/report.ts';
import { runCli, writeTopology, ID_A, ID_B, startTwoServers, type TwoServers } from './support/cli.ts';

/** A server the topology does not name (it was removed from it, say). */
const ID_GONE = '9b1e7c3a-4d2f-4e8a-b6c5-0a1b2c3d4e5f';
const ID_C = '5a1a2f3e-65c9-4b0c-9d8e-3f0e1f2a4b5c';

let servers: TwoServers | undefined;
let sets: ReplicaSet[] = [];
let clients: MongoClient[] = [];
let dir: string;
let config: string;

before(async () => {
  servers = await startTwoServers();
  ({ sets, clients, dir, config } = servers);
  await new ReplicationConfigStore(clients[1]!).addLink(ID_A, { src: 'test.foo', dst: 'test.foo', ops: 'iud' });
  await new ReplicationConfigStore(clients[0]!).addLink(ID_B, { src: 'test.foo', dst: 'test.foo', ops: 'iud' });
});

after(async () => {
  await servers?.close();
});

const conflicts = (...args: string[]) => runCli(['-c', config, 'conflicts', ...args]);
const ts = (t: number, i: number) => new Timestamp({ t, i });
const OID = new ObjectId('65f0c0ffee0000000000beef');

/** The conflicts each server keeps, oldest first: on server_a (k 0) and server_b (k 1). */
const RECORDS: Array<[number, Document]> = [
  [1, {
    at: new Date('2026-12-01T13:30:00.000Z'), ns: 'test.foo', id: OID, source: ID_GONE, policy: `prefer:${ID_GONE}`,
    lost: { origin: ID_B, ts: null, doc: null },
    won: { origin: ID_GONE, ts: ts(1795317000, 1), doc: { _id: OID, v: 'gone' } },
  }],
  [1, {
    at: new Date('2026-12-01T13:39:58.000Z'), ns: 'test.foo', id: 'k', source: ID_A, policy: 'lww',
    lost: { origin: ID_B, ts: ts(1795318950, 1), doc: { _id: 'k', n: new Long(5), when: new Date('2026-12-01T13:39:50.000Z') } },
    won: { origin: ID_A, ts: ts(1795318951, 3), doc: null },
  }],
  [0, {
    at: new Date('2026-12-01T13:40:00.000Z'), ns: 'test.foo', id: new Int32(7), source: ID_B, policy: `prefer:${ID_B}`,
    lost: { origin: ID_A, ts: ts(1795318953, 1), doc: { _id: 7, v: 'a' } },
    won: { origin: ID_B, ts: ts(1795318952, 4), doc: { _id: 7, v: 'b' } },
  }],
  [1, {
    at: new Date('2026-12-01T13:40:02.500Z'), ns: 'test.foo', id: new Int32(7), source: ID_A, policy: 'lww',
    lost: { origin: ID_B, ts: ts(1795318952, 4), doc: { _id: 7, v: 'b' } },
    won: { origin: ID_A, ts: ts(1795318952, 9), doc: { _id: 7, v: 'a' } },
  }],
  // A write of server_c's, relayed by server_b (a ring): its source is server_b.
  [0, {
    at: new Date('2026-12-01T13:41:00.000Z'), ns: 'test.bar', id: new Int32(8), source: ID_B, policy: 'lww',
    lost: { origin: ID_A, ts: ts(1795319000, 2), doc: { _id: 8 } },
    won: { origin: ID_C, ts: ts(1795319010, 1), doc: { _id: 8, c: true } },
  }],
];

test('no conflicts: a clear line, an empty array, and status as before', async () => {
  const [text, json, one, table] = await Promise.all([
    conflicts(),
    conflicts('--json'),
    conflicts('-s', 'server_a'),
    runCli(['-c', config, 'status']),
  ]);
  assert.deepEqual(text, { code: 0, stdout: 'no conflicts recorded\n', stderr: '' });
  assert.deepEqual(json, { code: 0, stdout: '[]\n', stderr: '' });
  assert.deepEqual(one, { code: 0, stdout: 'no conflicts recorded on server_a\n', stderr: '' });
  assert.equal(table.code, 0, table.stderr);
  assert.doesNotMatch(table.stdout, /conflict/);
  const report = JSON.parse((await runCli(['-c', config, 'status', '--json'])).stdout) as StatusReport;
  assert.deepEqual(report.loops.map((l) => [l.destination, l.source, l.conflicts]), [
    ['server_a', 'server_b', 0],
    ['server_b', 'server_a', 0],
  ]);
});

test('the conflicts of every server, newest first, names resolved, in a table', async () => {
  for (const [k, record] of RECORDS) await clients[k]!.db('mmm').collection('conflicts').insertOne(record);
  const text = await conflicts();
  assert.equal(text.stderr, '');
  assert.equal(text.code, 0);
  assert.equal(
    text.stdout,
    [
      'AT                    SERVER    NAMESPACE  _ID                                  LOST                                     WON                                                                         POLICY',
      '2026-12-01T13:41:00Z  server_a  test.bar   8                                    server_a Timestamp(1795319000, 2)        5a1a2f3e-65c9-4b0c-9d8e-3f0e1f2a4b5c Timestamp(1795319010, 1) via server_b  lww',
      '2026-12-01T13:40:02Z  server_b  test.foo   7                                    server_b Timestamp(1795318952, 4)        server_a Timestamp(1795318952, 9)                                           lww',
      '2026-12-01T13:40:00Z  server_a  test.foo   7                                    server_a Timestamp(1795318953, 1)        server_b Timestamp(1795318952, 4)                                           prefer:server_b',
      '2026-12-01T13:39:58Z  server_b  test.foo   "k"                                  server_b Timestamp(1795318950, 1)        server_a Timestamp(1795318951, 3) deleted                                   lww',
      '2026-12-01T13:30:00Z  server_b  test.foo   {"$oid":"65f0c0ffee0000000000beef"}  server_b (older than the oplog) deleted  9b1e7c3a-4d2f-4e8a-b6c5-0a1b2c3d4e5f Timestamp(1795317000, 1)               prefer:9b1e7c3a-4d2f-4e8a-b6c5-0a1b2c3d4e5f',
      '',
    ].join('\n'),
  );
});

test('--limit keeps the newest over all the servers and says how many are left out; -s reads one server', async () => {
  const [two, one, oneLimited] = await Promise.all([conflicts('--limit', '2'), conflicts('-s', 'server_a'), conflicts('--server', 'server_b', '--limit', '1')]);
  assert.deepEqual(two, {
    code: 0,
    stderr: '',
    stdout: [
      'AT                    SERVER    NAMESPACE  _ID  LOST                               WON                                                                         POLICY',
      '2026-12-01T13:41:00Z  server_a  test.bar   8    server_a Timestamp(1795319000, 2)  5a1a2f3e-65c9-4b0c-9d8e-3f0e1f2a4b5c Timestamp(1795319010, 1) via server_b  lww',
      '2026-12-01T13:40:02Z  server_b  test.foo   7    server_b Timestamp(1795318952, 4)  server_a Timestamp(1795318952, 9)                                           lww',
      '2 of 5 conflicts shown, newest first: --limit N shows more',
      '',
    ].join('\n'),
  });
  assert.deepEqual(one, {
    code: 0,
    stderr: '',
    stdout: [
      'AT                    SERVER    NAMESPACE  _ID  LOST                               WON                                                                         POLICY',
      '2026-12-01T13:41:00Z  server_a  test.bar   8    server_a Timestamp(1795319000, 2)  5a1a2f3e-65c9-4b0c-9d8e-3f0e1f2a4b5c Timestamp(1795319010, 1) via server_b  lww',
      '2026-12-01T13:40:00Z  server_a  test.foo   7    server_a Timestamp(1795318953, 1)  server_b Timestamp(1795318952, 4)                                           prefer:server_b',
      '',
    ].join('\n'),
  });
  assert.deepEqual(oneLimited, {
    code: 0,
    stderr: '',
    stdout: [
      'AT                    SERVER    NAMESPACE  _ID  LOST                               WON                                POLICY',
      '2026-12-01T13:40:02Z  server_b  test.foo   7    server_b Timestamp(1795318952, 4)  server_a Timestamp(1795318952, 9)  lww',
      '1 of 3 conflicts shown, newest first: --limit N shows more',
      '',
    ].join('\n'),
  });
});

test('--json: every record, newest first, with names resolved and the versions as extended JSON', async () => {
  const result = await conflicts('--json');
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stderr, '');
  const listed = JSON.parse(result.stdout) as ConflictView[];
  assert.deepEqual(listed.map((c) => [c.server, c.at, c.id]), [
    ['server_a', '2026-12-01T13:41:00.000Z', 8],
    ['server_b', '2026-12-01T13:40:02.500Z', 7],
    ['server_a', '2026-12-01T13:40:00.000Z', 7],
    ['server_b', '2026-12-01T13:39:58.000Z', 'k'],
    ['server_b', '2026-12-01T13:30:00.000Z', { $oid: OID.toHexString() }],
  ]);
  const stored = await clients[1]!.db('mmm').collection('conflicts').findOne({ id: 'k' });
  assert.deepEqual(listed[3], {
    _id: { $oid: stored!._id.toHexString() },
    server: 'server_b',
    serverId: ID_B,
    at: '2026-12-01T13:39:58.000Z',
    ns: 'test.foo',
    id: 'k',
    source: 'server_a',
    sourceId: ID_A,
    policy: 'lww',
    lost: {
      origin: 'server_b',
      originId: ID_B,
      ts: { t: 1795318950, i: 1, time: '2026-11-22T03:42:30Z' },
      doc: { _id: 'k', n: 5, when: { $date: '2026-12-01T13:39:50Z' } },
    },
    won: { origin: 'server_a', originId: ID_A, ts: { t: 1795318951, i: 3, time: '2026-11-22T03:42:31Z' }, doc: null },
  });
  assert.deepEqual(listed[4]!.lost, { origin: 'server_b', originId: ID_B, ts: null, doc: null });
  assert.deepEqual([listed[4]!.source, listed[4]!.policy, listed[4]!.won.origin], [ID_GONE, `prefer:${ID_GONE}`, ID_GONE]);
  assert.deepEqual([listed[0]!.source, listed[0]!.won.origin, listed[0]!.won.doc], ['server_b', ID_C, { _id: 8, c: true }]);
  assert.deepEqual(JSON.parse((await conflicts('--json', '--limit', '1', '-s', 'server_a')).stdout), [listed[0]]);
});

test('bad input: an unknown server, a bad --limit; one line, exit 2, nothing listed', async () => {
  const results = await Promise.all([
    conflicts('-s', 'server_z'),
    conflicts('--limit', '0'),
    conflicts('--limit', '2.5'),
    conflicts('--limit', 'ten'),
  ]);
  assert.deepEqual(results, [
    { code: 2, stdout: '', stderr: 'mmm: --server: unknown server "server_z" (the topology has server_a, server_b)\n' },
    { code: 2, stdout: '', stderr: "mmm: option '--limit <n>' argument '0' is invalid. expected a whole number of conflicts, 1 or more.\n" },
    { code: 2, stdout: '', stderr: "mmm: option '--limit <n>' argument '2.5' is invalid. expected a whole number of conflicts, 1 or more.\n" },
    { code: 2, stdout: '', stderr: "mmm: option '--limit <n>' argument 'ten' is invalid. expected a whole number of conflicts, 1 or more.\n" },
  ]);
});

test('a server down: the others listed, then it, and exit 1', async () => {
  const withC = writeTopology(path.join(dir, 'with-c.yml'), {
    server_a: { id: ID_A, uri: sets[0]!.uri },
    server_b: { id: ID_B, uri: sets[1]!.uri },
    server_c: { id: ID_C, uri: `mongodb://127.0.0.1:${await freePort()}/` },
  });
  const run = (...args: string[]) => runCli(['-c', withC, '--connect-timeout', '1', 'conflicts', ...args]);
  const [text, json, none] = await Promise.all([run('--limit', '1'), run('--json', '--limit', '1'), run('-s', 'server_c')]);
  const down = /^server_c \(mongodb:\/\/127\.0\.0\.1:\d+\/\): unreachable \(waited 1 s\)/;
  assert.equal(text.code, 1);
  const lines = text.stdout.split('\n');
  // server_c is now named: server_a's newest conflict has server_c's write as the winner.
  assert.equal(lines[1], '2026-12-01T13:41:00Z  server_a  test.bar   8    server_a Timestamp(1795319000, 2)  server_c Timestamp(1795319010, 1) via server_b  lww');
  assert.equal(lines[2], '1 of 5 conflicts shown, newest first: --limit N shows more');
  assert.match(lines[3]!.replace(/^server_c: unreachable: /, ''), down);
  assert.equal(lines.length, 5);
  assert.equal(json.code, 1);
  assert.deepEqual((JSON.parse(json.stdout) as ConflictView[]).map((c) => c.won.origin), ['server_c']);
  assert.match(json.stderr.replace(/^mmm: /, ''), down);
  assert.equal(json.stderr.split('\n').length, 2, 'one line');
  assert.equal(none.code, 1);
  assert.match(none.stdout.replace(/^server_c: unreachable: /, ''), down);
  assert.doesNotMatch(none.stdout, /no conflicts/);
});

test('status counts the conflicts of each loop: those its source won on its destination', async () => {
  const [json, table] = await Promise.all([runCli(['-c', config, 'status', '--json']), runCli(['-c', config, 'status'])]);
  assert.equal(json.code, 0, json.stderr);
  const report = JSON.parse(json.stdout) as StatusReport;
  // server_b also keeps one won by a server the topology does not name: no loop of this topology.
  assert.deepEqual(report.loops.map((l) => [l.destination, l.source, l.conflicts]), [
    ['server_a', 'server_b', 2],
    ['server_b', 'server_a', 2],
  ]);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^server_a <= server_b: never started\n {2}2 conflicts: writes from server_b overwrote concurrent versions on server_a \(kept in its mmm\.conflicts; see `mmm conflicts`\)$/m);
  assert.match(table.stdout, /^server_b <= server_a: never started\n {2}2 conflicts: writes from server_a overwrote concurrent versions on server_b \(kept in its mmm\.conflicts; see `mmm conflicts`\)$/m);

  await clients[0]!.db('mmm').collection('conflicts').deleteOne({ ns: 'test.bar' });
  const after = await runCli(['-c', config, 'status']);
  assert.match(after.stdout, /^ {2}1 conflict: writes from server_b overwrote concurrent versions on server_a \(/m);
});
