// The update translator on hand-written oplog `o` values, without a server: which form each
// entry takes, the exact classic modifiers, the tag, and the errors. What the pipelines compute
// is checked against the server's own applier in update-differential.test.ts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BSON, Double, Int32, Long, type Document } from 'mongodb';
import { translateUpdate, type UpdateSpec } from '../src/apply/update.ts';
import { UnsupportedOplogEntryError } from '../src/errors.ts';

const TAG = 'origin:1:2';
const v2 = (diff: Document) => ({ $v: new Int32(2), diff });

function modifier(spec: UpdateSpec): Document {
  assert.equal(spec.kind, 'modifier', `expected a modifier, got ${JSON.stringify(spec)}`);
  return (spec as Extract<UpdateSpec, { kind: 'modifier' }>).update;
}

function pipeline(spec: UpdateSpec): Document[] {
  assert.equal(spec.kind, 'pipeline', `expected a pipeline, got ${JSON.stringify(spec)}`);
  return (spec as Extract<UpdateSpec, { kind: 'pipeline' }>).pipeline;
}

/** Every string and object key of an expression, except inside `$literal`: what the server parses. */
function parsed(expression: unknown): string[] {
  if (typeof expression === 'string') return [expression];
  if (Array.isArray(expression)) return expression.flatMap(parsed);
  if (typeof expression !== 'object' || expression === null) return [];
  return Object.entries(expression).flatMap(([key, value]) => (key === '$literal' ? [key] : [key, ...parsed(value)]));
}

const rejects = (o: Document, message: RegExp) =>
  assert.throws(() => translateUpdate(o, TAG), (err: unknown) => err instanceof UnsupportedOplogEntryError && message.test(err.message));

describe('telling the forms apart', () => {
  test('a document with _id is a whole document, even with diff and $v fields of its own', () => {
    const o = { _id: 1, diff: { u: { a: 1 } } };
    assert.deepEqual(translateUpdate(o, TAG), { kind: 'replacement', document: { ...o, __mmm: TAG } });
    const dollar = { _id: 1, $v: new Int32(2), diff: { u: { a: 1 } } };
    assert.deepEqual(pipeline(translateUpdate(dollar, TAG)), [{ $replaceWith: { $literal: { ...dollar, __mmm: TAG } } }]);
  });

  test('$v is compared as a number: Int32(2), Double(2) and 2 are the same', () => {
    for (const version of [new Int32(2), new Double(2), 2]) {
      assert.deepEqual(modifier(translateUpdate({ $v: version, diff: { u: { a: 1 } } }, TAG)), { $set: { a: 1, __mmm: TAG } });
    }
  });

  test('a $v: 1 entry (MongoDB 4.x) is its own classic modifier, tagged', () => {
    const o = { $v: new Int32(1), $set: { 'a.b': 1, __mmm: 'theirs', '__mmm.x': 2, c: 3 }, $unset: { d: true, __mmm: true } };
    assert.deepEqual(modifier(translateUpdate(o, TAG)), { $set: { 'a.b': 1, c: 3, __mmm: TAG }, $unset: { d: true } });
    assert.deepEqual(modifier(translateUpdate({ $v: 1, $unset: { __mmm: true } }, TAG)), { $set: { __mmm: TAG } });
  });
});

describe('replacements', () => {
  test('keep field order and the values themselves, drop their own tag and put ours last', () => {
    const n = new Int32(5);
    const spec = translateUpdate({ _id: 'x', b: n, __mmm: 'theirs', a: { $notAnOperator: '$notAPath' } }, TAG);
    assert.equal(spec.kind, 'replacement');
    const { document } = spec as Extract<UpdateSpec, { kind: 'replacement' }>;
    assert.deepEqual(Object.keys(document), ['_id', 'b', 'a', '__mmm']);
    assert.equal(document.b, n);
    assert.equal(document.__mmm, TAG);
  });

  test('keep a field named __proto__ as a field (the copy does not take it for the prototype)', () => {
    const o = BSON.deserialize(BSON.serialize(JSON.parse('{"_id": 1, "__proto__": {"p": 1}, "z": 2}')));
    const { document } = translateUpdate(o, TAG) as Extract<UpdateSpec, { kind: 'replacement' }>;
    assert.deepEqual(Object.keys(document), ['_id', '__proto__', 'z', '__mmm']);
    assert.equal(Object.getPrototypeOf(document), Object.prototype);
    assert.deepEqual(Object.keys(BSON.deserialize(BSON.serialize(document))), ['_id', '__proto__', 'z', '__mmm']);
  });

  test('with a top-level $ field, which replaceOne refuses, become a $replaceWith of the literal document', () => {
    const o = { _id: 1, $price: new Double(2.5), 'dot.ted': 1 };
    assert.deepEqual(pipeline(translateUpdate(o, TAG)), [{ $replaceWith: { $literal: { ...o, __mmm: TAG } } }]);
  });
});

