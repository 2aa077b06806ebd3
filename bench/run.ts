// `npm run bench`: how fast mmm replicates, against the destination's own write rate.
//
// Starts its own replica sets with the tests' mongod (scripts/replica-sets.ts): A (the source)
// and B (the destination), single-member sets, and for section 6 a two-member set. mmm runs as
// the real CLI, `node bin/mmm run`, in its own process. Sections (README, "Performance"):
//   1. ceiling:  the workload written straight to B by a tuned client (bulk writes of 1,000,
//                unordered, 4 in parallel; transactions as 8 concurrent sessions' bulk writes
//                of their 10 operations without a transaction), same write concern as mmm;
//   2. mmm:      the workload written to A as fast as the generator can (the same client), with
//                mmm running: operations / (time from the first write on A until B's checkpoint
//                covers A's last entry); concurrent writing, not a pre-written backlog;
//   3. ratio mmm / ceiling;
//   4. lag at a steady load (half the mixed throughput): B's oplog `wall` minus A's `wall` of
//      the source entry each write replays (its `__mmm` tag names that entry);
//   5. catch-up: mmm stopped while a backlog is written to A, then started; time from the start
//      of the process until its checkpoint covers the backlog, and its peak resident memory;
//   6. MongoDB's own replication: a secondary stopped while the same backlog is written, then
//      restarted; time from its start until its optime reaches the primary's.
//   8. catch-up per workload (`catchup`): sections 5 and 6 for each workload, --ops operations,
//      and the ratio mmm / secondary;
//   9. latency (`latency`): section 2 again with mmm reaching B through a proxy that delays
//      each way by --latency-ms (../scripts/delay-proxy.ts), and the ratio to section 2.
// --unrelated N: the backlog (5) is followed by N inserts into a collection mmm does not
// replicate, which mmm must read past.
//   7. verify:   `mmm verify` of an equal link of --verify-docs documents of 1 KB (./verify.ts).
//  11. conflict check (`conflicts`): section 2 with a link back from B to A too, so that A's
//      writes are checked for conflicts on B (there are none), with `run --conflicts lww` and
//      with `--conflicts off`, in turn; the ratio is the check's cost. A third run, `off` with
//      the pre-images that `lww` turns on kept all the same, tells the servers' share of that
//      cost (each update or delete also writes its pre-image) from the check's own.
//  10. copy (`copy`): `replicate --copy` of --copy-docs documents against the destination's
//      insert ceiling and MongoDB's initial sync of the same documents, on servers of its own
//      (./copy.ts).
// Medians of `--runs` runs (default 3). `--quick`: every section, tiny, in well under a minute.
// Results: a table on stdout and bench/results/<date>.json.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { MongoClient, type Collection, type Document, type Timestamp, type WriteConcernSettings } from 'mongodb';
import { v4 as uuidv4 } from 'uuid';
import { ReplicationConfigStore } from '../src/config/store.ts';
import { startReplicaSet, startReplicaSets, type ReplicaSet } from '../scripts/replica-sets.ts';
import { DelayProxy } from '../scripts/delay-proxy.ts';
import { cpuSecondsOf, MmmProcess } from './mmm-process.ts';
import { copyBench, formatCopyBench } from './copy.ts';
import { verifyTiming } from './verify.ts';
import { document, plan, units, WORKLOAD_TITLES, WORKLOADS, type BenchDoc, type Unit, type WorkloadName, type WorkloadPlan } from './workloads.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    runs: { type: 'string' },
    ops: { type: 'string' },
    backlog: { type: 'string' },
    'lag-seconds': { type: 'string' },
    'lag-rate': { type: 'string' },
    sections: { type: 'string' },
    'verify-docs': { type: 'string' },
    'copy-docs': { type: 'string' },
    unrelated: { type: 'string' },
    'latency-ms': { type: 'string' },
    workloads: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});

if (args.help) {
  console.log(`npm run bench -- [--quick] [--runs N] [--ops N] [--backlog N] [--lag-seconds S] [--lag-rate OPS]
                   [--sections ceiling,mmm,latency,catchup,conflicts,lag,backlog,secondary,verify,copy] [--workloads insert,update,mixed,txn]
                   [--verify-docs N] [--copy-docs N] [--unrelated N] [--latency-ms MS]
Environment: MMM_BENCH_NODE_ARGS='--cpu-prof --cpu-prof-dir=DIR' profiles the mmm process;
MMM_BENCH_STDERR=FILE keeps its log.`);
  process.exit(0);
}

