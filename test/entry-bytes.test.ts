// Entries decoded from their bytes (src/oplog/entry-bytes.ts) and inserted documents tagged in
// theirs (src/bson/raw.ts, taggedBytes): what the decoder and the writer read must be what a
// whole decode gives, an insert's document must stay its bytes until read, and the tagged bytes
// must be those the decoded path wrote.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Binary, BSON, Double, Int32, Long, ObjectId, Timestamp, UUID, type Document } from 'mongodb';
import { taggedBytes } from '../src/bson/raw.ts';
import { statementsAsBytes } from '../src/apply/write-commands.ts';
import { translateInsert, translateUpdate } from '../src/apply/update.ts';
import { ENTRY_DECODE } from '../src/oplog/entry.ts';
import { decodeEntryBytes } from '../src/oplog/entry-bytes.ts';
import { OplogDecoder } from '../src/oplog/decode.ts';
import type { CrudOp } from '../src/oplog/entry.ts';
import { carriedTag } from '../src/replicate/tag.ts';

/** An entry as a 6.0 primary logs a retryable write, with the session fields the decoder never reads. */
function logged(fields: Document): Uint8Array {
  return BSON.serialize({
    lsid: { id: new UUID(), uid: new Binary(Buffer.alloc(32)) },
    txnNumber: Long.fromNumber(7),
    ...fields,
    ui: new UUID(),
    stmtId: 0,
    ts: new Timestamp({ t: 1_796_138_201, i: 42 }),
    t: Long.fromNumber(1),
    v: Long.fromNumber(2),
    wall: new Date('2026-12-02T00:00:00.123Z'),
    prevOpTime: { ts: new Timestamp({ t: 0, i: 0 }), t: Long.fromNumber(-1) },
  });
}

const ejson = (value: unknown) => BSON.EJSON.stringify({ value }, { relaxed: false });

test('an insert entry: position, namespace, wall time and document as a whole decode gives them, the document left as its bytes', () => {
  const document = new Map<string, unknown>([['_id', new Int32(5)], ['name', 'é'], ['7', new Double(1)]]);
  const buf = logged({ op: 'i', ns: 'db.cöll', o: document, o2: { _id: new Int32(5) } });
  const whole = BSON.deserialize(buf, ENTRY_DECODE);
  const entry = decodeEntryBytes(buf);
  for (const field of ['ts', 'op', 'ns', 'wall']) assert.equal(ejson((entry as Document)[field]), ejson(whole[field]), field);
  assert.equal(entry.fromMigrate, undefined);
  // The bytes are the document's own, field order included (a decoded object would list "7" first).
  assert.deepEqual(Buffer.from(entry.raw!.bytes), Buffer.from(BSON.serialize(document)));
  assert.equal(ejson(entry.o), ejson(whole.o));
  assert.equal(entry.o, entry.o, 'decoded once');
  assert.throws(() => {
    (entry as { o: Document }).o = {};
  }, TypeError);
});

test('update and delete entries carry what the decoder reads, and nothing of the session; an update\'s o left as its bytes', () => {
  const fieldNames = ['ts', 'op', 'ns', 'o', 'o2', 'ui', 'wall', 'fromMigrate'];
  for (const fields of [
    { op: 'u', ns: 'db.c', o: { $v: 2, diff: { u: { a: new Int32(1) } } }, o2: { _id: new ObjectId() } },
    { op: 'u', ns: 'db.c', o: { _id: 'r', b: 1 }, o2: { _id: 'r' }, fromMigrate: true },
    { op: 'd', ns: 'db.c', o: { _id: 'x' }, fromMigrate: true },
  ]) {
    const buf = logged(fields);
    const whole = BSON.deserialize(buf, ENTRY_DECODE);
    const entry = decodeEntryBytes(buf) as Document;
    for (const key of fieldNames) assert.equal(ejson(entry[key]), ejson(whole[key]), `${fields.op}: ${key}`);
    for (const key of Object.keys(entry)) assert.ok(fieldNames.includes(key) || key === 'rawUpdate', `${fields.op}: ${key}`);
    assert.equal(entry.raw, undefined);
    if (fields.op === 'u') {
      assert.deepEqual(Buffer.from(entry.rawUpdate.bytes), Buffer.from(BSON.serialize(fields.o)));
      assert.equal(entry.o, entry.o, 'decoded once');
      assert.throws(() => {
        entry.o = {};
      }, TypeError);
    } else assert.equal(entry.rawUpdate, undefined);
  }
});

test('commands and no-ops are decoded whole', () => {
  for (const fields of [
    { op: 'c', ns: 'db.$cmd', o: { create: 'c', idIndex: { v: 2, key: { _id: 1 }, name: '_id_' } } },
    { op: 'c', ns: 'db.$cmd', o: { applyOps: 'not an array' } },
    { op: 'n', ns: '', o: { msg: 'periodic noop' } },
  ]) {
    const buf = logged(fields);
    assert.equal(ejson(decodeEntryBytes(buf)), ejson(BSON.deserialize(buf, ENTRY_DECODE)));
  }
});

