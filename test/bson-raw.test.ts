// Raw BSON helpers (src/bson/raw.ts): elements found in the bytes, comparison without `__mmm`,
// and documents decoded so that they serialize back to the same bytes, field order included.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Binary, BSON, BSONRegExp, Code, Decimal128, Double, Int32, Long, MaxKey, MinKey, ObjectId, Timestamp, type Document } from 'mongodb';
import {
  digestWithout,
  elementKey,
  equalWithout,
  forEachElement,
  keyElements,
  MalformedBsonError,
  mayReorderWhenDecoded,
  orderedDocument,
  topLevelElements,
  typeName,
  withoutElement,
} from '../src/bson/raw.ts';

const bytes = (doc: Document | Map<string, unknown>) => Buffer.from(BSON.serialize(doc));

test('every BSON type is stepped over: the elements after it are found', () => {
  const doc = {
    double: new Double(1.5),
    string: 'text',
    object: { a: 1 },
    array: [1, 'two'],
    binary: new Binary(Buffer.from([1, 2, 3]), 4),
    oid: new ObjectId(),
    bool: true,
    date: new Date(0),
    null: null,
    regex: new BSONRegExp('a+b', 'i'),
    code: new Code('x = 1'),
    codeWithScope: new Code('x = y', { y: 2 }),
    int: new Int32(7),
    timestamp: new Timestamp({ t: 1, i: 2 }),
    long: Long.fromNumber(8),
    decimal: Decimal128.fromString('9.99'),
    min: new MinKey(),
    max: new MaxKey(),
    last: 'end',
  };
  const found = topLevelElements(bytes(doc));
  assert.deepEqual(found.map((e) => e.name), Object.keys(doc));
  assert.deepEqual(found.map((e) => typeName(e.type)), [
    'double', 'string', 'object', 'array', 'binData', 'objectId', 'bool', 'date', 'null', 'regex', 'javascript',
    'javascriptWithScope', 'int', 'timestamp', 'long', 'decimal', 'minKey', 'maxKey', 'string',
  ]);
});

test('malformed bytes are refused, not read past their end', () => {
  const good = bytes({ a: 'text' });
  assert.throws(() => forEachElement(good.subarray(0, good.length - 1), () => {}), MalformedBsonError);
  const badType = Buffer.from(good);
  badType[4] = 0x42;
  assert.throws(() => forEachElement(badType, () => {}), MalformedBsonError);
  const longString = Buffer.from(good);
  longString.writeInt32LE(1000, 7); // the string's length
  assert.throws(() => forEachElement(longString, () => {}), MalformedBsonError);
});

test("the _id and __mmm elements are found wherever they are; an _id's key holds its type", () => {
  const doc = bytes({ a: 1, _id: new Int32(5), __mmm: 'x:1:2', b: 2 });
  const { id, tag } = keyElements(doc);
  assert.equal(typeName(id!.type), 'int');
  assert.deepEqual(BSON.deserialize(withoutElement(doc, tag)), { a: 1, _id: 5, b: 2 });
  const asDouble = bytes({ _id: new Double(5) });
  assert.notEqual(elementKey(doc, id!), elementKey(asDouble, keyElements(asDouble).id!));
  assert.equal(elementKey(doc, id!), elementKey(bytes({ _id: new Int32(5) }), keyElements(bytes({ _id: new Int32(5) })).id!));
});

test('documents are equal without __mmm only when the rest is the same bytes: types and order count', () => {
  const compare = (a: Document, b: Document) => {
    const [x, y] = [bytes(a), bytes(b)];
    const equal = equalWithout(x, keyElements(x).tag, y, keyElements(y).tag);
    assert.equal(digestWithout(x, keyElements(x).tag).equals(digestWithout(y, keyElements(y).tag)), equal, 'the digest agrees');
    return equal;
  };
  assert.equal(compare({ _id: 1, a: 'x' }, { _id: 1, a: 'x', __mmm: 'tag' }), true);
  assert.equal(compare({ _id: 1, __mmm: 'one', a: 'x' }, { _id: 1, a: 'x', __mmm: 'another, longer' }), true);
  assert.equal(compare({ __mmm: 't', _id: 1, a: 'x' }, { _id: 1, a: 'x' }), true);
  assert.equal(compare({ _id: 1, a: new Int32(1) }, { _id: 1, a: new Double(1) }), false);
  assert.equal(compare({ _id: 1, a: 1, b: 2 }, { _id: 1, b: 2, a: 1 }), false);
  assert.equal(compare({ _id: 1, a: 'x' }, { _id: 1, a: 'y', __mmm: 'tag' }), false);
  assert.equal(compare({ _id: 1, a: 'xy' }, { _id: 1, a: 'x', __mmm: 'y' }), false);
  assert.equal(compare({ _id: 1, nested: { __mmm: 'kept' } }, { _id: 1, nested: {} }), false, 'only the top-level __mmm is left out');
});

test('orderedDocument serializes back to the same bytes, also with whole-number field names after others', () => {
  const docs: Array<Document | Map<string, unknown>> = [
    { _id: new Int32(1), a: new Double(2), b: Long.fromNumber(3), c: [new Int32(1), new Double(1)], d: new Binary(Buffer.from('x')), r: new BSONRegExp('a', 'm') },
    new Map<string, unknown>([['_id', 'k'], ['b', 1], ['1', 'one'], ['0', new Map([['z', 1], ['9', 2]])], ['list', [new Map([['x', 1], ['2', 2]])]]]),
    { _id: 2, $dollar: 1, 'dotted.name': 2, '': 'empty' },
  ];
  for (const doc of docs) {
    const original = bytes(doc);
    const decoded = orderedDocument(original);
    assert.ok(decoded, 'decodable');
    assert.deepEqual(bytes(decoded), original);
  }
  assert.equal(orderedDocument(bytes(docs[0]!)) instanceof Map, false, 'a plain object when one serializes back');
});

test('mayReorderWhenDecoded flags whole-number field names at any depth, and undefined values, but not array indexes', () => {
  const flagged: Array<Document | Map<string, unknown>> = [new Map<string, unknown>([['a', 1], ['0', 2]]), { a: { b: { '12': 1 } } }, { list: [{ '3': 1 }] }];
  for (const doc of flagged) assert.equal(mayReorderWhenDecoded(bytes(doc)), true, JSON.stringify([...(doc instanceof Map ? doc : Object.entries(doc))]));
  // {u: undefined}, BSON type 0x06, which the serializer no longer writes.
  assert.equal(mayReorderWhenDecoded(Buffer.from([8, 0, 0, 0, 0x06, 0x75, 0, 0])), true);
  assert.equal(mayReorderWhenDecoded(bytes({ list: [1, 2, [3, 4]], '01': 1, a1: { '-1': 2, '1.5': 3 }, big: { '12345678901': 1 } })), false);
});