describe('$v: 2 diffs as classic modifiers', () => {
  test('u and d at the top level', () => {
    assert.deepEqual(modifier(translateUpdate(v2({ d: { b: false }, u: { a: 1 } }), TAG)), {
      $set: { a: 1, __mmm: TAG },
      $unset: { b: '' },
    });
  });

  test('nested object and array sub-diffs are pipelines: a replay may find the parent a scalar, which $set refuses', () => {
    pipeline(translateUpdate(v2({ d: { b: false }, sn: { u: { x: 5 }, sy: { a: true, s1: { u: { z: 2 } } } } }), TAG));
    pipeline(translateUpdate(v2({ sarr: { a: true, u5: 6, u7: 8 } }), TAG));
    pipeline(translateUpdate(v2({ u: { a: 1 }, sn: { u: { __mmm: 1 } } }), TAG));
  });

  test('a whole array rewritten ($pull) is a plain update of the field', () => {
    assert.deepEqual(modifier(translateUpdate(v2({ u: { arr: [1, 3] } }), TAG)), { $set: { arr: [1, 3], __mmm: TAG } });
  });

  test('values pass through untouched, so their BSON types reach the destination', () => {
    const values = [new Int32(1), new Double(1), Long.fromNumber(1)];
    const { $set, $unset } = modifier(translateUpdate(v2({ d: { e: false }, u: { a: values[0], b: values[1], c: values[2] } }), TAG));
    assert.equal($set.a, values[0]);
    assert.equal($set.b, values[1]);
    assert.equal($set.c, values[2]);
    assert.deepEqual($unset, { e: '' });
  });

  test('a field named __proto__ stays a field', () => {
    const { $set } = modifier(translateUpdate(v2(JSON.parse('{"u": {"__proto__": 1}}')), TAG));
    assert.deepEqual(Object.keys($set), ['__proto__', '__mmm']);
    assert.deepEqual(Object.keys(BSON.deserialize(BSON.serialize($set))), ['__proto__', '__mmm']);
  });
});

describe('the tag', () => {
  test('top-level changes of __mmm from the source are dropped, in every section', () => {
    for (const diff of [{ u: { __mmm: 'theirs' } }, { d: { __mmm: false } }, { i: { __mmm: 'theirs' } }, { s__mmm: { u: { x: 1 } } }]) {
      assert.deepEqual(modifier(translateUpdate(v2(diff), TAG)), { $set: { __mmm: TAG } }, JSON.stringify(diff));
    }
    assert.deepEqual(modifier(translateUpdate(v2({ u: { __mmm: 'theirs', a: 1 } }), TAG)), { $set: { a: 1, __mmm: TAG } });
  });

  test('a nested __mmm is data like any other field', () => {
    assert.ok(JSON.stringify(pipeline(translateUpdate(v2({ sn: { u: { __mmm: 1 } } }), TAG))).includes('{"$literal":1}'));
  });

  test('a pipeline sets it last, with $setField: in place if the document has it, else appended', () => {
    const [stage, ...more] = pipeline(translateUpdate(v2({ i: { a: 1, __mmm: 'theirs' } }), TAG));
    assert.equal(more.length, 0);
    const setField = stage!.$replaceWith.$setField;
    assert.equal(setField.field, '__mmm');
    assert.deepEqual(setField.value, { $literal: TAG });
    assert.ok(!JSON.stringify(setField.input).includes('theirs'));
  });
});

