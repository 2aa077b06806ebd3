// Translating an update from its bytes (src/apply/update-bytes.ts), without a server: where it
// applies, it gives the update translateUpdate gives of the decoded entry, with the values'
// bytes as the oplog holds them; everywhere else it declines, and the decoded path decides
// (and refuses what it refuses). Real servers apply it in every replication test.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BSON, Double, Int32, Long, type Document } from 'mongodb';
import { translateUpdate } from '../src/apply/update.ts';
import { translateUpdateBytes } from '../src/apply/update-bytes.ts';
import { ENTRY_DECODE } from '../src/oplog/entry.ts';

const TAG = 'origin:1:2';
const v2 = (diff: Document | Map<string, unknown>) => new Map<string, unknown>([['$v', new Int32(2)], ['diff', diff]]);
const bytesOf = (o: Document | Map<string, unknown>) => BSON.serialize(o as Document);

/** The bytes path's update, as bytes, after checking it decodes to the decoded path's. */
function sameAsDecoded(o: Document | Map<string, unknown>): Buffer {
  const raw = bytesOf(o);
  const fromBytes = translateUpdateBytes(raw, TAG);
  assert.ok(fromBytes, `expected the bytes path to take ${JSON.stringify(BSON.deserialize(raw))}`);
  const decoded = translateUpdate(BSON.deserialize(raw, ENTRY_DECODE), TAG);
  assert.equal(fromBytes.spec.kind, decoded.kind);
  assert.equal(fromBytes.upsert, false);
  const spec = fromBytes.spec as Extract<typeof fromBytes.spec, { kind: 'modifier' }>;
  assert.deepEqual(BSON.deserialize(spec.bytes!, ENTRY_DECODE), (decoded as typeof spec).update);
  assert.deepEqual(spec.update, (decoded as typeof spec).update);
  return Buffer.from(spec.bytes!);
}

test('u and d of top-level fields: the decoded path\'s $set and $unset, the tag last', () => {
  sameAsDecoded(v2({ u: { a: 1 } }));
  sameAsDecoded(v2({ d: { b: false } }));
  sameAsDecoded(v2({ d: { b: false, c: false }, u: { a: 'x', n: new Int32(5), arr: [1, 2] } }));
  sameAsDecoded(v2({ u: { a: new Int32(1), b: new Double(1), c: Long.fromNumber(1), d: null, e: { nested: true } } }));
  sameAsDecoded(v2(JSON.parse('{"u": {"__proto__": 1}}')));
});

test('a change to __mmm is dropped, as the decoded path drops it', () => {
  const only = sameAsDecoded(v2({ u: { __mmm: 'theirs' } }));
  assert.deepEqual(BSON.deserialize(only), { $set: { __mmm: TAG } });
  sameAsDecoded(v2({ d: { __mmm: false } }));
  sameAsDecoded(v2({ d: { x: false }, u: { __mmm: 'theirs', a: 1 } }));
});

test('values keep their bytes: a sub-document whose names are whole numbers keeps its field order', () => {
  const value = new Map<string, unknown>([['b', 1], ['3', 2]]);
  const update = translateUpdateBytes(bytesOf(v2({ u: { x: value } })), TAG)!.spec as { bytes: Uint8Array };
  assert.ok(Buffer.from(update.bytes).includes(Buffer.from(bytesOf(value))));
  // Decoded, the same value lists "3" first.
  assert.deepEqual(Object.keys(BSON.deserialize(bytesOf(value))), ['3', 'b']);
});

test('a replacement is its document\'s bytes, tagged, and an upsert', () => {
  const document = new Map<string, unknown>([['_id', 1], ['a', 1], ['0', 'zero'], ['__mmm', 'theirs']]);
  const fromBytes = translateUpdateBytes(bytesOf(document), TAG)!;
  assert.equal(fromBytes.upsert, true);
  assert.equal(fromBytes.spec.kind, 'replacement');
  const sent = (fromBytes.spec as { bytes: Uint8Array }).bytes;
  const expected = new Map<string, unknown>([['_id', 1], ['a', 1], ['0', 'zero'], ['__mmm', TAG]]);
  assert.deepEqual(Buffer.from(sent), Buffer.from(bytesOf(expected)));
  // One with a top-level $ name is the decoded path's (a pipeline).
  assert.equal(translateUpdateBytes(bytesOf({ _id: 1, $a: 1 }), TAG), undefined);
});

test('everything else is left to the decoded path', () => {
  const declined: Array<[string, Document | Map<string, unknown>]> = [
    ['an inserted field (i)', v2({ i: { a: 1 } })],
    ['a sub-diff', v2({ sa: { u: { b: 1 } } })],
    ['u before d (malformed: the parser refuses it)', v2(new Map([['u', { a: 1 }], ['d', { b: false }]]))],
    ['an empty diff (malformed)', v2({})],
    ['a name in two sections (malformed)', v2({ d: { a: false }, u: { a: 1 } })],
    ['an empty name', v2({ u: { '': 1 } })],
    ['a dotted name', v2({ u: { 'a.b': 1 } })],
    ['a name starting with a dot', v2({ u: { '.a': 1 } })],
    ['a name that is a dot, removed', v2({ d: { '.': false } })],
    ['a $ name', v2({ u: { $a: 1 } })],
    ['more than 32 fields', v2({ u: Object.fromEntries(Array.from({ length: 33 }, (_, k) => [`f${k}`, k])) })],
    ['$v: 1', { $v: new Int32(1), $set: { a: 1 } }],
    ['$v as a double', { $v: new Double(2), diff: { u: { a: 1 } } }],
    ['another top-level field', { $v: new Int32(2), diff: { u: { a: 1 } }, extra: 1 }],
    ['no diff', { $v: new Int32(2) }],
    ['u that is not a document', v2({ u: [1] })],
  ];
  for (const [what, o] of declined) assert.equal(translateUpdateBytes(bytesOf(o), TAG), undefined, what);
  // A name twice, which a JavaScript object cannot hold, written as BSON by hand: `u: {a: 1, a: 2}`.
  const twice = Buffer.from(bytesOf(v2({ u: { a: new Int32(1), b: new Int32(2) } })));
  twice[twice.indexOf(Buffer.from('b\0'))] = 0x61;
  assert.deepEqual(Object.keys(BSON.deserialize(twice).diff.u), ['a']);
  assert.equal(translateUpdateBytes(twice, TAG), undefined);
  // 32 fields are still taken.
  sameAsDecoded(v2({ u: Object.fromEntries(Array.from({ length: 32 }, (_, k) => [`f${k}`, k])) }));
});

test('a replacement holding __mmm twice is the decoded path\'s, which drops both', () => {
  // `{_id: 1, __mmm: 'a', __xxx: 'b'}` with the second name made __mmm by hand.
  const twice = Buffer.from(bytesOf({ _id: 1, __mmm: 'a', __xxx: 'b' }));
  twice.write('__mmm', twice.indexOf(Buffer.from('__xxx')), 'latin1');
  assert.equal(translateUpdateBytes(twice, TAG), undefined);
});