const quick = args.quick!;
const settings = {
  runs: Number(args.runs ?? (quick ? 1 : 3)),
  ops: Number(args.ops ?? (quick ? 3_000 : 200_000)),
  backlog: Number(args.backlog ?? (quick ? 5_000 : 1_000_000)),
  lagSeconds: Number(args['lag-seconds'] ?? (quick ? 3 : 60)),
  lagRate: args['lag-rate'] === undefined ? undefined : Number(args['lag-rate']),
  sections: new Set((args.sections ?? 'ceiling,mmm,latency,catchup,conflicts,lag,backlog,secondary,verify,copy').split(',')),
  verifyDocs: Number(args['verify-docs'] ?? (quick ? 5_000 : 200_000)),
  copyDocs: Number(args['copy-docs'] ?? (quick ? 5_000 : 200_000)),
  unrelated: Number(args.unrelated ?? 0),
  latencyMs: Number(args['latency-ms'] ?? 25),
  workloads: (args.workloads?.split(',') ?? WORKLOADS) as WorkloadName[],
};

// A cache big enough for the data; no 15-second quiesce period when a member is stopped.
const MONGOD = { cacheSizeGB: 1, args: ['--setParameter', 'shutdownTimeoutMillisForSignaledShutdown=0'] };
const WRITE_CONCERN: WriteConcernSettings = { w: 'majority' }; // mmm's default, for both sides
const CONCURRENCY = 4; // bulk writers in parallel
const TXN_CONCURRENCY = 32; // sessions in parallel for the transaction workload
// Extra node arguments for the mmm process, e.g. MMM_BENCH_NODE_ARGS='--cpu-prof' to profile it.
const MMM_NODE_ARGS = process.env.MMM_BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
const DB = 'bench';
const COLL = 'data';
const NS = `${DB}.${COLL}`;

function log(line: string) {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

// ---- servers ------------------------------------------------------------------------------

interface Servers {
  a: ReplicaSet;
  b: ReplicaSet;
  /** The two-member set of section 6, when it runs. */
  pair: ReplicaSet | undefined;
  ca: MongoClient;
  cb: MongoClient;
  idA: string;
  idB: string;
  config: string;
  /** The same topology with B reached through the delaying proxy (section 9). */
  delayed: { config: string; proxy: DelayProxy } | undefined;
  dir: string;
}

async function startServers(): Promise<Servers> {
  // A's oplog holds the whole backlog; the oplog is capped, so the size costs only what is written.
  const oplogSizeMB = Math.max(256, Math.ceil((Math.max(settings.backlog, settings.ops) + settings.unrelated) / 1_000_000 * 2_000));
  const [a, b, pair] = await Promise.all([
    startReplicaSet(1, { ...MONGOD, oplogSizeMB }),
    startReplicaSets(1, MONGOD).then((s) => s[0]!),
    settings.sections.has('secondary') || settings.sections.has('catchup') ? startReplicaSet(2, { ...MONGOD, oplogSizeMB }) : undefined,
  ]);
  if (pair) await nonVotingSecondary(pair);
  const ca = await new MongoClient(a.uri).connect();
  const cb = await new MongoClient(b.uri).connect();
  const idA = uuidv4();
  const idB = uuidv4();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mmm-bench-'));
  const config = path.join(dir, 'topology.yml');
  writeFileSync(config, `server_a:\n  id: '${idA}'\n  uri: '${a.uri}'\nserver_b:\n  id: '${idB}'\n  uri: '${b.uri}'\n`);
  await new ReplicationConfigStore(cb).addLink(idA, { src: NS, dst: NS, ops: 'iud' });
  let delayed: Servers['delayed'];
  if (settings.sections.has('latency')) {
    const [host, port] = b.members[0]!.host.split(':') as [string, string];
    const proxy = await DelayProxy.start({ host, port: Number(port) }, settings.latencyMs);
    const file = path.join(dir, 'topology-delayed.yml');
    // directConnection: the driver would otherwise find B's own address in its replica set
    // configuration and go there, around the proxy.
    writeFileSync(file, `server_a:\n  id: '${idA}'\n  uri: '${a.uri}'\nserver_b:\n  id: '${idB}'\n  uri: 'mongodb://127.0.0.1:${proxy.port}/?directConnection=true'\n`);
    delayed = { config: file, proxy };
  }
  return { a, b, pair, ca, cb, idA, idB, config, delayed, dir };
}

/**
 * Makes the second member of a two-member set non-voting, so that the primary keeps a majority
 * of votes, and stays primary, while the secondary is down (section 6).
 */
async function nonVotingSecondary(set: ReplicaSet): Promise<void> {
  const client = await new MongoClient(set.uri).connect();
  try {
    const { config } = await client.db('admin').command({ replSetGetConfig: 1 });
    config.version += 1;
    config.members[1].votes = 0;
    config.members[1].priority = 0;
    await client.db('admin').command({ replSetReconfig: config });
  } finally {
    await client.close();
  }
}

const coll = (c: MongoClient) => c.db(DB).collection<BenchDoc>(COLL);

async function newest(c: MongoClient): Promise<Timestamp> {
  const e = await c.db('local').collection('oplog.rs').find({}, { projection: { ts: 1 } }).sort({ $natural: -1 }).limit(1).next();
  return e!.ts as Timestamp;
}

/** Empties the bench collection on the given servers and writes the pre-populated documents. */
async function prepare(clients: MongoClient[], p: WorkloadPlan, preImages = false): Promise<void> {
  for (const c of clients) {
    await coll(c).drop().catch(() => undefined);
    await c.db(DB).createCollection(COLL, preImages ? { changeStreamPreAndPostImages: { enabled: true } } : {});
  }
  const rnd = () => 0.5;
  for (let start = 0; start < p.prepopulate; start += 1_000) {
    const docs: BenchDoc[] = [];
    for (let id = start; id < Math.min(start + 1_000, p.prepopulate); id++) docs.push(document(id, rnd));
    await Promise.all(clients.map((c) => coll(c).insertMany(docs, { ordered: false, writeConcern: { w: 1 } })));
  }
}

/** Lets mmm start at A's current end of oplog (what came before is setup, not workload). */
async function skipToEnd(s: Servers): Promise<void> {
  await new ReplicationConfigStore(s.cb).saveCheckpoint(s.idA, await newest(s.ca));
}

async function checkpoint(s: Servers): Promise<Timestamp | undefined> {
  return new ReplicationConfigStore(s.cb).checkpoint(s.idA);
}

/** Resolves when B's checkpoint for A reaches `target`; polls every few milliseconds. */
async function waitForCheckpoint(s: Servers, target: Timestamp, timeoutMs = 3_600_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const cp = await checkpoint(s);
    if (cp && cp.greaterThanOrEqual(target)) return performance.now();
    if (Date.now() > deadline) throw new Error('mmm did not catch up in time');
    await sleep(5);
  }
}

