// Unit tests of loop breaking: the tag's format, how a marker names its origin, and the routing
// rules for two-way, ring and mesh topologies and for links added while a run goes on.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Int32, Timestamp } from 'mongodb';
import type { Link } from '../src/config/store.ts';
import type { Change } from '../src/oplog/entry.ts';
import { Router } from '../src/replicate/route.ts';
import { makeTag, markerOrigin } from '../src/replicate/tag.ts';

const A = '2c88ae84-7cb9-40f7-835d-c05e981f564d';
const B = '0d9c284b-b47c-40b5-932c-547b8685edd0';
const C = '9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d';
const ts = new Timestamp({ t: 1700000000, i: 7 });
const v2 = (diff: object) => ({ $v: new Int32(2), diff });

test('a tag names its origin and the source position', () => {
  assert.equal(makeTag(A, ts), `${A}:1700000000:7`);
});

test("a marker's origin is read from its first write (an upsert, logged as an insert) and later ones", () => {
  const id = { origin: B, source: A, lane: 0 };
  assert.equal(markerOrigin({ op: 'i', o: { _id: id, n: 1 } }), B);
  assert.equal(markerOrigin({ op: 'u', o: v2({ u: { n: 2 } }), o2: { _id: id } }), B);
  assert.equal(markerOrigin({ op: 'u', o: v2({ u: { n: 2 } }), o2: { _id: 'something else' } }), undefined);
});

test('links with a `since` take changes after it; the others, changes after the checkpoint', () => {
  const older = new Timestamp({ t: 1700000000, i: 3 });
  const newer = new Timestamp({ t: 1700000000, i: 9 });
  const covered = link('test.foo', 'test.foo');
  const added = { ...link('test.bar', 'test.bar'), since: older };
  const router = new Router({ destinationId: B, sourceId: A, linksBySource: new Map([[A, [covered, added]]]) });
  // Checkpoint at `ts` (i: 7): reading goes back to the new link's since (i: 3).
  assert.ok(router.startAt(ts)!.equals(older));
  const at = (i: number, ns: string): Change => ({ ...change(undefined, 'i', ns), ts: new Timestamp({ t: 1700000000, i }) });
  assert.equal(router.route(at(5, 'test.foo')).length, 0, 'before the checkpoint: applied already');
  assert.equal(router.route(at(5, 'test.bar')).length, 1, 'after the new link was made');
  assert.equal(router.route(at(8, 'test.foo')).length, 1);
  assert.deepEqual(router.coveredBy(ts), [added]);
  assert.deepEqual(router.coveredBy(new Timestamp({ t: 1700000000, i: 2 })), []);
  // A link made after the checkpoint (run stopped meanwhile) takes nothing before it was made.
  const later = new Router({ destinationId: B, sourceId: A, linksBySource: new Map([[A, [covered, { ...added, since: newer }]]]) });
  assert.ok(later.startAt(ts)!.equals(ts));
  assert.equal(later.route(at(8, 'test.bar')).length, 0);
  assert.equal(later.route(at(10, 'test.bar')).length, 1);
});

const link = (src: string, dst: string, ops = 'iud'): Link => ({ src, dst, ops, created: new Date() });
const change = (origin: string | undefined, op: 'i' | 'u' | 'd' = 'i', ns = 'test.foo'): Change => ({
  op,
  ns,
  o: { _id: 1 },
  o2: { _id: 1 },
  ts,
  seq: 0,
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
