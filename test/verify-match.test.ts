// The matcher of one range (src/verify/match.ts): documents of both sides paired by `_id` bytes,
// in whatever batches they come, and each one not equal found once, with its kind.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BSON, Double, Int32, type Document } from 'mongodb';
import { RangeMatcher, type Candidate } from '../src/verify/match.ts';

const SEED = Number(process.env.MMM_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));

const bytes = (doc: Document) => Buffer.from(BSON.serialize(doc));
const idOf = (c: Candidate) => BSON.EJSON.stringify(BSON.deserialize(c.id, { promoteValues: false })._id, { relaxed: false });

/** Feeds the matcher batches of `batch` documents per side, one side ahead of the other as `order` says. */
function match(source: Document[], destination: Document[], batch: number, order: (step: number) => 'source' | 'destination' = () => 'source'): Candidate[] {
  const found: Candidate[] = [];
  const matcher = new RangeMatcher(0, (c) => found.push(c));
  const queues = { source: source.map(bytes), destination: destination.map(bytes) };
  for (let step = 0; matcher.needs('source') || matcher.needs('destination'); step++) {
    let side = order(step);
    if (!matcher.needs(side)) side = side === 'source' ? 'destination' : 'source';
    matcher.push(side, queues[side].splice(0, batch));
  }
  matcher.finish();
  assert.deepEqual(matcher.counts, { source: source.length, destination: destination.length });
  return found.sort((a, b) => a.order - b.order);
}

const summary = (found: Candidate[]) => found.map((c) => `${c.kind} ${idOf(c)}`);

test('equal ranges find nothing, whatever the batches; __mmm is left out', () => {
  const docs = Array.from({ length: 50 }, (_, k) => ({ _id: k, v: `value ${k}` }));
  const tagged = docs.map((d) => ({ ...d, __mmm: 'origin:1:1' }));
  for (const batch of [1, 3, 7, 50]) assert.deepEqual(match(docs, tagged, batch), []);
  assert.deepEqual(match([], [], 5), []);
});

test('a changed field, a numeric type, a field order, a missing and an extra document, each found once', () => {
  const source = [{ _id: 1, a: 'x' }, { _id: 2, n: new Int32(1) }, { _id: 3, a: 1, b: 2 }, { _id: 4 }, { _id: 6 }];
  const destination = [{ _id: 1, a: 'y' }, { _id: 2, n: new Double(1) }, { _id: 3, b: 2, a: 1 }, { _id: 5 }, { _id: 6 }];
  for (const batch of [1, 2, 5]) {
    assert.deepEqual(summary(match(source, destination, batch)), [
      'different {"$numberInt":"1"}',
      'different {"$numberInt":"2"}',
      'different {"$numberInt":"3"}',
      'missing {"$numberInt":"4"}',
      'extra {"$numberInt":"5"}',
    ]);
  }
});

test("an _id of another type is another document: missing here, extra there", () => {
  assert.deepEqual(summary(match([{ _id: new Int32(1) }], [{ _id: new Double(1) }], 1)), ['missing {"$numberInt":"1"}', 'extra {"$numberDouble":"1.0"}']);
});

test(`random ranges with random batches: exactly the planted differences (seed ${SEED})`, () => {
  let state = SEED >>> 0;
  const random = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (let round = 0; round < 50; round++) {
    const source: Document[] = [];
    const destination: Document[] = [];
    const expected: string[] = [];
    const n = Math.floor(random() * 200);
    for (let k = 0; k < n; k++) {
      const r = random();
      const id = `{"$numberInt":"${k}"}`;
      if (r < 0.05) {
        source.push({ _id: k });
        expected.push(`missing ${id}`);
      } else if (r < 0.1) {
        destination.push({ _id: k });
        expected.push(`extra ${id}`);
      } else if (r < 0.15) {
        source.push({ _id: k, v: 1 });
        destination.push({ _id: k, v: 2 });
        expected.push(`different ${id}`);
      } else {
        source.push({ _id: k, v: k });
        destination.push({ _id: k, v: k, __mmm: 't' });
      }
    }
    const batch = 1 + Math.floor(random() * 20);
    const found = match(source, destination, batch, () => (random() < 0.5 ? 'source' : 'destination'));
    // Missing and extra are ordered each on its own side: compare as sets of lines.
    assert.deepEqual(summary(found).sort(), expected.sort(), `round ${round}, batch ${batch}`);
  }
});
