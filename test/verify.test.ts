// `mmm verify` as a user runs it, on two real replica sets: it finds exactly the differences
// planted on purpose, in text and JSON; says what a document that never stops changing is;
// refuses bad input with exit code 2; repairs as mmm's writes, which no link sends back; and on
// a live link under load in both directions, reports no difference.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Double, Int32, ObjectId, type Document, type MongoClient, type Timestamp } from 'mongodb';
import { startReplicaSets, type ReplicaSet } from '../scripts/replica-sets.ts';
import { ReplicationConfigStore } from '../src/config/store.ts';
import { Topology } from '../src/topology.ts';
import { ID_A, ID_B, runCli, writeTopology } from './support/cli.ts';
import { WriteLoad } from './support/load.ts';
import { eventually, loggedOperations, settle, type TestDoc } from './support/replication.ts';
import { RunProcess } from './support/run-process.ts';

const SEED = Number(process.env.MMM_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));

let sets: ReplicaSet[] = [];
let a: MongoClient;
let b: MongoClient;
let dir: string;
let config: string;
let topology: Topology;

before(async () => {
  // Test commands: the fail point that slows reads down in the "still changing" test.
  sets = await startReplicaSets(2, { args: ['--setParameter', 'enableTestCommands=1'] });
  [a, b] = sets.map((s) => s.client()) as [MongoClient, MongoClient];
  dir = mkdtempSync(path.join(os.tmpdir(), 'mmm-verify-'));
  config = writeTopology(path.join(dir, 'test.yml'), { server_a: { id: ID_A, uri: sets[0]!.uri }, server_b: { id: ID_B, uri: sets[1]!.uri } });
  topology = new Topology([
    { name: 'server_a', id: ID_A, uri: sets[0]!.uri },
    { name: 'server_b', id: ID_B, uri: sets[1]!.uri },
  ]);
});

after(async () => {
  await Promise.all([a, b].map((c) => c?.close()));
  await Promise.all(sets.map((s) => s.destroy()));
  rmSync(dir, { recursive: true, force: true });
});

const coll = <T extends Document = Document>(client: MongoClient, name: string) => client.db('test').collection<T>(name);

async function cli(...args: string[]) {
  return runCli(['-c', config, ...args]);
}

async function replicate(src: string, dst: string): Promise<void> {
  const made = await cli('replicate', `--src=${src}`, `--dst=${dst}`);
  assert.equal(made.code, 0, made.stderr);
}

/** Waits until the run's loop into `dst` from `sourceId` says it follows the link of `ns`. */
async function following(dst: MongoClient, sourceId: string, ns: string): Promise<void> {
  const store = new ReplicationConfigStore(dst);
  await eventually(`the run to follow ${ns}`, async () => {
    const status = (await store.source(sourceId))?.status;
    return status?.state === 'running' && status.links.some((l) => l.src === ns);
  });
}

async function newest(client: MongoClient): Promise<Timestamp> {
  return (await client.db('local').collection('oplog.rs').find().sort({ $natural: -1 }).limit(1).next())!.ts as Timestamp;
}

/** The same documents on both sides, B's as a link writes them (tagged): `_id`s of several types, enough for several ranges. */
async function writeEqual(name: string, count: number): Promise<void> {
  const docs: Document[] = [];
  for (let k = 0; k < count; k++) {
    const _id = [`s${k}`, new Int32(k), { o: k }, new ObjectId(k.toString(16).padStart(24, '0'))][k % 4];
    docs.push({ _id, v: k, nested: { list: [k, `${k}`] } });
  }
  await coll(a, name).insertMany(docs.map((d) => ({ ...d })));
  await coll(b, name).insertMany(docs.map((d) => ({ ...d, __mmm: `${ID_A}:1:1` })));
}

/** The planted differences: a changed field, an Int32 turned Double, a field order, one missing on each side, an `_id` of another type. */
async function plant(name: string): Promise<void> {
  const onA: Document[] = [{ _id: 100001, a: 'x' }, { _id: 100002, n: new Int32(1) }, { _id: 100003, a: 1, b: 2 }, { _id: 'only on a' }, { _id: new Int32(100010) }];
  const onB: Document[] = [{ _id: 100001, a: 'y' }, { _id: 100002, n: new Double(1) }, { _id: 100003, b: 2, a: 1 }, { _id: 'only on b' }, { _id: new Double(100010) }];
  await coll(a, name).insertMany(onA);
  await coll(b, name).insertMany(onB);
}

