// Start-up (README, "Performance", Targets): how long `mmm --help` takes, against bare `node`,
// and how long `mmm run` takes from its spawn until its first oplog read (the `link started`
// line comes just before it), with its resident memory then. Five starts of each.
// Run: `npx tsx bench/start-up.ts` (after `npm run build`, so that bin/mmm runs the compiled build).

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MongoClient } from 'mongodb';
import { v4 as uuidv4 } from 'uuid';
import { startReplicaSets } from '../scripts/replica-sets.ts';
import { ReplicationConfigStore } from '../src/config/store.ts';

const bin = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'mmm');
const STARTS = 5;

/** Wall time of a process from spawn to exit, in ms. */
function timed(args: string[]): Promise<number> {
  const t = performance.now();
  const child = spawn(process.execPath, args, { stdio: 'ignore' });
  return new Promise((resolve) => child.once('exit', () => resolve(performance.now() - t)));
}

async function firstRead(config: string): Promise<{ ms: number; rssMB: number }> {
  const t = performance.now();
  const child = spawn(process.execPath, [bin, '-c', config, '--log-level', 'info', 'run'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  await new Promise<void>((resolve) =>
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      if (stderr.includes('"link started"')) resolve();
    }),
  );
  const ms = performance.now() - t;
  const rssMB = Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
  child.kill('SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));
  return { ms, rssMB };
}

const range = (xs: number[], unit: string) => `${Math.round(Math.min(...xs))}-${Math.round(Math.max(...xs))} ${unit}`;

const node: number[] = [];
const help: number[] = [];
for (let k = 0; k < STARTS; k++) {
  node.push(await timed(['-e', '0']));
  help.push(await timed([bin, '--help']));
}
console.log(`node -e 0: ${range(node, 'ms')}; mmm --help: ${range(help, 'ms')}`);

const [a, b] = await startReplicaSets(2);
const cb = await new MongoClient(b!.uri).connect();
const dir = mkdtempSync(path.join(os.tmpdir(), 'mmm-start-up-'));
try {
  const idA = uuidv4();
  const config = path.join(dir, 'topology.yml');
  writeFileSync(config, `server_a:\n  id: '${idA}'\n  uri: '${a!.uri}'\nserver_b:\n  id: '${uuidv4()}'\n  uri: '${b!.uri}'\n`);
  await new ReplicationConfigStore(cb).addLink(idA, { src: 'bench.x', dst: 'bench.x', ops: 'iud' });
  const starts = [];
  for (let k = 0; k < STARTS; k++) starts.push(await firstRead(config));
  console.log(`mmm run, spawn to first oplog read: ${range(starts.map((s) => s.ms), 'ms')}, RSS then ${range(starts.map((s) => s.rssMB), 'MB')}`);
} finally {
  await cb.close();
  await Promise.all([a!.destroy(), b!.destroy()]);
  rmSync(dir, { recursive: true, force: true });
}
