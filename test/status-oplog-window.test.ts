// When does `status` warn that a checkpoint is about to fall out of its source's oplog? The
// rule (checkpointRisk), on numbers; the real oplogs are read in status-cli.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Timestamp } from 'mongodb';
import { checkpointRisk, OPLOG_WARNING_FRACTION } from '../src/status/report.ts';

const ts = (t: number, i = 1) => new Timestamp({ t, i });
const HOUR = 3600;

test('a full oplog: warn when the checkpoint is in the oldest fifth of the window', () => {
  assert.equal(OPLOG_WARNING_FRACTION, 0.2);
  const oplog = { oldest: ts(0), newest: ts(10 * HOUR), usedBytes: 1000, maxBytes: 1000 };
  assert.deepEqual(checkpointRisk(ts(10 * HOUR), oplog), { kind: 'safe' });
  assert.deepEqual(checkpointRisk(ts(3 * HOUR), oplog), { kind: 'safe' });
  assert.deepEqual(checkpointRisk(ts(1 * HOUR), oplog), { kind: 'close', secondsLeft: 1 * HOUR, fullWindowSeconds: 10 * HOUR });
  assert.deepEqual(checkpointRisk(ts(0, 1), oplog), { kind: 'close', secondsLeft: 0, fullWindowSeconds: 10 * HOUR });
});

test('a checkpoint before the oldest entry is lost', () => {
  const oplog = { oldest: ts(100, 5), newest: ts(200) };
  assert.deepEqual(checkpointRisk(ts(100, 4), oplog), { kind: 'lost' });
  assert.deepEqual(checkpointRisk(ts(99), oplog), { kind: 'lost' });
  assert.notDeepEqual(checkpointRisk(ts(100, 5), oplog), { kind: 'lost' });
});

test('a young oplog will hold more: the window is projected to its size at the rate so far', () => {
  // A quarter full after 1 h: it will hold about 4 h, so a checkpoint 1 h old is safe...
  const young = { oldest: ts(0), newest: ts(HOUR), usedBytes: 250, maxBytes: 1000 };
  assert.deepEqual(checkpointRisk(ts(0, 1), young), { kind: 'safe' });
  // ...and one 3.5 h behind a 4 h window is not.
  const older = { oldest: ts(0), newest: ts(4 * HOUR), usedBytes: 999, maxBytes: 1000 };
  assert.equal(checkpointRisk(ts(HOUR / 2), older).kind, 'close');
  // Without sizes (no privilege for $collStats), the oplog is taken as full.
  assert.equal(checkpointRisk(ts(0, 1), { oldest: ts(0), newest: ts(HOUR) }).kind, 'close');
});

test('an oplog of one second or less gives no warning', () => {
  assert.deepEqual(checkpointRisk(ts(5, 2), { oldest: ts(5, 1), newest: ts(5, 9) }), { kind: 'safe' });
});