const PLANTED_TEXT = (name: string, count: number) => `server_b/test.${name} <= server_a/test.${name}: differs (${count + 5} documents on server_a, ${count + 5} on server_b)
  different: 3
    {"$numberInt":"100001"}: a
    {"$numberInt":"100002"}: n (int on server_a, double on server_b)
    {"$numberInt":"100003"}: field order
  missing on server_b: 2
    {"$numberInt":"100010"}
    "only on a"
  extra on server_b: 2
    {"$numberDouble":"100010.0"}
    "only on b"
`;

test('verify finds exactly the planted differences, in text and JSON; exit 0 on equal collections; links it cannot compare are errors', async () => {
  await replicate('server_a/test.planted', 'server_b/test.planted');
  await replicate('server_a/test.same', 'server_b/test.same');
  // 45,000 documents: three ranges of 20,000 on each side, compared two at a time.
  await writeEqual('planted', 45_000);
  await plant('planted');
  await writeEqual('same', 1_000);

  const all = await cli('verify');
  assert.equal(all.stderr, '');
  assert.equal(all.stdout, `${PLANTED_TEXT('planted', 45_000)}server_b/test.same <= server_a/test.same: equal (1000 documents)\n`);
  assert.equal(all.code, 1);

  const json = await cli('verify', '--src', 'server_a/test.planted', '--dst', 'server_b/test.planted', '--json');
  assert.equal(json.code, 1, json.stderr);
  const none = { count: 0, first: [] };
  assert.deepEqual(JSON.parse(json.stdout), {
    equal: false,
    links: [
      {
        source: 'server_a',
        src: 'test.planted',
        destination: 'server_b',
        dst: 'test.planted',
        equal: false,
        error: null,
        documents: { source: 45_005, destination: 45_005 },
        different: {
          count: 3,
          first: [
            { _id: { $numberInt: '100001' }, fields: [{ name: 'a', source: 'string', destination: 'string' }], fieldOrder: false },
            { _id: { $numberInt: '100002' }, fields: [{ name: 'n', source: 'int', destination: 'double' }], fieldOrder: false },
            { _id: { $numberInt: '100003' }, fields: [], fieldOrder: true },
          ],
        },
        missing: { count: 2, first: [{ _id: { $numberInt: '100010' } }, { _id: 'only on a' }] },
        extra: { count: 2, first: [{ _id: { $numberDouble: '100010.0' } }, { _id: 'only on b' }] },
        changing: none,
        repair: null,
      },
    ],
  });

  const same = await cli('verify', '--src', 'server_a/test.same', '--dst', 'server_b/test.same');
  assert.deepEqual(same, { code: 0, stdout: 'server_b/test.same <= server_a/test.same: equal (1000 documents)\n', stderr: '' });
  // A collection neither side has yet is equal too.
  await replicate('server_a/test.empty', 'server_b/test.empty');
  const empty = await cli('verify', '--src', 'server_a/test.empty', '--dst', 'server_b/test.empty');
  assert.deepEqual(empty, { code: 0, stdout: 'server_b/test.empty <= server_a/test.empty: equal (0 documents)\n', stderr: '' });
  // A link whose copy has not finished is not compared: its destination lacks documents by design.
  const store = new ReplicationConfigStore(b);
  await store.addLink(ID_A, { src: 'test.copying', dst: 'test.copying', ops: 'iud', copying: true });
  const copying = await cli('verify', '--src', 'server_a/test.copying', '--dst', 'server_b/test.copying');
  assert.deepEqual(copying, {
    code: 1,
    stdout: 'server_b/test.copying <= server_a/test.copying: error: its copy has not finished (the same `replicate --copy` resumes it): not compared\n',
    stderr: '',
  });
  await store.removeLink(ID_A, 'test.copying', 'test.copying');
  // Collections whose `_id` indexes sort in different orders cannot be cut into the same ranges.
  await a.db('test').createCollection('collated', { collation: { locale: 'en', strength: 2 } });
  await b.db('test').createCollection('collated');
  await replicate('server_a/test.collated', 'server_b/test.collated');
  const collated = await cli('verify', '--src', 'server_a/test.collated', '--dst', 'server_b/test.collated');
  assert.equal(collated.code, 1);
  assert.match(collated.stdout, /^server_b\/test\.collated <= server_a\/test\.collated: error: the collections order their _ids differently \(collation \{"locale":"en",.*\} on the source, "simple" on the destination\)\n$/);
  await cli('unreplicate', '--src', 'server_a/test.collated', '--dst', 'server_b/test.collated');
});

