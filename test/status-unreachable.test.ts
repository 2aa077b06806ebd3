// `mmm status` while a destination cannot be reached: its links are still listed, from what
// status last read there (state `unknown`, with why); and the counters' age while a run runs.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ReplicationConfigStore } from '../src/config/store.ts';
import { formatStatus } from '../src/status/format.ts';
import type { LoopView, StatusReport } from '../src/status/report.ts';
import { ID_A, ID_B, runCli, startTwoServers, type TwoServers } from './support/cli.ts';

let two: TwoServers;
let cache: string;
const savedCacheHome = process.env.XDG_CACHE_HOME;

before(async () => {
  // The children inherit it: status keeps its memory of links in this test's folder.
  cache = mkdtempSync(path.join(os.tmpdir(), 'mmm-status-cache-'));
  process.env.XDG_CACHE_HOME = cache;
  two = await startTwoServers();
  await new ReplicationConfigStore(two.clients[0]!).addLink(ID_B, { src: 'test.foo', dst: 'test.foo', ops: 'iud' });
  await new ReplicationConfigStore(two.clients[1]!).addLink(ID_A, { src: 'test.foo', dst: 'test.foo', ops: 'iud' });
  await new ReplicationConfigStore(two.clients[1]!).addLink(ID_A, { src: 'test.bar', dst: 'test.baz', ops: 'iu' });
});

after(async () => {
  await two?.close();
  if (savedCacheHome === undefined) delete process.env.XDG_CACHE_HOME;
  else process.env.XDG_CACHE_HOME = savedCacheHome;
  rmSync(cache, { recursive: true, force: true });
});

const status = async (args: string[] = []) => {
  const result = await runCli(['-c', two.config, '--connect-timeout', '1', 'status', ...args]);
  return { ...result, report: args.includes('--json') ? (JSON.parse(result.stdout) as StatusReport) : undefined };
};

test('a destination that cannot be reached still lists its links, state unknown, with why', async () => {
  const seen = await status(['--json']);
  assert.equal(seen.code, 0, seen.stderr);
  assert.deepEqual(
    seen.report!.loops.map((l) => [l.destination, l.state]),
    [['server_a', 'never started'], ['server_b', 'never started']],
  );

  await two.sets[1]!.members[0]!.stop();
  const [json, table] = await Promise.all([status(['--json']), status()]);
  assert.equal(json.code, 1);
  const intoB = json.report!.loops.find((l) => l.destination === 'server_b')!;
  assert.equal(intoB.state, 'unknown');
  assert.equal(intoB.source, 'server_a');
  assert.deepEqual(intoB.links, [
    { dst: 'test.foo', src: 'test.foo', ops: 'iud', state: 'unknown' },
    { dst: 'test.baz', src: 'test.bar', ops: 'iu', state: 'unknown' },
  ]);
  const why = json.report!.servers.find((s) => s.name === 'server_b')!.error!;
  assert.match(why, /^server_b \(mongodb:\/\/127\.0\.0\.1:\d+\/\?replicaSet=\w+\): unreachable \(waited 1 s\)/);
  assert.equal(intoB.error?.message, why);
  assert.match(intoB.warnings[0]!, /^the links as this machine last read them, at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  // server_a's loop is reported as before, its source unreachable.
  assert.equal(json.report!.loops.find((l) => l.destination === 'server_a')!.state, 'never started');

  assert.equal(table.code, 1);
  assert.match(table.stdout, /^server_b\/test\.foo <= server_a\/test\.foo +iud +unknown +- +-$/m);
  assert.match(table.stdout, /^server_b\/test\.baz <= server_a\/test\.bar +iu +unknown$/m);
  assert.ok(table.stdout.includes(`server_b <= server_a: unknown\n  error at `), table.stdout);
  assert.ok(table.stdout.includes(`: ${why}\n  warning: the links as this machine last read them, at `), table.stdout);
});

test("the counters' age is shown while a run runs, once it is a second or more", () => {
  const loop = (heartbeatAgeSeconds: number, state: LoopView['state']): LoopView => ({
    destination: 'server_b',
    source: 'server_a',
    sourceId: ID_A,
    state,
    error: null,
    checkpoint: { t: 1795318952, i: 176, time: '2026-11-22T03:42:32Z' },
    lagSeconds: 0,
    applied: { i: 122, u: 40, d: 10 },
    missed: 0,
    refused: 0,
    conflicts: 0,
    run: { host: 'vm', pid: 4524, since: '2026-11-22T03:42:29Z', heartbeat: '2026-11-22T03:42:32Z', heartbeatAgeSeconds, recordedState: 'running' },
    warnings: [],
    notReplicated: [],
    links: [{ dst: 'test.foo', src: 'test.foo', ops: 'iud', state }],
  });
  const row = (l: LoopView) => formatStatus({ time: '2026-11-22T03:42:36Z', servers: [], loops: [l] }).split('\n')[1];
  assert.match(row(loop(4.2, 'running'))!, / 122\/40\/10 \(4 s ago\)$/);
  assert.match(row(loop(0.3, 'running'))!, / 122\/40\/10$/);
  // A stopped run's counters are final: no age.
  assert.match(row(loop(40, 'stopped'))!, / 122\/40\/10$/);
});