test("a transaction's operations are each as a whole decode gives them, its inserts' documents left as their bytes", () => {
  const inserted = new Map<string, unknown>([['_id', new Int32(5)], ['name', 'é'], ['7', new Double(1)], ['__mmm', 'origin:1:2']]);
  const applyOps = [
    { op: 'u', ns: 'mmm.writes', ui: new UUID(), o: { $v: 2, diff: { u: { n: new Int32(2) } } }, o2: { _id: { origin: 'o' } } },
    { op: 'i', ns: 'db.c', ui: new UUID(), o: inserted },
    { op: 'u', ns: 'db.c', ui: new UUID(), o: { $v: 2, diff: { u: { a: new Int32(1) } } }, o2: { _id: new ObjectId() } },
    { op: 'd', ns: 'db.c', ui: new UUID(), o: { _id: 'x' } },
    { op: 'c', ns: 'db.$cmd', o: { applyOps: [{ op: 'i', ns: 'db.c', o: { _id: 6 } }] } },
  ];
  const buf = logged({ op: 'c', ns: 'admin.$cmd', o: { applyOps, partialTxn: true } });
  const whole = BSON.deserialize(buf, ENTRY_DECODE);
  const entry = decodeEntryBytes(buf) as Document;
  for (const field of Object.keys(whole).filter((k) => k !== 'o')) assert.equal(ejson(entry[field]), ejson(whole[field]), field);
  assert.equal(entry.o.partialTxn, true);
  const ops = entry.o.applyOps as Document[];
  assert.equal(ops.length, applyOps.length);
  ops.forEach((op, k) => {
    const want = (whole.o.applyOps as Document[])[k]!;
    if (op.op !== 'i') return assert.equal(ejson(op), ejson(want), `operation ${k}`);
    assert.deepEqual(Buffer.from(op.raw.bytes), Buffer.from(BSON.serialize(inserted)), 'the document as its bytes, field order included');
    // What the decoder reads of an insert; not its `ui` (an insert has no pre-image), as of an insert logged alone.
    for (const field of ['op', 'ns', 'o', 'fromMigrate']) assert.equal(ejson(op[field]), ejson(want[field]), `operation ${k}: ${field}`);
    assert.equal(op.ui, undefined);
    assert.equal(carriedTag(op as CrudOp), 'origin:1:2', 'the tag read from the bytes');
    assert.throws(() => {
      op.o = {};
    }, TypeError);
  });
});

test("a change decoded from a transaction's insert keeps its bytes, and the tag it carries is read from them", () => {
  const buf = logged({ op: 'c', ns: 'admin.$cmd', o: { applyOps: [{ op: 'i', ns: 'db.c', ui: new UUID(), o: { _id: 1, a: 'x', __mmm: 7 } }] } });
  const [change] = new OplogDecoder(new Timestamp({ t: 0, i: 0 })).decode([decodeEntryBytes(buf)]).changes;
  assert.ok(change?.raw, 'the change holds the bytes');
  assert.equal(carriedTag(change), undefined, 'a tag that is not a string is none, as decoded');
  assert.equal(ejson(change.o), ejson({ _id: new Int32(1), a: 'x', __mmm: new Int32(7) }));
});

test('a change decoded from an insert entry keeps its bytes, undecoded until read', () => {
  const buf = logged({ op: 'i', ns: 'db.c', o: { _id: 1, a: 'x' } });
  const [change] = new OplogDecoder(new Timestamp({ t: 0, i: 0 })).decode([decodeEntryBytes(buf)]).changes;
  assert.ok(change?.raw, 'the change holds the bytes');
  assert.equal(ejson(change.o), ejson({ _id: new Int32(1), a: 'x' }));
});

test('a change decoded from an update entry keeps its o as bytes, undecoded until read, beside o2 and its pre-image key', () => {
  const o = { $v: 2, diff: { u: { a: 'y' } } };
  const buf = logged({ op: 'u', ns: 'db.c', o, o2: { _id: 1 } });
  const [change] = new OplogDecoder(new Timestamp({ t: 0, i: 0 })).decode([decodeEntryBytes(buf)]).changes;
  assert.deepEqual(Buffer.from(change!.rawUpdate!.bytes), Buffer.from(BSON.serialize(o)));
  assert.equal(change!.raw, undefined);
  assert.equal(ejson(change!.o), ejson(BSON.deserialize(BSON.serialize(o), ENTRY_DECODE)));
  assert.equal(ejson(change!.o2), ejson({ _id: new Int32(1) }));
  assert.equal(change!.preImage?.applyOpsIndex, 0);
});