test('a document written all the time, with no run to apply it, is still changing: neither equal nor different', async () => {
  await replicate('server_a/test.hot', 'server_b/test.hot');
  await coll<TestDoc>(a, 'hot').insertOne({ _id: 'hot', n: 0 });
  await coll<TestDoc>(b, 'hot').insertOne({ _id: 'hot', n: 0 });
  await coll<TestDoc>(a, 'hot').insertOne({ _id: 'cold', n: 0 });
  await coll<TestDoc>(b, 'hot').insertOne({ _id: 'cold', n: 0 });
  // Every read on A takes 100 ms more: verify's two reads of the source in a round are that far
  // apart at least, and the writers below change the document far more often than that.
  await a.db('admin').command({ configureFailPoint: 'failCommand', mode: 'alwaysOn', data: { failCommands: ['find'], blockConnection: true, blockTimeMS: 100 } });
  let writing = true;
  const writers = Array.from({ length: 2 }, async () => {
    while (writing) await coll<TestDoc>(a, 'hot').updateOne({ _id: 'hot' }, { $inc: { n: 1 } });
  });
  try {
    const result = await cli('verify', '--src', 'server_a/test.hot', '--dst', 'server_b/test.hot');
    assert.equal(result.stderr, '');
    assert.equal(result.stdout, 'server_b/test.hot <= server_a/test.hot: not settled (2 documents on server_a, 2 on server_b)\n  still changing: 1\n    "hot"\n');
    assert.equal(result.code, 1);
  } finally {
    writing = false;
    await Promise.all(writers);
    await a.db('admin').command({ configureFailPoint: 'failCommand', mode: 'off' });
  }
});

test('bad input is refused with exit code 2, and nothing is written; an unreachable server is exit code 1', async () => {
  const refused = async (args: string[], message: string, file = config) => {
    const result = await runCli(['-c', file, 'verify', ...args]);
    assert.deepEqual(result, { code: 2, stdout: '', stderr: `mmm: ${message}\n` }, args.join(' '));
  };
  await refused(['--src', 'server_c/test.planted', '--dst', 'server_b/test.planted'], '--src: unknown server "server_c" (the topology has server_a, server_b)');
  await refused(['--src', 'server_a/test.planted'], '--src and --dst go together: give both to verify one link, or neither to verify every link');
  await refused(['--src', 'server_a/test.none', '--dst', 'server_b/test.none'], 'there is no link from server_a/test.none to server_b/test.none');
  await refused(['--src', 'server_b/test.planted', '--dst', 'server_a/test.planted'], 'there is no link from server_b/test.planted to server_a/test.planted');
  await refused(['--repair'], '--repair needs --prefer SERVER: the server whose documents are kept');
  await refused(['--prefer', 'server_a'], '--prefer goes with --repair');
  await refused(['--repair', '--prefer', 'server_x'], '--prefer: unknown server "server_x" (the topology has server_a, server_b)');
  // A third server, which the link does not touch (its URI is never reached).
  const three = writeTopology(path.join(dir, 'three.yml'), {
    server_a: { id: ID_A, uri: sets[0]!.uri },
    server_b: { id: ID_B, uri: sets[1]!.uri },
    server_c: { id: '5a8f1a9e-0c9d-4d0e-9b9e-2f1c3d4e5f60', uri: 'mongodb://127.0.0.1:1' },
  });
  await refused(
    ['--src', 'server_a/test.planted', '--dst', 'server_b/test.planted', '--repair', '--prefer', 'server_c'],
    '--prefer server_c: the link server_b/test.planted <= server_a/test.planted is neither from nor into it (verify one link with --src and --dst)',
    three,
  );
  // A server that cannot be reached is no bad input, but no answer either: exit 1.
  const unreachable = await runCli(['-c', three, '--connect-timeout', '1', 'verify']);
  assert.equal(unreachable.code, 1);
  assert.equal(unreachable.stdout, '');
  assert.match(unreachable.stderr, /^mmm: server_c \(mongodb:\/\/127\.0\.0\.1:1\): unreachable \(waited 1 s\): .*\n$/);
});

