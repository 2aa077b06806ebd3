// Batch bounds that grow over a long link to the destination (src/replicate/batch-bounds.ts):
// pure arithmetic on the times a loop measures, so these feed it times rather than wait them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BatchBounds, MOST_BYTES_FACTOR, MOST_FACTOR, PROBE_HOLDS_MS, type Bounds } from '../src/replicate/batch-bounds.ts';

const MB = 1024 * 1024;
const BASE: Bounds = { applyBatchWrites: 4_000, applyBatchBytes: 8 * MB, readAheadEntries: 4_000, readAheadBytes: 8 * MB };

/** Bounds with `trip` ms markers, then one batch of `ms` that the bounds cut when it took `fill` of them. */
function after(trips: number[], ms: number, fill = 1): { bounds: BatchBounds; changed: boolean } {
  const bounds = new BatchBounds(BASE);
  for (const t of trips) bounds.roundTrip(t);
  return { bounds, changed: bounds.applied(ms, fill) };
}

test('a near destination keeps the base bounds', () => {
  const { bounds, changed } = after([0.4, 0.3, 0.9], 200);
  assert.equal(changed, false);
  assert.deepEqual(bounds.current, BASE);
});

test('a long round trip grows every bound by the factor that makes waiting a fifth of a batch', () => {
  // 100 ms round trips: 300 ms of waiting in a batch of 500 ms, 200 ms of work. Four times the
  // waiting is 1,200 ms of work: six times the batch, more than the most.
  let { bounds, changed } = after([100, 104, 122], 500);
  assert.equal(changed, true);
  assert.equal(bounds.roundTripMs, 100);
  // 15 ms: 45 ms of waiting, 135 ms of work: 180 ms wanted, 1.33 times.
  ({ bounds, changed } = after([15, 17], 180));
  assert.equal(changed, true);
  assert.deepEqual(bounds.current, { applyBatchWrites: 5_333, applyBatchBytes: Math.round(8 * MB * (4 / 3)), readAheadEntries: 5_333, readAheadBytes: Math.round(8 * MB * (4 / 3)) });
});

test('the round trip is the fastest marker seen lately: a late reply does not grow the batches', () => {
  const bounds = new BatchBounds(BASE);
  for (let k = 0; k < 31; k++) bounds.roundTrip(80);
  bounds.roundTrip(0.5);
  assert.equal(bounds.applied(200, 1), false);
  // 32 later markers push the fast one out.
  for (let k = 0; k < 32; k++) bounds.roundTrip(80);
  assert.equal(bounds.roundTripMs, 80);
  assert.equal(bounds.applied(300, 1), true);
});

test('a ping timed before the work holds the round trip down while every marker of a backlog is late', () => {
  const bounds = new BatchBounds(BASE);
  assert.equal(bounds.probeDue(0), true);
  bounds.probed(0.6, 0);
  assert.equal(bounds.roundTripMs, 0.6);
  // 32 markers of 12 ms, as on a loaded machine near the destination: the ping's time stands.
  for (let k = 0; k < 32; k++) bounds.roundTrip(12);
  assert.equal(bounds.roundTripMs, 0.6);
  assert.equal(bounds.applied(180, 1), false);
  assert.deepEqual(bounds.current, BASE);
});

test('a ping is due again once its time is older than it is held; the next one replaces it', () => {
  const bounds = new BatchBounds(BASE);
  bounds.probed(0.6, 1_000);
  assert.equal(bounds.probeDue(1_000 + PROBE_HOLDS_MS - 1), false);
  assert.equal(bounds.probeDue(1_000 + PROBE_HOLDS_MS), true);
  // The link got longer: the new ping, and markers as long, grow the bounds.
  bounds.probed(100, 1_000 + PROBE_HOLDS_MS);
  for (let k = 0; k < 32; k++) bounds.roundTrip(104);
  assert.equal(bounds.roundTripMs, 100);
  assert.equal(bounds.applied(500, 1), true);
});

test(`the counts grow at most ${MOST_FACTOR} times, the bytes ${MOST_BYTES_FACTOR} times`, () => {
  const { bounds } = after([500], 1_600);
  assert.deepEqual(bounds.current, {
    applyBatchWrites: MOST_FACTOR * BASE.applyBatchWrites,
    applyBatchBytes: MOST_BYTES_FACTOR * BASE.applyBatchBytes,
    readAheadEntries: MOST_FACTOR * BASE.readAheadEntries,
    readAheadBytes: MOST_BYTES_FACTOR * BASE.readAheadBytes,
  });
});

test('a batch the bounds did not cut short (the source is the limit) changes nothing', () => {
  const bounds = new BatchBounds(BASE);
  bounds.roundTrip(50);
  assert.equal(bounds.applied(350, undefined), false);
  assert.deepEqual(bounds.current, BASE);
});

test('no marker seen yet, nothing is known of the round trip', () => {
  const bounds = new BatchBounds(BASE);
  assert.equal(bounds.roundTripMs, undefined);
  assert.equal(bounds.applied(10_000, 1), false);
});

test('they shrink back once the work is over twice what is wanted, and stay between', () => {
  const { bounds } = after([50], 350);
  // 150 ms of waiting, 200 ms of work: three times the batch.
  assert.equal(bounds.current.applyBatchWrites, 12_000);
  // Work of 1,050 ms against 150 ms of waiting: 7 times, within what is wanted (4 to 8).
  assert.equal(bounds.applied(1_200, 1), false);
  // The link got shorter: 5 ms round trips.
  for (let k = 0; k < 32; k++) bounds.roundTrip(5);
  assert.equal(bounds.applied(1_000, 1), true);
  assert.deepEqual(bounds.current, BASE);
});

test('a batch is judged as one as large as the bounds: one read batch ten times larger does not shrink them', () => {
  const { bounds } = after([50], 350);
  assert.equal(bounds.current.applyBatchWrites, 12_000);
  // 120,000 writes in one read batch, applied alone: 7,000 ms of work, 700 ms for the bounds' 12,000.
  assert.equal(bounds.applied(7_150, 10), false);
  assert.equal(bounds.current.applyBatchWrites, 12_000);
});

test('a batch far short of the bounds (the read-ahead full of entries that make few writes) changes nothing', () => {
  // 10 writes in 6.5 ms over a 2 ms round trip: taken for a full batch, it would grow them to the most.
  const { bounds, changed } = after([2], 6.5, 10 / 4_000);
  assert.equal(changed, false);
  assert.deepEqual(bounds.current, BASE);
  // Half full, it counts: 150 ms of work for half the bounds is 300 for all of them.
  assert.equal(after([50], 300, 0.5).bounds.current.applyBatchWrites, 8_000);
});
