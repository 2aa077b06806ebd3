// The differential test through the whole product: random updates of every kind on one replica
// set, replicated by `run` to another, and every document compared byte for byte (field order
// and numeric types count), apart from `__mmm`.
//
// The seed is printed; rerun a failure with MMM_TEST_SEED=<seed>.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { BSON, type Document, type MongoClient } from 'mongodb';
import type { Topology } from '../src/topology.ts';
import { show, splitTag, stored, storedAll } from './support/bson.ts';
import { applyRandomWrite, RandomUpdates, seededRandom } from './support/random-updates.ts';
import { addLink, settle, startCluster, startMmm, type Cluster, type RunningMmm } from './support/replication.ts';

const SEED = Number(process.env.MMM_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
const UPDATES = 320;
const DOCUMENTS = 40;

let cluster: Cluster;
let topology: Topology;
let clients: Map<string, MongoClient>;
let mmm: RunningMmm;

before(async () => {
  cluster = await startCluster(2);
  ({ topology, clients } = cluster);
  await addLink(topology, clients, 'server_a/diff.docs', 'server_b/diff.docs');
  mmm = startMmm(topology);
  await settle(topology, clients);
});

after(async () => {
  await mmm?.stop();
  await cluster?.close();
});

test('random inserts and updates replicated by run give byte-identical documents', async (t) => {
  t.diagnostic(`seed ${SEED} (rerun with MMM_TEST_SEED=${SEED})`);
  const updates = new RandomUpdates(SEED);
  const chooseDocument = seededRandom(SEED ^ 0x5eed);
  const src = clients.get('server_a')!.db('diff').collection('docs');
  const dst = clients.get('server_b')!.db('diff').collection('docs');

  await src.insertMany(updates.seedDocuments(DOCUMENTS));
  const ids = (await src.find({}, { projection: { _id: 1 } }).toArray()).map((d) => d._id as unknown as string);
  let applied = 0;
  let attempts = 0;
  while (applied < UPDATES) {
    assert.ok(++attempts < UPDATES * 5, `only ${applied} of ${attempts} random writes changed a document`);
    const id = ids[Math.floor(chooseDocument() * ids.length)]!;
    const write = updates.next(BSON.deserialize(await stored(src, id), { promoteValues: false }));
    if (await applyRandomWrite(src, id, write)) applied++;
  }
  await settle(topology, clients);

  const [sourceDocs, destinationDocs] = await Promise.all([storedAll(src), storedAll(dst)]);
  assert.equal(destinationDocs.length, DOCUMENTS);
  const originA = topology.byName('server_a')!.id;
  for (const [k, bytes] of destinationDocs.entries()) {
    const { rest, tag } = splitTag(bytes);
    assert.match(String(tag), new RegExp(`^${originA}:\\d+:\\d+$`));
    if (!rest.equals(Buffer.from(sourceDocs[k]!))) {
      assert.fail(`document ${k} differs; seed ${SEED}\nsource:      ${show(sourceDocs[k]!)}\ndestination: ${show(rest)}`);
    }
  }
});