/** Same documents on A and B (tags aside): count and a checksum of the counters. */
async function verify(s: Servers, what: string): Promise<void> {
  const summary = async (c: MongoClient) => {
    const [row] = await coll(c).aggregate([{ $group: { _id: null, count: { $sum: 1 }, n: { $sum: '$n' }, k: { $sum: '$k' } } }]).toArray();
    return JSON.stringify({ count: row?.count ?? 0, n: row?.n ?? 0, k: row?.k ?? 0 });
  };
  const [sa, sb] = await Promise.all([summary(s.ca), summary(s.cb)]);
  if (sa !== sb) throw new Error(`${what}: destination differs from source: ${sa} vs ${sb}`);
}

// ---- writing a workload -------------------------------------------------------------------

/** Writes the units with a few writers in parallel; returns the operations written. */
async function writeUnits(client: MongoClient, source: Iterator<Unit>, writeConcern: WriteConcernSettings): Promise<number> {
  const collection = coll(client);
  const first = source.next();
  if (first.done) return 0;
  let pending: Unit | undefined = first.value;
  const take = (): Unit | undefined => {
    if (pending) {
      const unit = pending;
      pending = undefined;
      return unit;
    }
    const next = source.next();
    return next.done ? undefined : next.value;
  };
  let written = 0;
  const worker = async (): Promise<void> => {
    for (let unit = take(); unit; unit = take()) {
      if (unit.transaction) {
        const ops = unit.ops;
        const session = client.startSession();
        try {
          await session.withTransaction(() => collection.bulkWrite(ops, { ordered: true, session }), { writeConcern });
        } finally {
          await session.endSession();
        }
      } else {
        await collection.bulkWrite(unit.ops, { ordered: false, writeConcern });
      }
      written += unit.ops.length;
    }
  };
  const parallel = first.value.transaction ? TXN_CONCURRENCY : CONCURRENCY;
  await Promise.all(Array.from({ length: parallel }, () => worker()));
  return written;
}

/** The ceiling: the workload written straight to the destination, ops/s. */
async function ceiling(s: Servers, p: WorkloadPlan, seed: number): Promise<number> {
  await prepare([s.cb], p);
  // Transactions are written as plain bulk writes of the same operations: the destination's
  // rate for those writes, which is what mmm (which unrolls transactions) has to produce.
  const flat = flatten(units(p, seed));
  const t0 = performance.now();
  const n = await writeUnits(s.cb, flat, WRITE_CONCERN);
  const seconds = (performance.now() - t0) / 1000;
  if (n !== p.ops) throw new Error(`ceiling wrote ${n} of ${p.ops}`);
  return n / seconds;
}

/** Regroups transactions' operations into chunks of 1,000 plain operations. */
function* flatten(source: Iterable<Unit>): Generator<Unit> {
  let ops: Unit['ops'] = [];
  for (const unit of source) {
    ops.push(...unit.ops);
    if (ops.length >= 1_000) {
      yield { ops, transaction: false };
      ops = [];
    }
  }
  if (ops.length > 0) yield { ops, transaction: false };
}