test('taggedBytes: the document without its own __mmm, then the tag, as the decoded path writes it', () => {
  const cases: Document[] = [
    { _id: new ObjectId(), a: new Int32(1), b: { c: [new Long(2), 'd'] } },
    { a: 1, __mmm: 'old:1:1', _id: 'x', z: null },
    { _id: new Double(2.5), __mmm: { nested: true } },
    { _id: { k: 1 }, __proto__x: 1 },
  ];
  for (const doc of cases) {
    const bytes = BSON.serialize(doc);
    const out = taggedBytes(bytes, 'origin:1796138201:3');
    const decoded = translateUpdate(BSON.deserialize(bytes, ENTRY_DECODE), 'origin:1796138201:3');
    assert.equal(decoded.kind, 'replacement');
    assert.deepEqual(out.bytes, Buffer.from(BSON.serialize((decoded as { document: Document }).document)), ejson(doc));
    assert.equal(ejson(out.id), ejson(BSON.deserialize(bytes, ENTRY_DECODE)._id));
    assert.equal(out.dollarName, false);
  }
  // Whole-number names stay where they are in the bytes (a decoded object lists them first).
  const ordered = new Map<string, unknown>([['_id', 1], ['a', 2], ['0', 3]]);
  assert.deepEqual(taggedBytes(BSON.serialize(ordered), 't').bytes, Buffer.from(BSON.serialize(new Map([...ordered, ['__mmm', 't']]))));
});

test('an insert with a top-level $ name is left to the pipeline; the others carry their bytes', () => {
  assert.equal(translateInsert(BSON.serialize({ _id: 1, $x: 2 }), 't'), undefined);
  const plain = translateInsert(BSON.serialize({ _id: 1, x: 2 }), 't');
  assert.equal(plain?.spec.kind, 'replacement');
  assert.equal(ejson(plain?.spec.kind === 'replacement' && plain.spec.document), ejson({ _id: new Int32(1), x: new Int32(2), __mmm: 't' }));
});

test("an _id its decoded value would not find is left to the decoded path: a sub-document with a whole-number name after another, a string that is not UTF-8", () => {
  // {_id: {b: 1, "1": 2}}: decoded, "1" comes first, and a filter on it would miss these bytes.
  const reordered = BSON.serialize(new Map<string, unknown>([['_id', new Map<string, unknown>([['b', 1], ['1', 2]])], ['x', 1]]));
  assert.equal(taggedBytes(reordered, 't').exactId, false);
  assert.equal(translateInsert(reordered, 't'), undefined);
  const inOrder = BSON.serialize({ _id: { a: 1, b: [1, 2] }, x: 1 });
  assert.equal(taggedBytes(inOrder, 't').exactId, true);
  // {_id: "\xff"}: one byte that is no UTF-8 (the server stores what it is sent).
  const invalid = Buffer.from(BSON.serialize({ _id: 'a', x: 1 }));
  invalid[invalid.indexOf(0x61)] = 0xff;
  assert.equal(taggedBytes(invalid, 't').exactId, false);
  assert.equal(translateInsert(invalid, 't'), undefined);
  for (const id of [new Int32(1), new Double(2.5), Long.fromNumber(3), 'text', new ObjectId(), new Date(0), null, new Binary(Buffer.from([1]), 0), new UUID()]) {
    assert.equal(taggedBytes(BSON.serialize({ _id: id }), 't').exactId, true, ejson(id));
  }
});

test('this driver lets writes go out as statements in bytes (an upgrade that removes it sends them through bulkWrite, inserts decoded: this says so)', () => {
  assert.equal(statementsAsBytes, true);
});

test('an entry holding what the server does not write is decoded whole, as before: a ui that is not a UUID, a fromMigrate byte other than 0 or 1', () => {
  const odd = logged({ op: 'u', ns: 'db.c', o: { $v: 2, diff: { u: { a: 1 } } }, o2: { _id: 1 } });
  // The ui logged() adds, as a binary of subtype 3 instead of 4.
  const ui = Buffer.from(odd).indexOf(Buffer.from('ui\0'));
  const subtype3 = Buffer.from(odd);
  subtype3[ui + 3 + 4] = 3;
  const entry = decodeEntryBytes(subtype3);
  assert.equal(entry.rawUpdate, undefined);
  assert.equal(ejson(entry.ui), ejson(BSON.deserialize(subtype3, ENTRY_DECODE).ui));
  const migrated = Buffer.from(logged({ op: 'd', ns: 'db.c', o: { _id: 'x' }, fromMigrate: true }));
  migrated[migrated.indexOf(Buffer.from('fromMigrate\0')) + 'fromMigrate\0'.length] = 2;
  assert.throws(() => BSON.deserialize(migrated, ENTRY_DECODE));
  assert.throws(() => decodeEntryBytes(migrated));
});
