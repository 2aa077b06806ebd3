// The in-memory diff applier (src/apply/diff-apply.ts) and the 'rebuild' it serves:
// - hand-made diffs, one rule each, with the expected document written out, and the same
//   expectations checked against the server's own applier (applyOps);
// - random updates on a real server: the diff it logged, applied to the pre-image, must give its
//   post-image byte for byte. The seed is printed; rerun a failure with MMM_TEST_SEED=<seed>;
// - deep diffs (60, 99 and 180 levels: 180 is the deepest document mongod 6.0 stores): a
//   'rebuild', whose document is the server's post-image; and the deepest pipeline translateUpdate
//   still sends is one the server takes.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { BSON, Decimal128, Double, Int32, Long, type Collection, type Document, type MongoClient } from 'mongodb';
import { startReplicaSet, type ReplicaSet } from '../scripts/replica-sets.ts';
import { applyDocumentDiff } from '../src/apply/diff-apply.ts';
import { rebuildDocument, translateUpdate, type UpdateSpec } from '../src/apply/update.ts';
import { UnsupportedOplogEntryError } from '../src/errors.ts';
import { show, splitTag, stored } from './support/bson.ts';
import { applyRandomWrite, RandomUpdates, seededRandom } from './support/random-updates.ts';

const SEED = Number(process.env.MMM_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
const TAG = 'origin:1:2';

const bytes = (doc: Document) => Buffer.from(BSON.serialize(doc));
/** A document as the driver reads it from the server: numbers as Int32/Double/Long wrappers. */
const decoded = (doc: Document | Uint8Array) =>
  BSON.deserialize(doc instanceof Uint8Array ? doc : BSON.serialize(doc), { promoteValues: false });

function assertSameBytes(actual: Uint8Array, expected: Uint8Array, message: string): void {
  if (!Buffer.from(actual).equals(Buffer.from(expected))) {
    assert.fail(`${message}\nexpected: ${show(expected)}\nactual:   ${show(actual)}`);
  }
}

/** Freezes a value and the objects and arrays in it, so that a change to the input throws (ESM is strict). */
function deepFreeze<T>(value: T): T {
  if (isContainer(value) && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/** An embedded document or an array, as the driver decodes them (not an Int32, a Binary, ...). */
function isContainer(value: unknown): value is Document | unknown[] {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return Array.isArray(value) || proto === Object.prototype || proto === null;
}

/** How deeply objects and arrays nest, the top-level document counted as one. */
function depth(value: unknown): number {
  return isContainer(value) ? 1 + Math.max(0, ...Object.values(value).map(depth)) : 0;
}

// A field named __proto__ can only be made by defining it (JSON.parse does).
const protoField = (value: unknown) => JSON.parse(`{"__proto__": ${JSON.stringify(value)}}`) as Document;

const cases: Array<{ name: string; before: Document; diff: Document; expected: Document }> = [
  {
    name: 'd removes a field, u replaces one in place',
    before: { a: 1, b: 2, c: 3 },
    diff: { d: { b: false }, u: { a: new Int32(5) } },
    expected: { a: new Int32(5), c: 3 },
  },
  {
    name: 'u of absent fields appends them in listed order, before every i field',
    before: { a: 1, b: 1 },
    diff: { u: { q: 1, p: 2, a: 7 }, i: { b: 3, c: 4 } },
    expected: { a: 7, q: 1, p: 2, b: 3, c: 4 },
  },
  {
    name: 'i of an existing field moves it to the end',
    before: { a: 1, b: 2, c: 3 },
    diff: { i: { a: new Int32(5) } },
    expected: { b: 2, c: 3, a: new Int32(5) },
  },
  {
    name: 'the top-level _id stays first, even where an i moves it (the server stores it first)',
    before: { a: 0, b: 1, n: { _id: 1, c: 1 } },
    diff: { i: { a: 1, _id: 1 }, sn: { i: { _id: 2 } } },
    expected: { b: 1, n: { c: 1, _id: 2 }, a: 1 },
  },
  {
    name: 'a sub-diff applies to an object in place, recursively',
    before: { a: { x: 1, y: { z: [1, 2] }, w: 1 }, b: 1 },
    diff: { sa: { d: { w: false }, i: { x: 9 }, sy: { sz: { a: true, u0: 'one' } } } },
    expected: { a: { y: { z: ['one', 2] }, x: 9 }, b: 1 },
  },
  {
    name: 'a sub-diff of a field of another type gives null',
    before: { a: 'text', l: { x: 1 }, o: [1], n: new Int32(3) },
    diff: { sa: { u: { x: 1 } }, sl: { a: true, u0: 1 }, so: { u: { y: 1 } }, sn: { a: true, u0: 1 } },
    expected: { a: null, l: null, o: null, n: null },
  },
  {
    name: 'a sub-diff of an absent field does nothing',
    before: { a: 1 },
    diff: { u: { a: 2 }, smissing: { u: { y: 1 } }, sgone: { a: true, u0: 1 } },
    expected: { a: 2 },
  },
  {
    name: 'l truncates an array',
    before: { arr: [1, 2, 3, 4] },
    diff: { sarr: { a: true, l: new Int32(2) } },
    expected: { arr: [1, 2] },
  },
  {
    name: 'l pads with nulls; an element set past the old end is set, one sub-diffed is null',
    before: { arr: [1, 2, 3] },
    diff: { sarr: { a: true, l: new Int32(7), u1: 7, s4: { u: { k: 1 } }, u5: 'x' } },
    expected: { arr: [1, 7, 3, null, null, 'x', null] },
  },
  {
    name: 'an element set past the end without l pads with nulls up to it',
    before: { arr: [1, 2] },
    diff: { sarr: { a: true, u4: 6 } },
    expected: { arr: [1, 2, null, null, 6] },
  },
  {
    name: 'element sub-diffs apply by type, null on a mismatch',
    before: { arr: [{ x: 1, y: 2 }, [2, 3], 'x', { y: 1 }, 5] },
    diff: { sarr: { a: true, s0: { d: { y: false }, i: { x: 9 } }, s1: { a: true, l: new Int32(4), u3: 9 }, s2: { u: { k: 1 } }, s3: { a: true, u0: 1 } } },
    expected: { arr: [{ x: 9 }, [2, 3, null, 9], null, null, 5] },
  },
  {
    name: 'numeric types are kept, in the document and in the diff',
    before: { n: new Int32(1), d: new Double(2), l: Long.fromNumber(3), list: [new Double(1)] },
    diff: { u: { n: Long.fromNumber(2) }, i: { m: new Decimal128('2.50') }, slist: { a: true, u1: new Int32(1) } },
    expected: { n: Long.fromNumber(2), d: new Double(2), l: Long.fromNumber(3), list: [new Double(1), new Int32(1)], m: new Decimal128('2.50') },
  },
  {
    name: '$-prefixed, dotted, empty and __proto__ field names',
    before: { $d: 1, 'a.b': { c: 1, 'e.f': 1 }, '': [1, 2], ...protoField({ x: 1 }) },
    diff: { d: { $d: false }, 'sa.b': { d: { 'e.f': false }, u: { c: 2 } }, s: { a: true, u1: { $x: 1 } }, s__proto__: { u: { x: 2 } } },
    expected: { 'a.b': { c: 2 }, '': [1, { $x: 1 }], ...protoField({ x: 2 }) },
  },
  {
    name: 'an embedded document that looks like a DBRef is a document',
    before: { r: { $ref: 'c', $id: 1, extra: 1 } },
    diff: { sr: { u: { $id: 2 }, i: { more: true } } },
    expected: { r: { $ref: 'c', $id: 2, extra: 1, more: true } },
  },
];

describe('applyDocumentDiff, one rule at a time', () => {
  for (const { name, before, diff, expected } of cases) {
    test(name, () => {
      const input = deepFreeze(decoded({ _id: 1, ...before }));
      const inputBytes = bytes(input);
      const result = applyDocumentDiff(input, deepFreeze(decoded(diff)));
      assertSameBytes(bytes(result), bytes({ _id: 1, ...expected }), name);
      assertSameBytes(bytes(input), inputBytes, 'the input document is unchanged');
    });
  }

  test('values are the diff\'s own, not copies', () => {
    const value = { nested: [new Int32(1)] };
    const result = applyDocumentDiff({ a: 1 }, { u: { a: value } });
    assert.equal(result.a, value);
  });

  test('a diff the server would refuse is refused', () => {
    assert.throws(() => applyDocumentDiff({ x: 1 }, { d: { x: false }, i: { x: 9 } }), UnsupportedOplogEntryError);
    assert.throws(() => applyDocumentDiff({ arr: [1] }, { sarr: { a: true, u1: 1, u0: 2 } }), UnsupportedOplogEntryError);
  });
});

describe('rebuildDocument', () => {
  const rebuild = (current: Document, diff: Document) => rebuildDocument(deepFreeze(decoded(current)), { diff }, TAG);

  test('sets the tag in place if the document has one', () => {
    assertSameBytes(bytes(rebuild({ _id: 1, a: 1, __mmm: 'old', b: 2 }, { u: { a: 2 } })), bytes({ _id: 1, a: 2, __mmm: TAG, b: 2 }), 'in place');
  });

  test('else appends it last, after the inserted fields', () => {
    assertSameBytes(bytes(rebuild({ _id: 1, a: 1 }, { i: { z: 1 } })), bytes({ _id: 1, a: 1, z: 1, __mmm: TAG }), 'appended');
  });

  test('ignores a top-level change of __mmm, in every section; a nested one is data', () => {
    const current = { _id: 1, __mmm: 'old', a: 1, n: { __mmm: 1 } };
    for (const diff of [{ d: { __mmm: false } }, { u: { __mmm: 'theirs' } }, { i: { __mmm: 'theirs' } }, { s__mmm: { u: { x: 1 } } }]) {
      assertSameBytes(bytes(rebuild(current, diff)), bytes({ ...current, __mmm: TAG }), JSON.stringify(diff));
    }
    assertSameBytes(bytes(rebuild(current, { sn: { u: { __mmm: 2 } } })), bytes({ ...current, __mmm: TAG, n: { __mmm: 2 } }), 'nested');
  });
});

describe('against a real server', () => {
  let set: ReplicaSet;
  let client: MongoClient;

  before(async () => {
    set = await startReplicaSet(1);
    client = set.client();
  });

  after(async () => {
    await client?.close();
    await set?.destroy();
  });

  /** The last oplog entry of `ns`, checked to be the update of `id`. */
  async function lastUpdate(ns: string, id: unknown): Promise<Document> {
    const entry = await client.db('local').collection('oplog.rs').find({ ns }, { promoteValues: false }).sort({ $natural: -1 }).limit(1).next();
    assert.ok(entry && entry.op === 'u' && entry.o2?._id === id, `the last entry on ${ns} is the update of ${String(id)}`);
    return entry;
  }

  test('the hand-made expectations are what the server applier (applyOps) gives', async (t) => {
    for (const [k, { name, before, diff, expected }] of cases.entries()) {
      await t.test(name, async () => {
        const oracle = client.db('oracle').collection(`case${k}`);
        await oracle.insertOne({ _id: 1 as never, ...before });
        await client.db('admin').command({ applyOps: [{ op: 'u', ns: oracle.namespace, o: { $v: new Int32(2), diff }, o2: { _id: 1 } }] });
        assertSameBytes(await stored(oracle, 1), bytes({ _id: 1, ...expected }), name);
      });
    }
  });

  test('random updates: the logged diff applied to the pre-image is the post-image, byte for byte', async (t) => {
    t.diagnostic(`seed ${SEED} (rerun with MMM_TEST_SEED=${SEED})`);
    const updates = new RandomUpdates(SEED);
    const chooseDocument = seededRandom(SEED ^ 0xd1ff);
    const docs = client.db('random').collection('docs');
    await docs.insertMany(updates.seedDocuments(30));
    const ids = (await docs.find({}, { projection: { _id: 1 } }).toArray()).map((d) => d._id as unknown as string);
    let diffs = 0;
    let attempts = 0;
    while (diffs < 250) {
      assert.ok(++attempts < 2000, `only ${diffs} of ${attempts} random writes were logged as diffs`);
      const id = ids[Math.floor(chooseDocument() * ids.length)]!;
      const pre = await stored(docs, id);
      const write = updates.next(decoded(pre));
      if (!(await applyRandomWrite(docs, id, write))) continue;
      const entry = await lastUpdate('random.docs', id);
      if (entry.o.diff === undefined) continue; // a replacement: nothing to apply
      diffs++;
      const post = await stored(docs, id);
      const result = bytes(applyDocumentDiff(deepFreeze(decoded(pre)), entry.o.diff));
      if (!result.equals(Buffer.from(post))) {
        assert.fail(
          [
            `${write.label} on ${id} differs; seed ${SEED}`,
            `write:  ${BSON.EJSON.stringify(write.kind === 'update' ? write.update : write.document)}`,
            `before: ${show(pre)}`,
            `diff:   ${BSON.EJSON.stringify(entry.o.diff)}`,
            `server: ${show(post)}`,
            `ours:   ${show(result)}`,
          ].join('\n'),
        );
      }
    }
    t.diagnostic(`${diffs} diffs checked in ${attempts} writes`);
  });

  type Container = 'object' | 'array';
  /**
   * A document whose field `a` holds the containers given (an object `{a: inner}` or an array
   * `[0, inner]`), around a leaf `{x, y, list}`, and the path to the leaf. It nests
   * `containers.length + 3` levels. A large top-level string makes the server log a diff (it logs
   * a replacement when the diff would not be smaller).
   */
  function deepDocument(id: string, containers: Container[]): { doc: Document; leaf: string } {
    let value: unknown = { x: new Int32(1), y: 'y', list: [new Int32(1)] };
    for (const container of [...containers].reverse()) value = container === 'object' ? { a: value } : [new Int32(0), value];
    const leaf = ['a', ...containers.map((c) => (c === 'object' ? 'a' : '1'))].join('.');
    return { doc: { _id: id, pad: 'p'.repeat(8192), a: value }, leaf };
  }

  /** Applies a spec as the writer does (a rebuild: read, rebuildDocument, replaceOne). */
  async function apply(collection: Collection<Document>, id: unknown, spec: UpdateSpec): Promise<void> {
    assert.ok(spec.kind === 'pipeline' || spec.kind === 'rebuild', spec.kind);
    const filter = { _id: id as never };
    if (spec.kind === 'pipeline') {
      assert.equal((await collection.updateOne(filter, spec.pipeline)).modifiedCount, 1);
      return;
    }
    const current = await collection.findOne(filter, { promoteValues: false });
    assert.ok(current);
    assert.equal((await collection.replaceOne(filter, rebuildDocument(current, spec, TAG))).modifiedCount, 1);
  }

  for (const levels of [60, 99, 180]) {
    test(`a diff ${levels} levels deep is a rebuild that gives the server's post-image`, async () => {
      const docs = client.db('deep').collection(`docs${levels}`);
      const copies = client.db('deep').collection(`copies${levels}`);
      const { doc, leaf } = deepDocument(`d${levels}`, Array<Container>(levels - 3).fill('object'));
      assert.equal(depth(doc), levels);
      await docs.insertOne(doc);
      await copies.insertOne(doc);
      const writes: Array<[string, Document]> = [
        ['$set at the deepest level', { $set: { [`${leaf}.x`]: new Int32(2) } }],
        ['$unset at the deepest level', { $unset: { [`${leaf}.y`]: '' } }],
        ['$push to an array at the deepest level', { $push: { [`${leaf}.list`]: new Double(2.5) } }],
        ['a new field at the deepest level', { $set: { [`${leaf}.z`]: { k: Long.fromNumber(7) } } }],
        ['all at once', { $set: { [`${leaf}.x`]: 'three', [`${leaf}.y`]: 'back' }, $unset: { [`${leaf}.z`]: '' }, $pop: { [`${leaf}.list`]: 1 } }],
      ];
      for (const [name, update] of writes) {
        const pre = await stored(docs, doc._id);
        assert.equal((await docs.updateOne({ _id: doc._id }, update)).modifiedCount, 1, name);
        const post = await stored(docs, doc._id);
        const entry = await lastUpdate(docs.namespace, doc._id);
        assert.ok(depth(entry.o.diff) >= levels - 3, `${name}: the server logged a diff ${depth(entry.o.diff)} levels deep`);
        const spec = translateUpdate(entry.o, TAG);
        assert.equal(spec.kind, 'rebuild', name);
        const rebuilt = splitTag(bytes(rebuildDocument(deepFreeze(decoded(pre)), spec as { diff: Document }, TAG)));
        assert.equal(rebuilt.tag, TAG);
        assertSameBytes(rebuilt.rest, post, name);
        await apply(copies, doc._id, spec);
        assertSameBytes(splitTag(await stored(copies, doc._id)).rest, post, `${name}, written on a copy`);
      }
    });
  }

  for (const [shape, container] of [['objects', () => 'object'], ['objects and arrays', (k: number) => (k % 2 ? 'array' : 'object')]] as const) {
    test(`the deepest pipeline translateUpdate sends (${shape}) is one the server takes; one level more is a rebuild`, async () => {
      const docs = client.db('edge').collection(shape.replaceAll(' ', '_'));
      const copies = client.db('edge').collection(`${shape.replaceAll(' ', '_')}_copies`);
      let lastPipeline: { id: string; spec: UpdateSpec; post: Uint8Array } | undefined;
      for (let count = 10; ; count++) {
        assert.ok(count < 100, 'no diff became a rebuild');
        const { doc, leaf } = deepDocument(`c${count}`, Array.from({ length: count }, (_, k) => container(k) as Container));
        await docs.insertOne(doc);
        await copies.insertOne(doc);
        await docs.updateOne({ _id: doc._id }, { $set: { [`${leaf}.x`]: new Int32(2) } });
        const post = await stored(docs, doc._id);
        const spec = translateUpdate((await lastUpdate(docs.namespace, doc._id)).o, TAG);
        if (spec.kind === 'pipeline') {
          lastPipeline = { id: doc._id, spec, post };
          continue;
        }
        assert.equal(spec.kind, 'rebuild');
        assert.ok(lastPipeline, 'the shallowest diff tried is a pipeline');
        await apply(copies, lastPipeline.id, lastPipeline.spec);
        assertSameBytes(splitTag(await stored(copies, lastPipeline.id)).rest, lastPipeline.post, 'the deepest pipeline, applied');
        await apply(copies, doc._id, spec);
        assertSameBytes(splitTag(await stored(copies, doc._id)).rest, post, 'the shallowest rebuild, applied');
        break;
      }
    });
  }
});
