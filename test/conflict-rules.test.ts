// Unit tests of the pure parts of conflict resolution: the order of versions under each policy,
// which links have a way back, the tags a marker lists for its deletes, and where the decoder
// finds each change's pre-image and a relayed delete's version. The behaviour on real servers
// is in test/conflicts.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Binary, Int32, Long, Timestamp, type Document } from 'mongodb';
import { hasWayBack, type LinkEdge } from '../src/conflict/scope.ts';
import { beats, parseTag, policyName, sameVersion, type ConflictPolicy, type Version } from '../src/conflict/version.ts';
import { OplogDecoder } from '../src/oplog/decode.ts';
import type { OplogEntry } from '../src/oplog/entry.ts';
import { loggedMarkerDeletes, markerDeletes } from '../src/replicate/marker-deletes.ts';
import { carriedTag, MARKER_NAMESPACE } from '../src/replicate/tag.ts';

const A = 'aaaaaaaa-0000-4000-8000-000000000000';
const B = 'bbbbbbbb-0000-4000-8000-000000000000';
const C = 'cccccccc-0000-4000-8000-000000000000';
const v = (origin: string, t: number, i: number): Version => ({ origin, ts: new Timestamp({ t, i }) });
const LWW: ConflictPolicy = { kind: 'lww' };

test('lww: the later time wins, then the counter, then the larger server id; an unknown time loses', () => {
  assert.equal(beats(v(A, 101, 1), v(B, 100, 9), LWW), true);
  assert.equal(beats(v(A, 100, 2), v(B, 100, 1), LWW), true);
  assert.equal(beats(v(B, 100, 1), v(A, 100, 1), LWW), true);
  assert.equal(beats(v(A, 100, 1), v(B, 100, 1), LWW), false);
  assert.equal(beats(v(A, 1, 0), { origin: B, ts: null }, LWW), true);
  assert.equal(beats({ origin: B, ts: null }, v(A, 1, 0), LWW), false);
});

test('every policy is a total order: of two different versions exactly one wins, whichever is asked first', () => {
  const versions = [v(A, 100, 1), v(B, 100, 1), v(C, 100, 1), v(A, 101, 0), v(B, 99, 7), { origin: C, ts: null }];
  for (const policy of [LWW, { kind: 'prefer', server: B } as const, { kind: 'prefer', server: C } as const]) {
    for (const x of versions) {
      for (const y of versions) {
        if (sameVersion(x, y)) continue;
        assert.notEqual(beats(x, y, policy), beats(y, x, policy), `${policyName(policy)}: ${JSON.stringify([x, y])}`);
      }
    }
  }
});

test('prefer: the preferred server wins over any other, whatever the times; two others by lww', () => {
  const prefer: ConflictPolicy = { kind: 'prefer', server: B };
  assert.equal(beats(v(B, 1, 0), v(A, 200, 0), prefer), true);
  assert.equal(beats(v(A, 200, 0), v(B, 1, 0), prefer), false);
  assert.equal(beats(v(C, 5, 0), v(A, 4, 0), prefer), true);
  assert.equal(policyName(prefer), `prefer:${B}`);
});

test('a tag is read back as the version it names; anything else is no tag', () => {
  assert.deepEqual(parseTag(`${A}:1796132601:5`), v(A, 1796132601, 5));
  for (const bad of [undefined, 12, '', 'abc', `${A}:1:`, `${A}:x:1`, `${A}:4294967296:1`]) assert.equal(parseTag(bad), undefined, String(bad));
});

test('a link has a way back when its destination reaches its source, directly or around a ring; else it is a replica', () => {
  const edge = (source: string, destination: string, src = 'db.c', dst = 'db.c', ops = 'iud'): LinkEdge => ({ source, destination, src, dst, ops });
  const twoWays = [edge(A, B), edge(B, A)];
  assert.equal(hasWayBack(twoWays, true)(edge(A, B)), true);
  const ring = [edge(A, B), edge(B, C), edge(C, A)];
  for (const link of ring) assert.equal(hasWayBack(ring, true)(link), true);
  const oneWay = [edge(A, B), edge(B, C)];
  assert.equal(hasWayBack(oneWay, true)(edge(A, B)), false);
  // Another namespace back is no way back for this one; renamed namespaces are followed.
  assert.equal(hasWayBack([edge(A, B), edge(B, A, 'db.other', 'db.c')], true)(edge(A, B)), false);
  const renamed = [edge(A, B, 'db.c', 'db2.x'), edge(B, A, 'db2.x', 'db.c')];
  assert.equal(hasWayBack(renamed, true)(renamed[0]!), true);
  // A way back must carry every kind of write the link does: updates that win must travel back.
  assert.equal(hasWayBack([edge(A, B), edge(B, A, 'db.c', 'db.c', 'i')], true)(edge(A, B)), false);
  assert.equal(hasWayBack([edge(A, B, 'db.c', 'db.c', 'iu'), edge(B, A)], true)(edge(A, B, 'db.c', 'db.c', 'iu')), true);
  // With a server's links unknown, a way back is assumed.
  assert.equal(hasWayBack(oneWay, false)(edge(A, B)), true);
});

