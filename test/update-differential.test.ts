// The update translator against real MongoDB:
// - random updates on one replica set, their oplog entries translated and applied to a copy on
//   another, and the copy compared byte for byte (field order and numeric types count) after
//   every entry and at the end. The seed is printed; rerun a failure with MMM_TEST_SEED=<seed>;
// - hand-written diffs, including on documents that differ from the source's, against the
//   server's own oplog applier (applyOps), which must also refuse what the translator refuses.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { BSON, Decimal128, Double, Int32, Long, MongoServerError, type Collection, type Document, type MongoClient, type Timestamp } from 'mongodb';
import { startReplicaSets, type ReplicaSet } from '../scripts/replica-sets.ts';
import { rebuildDocument, translateUpdate, type UpdateSpec } from '../src/apply/update.ts';
import { UnsupportedOplogEntryError } from '../src/errors.ts';
import { show, splitTag, stored, storedAll } from './support/bson.ts';
import { applyRandomWrite, RandomUpdates, seededRandom, type RandomWrite } from './support/random-updates.ts';

const SEED = Number(process.env.MMM_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
const UPDATES = 320;
const DOCUMENTS = 40;

let sets: ReplicaSet[] = [];
let source: MongoClient;
let destination: MongoClient;

before(async () => {
  sets = await startReplicaSets(2);
  [source, destination] = sets.map((s) => s.client()) as [MongoClient, MongoClient];
});

after(async () => {
  await Promise.all([source?.close(), destination?.close()]);
  await Promise.all(sets.map((s) => s.destroy()));
});

async function apply(collection: Collection<Document>, id: unknown, spec: UpdateSpec, tag: string): Promise<void> {
  const filter = { _id: id as never };
  const result =
    spec.kind === 'replacement'
      ? await collection.replaceOne(filter, spec.document)
      : spec.kind === 'rebuild'
        ? await rebuild(collection, id, spec, tag)
        : await collection.updateOne(filter, spec.kind === 'modifier' ? spec.update : spec.pipeline);
  assert.equal(result.matchedCount, 1, `document ${String(id)} is missing on the destination`);
}

/** A rebuild as the writer applies it (there, inside the destination transaction). */
async function rebuild(collection: Collection<Document>, id: unknown, spec: { diff: Document }, tag: string) {
  const current = await collection.findOne({ _id: id as never }, { promoteValues: false });
  assert.ok(current, `document ${String(id)} is missing on the destination`);
  return collection.replaceOne({ _id: id as never }, rebuildDocument(current, spec, tag));
}

test('random updates replayed from the oplog give byte-identical documents, on both translation paths', async (t) => {
  t.diagnostic(`seed ${SEED} (rerun with MMM_TEST_SEED=${SEED})`);
  const updates = new RandomUpdates(SEED);
  const chooseDocument = seededRandom(SEED ^ 0x5eed);
  const src = source.db('diff').collection('docs');
  const dst = destination.db('diff').collection('docs');

  await src.insertMany(updates.seedDocuments(DOCUMENTS));
  const copies = await src.find({}, { promoteValues: false }).toArray();
  await dst.insertMany(copies.map((doc) => ({ ...doc, __mmm: 'seed' })));
  const ids = (await src.find({}, { projection: { _id: 1 } }).toArray()).map((d) => d._id as unknown as string);
  const oplog = source.db('local').collection('oplog.rs');
  const start = (await oplog.find({}).sort({ $natural: -1 }).limit(1).next())!.ts as Timestamp;

  // Drive the source, keeping each write and the document it produced.
  const done: Array<{ id: string; write: RandomWrite; before: Uint8Array; after: Uint8Array }> = [];
  let attempts = 0;
  while (done.length < UPDATES) {
    assert.ok(++attempts < UPDATES * 5, `only ${done.length} of ${attempts} random writes changed a document`);
    const id = ids[Math.floor(chooseDocument() * ids.length)]!;
    const before = await stored(src, id);
    const write = updates.next(BSON.deserialize(before, { promoteValues: false }));
    if (await applyRandomWrite(src, id, write)) done.push({ id, write, before, after: await stored(src, id) });
  }

  const entries = await oplog
    .find({ ts: { $gt: start }, ns: 'diff.docs' }, { promoteValues: false })
    .sort({ $natural: 1 })
    .toArray();
  assert.deepEqual(
    entries.map((e) => [e.op, e.o2?._id]),
    done.map((d) => ['u', d.id]),
    'one update entry per write that changed a document',
  );

  const paths = { replacement: 0, modifier: 0, pipeline: 0, rebuild: 0 };
  const labels = new Map<string, Set<string>>();
  for (const [k, entry] of entries.entries()) {
    const { id, write, before, after } = done[k]!;
    const ts = entry.ts as Timestamp;
    const tag = `test:${ts.t}:${ts.i}`;
    const spec = translateUpdate(entry.o as Document, tag);
    paths[spec.kind]++;
    labels.set(spec.kind, (labels.get(spec.kind) ?? new Set()).add(write.label));
    await apply(dst, id, spec, tag);
    const { rest, tag: written } = splitTag(await stored(dst, id));
    assert.equal(written, tag);
    if (!rest.equals(after)) {
      assert.fail(
        [
          `entry ${k} (${write.label}) on ${id} differs; seed ${SEED}`,
          `write:       ${BSON.EJSON.stringify(write.kind === 'update' ? write.update : write.document)}`,
          `before:      ${show(before)}`,
          `oplog o:     ${BSON.EJSON.stringify(entry.o)}`,
          `translated:  ${BSON.EJSON.stringify(spec)}`,
          `source:      ${show(after)}`,
          `destination: ${show(rest)}`,
        ].join('\n'),
      );
    }
  }

  const everything = async (c: Collection<Document>) =>
    (await storedAll(c)).map(splitTag);
  const [sourceDocs, destinationDocs] = await Promise.all([everything(src), everything(dst)]);
  assert.equal(destinationDocs.length, DOCUMENTS);
  assert.deepEqual(
    destinationDocs.map((d) => d.rest.toString('hex')),
    sourceDocs.map((d) => d.rest.toString('hex')),
  );
  for (const d of destinationDocs) assert.match(String(d.tag), /^(seed|test:\d+:\d+)$/);

  for (const [kind, count] of Object.entries(paths)) {
    t.diagnostic(`${kind}: ${count} entries, from ${[...(labels.get(kind) ?? [])].sort().join(', ')}`);
  }
  assert.ok(paths.modifier > 0 && paths.pipeline > 0 && paths.replacement > 0, JSON.stringify(paths));
});

// The oracle: `applyOps` replays an oplog entry with the server's own applier
// (document_diff_applier.cpp). Hand-written diffs, on documents equal to or different from the
// source's (as a destination with concurrent writes can be), must give the same bytes.
const oracleCases: Array<{ name: string; before: Document; diff: Document; path: UpdateSpec['kind'] }> = [
  { name: 'i of an existing field moves it to the end', before: { a: 1, b: 2, c: 3 }, diff: { i: { a: new Int32(5) } }, path: 'pipeline' },
  {
    name: 'u of absent fields appends them in listed order, before the inserted ones',
    before: { a: 1, b: 1 },
    diff: { u: { q: 1, p: 2 }, i: { b: 3, c: 4 } },
    path: 'pipeline',
  },
  {
    name: 'a sub-diff of a field of another type gives null, of a missing field nothing',
    before: { a: 'text', l: { x: 1 }, o: [1] },
    diff: { i: { z: 1 }, sa: { u: { x: 1 } }, sl: { a: true, u0: 1 }, so: { u: { y: 1 } }, smissing: { u: { y: 1 } } },
    path: 'pipeline',
  },
  {
    name: 'a resize past the end pads with nulls, and an element sub-diff past the old end is null',
    before: { arr: [1, 2, 3] },
    diff: { sarr: { a: true, l: new Int32(7), u1: 7, s4: { u: { k: 1 } }, u5: 'x' } },
    path: 'pipeline',
  },
  {
    name: 'a truncation with element changes, nested arrays and documents',
    before: { arr: [1, { x: 1, y: 2 }, [2, 3], 4, 5, 6] },
    diff: { sarr: { a: true, l: new Int32(3), s1: { d: { y: false }, i: { x: 9 } }, s2: { a: true, l: new Int32(4), u3: 9 } } },
    path: 'pipeline',
  },
  {
    name: 'element sub-diffs on elements of other types give null',
    before: { arr: [1, 'x', { y: 1 }, [0]] },
    diff: { sarr: { a: true, s0: { u: { k: 1 } }, s1: { a: true, u0: 1 }, s2: { d: { y: false }, i: { z: 2 } }, s3: { u: { k: 1 } } } },
    path: 'pipeline',
  },
  {
    name: '$-prefixed, dotted and empty field names',
    before: { $d: 1, 'a.b': { c: 1, 'e.f': 1 }, '': [1, 2], $keep: 1 },
    diff: { d: { $d: false }, 'sa.b': { d: { 'e.f': false }, u: { c: 2 } }, s: { a: true, u1: { $x: 1 } } },
    path: 'pipeline',
  },
  {
    name: 'values that look like paths, variables and operators stay data',
    before: { a: 1 },
    diff: { u: { a: '$b' }, i: { v: { $set: { x: '$$ROOT' } }, w: ['$concat', { $literal: 1 }] } },
    path: 'pipeline',
  },
  {
    name: 'numeric types are kept',
    before: { n: new Int32(1), list: [new Double(1)] },
    diff: { u: { n: Long.fromNumber(2) }, i: { d: new Double(2), m: new Decimal128('2.50') }, slist: { a: true, u0: new Int32(1), u1: Long.fromNumber(3) } },
    path: 'pipeline',
  },
  {
    name: 'changes six levels down',
    before: { a: { b: { c: { d: { e: { f: 1, g: [1, { h: 1 }] } } } } } },
    diff: { sa: { sb: { sc: { sd: { se: { i: { z: 1 }, sg: { a: true, s1: { u: { h: 2 } } } } } } } } },
    path: 'pipeline',
  },
  {
    name: 'hundreds of changes at one level',
    before: Object.fromEntries(Array.from({ length: 300 }, (_, k) => [`f${k}`, k])),
    diff: {
      d: Object.fromEntries(Array.from({ length: 100 }, (_, k) => [`f${k}`, false])),
      u: Object.fromEntries(Array.from({ length: 100 }, (_, k) => [`f${k + 100}`, -k])),
      i: Object.fromEntries(Array.from({ length: 200 }, (_, k) => [`g${k}`, k])),
    },
    path: 'pipeline',
  },
  {
    name: 'top-level $set/$unset as a classic modifier (document as on the source)',
    before: { a: 1, n: { x: 1, y: [0, { z: 1 }] }, b: 2 },
    diff: { d: { b: false }, u: { a: 5, n: { x: 2 } } },
    path: 'modifier',
  },
  {
    name: 'values holding $-prefixed, dotted and empty keys in a classic modifier',
    before: { a: 1, n: { x: 1 } },
    diff: { u: { a: { $set: 1, 'p.q': [{ '': 2 }] }, n: { x: { $ref: 'c', $id: 1, '': '$x' } } } },
    path: 'modifier',
  },
  {
    name: 'a top-level classic modifier on a diverged document: an absent field is appended, a deleted one was absent',
    before: { z: 1 },
    diff: { d: { b: false }, u: { a: 5 } },
    path: 'modifier',
  },
  {
    name: 'nested changes on a document already past them (a replay): the parent a scalar now, or absent',
    before: { x: 1, arr: true, n: 'scalar', other: 'kept' },
    diff: { u: { x: 5 }, sarr: { a: true, u1: 2 }, sn: { u: { y: 1 } }, smissing: { u: { y: 1 } } },
    path: 'pipeline',
  },
  {
    name: 'an element set past the end, on a shorter array than the source had',
    before: { arr: [1, 2] },
    diff: { sarr: { a: true, u4: 6 } },
    path: 'pipeline',
  },
];

test('hand-written diffs give what the server applier gives (applyOps), on documents as on the source or diverged', async (t) => {
  const oracle = destination.db('oracle').collection('docs');
  const mmm = destination.db('mmm').collection('docs');
  for (const [k, { name, before, diff, path }] of oracleCases.entries()) {
    await t.test(name, async () => {
      const id = `case${k}`;
      await Promise.all([oracle.insertOne({ _id: id as never, ...before }), mmm.insertOne({ _id: id as never, ...before })]);
      const o = { $v: new Int32(2), diff };
      await destination.db('admin').command({ applyOps: [{ op: 'u', ns: 'oracle.docs', o, o2: { _id: id } }] });
      const spec = translateUpdate(o, 'oracle');
      assert.equal(spec.kind, path);
      await apply(mmm, id, spec, 'oracle');
      const { rest, tag } = splitTag(await stored(mmm, id));
      assert.equal(tag, 'oracle');
      const expected = await stored(oracle, id);
      assert.ok(rest.equals(expected), `server applier: ${show(expected)}\nmmm:            ${show(rest)}`);
    });
  }
});

test('diffs the server applier refuses are refused too', async (t) => {
  const malformed: Array<[string, Document]> = [
    ['a field in two sections', { d: { x: false }, i: { x: 9 } }],
    ['sections out of order', { u: { c: 2 }, d: { x: false } }],
    ['an unknown section', { x: { a: 1 } }],
    ['an empty sub-diff', { sa: {} }],
    ['an array header that is not true', { sarr: { a: false, u0: 1 } }],
    ['a length after the entries', { sarr: { a: true, u0: 1, l: new Int32(2) } }],
    ['a sub-diff that is no object', { sa: 1 }],
  ];
  const collection = destination.db('oracle').collection('refused');
  await collection.insertOne({ _id: 'r' as never, x: 1, a: { b: 1 }, arr: [1, 2] });
  for (const [name, diff] of malformed) {
    await t.test(name, async () => {
      const o = { $v: new Int32(2), diff };
      const command = { applyOps: [{ op: 'u', ns: 'oracle.refused', o, o2: { _id: 'r' } }] };
      await assert.rejects(destination.db('admin').command(command), MongoServerError);
      assert.throws(() => translateUpdate(o, 'oracle'), UnsupportedOplogEntryError);
    });
  }
});