/** How section 11 runs mmm: `off-images` is `--conflicts off` on collections that keep pre-images, as `lww` makes them. */
type ConflictMode = 'lww' | 'off' | 'off-images';

/**
 * mmm: the workload written to A with mmm running; ops/s until B has it all. `conflicts`: with
 * the link back from B to A as well, and that mode.
 */
async function throughput(
  s: Servers,
  p: WorkloadPlan,
  seed: number,
  config = s.config,
  mode?: ConflictMode,
): Promise<{ opsPerSec: number; mmmCpu: number; elapsed: number; writeSeconds: number }> {
  const conflicts = mode === 'off-images' ? 'off' : mode;
  await prepare([s.ca, s.cb], p, mode === 'off-images');
  await skipToEnd(s);
  const back = new ReplicationConfigStore(s.ca);
  if (conflicts) {
    await back.addLink(s.idB, { src: NS, dst: NS, ops: 'iud' });
    await back.saveCheckpoint(s.idB, await newest(s.cb));
  }
  const mmm = await MmmProcess.start(config, conflicts ? 2 : 1, MMM_NODE_ARGS, conflicts ? ['--conflicts', conflicts] : []).catch(async (err: unknown) => {
    if (conflicts) await back.removeLink(s.idB, NS, NS);
    throw err;
  });
  try {
    const cpu0 = mmm.cpuSeconds();
    const t0 = performance.now();
    const n = await writeUnits(s.ca, units(p, seed), WRITE_CONCERN);
    const written = performance.now();
    const last = await newest(s.ca);
    const t1 = await waitForCheckpoint(s, last);
    const mmmCpu = mmm.cpuSeconds() - cpu0;
    if (n !== p.ops) throw new Error(`wrote ${n} of ${p.ops}`);
    await verify(s, `${p.name} workload`);
    const elapsed = (t1 - t0) / 1000;
    return { opsPerSec: n / elapsed, mmmCpu, elapsed, writeSeconds: (written - t0) / 1000 };
  } finally {
    await mmm.stop();
    if (conflicts) await back.removeLink(s.idB, NS, NS);
  }
}

// ---- lag ----------------------------------------------------------------------------------

/** Source position named by an mmm tag (`<uuid>:<t>:<i>`), as `t:i`. */
function tagPosition(tag: unknown): string | undefined {
  if (typeof tag !== 'string') return undefined;
  const m = /:(\d+):(\d+)$/.exec(tag);
  return m ? `${m[1]}:${m[2]}` : undefined;
}

/** The tag a destination oplog operation writes (insert, $v:2 update, replacement). */
function tagOf(op: Document): unknown {
  const o = op.o as Document | undefined;
  if (!o) return undefined;
  return o.__mmm ?? (o.diff as Document | undefined)?.u?.__mmm ?? (o.diff as Document | undefined)?.i?.__mmm ?? (o.$set as Document | undefined)?.__mmm;
}

interface LagResult {
  rate: number;
  achievedRate: number;
  samples: number;
  p50: number;
  p99: number;
  max: number;
}

async function lag(s: Servers, rate: number, seconds: number, seed: number): Promise<LagResult> {
  const total = Math.round(rate * seconds);
  const p = plan('mixed', total);
  await prepare([s.ca, s.cb], p);
  await skipToEnd(s);
  const startA = await newest(s.ca);
  const startB = await newest(s.cb);
  const mmm = await MmmProcess.start(s.config, 1, MMM_NODE_ARGS);
  let achieved = 0;
  try {
    // Every 10 ms, the operations due by then, as one unordered bulk write.
    const tickMs = 10;
    const perTick = Math.max(1, Math.round((rate * tickMs) / 1000));
    const source = units(p, seed, perTick);
    const t0 = performance.now();
    let written = 0;
    let tick = 0;
    for (let next = source.next(); !next.done; next = source.next()) {
      const due = t0 + tick * tickMs;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      await coll(s.ca).bulkWrite(next.value.ops, { ordered: false, writeConcern: WRITE_CONCERN });
      written += next.value.ops.length;
      tick++;
    }
    achieved = written / ((performance.now() - t0) / 1000);
    await waitForCheckpoint(s, await newest(s.ca));
  } finally {
    await mmm.stop();
  }
  await verify(s, 'lag workload');

  // Source entries: position -> wall time.
  const walls = new Map<string, number>();
  const srcCursor = s.ca.db('local').collection('oplog.rs').find({ ts: { $gt: startA }, ns: NS }, { projection: { ts: 1, wall: 1 } });
  for await (const e of srcCursor) walls.set(`${e.ts.t}:${e.ts.i}`, (e.wall as Date).getTime());
  // Destination entries: each replayed write names its source entry in its tag.
  const lags: number[] = [];
  const dstCursor = s.cb.db('local').collection('oplog.rs').find(
    { ts: { $gt: startB }, $or: [{ ns: NS }, { 'o.applyOps.ns': NS }] },
    { projection: { wall: 1, o: 1, ns: 1 } },
  );
  for await (const e of dstCursor) {
    const ops: Document[] = Array.isArray(e.o?.applyOps) ? (e.o.applyOps as Document[]) : [e];
    for (const op of ops) {
      const at = tagPosition(tagOf(op));
      const srcWall = at ? walls.get(at) : undefined;
      if (srcWall !== undefined) lags.push((e.wall as Date).getTime() - srcWall);
    }
  }
  lags.sort((x, y) => x - y);
  if (lags.length === 0) throw new Error('lag: no replicated write found on the destination');
  const pct = (q: number) => lags[Math.min(lags.length - 1, Math.floor(q * lags.length))]!;
  return { rate, achievedRate: achieved, samples: lags.length, p50: pct(0.5), p99: pct(0.99), max: lags[lags.length - 1]! };
}