test("a marker's list of deletes is read back from the operation the server logs, first write or diff", () => {
  const list = markerDeletes(7, [[new Int32(1), `${A}:100:1`], ['k', `${A}:100:2`], [{ a: 1 }, `${A}:100:3`]]);
  const asInsert = loggedMarkerDeletes({ op: 'i', o: { _id: {}, n: 1, d: list } })!;
  const asDiff = loggedMarkerDeletes({ op: 'u', o: { $v: 2, diff: { u: { n: 2, d: list } } } })!;
  for (const tags of [asInsert, asDiff]) {
    assert.equal(tags.get('{"_id":{"$numberInt":"1"}}'), `${A}:100:1`);
    assert.equal(tags.get('{"_id":"k"}'), `${A}:100:2`);
    assert.equal(tags.get('{"_id":{"a":{"$numberInt":"1"}}}'), `${A}:100:3`);
  }
  assert.equal(loggedMarkerDeletes({ op: 'u', o: { $v: 2, diff: { u: { n: 3 } } } }), undefined);
  assert.notEqual(markerDeletes(8, [[1, 't']]), markerDeletes(9, [[1, 't']]));
});

test('the tag a write carries: an insert or replacement holds it, a diff sets it, a delete has none', () => {
  assert.equal(carriedTag({ op: 'i', o: { _id: 1, __mmm: 'x:1:2' } }), 'x:1:2');
  assert.equal(carriedTag({ op: 'u', o: { _id: 1, a: 1, __mmm: 'x:1:3' } }), 'x:1:3');
  assert.equal(carriedTag({ op: 'u', o: { $v: 2, diff: { u: { __mmm: 'x:1:4' } } } }), 'x:1:4');
  assert.equal(carriedTag({ op: 'u', o: { $v: 2, diff: { i: { __mmm: 'x:1:5' } } } }), 'x:1:5');
  assert.equal(carriedTag({ op: 'u', o: { $v: 2, diff: { u: { a: 1 } } } }), undefined);
  assert.equal(carriedTag({ op: 'd', o: { _id: 1 } }), undefined);
});

test("the decoder gives each update and delete its pre-image's key, and a relayed delete the tag its marker lists", () => {
  const ui = new Binary(Buffer.alloc(16, 1), 4);
  const ts = (i: number) => new Timestamp({ t: 100, i });
  const lsid = { id: new Binary(Buffer.alloc(16, 7), 4) };
  const marker = { op: 'u', ns: MARKER_NAMESPACE, o: { $v: 2, diff: { u: { n: 2, d: markerDeletes(1, [[new Int32(5), `${A}:90:1`]]) } } }, o2: { _id: { origin: A } } };
  const entries: OplogEntry[] = [
    { ts: ts(1), op: 'i', ns: 'db.c', ui, o: { _id: 1 } },
    { ts: ts(2), op: 'u', ns: 'db.c', ui, o: { $v: 2, diff: { u: { a: 1 } } }, o2: { _id: 1 } },
    {
      ts: ts(3),
      op: 'c',
      ns: 'admin.$cmd',
      lsid,
      txnNumber: Long.fromNumber(1),
      o: { applyOps: [marker, { op: 'd', ns: 'db.c', ui, o: { _id: new Int32(5) } }, { op: 'u', ns: 'db.c', ui, o: { _id: 6, __mmm: `${A}:90:2` }, o2: { _id: 6 } }] as Document[] },
    },
  ];
  const { changes } = new OplogDecoder(ts(0)).decode(entries);
  assert.deepEqual(
    changes.map((c) => [c.op, c.preImage ? [c.preImage.ts.i, c.preImage.applyOpsIndex] : undefined, c.origin, c.tag]),
    [
      ['i', undefined, undefined, undefined],
      ['u', [2, 0], undefined, undefined],
      ['d', [3, 1], A, `${A}:90:1`],
      ['u', [3, 2], A, undefined],
    ],
  );
});
