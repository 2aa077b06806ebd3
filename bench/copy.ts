// The copy benchmark (`replicate --copy`, README "Performance"): the same documents copied three
// ways, one after the other, on this machine:
//   1. the destination's own insert ceiling: the documents inserted straight into B, by four
//      writers of unordered 1,000-document batches;
//   2. MongoDB's own initial sync: a member with an empty data directory joins the source's set
//      (non-voting), timed until it is SECONDARY;
//   3. mmm: `node bin/mmm replicate --copy` as a user runs it, its peak resident memory read
//      from /proc while it runs.
// Ratios in one run, since the machine is shared. Run: `npx tsx bench/copy.ts [--docs N]`
// (default 200,000 documents of about 1 KB); `npm run bench -- --sections copy` runs it too.

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { MongoClient, type Document } from 'mongodb';
import { v4 as uuidv4 } from 'uuid';
import { startReplicaSet, type ReplicaSet } from '../scripts/replica-sets.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MONGOD = { cacheSizeGB: 1, args: ['--setParameter', 'shutdownTimeoutMillisForSignaledShutdown=0'] };
const BATCH = 1_000;

export interface CopyBenchResult {
  documents: number;
  megabytes: number;
  ceilingPerSecond: number;
  initialSyncPerSecond: number;
  mmmPerSecond: number;
  mmmPeakMB: number;
}

function log(line: string) {
  process.stderr.write(`[copy bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

/** Document `k`: about 1 KB, of several BSON types, as the other sections' documents. */
function document(k: number): Document {
  return { _id: k, n: k, name: `user-${k}`, tags: ['a', 'b', String(k % 10)], at: new Date(1_700_000_000_000 + k), pad: 'x'.repeat(900) };
}

async function load(client: MongoClient, coll: string, documents: number): Promise<void> {
  let next = 0;
  const writer = async () => {
    for (let start = (next += BATCH) - BATCH; start < documents; start = (next += BATCH) - BATCH) {
      const docs = Array.from({ length: Math.min(BATCH, documents - start) }, (_, j) => document(start + j));
      await client.db('bench').collection(coll).insertMany(docs, { ordered: false });
    }
  };
  await Promise.all([writer(), writer(), writer(), writer()]);
}

async function memberState(client: MongoClient, host: string): Promise<number | undefined> {
  const status = await client.db('admin').command({ replSetGetStatus: 1 });
  return (status.members as Array<{ name: string; state: number }>).find((m) => m.name === host)?.state;
}

/** Peak resident memory of `pid` so far, in MB (VmHWM), or 0 once it has exited. */
function peakMB(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

async function mmmCopy(config: string): Promise<{ seconds: number; peakMB: number }> {
  const started = performance.now();
  const child = spawn(process.execPath, [path.join(root, 'bin', 'mmm'), '-c', config, '--log-level', 'warn', 'replicate', '--src', 'server_a/bench.docs', '--dst', 'server_b/bench.docs', '--copy'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  let peak = 0;
  const timer = setInterval(() => (peak = Math.max(peak, peakMB(child.pid!))), 100);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  clearInterval(timer);
  if (code !== 0) throw new Error(`mmm replicate --copy exited with ${code}: ${stderr}`);
  return { seconds: (performance.now() - started) / 1000, peakMB: peak };
}

export async function copyBench(documents: number): Promise<CopyBenchResult> {
  // The source: a set whose second member (non-voting, so the primary keeps its majority) is
  // stopped and emptied, to join again by initial sync once the documents are written.
  const [source, destination] = await Promise.all([startReplicaSet(2, MONGOD), startReplicaSet(1, MONGOD)]);
  const sets: ReplicaSet[] = [source, destination];
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mmm-copy-bench-'));
  const ca = await new MongoClient(source.uri).connect();
  const cb = await new MongoClient(destination.uri).connect();
  try {
    const { config: rsConfig } = await ca.db('admin').command({ replSetGetConfig: 1 });
    rsConfig.version += 1;
    rsConfig.members[1].votes = 0;
    rsConfig.members[1].priority = 0;
    await ca.db('admin').command({ replSetReconfig: rsConfig });
    const syncing = source.members[1]!;
    await syncing.stop();
    rmSync(syncing.dbpath, { recursive: true, force: true });
    mkdirSync(syncing.dbpath);

    log(`writing ${documents} documents`);
    await load(ca, 'docs', documents);
    const stats = await ca.db('bench').command({ collStats: 'docs' });
    const megabytes = Number(stats.size) / (1024 * 1024);

    log('ceiling: the same documents inserted straight into the destination');
    let t = performance.now();
    await load(cb, 'ceiling', documents);
    const ceilingSeconds = (performance.now() - t) / 1000;
    await cb.db('bench').collection('ceiling').drop();

    log("MongoDB's initial sync: an empty member joins the source's set");
    t = performance.now();
    await syncing.start();
    while ((await memberState(ca, syncing.host)) !== 2) await new Promise((r) => setTimeout(r, 50));
    const initialSyncSeconds = (performance.now() - t) / 1000;
    await syncing.stop();

    log('mmm: replicate --copy');
    const config = path.join(dir, 'topology.yml');
    writeFileSync(config, `server_a:\n  id: '${uuidv4()}'\n  uri: '${source.uri}'\nserver_b:\n  id: '${uuidv4()}'\n  uri: '${destination.uri}'\n`);
    const mmm = await mmmCopy(config);
    const copied = await cb.db('bench').collection('docs').countDocuments();
    if (copied !== documents) throw new Error(`mmm copied ${copied} of ${documents} documents`);
    return {
      documents,
      megabytes,
      ceilingPerSecond: documents / ceilingSeconds,
      initialSyncPerSecond: documents / initialSyncSeconds,
      mmmPerSecond: documents / mmm.seconds,
      mmmPeakMB: mmm.peakMB,
    };
  } finally {
    await Promise.all([ca.close(), cb.close()]);
    await Promise.all(sets.map((s) => s.destroy()));
    rmSync(dir, { recursive: true, force: true });
  }
}

export function formatCopyBench(r: CopyBenchResult): string {
  const k = (n: number) => `${(n / 1000).toFixed(1)}k/s`;
  return [
    `copy of ${r.documents.toLocaleString('en-US')} documents (${r.megabytes.toFixed(0)} MB):`,
    `  destination insert ceiling  ${k(r.ceilingPerSecond)}`,
    `  MongoDB initial sync        ${k(r.initialSyncPerSecond)}`,
    `  mmm replicate --copy        ${k(r.mmmPerSecond)}  (${(r.mmmPerSecond / r.initialSyncPerSecond).toFixed(2)} of initial sync, ${(r.mmmPerSecond / r.ceilingPerSecond).toFixed(2)} of the ceiling; peak RSS ${r.mmmPeakMB.toFixed(0)} MB)`,
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { docs: { type: 'string' } } });
  const result = await copyBench(Number(values.docs ?? 200_000));
  process.stdout.write(`${formatCopyBench(result)}\n`);
}
