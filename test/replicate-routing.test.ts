// Unit tests of loop breaking: the tag's format, how a change's origin is read from each oplog
// form, and the routing rules for two-way, ring and mesh topologies.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Binary, Int32, Timestamp } from 'mongodb';
import type { Link } from '../src/config/store.ts';
import type { Change } from '../src/oplog/entry.ts';
import { Router } from '../src/replicate/route.ts';
import { attributeOrigins, makeTag, tagOrigin, type AttributedChange } from '../src/replicate/tag.ts';

const A = '2c88ae84-7cb9-40f7-835d-c05e981f564d';
const B = '0d9c284b-b47c-40b5-932c-547b8685edd0';
const C = '9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d';
const ts = new Timestamp({ t: 1700000000, i: 7 });
const v2 = (diff: object) => ({ $v: new Int32(2), diff });

test('a tag names its origin and the source position, and reads back', () => {
  const tag = makeTag(A, ts);
  assert.equal(tag, `${A}:1700000000:7`);
  assert.equal(tagOrigin(tag), A);
  assert.equal(tagOrigin(A), A, 'a bare UUID string');
  assert.equal(tagOrigin(new Binary(Buffer.from(A.replaceAll('-', ''), 'hex'), 4)), A, "the original's BSON UUID tag");
  assert.equal(tagOrigin('hello'), undefined);
  assert.equal(tagOrigin(undefined), undefined);
});

test('origins are read from inserts, replacements, $v:2 and $v:1 updates', () => {
  const tag = makeTag(B, ts);
  const changes: Change[] = [
    { op: 'i', ns: 'db.c', o: { _id: 1, __mmm: tag }, ts },
    { op: 'i', ns: 'db.c', o: { _id: 2 }, ts },
    { op: 'u', ns: 'db.c', o: { _id: 1, a: 1, __mmm: tag }, o2: { _id: 1 }, ts },
    { op: 'u', ns: 'db.c', o: v2({ u: { a: 1, __mmm: tag } }), o2: { _id: 1 }, ts },
    { op: 'u', ns: 'db.c', o: v2({ i: { __mmm: tag } }), o2: { _id: 1 }, ts },
    // A user's update that leaves the tag alone: the diff does not mention it.
    { op: 'u', ns: 'db.c', o: v2({ u: { a: 2 } }), o2: { _id: 1 }, ts },
    { op: 'u', ns: 'db.c', o: { $v: new Int32(1), $set: { a: 1, __mmm: tag } }, o2: { _id: 1 }, ts },
    { op: 'd', ns: 'db.c', o: { _id: 1 }, ts },
  ];
  assert.deepEqual(attributeOrigins(changes).map((c) => c.origin), [B, undefined, B, B, B, undefined, B, undefined]);
});

test("mmm's mark before a delete gives the delete its origin and is not replicated itself", () => {
  const tag = makeTag(C, ts);
  const other = new Timestamp({ t: 1700000000, i: 8 });
  const changes: Change[] = [
    { op: 'u', ns: 'db.c', o: v2({ u: { __mmm: tag } }), o2: { _id: 5 }, ts },
    { op: 'd', ns: 'db.c', o: { _id: 5 }, ts },
    // A tag-only update followed by a delete of another document is no mark.
    { op: 'u', ns: 'db.c', o: v2({ u: { __mmm: tag } }), o2: { _id: 6 }, ts: other },
    { op: 'd', ns: 'db.c', o: { _id: 7 }, ts: other },
  ];
  const out = attributeOrigins(changes);
  assert.deepEqual(out.map((c) => [c.op, c.op === 'u' ? c.o2?._id : c.o._id, c.origin]), [
    ['d', 5, C],
    ['u', 6, C],
    ['d', 7, undefined],
  ]);
});

const link = (src: string, dst: string, ops = 'iud'): Link => ({ src, dst, ops, created: new Date() });
const change = (origin: string | undefined, op: 'i' | 'u' | 'd' = 'i', ns = 'test.foo'): AttributedChange => ({
  op,
  ns,
  o: { _id: 1 },
  o2: { _id: 1 },
  ts,
  ...(origin ? { origin } : {}),
});

test('two servers both ways: user writes cross, replicated writes do not come back', () => {
  // Reading A for destination B, which replicates test.foo from A.
  const router = new Router({ destinationId: B, sourceId: A, linksBySource: new Map([[A, [link('test.foo', 'test.foo')]]]) });
  assert.deepEqual(router.route(change(undefined)).map((r) => [r.ns, r.origin, r.tag]), [['test.foo', A, makeTag(A, ts)]]);
  assert.equal(router.route(change(B)).length, 0, 'B wrote it first');
  assert.equal(router.route(change(undefined, 'i', 'test.bar')).length, 0, 'no link for test.bar');
});

test('a ring relays writes from servers the destination has no link from', () => {
  // Ring A->B->C->A: C reads B, and has no link from A.
  const router = new Router({ destinationId: C, sourceId: B, linksBySource: new Map([[B, [link('test.foo', 'test.foo')]]]) });
  assert.deepEqual(router.route(change(A)).map((r) => [r.origin, r.tag]), [[A, makeTag(A, ts)]]);
  assert.equal(router.route(change(C)).length, 0);
});

test('a full mesh sends each write over its direct link only', () => {
  const links = new Map([
    [A, [link('test.foo', 'test.foo')]],
    [B, [link('test.foo', 'test.foo')]],
  ]);
  const router = new Router({ destinationId: C, sourceId: B, linksBySource: links });
  assert.equal(router.route(change(A)).length, 0, 'C has its own link from A');
  assert.equal(router.route(change(undefined)).length, 1, "B's own writes still go");
});

test("a direct link that does not carry an op kind does not stop the relay of that kind", () => {
  const links = new Map([
    [A, [link('test.foo', 'test.foo', 'i')]],
    [B, [link('test.foo', 'test.foo')]],
  ]);
  const router = new Router({ destinationId: C, sourceId: B, linksBySource: links });
  assert.equal(router.route(change(A, 'i')).length, 0);
  assert.equal(router.route(change(A, 'u')).length, 1);
});

test('ops and renames: a link carries only its kinds, to its own namespace', () => {
  const router = new Router({
    destinationId: B,
    sourceId: A,
    linksBySource: new Map([[A, [link('db1.x', 'db2.y', 'iu'), link('db1.x', 'db3.z', 'd')]]]),
  });
  assert.deepEqual(router.route(change(undefined, 'u', 'db1.x')).map((r) => r.ns), ['db2.y']);
  assert.deepEqual(router.route(change(undefined, 'd', 'db1.x')).map((r) => r.ns), ['db3.z']);
});
