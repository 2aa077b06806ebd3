// The read-ahead queue between reading and applying: bounded by entries and by bytes, whichever
// is reached first, never stuck on an item larger than both, and holding the reader back
// (backpressure) until the applier takes something.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ReadAheadQueue } from '../src/replicate/read-ahead.ts';

interface Item {
  weight: number;
  bytes: number;
  n: number;
}

const MB = 1024 * 1024;

/** Pushes `item` and tells whether the push has completed once everything pending has run. */
async function pushState(queue: ReadAheadQueue<Item>, item: Item): Promise<{ pushed: Promise<boolean>; done: () => boolean }> {
  let done = false;
  const pushed = queue.push(item).then((ok) => ((done = true), ok));
  // A push that has room completes within the microtasks and I/O callbacks queued before this.
  await new Promise((resolve) => setImmediate(resolve));
  return { pushed, done: () => done };
}

test('the byte bound holds the reader back though the entry bound has room', async () => {
  const queue = new ReadAheadQueue<Item>({ entries: 1_000, bytes: 10 * MB });
  await queue.push({ weight: 1, bytes: 6 * MB, n: 1 });
  await queue.push({ weight: 1, bytes: 4 * MB, n: 2 }); // exactly at the bound: admitted
  const third = await pushState(queue, { weight: 1, bytes: 1, n: 3 });
  assert.equal(third.done(), false, 'one byte more than the bound waits');
  assert.deepEqual((await queue.take(() => false)).map((i) => i.n), [1]);
  assert.equal(await third.pushed, true);
  assert.equal(queue.size, 2);
});

test('the entry bound holds the reader back though the byte bound has room', async () => {
  const queue = new ReadAheadQueue<Item>({ entries: 10, bytes: 1_000 * MB });
  await queue.push({ weight: 6, bytes: 100, n: 1 });
  const second = await pushState(queue, { weight: 6, bytes: 100, n: 2 });
  assert.equal(second.done(), false, 'no room for the second batch yet');
  assert.deepEqual((await queue.take(() => true)).map((i) => i.n), [1]);
  assert.equal(await second.pushed, true);
  await queue.push({ weight: 4, bytes: 100, n: 3 });
  assert.deepEqual((await queue.take(() => true)).map((i) => i.n), [2, 3]);
});

test('an item larger than both bounds is admitted into an empty queue, and only then', async () => {
  const queue = new ReadAheadQueue<Item>({ entries: 10, bytes: 1 * MB });
  assert.equal(await queue.push({ weight: 50, bytes: 16 * MB, n: 1 }), true, 'an empty queue takes it at once');
  const small = await pushState(queue, { weight: 1, bytes: 1, n: 2 });
  assert.equal(small.done(), false, 'the oversize item fills the queue');
  assert.deepEqual((await queue.take(() => true)).map((i) => i.n), [1]);
  assert.equal(await small.pushed, true);
  const big = await pushState(queue, { weight: 50, bytes: 16 * MB, n: 3 });
  assert.equal(big.done(), false, 'a queue that holds something does not take an oversize item');
  assert.deepEqual((await queue.take(() => true)).map((i) => i.n), [2]);
  assert.equal(await big.pushed, true);
  assert.deepEqual((await queue.take(() => true)).map((i) => i.n), [3]);
});

test('the applier takes what the predicate lets through, in order, and a blocked reader goes on', async () => {
  const queue = new ReadAheadQueue<Item>({ entries: 100, bytes: 3 * MB });
  for (let n = 1; n <= 3; n++) await queue.push({ weight: 1, bytes: MB, n });
  const pending = await pushState(queue, { weight: 1, bytes: MB, n: 4 });
  assert.equal(pending.done(), false);
  // As `follow()` merges: up to 2 MB per applied batch.
  const upTo2MB = (taken: readonly Item[], next: Item) => taken.reduce((s, i) => s + i.bytes, 0) + next.bytes <= 2 * MB;
  assert.deepEqual((await queue.take(upTo2MB)).map((i) => i.n), [1, 2]);
  assert.equal(await pending.pushed, true);
  assert.deepEqual((await queue.take(upTo2MB)).map((i) => i.n), [3, 4]);
});

test('a reader waiting for room is released by close, and the failure reaches the applier after the items', async () => {
  const queue = new ReadAheadQueue<Item>({ entries: 1, bytes: MB });
  await queue.push({ weight: 1, bytes: 1, n: 1 });
  const waiting = await pushState(queue, { weight: 1, bytes: 1, n: 2 });
  assert.equal(waiting.done(), false);
  queue.fail(new Error('cursor died'));
  assert.deepEqual((await queue.take(() => true)).map((i) => i.n), [1]);
  assert.equal(await waiting.pushed, true);
  assert.deepEqual((await queue.take(() => true)).map((i) => i.n), [2]);
  await assert.rejects(queue.take(() => true), /cursor died/);

  const closing = new ReadAheadQueue<Item>({ entries: 1, bytes: MB });
  await closing.push({ weight: 1, bytes: 1, n: 1 });
  const blocked = await pushState(closing, { weight: 1, bytes: 1, n: 2 });
  closing.close();
  assert.equal(await blocked.pushed, false, 'the applier is gone: the reader stops');
});

test('resize: a reader waiting for room is let in by larger bounds, and `full` tells it waits', async () => {
  const queue = new ReadAheadQueue<Item>({ entries: 10, bytes: MB });
  await queue.push({ weight: 8, bytes: 100, n: 1 });
  assert.equal(queue.full, false);
  const second = await pushState(queue, { weight: 8, bytes: 100, n: 2 });
  assert.equal(second.done(), false);
  assert.equal(queue.full, true, 'the reader waits for room');
  queue.resize({ entries: 20, bytes: MB });
  assert.equal(await second.pushed, true);
  assert.equal(queue.full, false);
  assert.deepEqual((await queue.take(() => true)).map((i) => i.n), [1, 2]);
});
