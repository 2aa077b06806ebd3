// How `status` and `replicate --copy` tell a copy's progress: pure functions, no server.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Timestamp } from 'mongodb';
import { durationText, rateAndEta } from '../src/cli/copy-progress.ts';
import type { CopyState } from '../src/copy/state.ts';
import { copyText, copyView } from '../src/status/copy-view.ts';

const started = new Date('2026-12-01T10:00:00Z');
const at = (seconds: number) => new Date(started.getTime() + seconds * 1000);

function state(total: number, ranges: Array<{ copied: number; updated?: number }>): CopyState {
  return {
    header: { at: new Timestamp({ t: 1, i: 1 }), mode: 'empty', total, totalBytes: total * 1000, started, bounds: [] },
    ranges: ranges.map((r, range) => ({ range, done: false, copied: r.copied, bytes: r.copied * 1000, ...(r.updated !== undefined && { updated: at(r.updated) }) })),
  };
}

test('a copy under way: percent of the count it began with, and the time left at its average rate', () => {
  // 820,000 in 100 s: 8,200 a second, 1,180,000 to go.
  const view = copyView(state(2_000_000, [{ copied: 500_000, updated: 100 }, { copied: 320_000, updated: 90 }]), at(101));
  assert.deepEqual(view, { copied: 820_000, total: 2_000_000, percent: 41, etaSeconds: 144, interrupted: false, updated: '2026-12-01T10:01:40Z' });
  assert.equal(copyText(view), 'copying 41% (820,000 of 2,000,000), ETA 2 m 24 s');
});

test('a copy with no batch for 30 s is interrupted, with no ETA; one that passed its count shows 100%', () => {
  const stale = copyView(state(1_000, [{ copied: 400, updated: 10 }]), at(41));
  assert.equal(stale.interrupted, true);
  assert.equal(copyText(stale), 'copying 40% (400 of 1,000), interrupted: run the same `mmm replicate --copy` again to resume');
  // The source grew during the copy: the count is the server's estimate when it began.
  const grown = copyView(state(1_000, [{ copied: 1_200, updated: 10 }]), at(11));
  assert.deepEqual([grown.total, grown.percent, copyText(grown)], [1_200, 100, 'copying 100% (1,200 of 1,200), ETA 0 s']);
  // Nothing written yet: no rate, no ETA.
  assert.equal(copyText(copyView(state(10, []), at(1))), 'copying 0% (0 of 10)');
});

test("the terminal bar's rate is this process's, so a resumed copy does not count what an earlier one did", () => {
  const progress = { copied: 150_000, bytes: 0, total: 200_000, totalBytes: 0, elapsedMs: 10_000, copiedHere: 50_000, bytesHere: 0 };
  assert.deepEqual(rateAndEta(progress), { rate: 5_000, etaSeconds: 10 });
  assert.deepEqual([durationText(42), durationText(70), durationText(3_700)], ['42 s', '1 m 10 s', '1 h 1 m']);
});