// ---- backlog ------------------------------------------------------------------------------

async function backlog(
  s: Servers,
  ops: number,
  seed: number,
  mongodCpu: () => number,
  workload: WorkloadName = 'mixed',
): Promise<{ seconds: number; opsPerSec: number; peakMB: number; writeSeconds: number; mmmCpuShare: number; mongodCpuShare: number }> {
  const p = plan(workload, ops);
  await prepare([s.ca, s.cb], p);
  await coll(s.ca).db.collection('other').drop().catch(() => undefined);
  await skipToEnd(s);
  const w0 = performance.now();
  await writeUnits(s.ca, units(p, seed), WRITE_CONCERN);
  const writeSeconds = (performance.now() - w0) / 1000;
  if (settings.unrelated > 0) {
    const other = s.ca.db(DB).collection<BenchDoc>('other');
    const rnd = () => 0.5;
    for (let start = 0; start < settings.unrelated; start += 1_000) {
      const docs: BenchDoc[] = [];
      for (let id = start; id < Math.min(start + 1_000, settings.unrelated); id++) docs.push(document(id, rnd));
      await other.insertMany(docs, { ordered: false, writeConcern: { w: 1 } });
    }
  }
  const last = await newest(s.ca);
  const t0 = performance.now();
  const cpu0 = mongodCpu();
  const mmm = await MmmProcess.start(s.config, 1, MMM_NODE_ARGS);
  let peakMB = 0;
  try {
    const sampler = setInterval(() => {
      try {
        peakMB = Math.max(peakMB, mmm.memory().peakMB);
      } catch {
        // exited
      }
    }, 200);
    const t1 = await waitForCheckpoint(s, last);
    clearInterval(sampler);
    peakMB = Math.max(peakMB, mmm.memory().peakMB);
    const seconds = (t1 - t0) / 1000;
    const mmmCpuShare = mmm.cpuSeconds() / seconds;
    const mongodCpuShare = (mongodCpu() - cpu0) / seconds;
    await verify(s, 'backlog');
    return { seconds, opsPerSec: ops / seconds, peakMB, writeSeconds, mmmCpuShare, mongodCpuShare };
  } finally {
    await mmm.stop();
  }
}

/** MongoDB's own replication: a secondary stopped during the backlog, then restarted. */
async function secondaryCatchUp(set: ReplicaSet, ops: number, seed: number, workload: WorkloadName = 'mixed'): Promise<{ seconds: number; opsPerSec: number }> {
  const client = await new MongoClient(set.uri).connect();
  try {
    const p = plan(workload, ops);
    await prepare([client], p);
    // Wait until the secondary has the setup, so that only the backlog is counted.
    await waitForSecondary(client, await newest(client));
    const secondary = set.members[1]!;
    await secondary.stop();
    // With one of two members down, no write can reach a majority: w:1.
    await writeUnits(client, units(p, seed), { w: 1 });
    const last = await newest(client);
    const t0 = performance.now();
    await secondary.start();
    await waitForSecondary(client, last);
    const seconds = (performance.now() - t0) / 1000;
    return { seconds, opsPerSec: ops / seconds };
  } finally {
    await client.close();
  }
}

async function waitForSecondary(client: MongoClient, target: Timestamp): Promise<void> {
  const deadline = Date.now() + 3_600_000;
  for (;;) {
    try {
      const status = await client.db('admin').command({ replSetGetStatus: 1 });
      const secondary = (status.members as Document[]).find((m) => m.stateStr === 'SECONDARY');
      const ts = secondary?.optime?.ts as Timestamp | undefined;
      if (ts && ts.greaterThanOrEqual(target)) return;
    } catch {
      // the set is reconfiguring its view of the member; ask again
    }
    if (Date.now() > deadline) throw new Error('the secondary did not catch up in time');
    await sleep(20);
  }
}

// ---- report -------------------------------------------------------------------------------

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const fmt = (x: number | undefined, digits = 0) => (x === undefined || Number.isNaN(x) ? '-' : x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }));