test('--repair --prefer makes the documents equal as mmm writes, which no link sends back; verify then says equal', async () => {
  // Planted before the links exist, so that no run replicates them.
  await writeEqual('fix', 100);
  await plant('fix');
  await writeEqual('fix2', 100);
  await plant('fix2');
  await replicate('server_a/test.fix', 'server_b/test.fix');
  await replicate('server_b/test.fix', 'server_a/test.fix');
  const run = new RunProcess(config, ['--status-interval', '1']);
  try {
    await following(b, ID_A, 'test.fix');
    await following(a, ID_B, 'test.fix');
    const beforeA = await newest(a);
    const beforeB = await newest(b);
    const repaired = await cli('verify', '--src', 'server_a/test.fix', '--dst', 'server_b/test.fix', '--repair', '--prefer', 'server_a');
    assert.equal(repaired.stderr, '');
    assert.equal(repaired.stdout, `${PLANTED_TEXT('fix', 100)}  repaired on server_b, as on server_a: 3 replaced, 2 inserted, 2 deleted\n  after the repair: equal\n`);
    assert.equal(repaired.code, 0);
    await settle(topology, new Map([['server_a', a], ['server_b', b]]));
    const onFix = (op: Document) => op.ns === 'test.fix';
    assert.equal(await loggedOperations(b, beforeB, onFix), 7, 'the repair wrote 7 documents on server_b');
    assert.equal(await loggedOperations(a, beforeA, onFix), 0, 'the link from server_b sent none of them back');

    // Both links between the two collections: equal, each way.
    const both = await cli('verify');
    assert.equal(both.code, 1, 'test.planted still differs');
    assert.match(both.stdout, /^server_a\/test\.fix <= server_b\/test\.fix: equal \(105 documents\)$/m);
    assert.match(both.stdout, /^server_b\/test\.fix <= server_a\/test\.fix: equal \(105 documents\)$/m);

    // The other way round: the destination's documents kept, the source's repaired.
    await replicate('server_a/test.fix2', 'server_b/test.fix2');
    await following(b, ID_A, 'test.fix2');
    const beforeB2 = await newest(b);
    const beforeA2 = await newest(a);
    const back = await cli('verify', '--src', 'server_a/test.fix2', '--dst', 'server_b/test.fix2', '--repair', '--prefer', 'server_b');
    assert.equal(back.stdout, `${PLANTED_TEXT('fix2', 100)}  repaired on server_a, as on server_b: 3 replaced, 2 inserted, 2 deleted\n  after the repair: equal\n`, back.stderr);
    assert.equal(back.code, 0);
    await settle(topology, new Map([['server_a', a], ['server_b', b]]));
    const onFix2 = (op: Document) => op.ns === 'test.fix2';
    assert.equal(await loggedOperations(a, beforeA2, onFix2), 7);
    assert.equal(await loggedOperations(b, beforeB2, onFix2), 0, 'the link from server_a sent none of them to server_b');
    assert.ok((await coll(a, 'fix2').findOne({ _id: 100002 as never }, { promoteValues: false }))!.n instanceof Double, "server_b's Double kept");
    const again = await cli('verify', '--src', 'server_a/test.fix2', '--dst', 'server_b/test.fix2');
    assert.deepEqual(again, { code: 0, stdout: 'server_b/test.fix2 <= server_a/test.fix2: equal (105 documents)\n', stderr: '' });
  } finally {
    assert.equal(await run.stop(), 0, run.stderr);
  }
});

test(`a live link under load both ways reports no difference (seed ${SEED})`, async () => {
  await replicate('server_a/test.live', 'server_b/test.live');
  await replicate('server_b/test.live', 'server_a/test.live');
  const run = new RunProcess(config, ['--status-interval', '1']);
  const loads = [new WriteLoad(coll(a, 'live'), 'a', SEED), new WriteLoad(coll(b, 'live'), 'b', SEED + 1)];
  try {
    await following(b, ID_A, 'test.live');
    await following(a, ID_B, 'test.live');
    await coll<TestDoc>(a, 'live').insertMany(Array.from({ length: 3_000 }, (_, k) => ({ _id: `pre${k}`, v: k })));
    await eventually('the documents on server_b', async () => (await coll(b, 'live').countDocuments()) === 3_000);
    for (const load of loads) load.start();
    await eventually('writes on both sides', async () => loads.every((l) => l.writes > 50));
    for (const [src, dst] of [['server_a', 'server_b'], ['server_b', 'server_a'], ['server_a', 'server_b']] as const) {
      const result = await cli('verify', '--src', `${src}/test.live`, '--dst', `${dst}/test.live`, '--json');
      const [link] = (JSON.parse(result.stdout) as { links: Document[] }).links;
      assert.deepEqual([link!.different, link!.missing, link!.extra, link!.changing], [{ count: 0, first: [] }, { count: 0, first: [] }, { count: 0, first: [] }, { count: 0, first: [] }], result.stdout);
      assert.equal(result.code, 0, result.stderr);
    }
    assert.ok(loads.every((l) => l.failures === 0));
  } finally {
    await Promise.all(loads.map((l) => l.stop()));
    await settle(topology, new Map([['server_a', a], ['server_b', b]]));
    assert.equal(await run.stop(), 0, run.stderr);
  }
  const settled = await cli('verify', '--src', 'server_a/test.live', '--dst', 'server_b/test.live');
  assert.equal(settled.code, 0, settled.stdout);
});