describe('$v: 2 diffs that need a pipeline', () => {
  const cases: Array<[string, Document]> = [
    // The server's diff calculator also logs as `i` an existing field a pipeline moved to the
    // end, which a $set would leave in place: `i` is never a classic update.
    ['one inserted field', { i: { a: 1 } }],
    ['an inserted field in a sub-document', { sn: { i: { a: 1 } } }],
    ['an inserted field in an array element', { sarr: { a: true, s0: { i: { a: 1 } } } }],
    ['an array resize', { sarr: { a: true, l: 2 } }],
    ['a resize with element changes', { sarr: { a: true, l: 4, s0: { u: { x: 1 } }, u3: 1 } }],
    ['a $-prefixed field name', { u: { $price: 1 } }],
    ['a dotted field name', { d: { 'a.b': false } }],
    ['an empty field name', { s: { u: { x: 1 } } }],
    ['an odd name in a sub-diff', { sn: { u: { 'x.y': 1 } } }],
  ];
  for (const [name, diff] of cases) {
    test(name, () => {
      pipeline(translateUpdate(v2(diff), TAG));
    });
  }

  test('every value and field name from the oplog is inside $literal, never parsed as a path or an operator', () => {
    const diff = {
      d: { $gone: false },
      u: { $price: '$notAPath', o: { $set: { x: '$$NOW' } } },
      i: { 'dot.ted': ['$concat', { $literal: 1 }] },
      'sa.b': { u: { $inc: '$x' } },
      sarr: { a: true, l: 3, u0: '$$CURRENT', s1: { u: { $each: 1 } } },
    };
    const seen = parsed(pipeline(translateUpdate(v2(diff), TAG)));
    for (const data of ['$gone', '$price', '$notAPath', '$set', '$$NOW', 'dot.ted', '$concat', '$inc', '$x', '$$CURRENT', '$each', 'a.b']) {
      assert.ok(!seen.includes(data), `${data} is parsed by the server`);
    }
  });

  test('the expression nests with the depth of the diff, not with its number of changes', () => {
    const wide = (prefix: string) => Object.fromEntries(Array.from({ length: 500 }, (_, k) => [`${prefix}${k}`, k]));
    const depth = (value: unknown): number =>
      typeof value === 'object' && value !== null ? 1 + Math.max(0, ...Object.values(value).map(depth)) : 0;
    const narrow = depth(pipeline(translateUpdate(v2({ i: { a: 1 }, sn: { u: { x: 1 } } }), TAG)));
    assert.ok(depth(pipeline(translateUpdate(v2({ u: wide('u'), i: wide('i'), sn: { u: wide('u') } }), TAG))) <= narrow + 3);
  });
});

describe('malformed entries are refused, never half applied', () => {
  const cases: Array<[string, Document, RegExp]> = [
    ['no _id and no $v', { a: 1 }, /neither a replacement/],
    ['an unknown $v', { $v: new Int32(3), diff: {} }, /unknown format \$v: 3/],
    ['extra keys beside $v: 2', { $v: 2, diff: { u: { a: 1 } }, $set: { b: 1 } }, /unexpected keys \["\$set"\]/],
    ['an operator $v: 1 does not log', { $v: 1, $inc: { a: 1 } }, /unexpected keys \["\$inc"\]/],
    ['a missing diff', { $v: 2 }, /at diff: expected an object/],
    ['an empty diff', v2({}), /the diff is empty/],
    ['an empty sub-diff', v2({ sa: {} }), /at diff.sa: the diff is empty/],
    ['an unknown section', v2({ x: { a: 1 } }), /unexpected section "x"/],
    ['a section name longer than its letter', v2({ dx: { a: false } }), /unexpected section "dx"/],
    ['sections out of order', v2({ u: { a: 1 }, d: { b: false } }), /unexpected section "d"/],
    ['a section after a sub-diff', v2({ sa: { u: { x: 1 } }, i: { b: 1 } }), /unexpected section "i"/],
    ['a section that is no object', v2({ u: 5 }), /at diff.u: expected an object/],
    ['a field in two sections', v2({ u: { a: 1 }, sa: { u: { x: 1 } } }), /field "a" appears in two sections/],
    ['a binary section', v2({ b: { a: 1 } }), /binary diff section 'b' is not supported/],
    ['an array header other than true', v2({ sarr: { a: 1, u0: 1 } }), /header `a` must be true/],
    ['a negative length', v2({ sarr: { a: true, l: new Int32(-1) } }), /bad array length/],
    ['a length after the entries', v2({ sarr: { a: true, u0: 1, l: 2 } }), /unexpected array diff entry "l"/],
    ['indices out of order', v2({ sarr: { a: true, u3: 1, u1: 1 } }), /index 1 is not ascending/],
    ['an index past the new length', v2({ sarr: { a: true, l: 2, u2: 1 } }), /index 2 is past new length 2/],
    ['an unknown array entry', v2({ sarr: { a: true, x1: 1 } }), /unexpected array diff entry "x1"/],
    ['a non-canonical index', v2({ sarr: { a: true, u01: 1 } }), /unexpected array diff entry "u01"/],
    ['a malformed array element sub-diff', v2({ sarr: { a: true, s0: { q: 1 } } }), /at diff.sarr.s0: unexpected section "q"/],
  ];
  for (const [name, o, message] of cases) {
    test(name, () => rejects(o, message));
  }
});