async function machine(s: Servers): Promise<Document> {
  const build = await s.ca.db('admin').command({ buildInfo: 1 });
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    memoryGB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    mongodb: build.version as string,
  };
}

async function main(): Promise<void> {
  log(`settings: ${JSON.stringify({ ...settings, sections: [...settings.sections] })}`);
  const s = await startServers();
  const results: Document = { settings: { ...settings, sections: [...settings.sections] }, runs: [] };
  try {
    results.machine = await machine(s);
    const pids = await Promise.all([s.ca, s.cb].map(async (c) => (await c.db('admin').command({ serverStatus: 1 })).pid as number));
    const mongodCpu = () => pids.reduce((sum, pid) => sum + cpuSecondsOf(pid), 0);
    // The destination's own CPU for the same writes: less noisy than rates on a shared machine.
    const destinationCpu = () => cpuSecondsOf(pids[1]!);
    log(`machine: ${JSON.stringify(results.machine)}`);
    for (let run = 1; run <= settings.runs; run++) {
      const r: Document = { run, workloads: {} };
      results.runs.push(r);
      for (const w of settings.workloads) {
        const p = plan(w, settings.ops);
        const seed = 1_000 * run + WORKLOADS.indexOf(w);
        const row: Document = {};
        if (settings.sections.has('ceiling')) {
          row.ceiling = await ceiling(s, p, seed);
          log(`run ${run} ${w}: ceiling ${fmt(row.ceiling)} ops/s`);
        }
        if (settings.sections.has('mmm')) {
          const cpu0 = mongodCpu();
          const dst0 = destinationCpu();
          const t = await throughput(s, p, seed);
          row.destinationCpuSeconds = destinationCpu() - dst0;
          row.mmmCpuSeconds = t.mmmCpu;
          row.mmm = t.opsPerSec;
          row.sourceWriteSeconds = t.writeSeconds;
          row.mmmCpuShare = t.mmmCpu / t.elapsed;
          row.mongodCpuShare = (mongodCpu() - cpu0) / t.elapsed;
          log(`run ${run} ${w}: mmm ${fmt(row.mmm)} ops/s (${fmt(t.elapsed, 1)} s, the source writes took ${fmt(t.writeSeconds, 1)} s; mmm used ${fmt(row.mmmCpuShare * 100)}% of a core (${fmt(t.mmmCpu, 1)} s), both mongods ${fmt(row.mongodCpuShare * 100)}%, the destination's ${fmt(row.destinationCpuSeconds, 1)} s)`);
        }
        if (settings.sections.has('latency')) {
          s.delayed!.proxy.lateness();
          const t = await throughput(s, p, seed, s.delayed!.config);
          row.mmmDelayed = t.opsPerSec;
          // The proxy shares this process with the load generator: its timers run late when it is busy.
          const late = s.delayed!.proxy.lateness();
          row.proxyLateMs = { p50: late.p50, p99: late.p99 };
          log(`run ${run} ${w}: mmm with ${settings.latencyMs} ms each way to the destination ${fmt(row.mmmDelayed)} ops/s (${fmt(t.elapsed, 1)} s; the proxy's chunks went out ${fmt(late.p50, 1)} ms late at the median, ${fmt(late.p99, 1)} ms at p99)`);
        }
        if (settings.sections.has('conflicts')) {
          // The orders in turn over runs, so that none always runs on a warmer server.
          const modes: ConflictMode[] = ['off', 'lww', 'off-images'];
          const order = modes.map((_, k) => modes[(k + run - 1) % modes.length]!);
          for (const mode of order) {
            const t = await throughput(s, p, seed, s.config, mode);
            row[{ lww: 'checked', off: 'unchecked', 'off-images': 'preImagesOnly' }[mode]] = t.opsPerSec;
            log(`run ${run} ${w}: both ways, --conflicts ${mode === 'off-images' ? 'off (pre-images kept)' : mode}: ${fmt(t.opsPerSec)} ops/s (${fmt(t.elapsed, 1)} s, the source writes took ${fmt(t.writeSeconds, 1)} s; mmm used ${fmt(t.mmmCpu, 1)} s of CPU)`);
          }
        }
        if (settings.sections.has('catchup')) {
          row.catchup = await backlog(s, settings.ops, 70_000 + seed, mongodCpu, w);
          row.secondary = (await secondaryCatchUp(s.pair!, settings.ops, 70_000 + seed, w)).opsPerSec;
          log(`run ${run} ${w}: catch-up of ${fmt(settings.ops)}: mmm ${fmt(row.catchup.opsPerSec)} ops/s (peak RSS ${fmt(row.catchup.peakMB)} MB), secondary ${fmt(row.secondary)} ops/s`);
        }
        r.workloads[w] = row;
      }
      if (settings.sections.has('lag')) {
        const mixed = r.workloads.mixed?.mmm as number | undefined;
        const rate = settings.lagRate ?? (mixed ? Math.round(mixed / 2) : 2_000);
        r.lag = await lag(s, rate, settings.lagSeconds, 50_000 + run);
        log(`run ${run} lag at ${fmt(rate)} ops/s (achieved ${fmt(r.lag.achievedRate)}): p50 ${r.lag.p50} ms, p99 ${r.lag.p99} ms, max ${r.lag.max} ms`);
      }
      if (settings.sections.has('backlog')) {
        r.backlog = await backlog(s, settings.backlog, 60_000 + run, mongodCpu);
        log(
          `run ${run} backlog of ${fmt(settings.backlog)}: caught up in ${fmt(r.backlog.seconds, 1)} s (${fmt(r.backlog.opsPerSec)} ops/s), ` +
            `peak RSS ${fmt(r.backlog.peakMB)} MB; mmm used ${fmt(r.backlog.mmmCpuShare * 100)}% of a core, both mongods ${fmt(r.backlog.mongodCpuShare * 100)}%`,
        );
      }
      if (settings.sections.has('secondary')) {
        r.secondary = await secondaryCatchUp(s.pair!, settings.backlog, 60_000 + run);
        log(`run ${run} secondary: caught up in ${fmt(r.secondary.seconds, 1)} s (${fmt(r.secondary.opsPerSec)} ops/s)`);
      }
      if (settings.sections.has('verify')) {
        r.verify = await verifyTiming(s, settings.verifyDocs, log);
        log(`run ${run} verify: ${fmt(r.verify.docsPerSec)} docs/s (CLI ${fmt(r.verify.cliDocsPerSec)}); parallel 1/2/4: ${[1, 2, 4].map((k) => fmt(r.verify.byParallel[k])).join(' / ')}`);
      }
    }
  } finally {
    await Promise.all([s.ca.close(), s.cb.close()]);
    await s.delayed?.proxy.stop();
    await Promise.all([s.a.destroy(), s.b.destroy(), s.pair?.destroy()]);
    rmSync(s.dir, { recursive: true, force: true });
  }

  // Medians over runs.
  const runs = results.runs as Document[];
  const med = (pick: (r: Document) => number | undefined) => {
    const xs = runs.map(pick).filter((x): x is number => typeof x === 'number');
    return xs.length ? median(xs) : undefined;
  };
  const summary: Document = { workloads: {} };
  const lines: string[] = [];
  lines.push(`| workload | ceiling (ops/s) | mmm (ops/s) | mmm / ceiling | source writes alone (ops/s) |`);
  lines.push(`|---|---:|---:|---:|---:|`);
  for (const w of settings.workloads) {
    const c = med((r) => r.workloads[w]?.ceiling);
    const m = med((r) => r.workloads[w]?.mmm);
    const ratio = med((r) => (r.workloads[w]?.mmm && r.workloads[w]?.ceiling ? r.workloads[w].mmm / r.workloads[w].ceiling : undefined));
    const source = med((r) => (r.workloads[w]?.sourceWriteSeconds ? settings.ops / r.workloads[w].sourceWriteSeconds : undefined));
    summary.workloads[w] = { ceiling: c, mmm: m, ratio, source };
    lines.push(`| ${WORKLOAD_TITLES[w]} | ${fmt(c)} | ${fmt(m)} | ${fmt(ratio, 2)} | ${fmt(source)} |`);
  }
  if (settings.sections.has('catchup') || settings.sections.has('latency')) {
    // Catch-up of a backlog of each workload: mmm against MongoDB's secondary; and section 2
    // with the delay to the destination, against section 2 without.
    lines.push('');
    lines.push(`| workload | mmm catch-up (ops/s) | secondary catch-up (ops/s) | mmm / secondary | mmm peak RSS (MB) | mmm with ${settings.latencyMs} ms each way (ops/s) | with latency / without |`);
    lines.push(`|---|---:|---:|---:|---:|---:|---:|`);
    for (const w of settings.workloads) {
      const row = (r: Document) => r.workloads[w] as Document | undefined;
      const mmm = med((r) => row(r)?.catchup?.opsPerSec);
      const secondary = med((r) => row(r)?.secondary);
      const ratio = med((r) => (row(r)?.catchup && row(r)?.secondary ? row(r)!.catchup.opsPerSec / row(r)!.secondary : undefined));
      const peak = med((r) => row(r)?.catchup?.peakMB);
      const delayed = med((r) => row(r)?.mmmDelayed);
      const latencyRatio = med((r) => (row(r)?.mmmDelayed && row(r)?.mmm ? row(r)!.mmmDelayed / row(r)!.mmm : undefined));
      Object.assign(summary.workloads[w], { catchup: mmm, secondary, catchupRatio: ratio, catchupPeakMB: peak, delayed, latencyRatio });
      lines.push(`| ${WORKLOAD_TITLES[w]} | ${fmt(mmm)} | ${fmt(secondary)} | ${fmt(ratio, 2)} | ${fmt(peak)} | ${fmt(delayed)} | ${fmt(latencyRatio, 2)} |`);
    }
  }
  if (settings.sections.has('conflicts')) {
    lines.push('');
    lines.push(`| workload | both ways, --conflicts off (ops/s) | off, pre-images kept (ops/s) | both ways, --conflicts lww (ops/s) | lww / off | pre-images alone / off |`);
    lines.push(`|---|---:|---:|---:|---:|---:|`);
    for (const w of settings.workloads) {
      const row = (r: Document) => r.workloads[w] as Document | undefined;
      const ratioTo = (k: string) => med((r) => (row(r)?.[k] && row(r)?.unchecked ? row(r)![k] / row(r)!.unchecked : undefined));
      const unchecked = med((r) => row(r)?.unchecked);
      const images = med((r) => row(r)?.preImagesOnly);
      const checked = med((r) => row(r)?.checked);
      const ratio = ratioTo('checked');
      const imagesRatio = ratioTo('preImagesOnly');
      Object.assign(summary.workloads[w], { conflictsOff: unchecked, conflictsPreImagesOnly: images, conflictsLww: checked, conflictCheckRatio: ratio, preImagesRatio: imagesRatio });
      lines.push(`| ${WORKLOAD_TITLES[w]} | ${fmt(unchecked)} | ${fmt(images)} | ${fmt(checked)} | ${fmt(ratio, 2)} | ${fmt(imagesRatio, 2)} |`);
    }
  }
  const lagRow = (k: string) => med((r) => r.lag?.[k]);
  if (settings.sections.has('lag')) {
    summary.lag = { rate: lagRow('rate'), p50: lagRow('p50'), p99: lagRow('p99'), max: lagRow('max') };
    lines.push('');
    lines.push(`lag at a steady ${fmt(summary.lag.rate)} ops/s (mixed) for ${settings.lagSeconds} s: p50 ${fmt(summary.lag.p50)} ms, p99 ${fmt(summary.lag.p99)} ms, max ${fmt(summary.lag.max)} ms`);
  }
  if (settings.sections.has('backlog')) {
    summary.backlog = { seconds: med((r) => r.backlog?.seconds), opsPerSec: med((r) => r.backlog?.opsPerSec), peakMB: med((r) => r.backlog?.peakMB) };
    lines.push(`catch-up of a ${fmt(settings.backlog)}-operation backlog (mixed): mmm ${fmt(summary.backlog.seconds, 1)} s (${fmt(summary.backlog.opsPerSec)} ops/s), peak RSS ${fmt(summary.backlog.peakMB)} MB`);
  }
  if (settings.sections.has('secondary')) {
    summary.secondary = { seconds: med((r) => r.secondary?.seconds), opsPerSec: med((r) => r.secondary?.opsPerSec) };
    const vs = summary.backlog?.seconds ? ` (mmm takes ${fmt(summary.backlog.seconds / summary.secondary.seconds, 2)}x its time)` : '';
    lines.push(`MongoDB secondary catching up the same backlog: ${fmt(summary.secondary.seconds, 1)} s (${fmt(summary.secondary.opsPerSec)} ops/s)${vs}`);
  }
  if (settings.sections.has('verify')) {
    summary.verify = { docsPerSec: med((r) => r.verify?.docsPerSec), cliSeconds: med((r) => r.verify?.cliSeconds) };
    lines.push(`verify of an equal link of ${fmt(settings.verifyDocs)} documents of 1 KB: ${fmt(summary.verify.docsPerSec)} docs/s (the CLI, start-up included: ${fmt(summary.verify.cliSeconds, 1)} s)`);
  }
  if (settings.sections.has('copy')) {
    // On servers of its own (a source set whose member re-joins by initial sync), once.
    results.copy = await copyBench(settings.copyDocs);
    summary.copy = results.copy;
    lines.push('', formatCopyBench(results.copy));
  }
  results.summary = summary;
  const m = results.machine as Document;
  lines.push('');
  lines.push(`machine: ${m.cpus} cores (${m.cpuModel}), ${m.memoryGB} GB, ${m.os}; MongoDB ${m.mongodb}, Node ${m.node}; medians of ${settings.runs} run(s), ${fmt(settings.ops)} ops per workload`);
  console.log(lines.join('\n'));
  const dir = path.join(root, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}${quick ? '-quick' : ''}.json`);
  writeFileSync(file, JSON.stringify(results, null, 2) + '\n');
  log(`wrote ${path.relative(root, file)}`);
}

await main();
// The mongodb driver keeps no timers once closed, but a stray handle must not keep CI waiting.
process.exit(0);
